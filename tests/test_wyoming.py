"""``edge-intent serve --wyoming``: the running daemon driven by the Wyoming ecosystem's own code.

* Home Assistant's side: the PyPI ``wyoming`` library's ``AsyncTcpClient``, as Home Assistant's
  Wyoming integration uses it: ``describe``, a flite-spoken WAV (44.1 kHz stereo, converted by
  edge) streamed as chunks for a transcript, that text sent to ``recognize`` for the intent and
  its entities, "hey jarvis" for a ``detection``; bad events get ``error`` events while a second
  client's stream goes on; the limits of size, time and connections.
* A real ``wyoming-satellite`` 1.0.0 (in ``.venv-clients``: it pins wyoming 1.4.1) whose
  microphone is ``arecord`` on an ALSA ``type file`` device fed by :class:`FifoMic`, using edge as
  its wake word service, with this test playing Home Assistant's side of the satellite.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from test_outputs import free_port, wait_for

from speech_helpers import FifoMic, silence, speak, write_wav
from test_daemon import ROOT, Daemon

wyoming = pytest.importorskip("wyoming")

from wyoming.asr import Transcribe, Transcript  # noqa: E402
from wyoming.audio import AudioChunk, AudioStart, AudioStop, wav_to_chunks  # noqa: E402
from wyoming.client import AsyncTcpClient  # noqa: E402
from wyoming.error import Error  # noqa: E402
from wyoming.event import Event  # noqa: E402
from wyoming.info import Describe, Info  # noqa: E402
from wyoming.intent import Intent, NotRecognized, Recognize  # noqa: E402
from wyoming.pipeline import RunPipeline  # noqa: E402
from wyoming.satellite import RunSatellite  # noqa: E402
from wyoming.wake import Detect, Detection  # noqa: E402

CLIENTS_PYTHON = ROOT / ".venv-clients" / "bin" / "python"


def wyoming_address(daemon: Daemon) -> tuple[str, int]:
    daemon.wait_note("READY=1")
    status = [n for n in daemon.notes if n.startswith("STATUS=ready")][0]
    host, port = re.search(r"Wyoming on tcp://(\S+):(\d+)", status).groups()
    return host, int(port)


def words(text: str) -> str:
    """Lower case, punctuation gone: PocketSphinx and Whisper (which writes "Turn ... kitchen.") alike."""
    return " ".join("".join(c for c in w.lower() if c.isalnum() or c == "'") for w in text.split())


def wav_file(tmp: Path, name: str, samples: np.ndarray, rate: int, channels: int) -> Path:
    """16 kHz int16 speech written as a WAV at another rate and channel count (as a phone or browser records)."""
    import soxr

    audio = soxr.resample(samples.astype(np.float32) / 32768.0, 16000, rate)
    return write_wav(tmp / name, np.stack([audio] * channels, axis=1) if channels > 1 else audio, rate)


def chunks_of(path: Path, samples_per_chunk: int = 1024) -> list[Event]:
    """The WAV as the wyoming library streams one: audio-start, audio-chunk..., audio-stop."""
    with wave.open(str(path), "rb") as wav:
        return [c.event() for c in wav_to_chunks(wav, samples_per_chunk, start_event=True, stop_event=True)]


async def read_until(client: AsyncTcpClient, *types: str, timeout: float = 30) -> Event:
    """The next event of one of ``types`` (audio from a satellite is skipped)."""
    while True:
        event = await asyncio.wait_for(client.read_event(), timeout)
        assert event is not None, f"the connection closed while waiting for {types}"
        if event.type in types:
            return event


@pytest.mark.slow
def test_home_assistant_side_asr_intent_wake_errors_and_limits(tmp_path):
    config = """
wyoming: {enabled: true, listen: "tcp://127.0.0.1:0", timeout_s: 1.5, max_text_bytes: 300, max_connections: 4,
          max_audio_seconds: 6}
http: {enabled: false}
"""
    lights = wav_file(tmp_path, "lights.wav", speak("turn off the lights in the kitchen", "slt", tmp_path), 44100, 2)
    other, wake_word = speak("the game starts at eight tonight", "awb", tmp_path), speak("hey jarvis", "rms", tmp_path)
    jarvis = wav_file(tmp_path, "jarvis.wav", np.concatenate([other, wake_word]), 22050, 1)
    daemon = Daemon(tmp_path, config, "--no-mic")
    try:
        host, port = wyoming_address(daemon)

        async def describe() -> Info:
            async with AsyncTcpClient(host, port) as client:
                await client.write_event(Describe().event())
                return Info.from_event(await read_until(client, "info"))

        info = asyncio.run(describe())
        assert [p.name for p in info.asr] == ["edge"] and info.asr[0].models[0].languages == ["en"]
        from edge.profiles import load_profile
        from edge.stt import resolve_engine

        # the engine the test's device profile (generic-x86_64) picks, as the microphone path does
        assert info.asr[0].models[0].name == resolve_engine("auto", None, load_profile("generic-x86_64").stt)
        assert info.asr[0].installed
        assert info.intent[0].models[0].name.startswith("squeezebert-hwu64")
        wake_models = {m.name: m.phrase for m in info.wake[0].models}
        assert {"hey_jarvis", "okay_nabu", "alexa", "hey_mycroft"} <= set(wake_models)
        assert wake_models["hey_jarvis"] == "Hey Jarvis"

        async def transcribe_then_recognize() -> tuple[str, Event, Event]:
            async with AsyncTcpClient(host, port) as client:
                await client.write_event(Transcribe(language="en-US").event())
                for event in chunks_of(lights):
                    await client.write_event(event)
                text = Transcript.from_event(await read_until(client, "transcript")).text
                await client.write_event(Recognize(text=text).event())
                intent = await read_until(client, "intent", "not-recognized")
                # Home Assistant's conversation agent sends a transcript, not recognize
                await client.write_event(Transcript(text="banana seventeen", language="en").event())
                return text, intent, await read_until(client, "intent", "not-recognized")

        text, intent, not_recognized = asyncio.run(transcribe_then_recognize())
        assert words(text) == "turn off the lights in the kitchen"
        assert Intent.is_type(intent.type) and Intent.from_event(intent).name == "iot_hue_lightoff"
        assert [(e.name, e.value) for e in Intent.from_event(intent).entities] == [("house_place", "kitchen")]
        assert NotRecognized.is_type(not_recognized.type)

        async def wake_stream_beside_a_bad_client() -> tuple[list[Event], list[Event]]:
            """B streams "hey jarvis" paced at twice real time; A breaks the rules in the middle of it."""
            a, b = AsyncTcpClient(host, port), AsyncTcpClient(host, port)
            await a.connect()
            await b.connect()
            heard_b: list[Event] = []

            async def stream_b() -> None:
                await b.write_event(Detect(names=["hey_jarvis"]).event())
                for event in chunks_of(jarvis):
                    await b.write_event(event)
                    if AudioChunk.is_type(event.type):
                        await asyncio.sleep(AudioChunk.from_event(event).seconds / 2)
                heard_b.append(await read_until(b, "detection", "not-detected"))
                if Detection.is_type(heard_b[-1].type):  # the stream's end after a detection: nothing more to say
                    await b.write_event(Describe().event())
                    heard_b.append(await read_until(b, "info", "not-detected"))

            async def misbehave_a() -> list[Event]:
                answers = []
                await asyncio.sleep(0.5)
                await a.write_event(Transcribe().event())
                first = chunks_of(lights)
                for event in first[:10]:
                    await a.write_event(event)
                await a.write_event(Event(type="audio-chunk", data={"width": 2, "channels": 1}, payload=b"\0\0"))
                answers.append(await read_until(a, "error"))
                for event in first[10:]:  # the rest of the broken stream is ignored, up to its audio-stop
                    await a.write_event(event)
                a._writer.write(b"this is not an event\n")
                answers.append(await read_until(a, "error"))
                await a.write_event(Event(type="synthesize", data={"text": "hello"}))
                answers.append(await read_until(a, "error"))
                await a.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=bytes(640)).event())
                answers.append(await read_until(a, "error"))
                await a.write_event(Recognize(text="turn on the lights " * 20).event())
                answers.append(await read_until(a, "error"))
                await a.write_event(AudioStart(rate=16000, width=3 * 1, channels=1).event())  # 24-bit: converted
                await a.write_event(AudioChunk(rate=16000, width=3, channels=1, audio=bytes(3 * 1600)).event())
                await a.write_event(AudioStop().event())
                answers.append(await read_until(a, "transcript", "error"))
                await a.write_event(Detect(names=["hey_nobody_xqz"]).event())
                answers.append(await read_until(a, "error"))
                return answers

            answers_a, _ = await asyncio.gather(misbehave_a(), stream_b())
            await a.disconnect()
            await b.disconnect()
            return answers_a, heard_b

        answers, heard = asyncio.run(wake_stream_beside_a_bad_client())
        errors = [Error.from_event(e) if Error.is_type(e.type) else e for e in answers]
        assert errors[0].code == "bad-event" and errors[0].text == "audio-chunk: missing field 'rate'"
        assert errors[1].code == "bad-event" and "not JSON" in errors[1].text
        assert (
            errors[2].code == "unsupported-event"
            and "'synthesize'" in errors[2].text
            and "transcribe" in errors[2].text
        )
        assert errors[3].code == "no-request" and "send transcribe or detect" in errors[3].text
        assert errors[4].code == "too-large" and "the limit is 300 bytes (wyoming.max_text_bytes)" in errors[4].text
        assert Transcript.is_type(answers[5].type) and Transcript.from_event(answers[5]).text == ""  # silence
        assert errors[6].code == "unknown-model" and "hey_jarvis" in errors[6].text
        assert [e.type for e in heard] == ["detection", "info"], heard
        detection = Detection.from_event(heard[0])
        assert detection.name == "hey_jarvis"
        # ms into the stream: in the wake word, after the other sentence
        assert len(other) / 16 < detection.timestamp <= (len(other) + len(wake_word)) / 16

        async def limits() -> tuple[Event | None, ...]:
            # a transcription that goes silent: error, then the connection is closed
            silent = AsyncTcpClient(host, port)
            await silent.connect()
            await silent.write_event(AudioStart(rate=16000, width=2, channels=1).event())
            timeout = await read_until(silent, "error", timeout=10)
            closed = await asyncio.wait_for(silent.read_event(), 5)
            # a transcription longer than max_audio_seconds (counted at 16 kHz, here sent at 48 kHz)
            long = AsyncTcpClient(host, port)
            await long.connect()
            await long.write_event(AudioStart(rate=48000, width=2, channels=1).event())
            for _ in range(7):
                await long.write_event(AudioChunk(rate=48000, width=2, channels=1, audio=bytes(96000)).event())
            await long.write_event(AudioStop().event())
            too_long = await read_until(long, "error")
            await long.write_event(Describe().event())  # the connection goes on
            still_served = await read_until(long, "info")
            await long.disconnect()
            assert Error.from_event(too_long).code == "too-large" and "6 s" in Error.from_event(too_long).text
            assert Info.is_type(still_served.type)
            # an announced payload over the limit is refused before it is read
            huge = AsyncTcpClient(host, port)
            await huge.connect()
            huge._writer.write(
                b'{"type": "audio-chunk", "data": {"rate": 16000, "width": 2, "channels": 1}, '
                b'"payload_length": 999999999}\n'
            )
            too_large = await read_until(huge, "error")
            huge_closed = await asyncio.wait_for(huge.read_event(), 5)
            # connections over max_connections get "busy"; the others are served
            clients = [AsyncTcpClient(host, port) for _ in range(5)]
            for client in clients:
                await client.connect()
            await asyncio.sleep(0.3)
            busy = await read_until(clients[-1], "error")
            await clients[0].write_event(Describe().event())
            served = await read_until(clients[0], "info")
            for client in clients:
                await client.disconnect()
            return timeout, closed, too_large, huge_closed, busy, served

        timeout, closed, too_large, huge_closed, busy, served = asyncio.run(limits())
        assert (
            Error.from_event(timeout).code == "timeout" and "1.5 s" in Error.from_event(timeout).text and closed is None
        )
        assert Error.from_event(too_large).code == "too-large" and "999999999 bytes" in Error.from_event(too_large).text
        assert huge_closed is None
        assert Error.from_event(busy).code == "busy" and Info.is_type(served.type)

        # SIGHUP with a stricter out-of-scope threshold: the same server answers with the reloaded model
        daemon.config_path.write_text(config + "model: {threshold: 0.9999}\n")
        mark = len(daemon.notes)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_note("READY=1", after=daemon.wait_note("RELOADING=1", after=mark))

        async def recognize_again() -> Event:
            async with AsyncTcpClient(host, port) as client:
                await client.write_event(Recognize(text="turn off the lights in the kitchen").event())
                return await read_until(client, "intent", "not-recognized")

        assert NotRecognized.is_type(asyncio.run(recognize_again()).type)  # 0.997 is below the new threshold
        assert daemon.stop() == 0 and "Traceback" not in daemon.log
    finally:
        daemon.kill()


@pytest.mark.slow
def test_wyoming_satellite_uses_edge_as_its_wake_word_service(tmp_path):
    """wyoming-satellite 1.0.0 hears "hey jarvis" through edge; Home Assistant's side gets the pipeline request."""
    if not CLIENTS_PYTHON.exists():
        pytest.skip(f"{CLIENTS_PYTHON} is missing (script/setup --dev creates it)")
    if shutil.which("arecord") is None:
        pytest.skip("arecord is not installed (Debian alsa-utils; script/setup --dev installs it)")
    mic = FifoMic(tmp_path, speed=2.0)
    daemon = Daemon(
        tmp_path, 'wyoming: {enabled: true, listen: "tcp://127.0.0.1:0"}\nhttp: {listen: "127.0.0.1:0"}\n', "--no-mic"
    )
    satellite = None
    detections = tmp_path / "detections.txt"
    try:
        host, port = wyoming_address(daemon)
        sat_port = free_port()
        satellite = subprocess.Popen(
            [
                str(CLIENTS_PYTHON),
                "-m",
                "wyoming_satellite",
                "--uri",
                f"tcp://127.0.0.1:{sat_port}",
                "--name",
                "kitchen",
                # Periods of FifoMic's frame size: the file plugin pads a short read of its FIFO with stale samples.
                "--mic-command",
                "arecord -D edgefile -q -r 16000 -c 1 -f S16_LE -t raw --period-size=512 --buffer-size=2048",
                "--wake-uri",
                f"tcp://{host}:{port}",
                "--wake-word-name",
                "hey_jarvis",
                "--detection-command",
                f"sh -c 'cat >> {detections}'",
                "--no-zeroconf",
                "--debug",
            ],
            env={"PATH": "/usr/bin:/bin", "ALSA_CONFIG_PATH": str(mic.conf)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_for(
            lambda: daemon.request("GET", "/healthz")[1]["wyoming"]["requests"].get("detect", 0) >= 1,
            30,
            "the satellite to ask edge for wake word detection",
        )

        async def home_assistant() -> list[Event]:
            ha = AsyncTcpClient("127.0.0.1", sat_port)
            await wait_connect(ha)
            await ha.write_event(Describe().event())
            info = Info.from_event(await read_until(ha, "info"))
            assert info.satellite is not None and info.satellite.name == "kitchen"
            await ha.write_event(RunSatellite().event())
            seen = []
            for sentence in ("hey jarvis", "hey jarvis"):
                await asyncio.sleep(1.0)
                mic.say(
                    np.concatenate(
                        [
                            speak("the game starts at eight tonight", "awb", tmp_path),
                            silence(0.3),
                            speak(sentence, "rms", tmp_path),
                        ]
                    )
                )
                seen.append(await read_until(ha, "run-pipeline", timeout=30))
                seen.append(await read_until(ha, "audio-chunk", timeout=10))  # the command's audio comes to us now
                await ha.write_event(Transcript(text="turn off the lights").event())  # as Home Assistant ends the turn
            await ha.disconnect()
            return seen

        seen = asyncio.run(home_assistant())
        pipelines = [RunPipeline.from_event(e) for e in seen if RunPipeline.is_type(e.type)]
        assert [p.start_stage.value for p in pipelines] == ["asr", "asr"]  # wake word done: edge heard it
        assert AudioChunk.from_event(seen[1]).rate == 16000
        wait_for(
            lambda: detections.exists() and detections.read_text().count("hey_jarvis") == 2,
            10,
            "the satellite's detection command",
        )
        _, health = daemon.request("GET", "/healthz")
        assert health["wyoming"]["requests"]["detection"] == 2 and health["wyoming"]["requests"]["detect"] >= 3
        assert health["wyoming"]["errors"] == 0
        assert daemon.stop() == 0 and "Traceback" not in daemon.log
    finally:
        if satellite is not None:
            satellite.terminate()
            try:
                out, _ = satellite.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                satellite.kill()
                out, _ = satellite.communicate()
            print(out)
        print(daemon.log)
        daemon.kill()
        mic.close()


async def wait_connect(client: AsyncTcpClient, timeout: float = 20) -> None:
    """The satellite opens its port a moment after it starts."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await client.connect()
            return
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


@pytest.mark.parametrize(
    "rate, width, channels", [(16000, 2, 1), (44100, 2, 2), (48000, 4, 2), (8000, 1, 1), (22050, 3, 1)]
)
def test_pcm_converter_any_format_to_16k_mono(rate, width, channels):
    """A 440 Hz tone in any PCM format, cut into odd-sized chunks, comes out as the same tone at 16 kHz."""
    from edge.audio import PcmConverter

    t = np.arange(rate) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    scale = 1 << (8 * width - 1)
    ints = np.clip(np.round(tone * scale), -scale, scale - 1).astype(np.int64)
    if width == 1:
        ints = ints + 128  # 8-bit PCM is unsigned
    frames = np.repeat(ints[:, None], channels, axis=1).reshape(-1)
    raw = b"".join(int(v).to_bytes(width, "little", signed=width > 1) for v in frames)
    converter = PcmConverter(rate, width, channels)
    out = np.concatenate([converter.convert(raw[i : i + 1001]) for i in range(0, len(raw), 1001)] + [converter.flush()])
    assert out.dtype == np.int16 and abs(len(out) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(out[1000:15000].astype(np.float64)))
    assert abs(np.argmax(spectrum) * 16000 / 14000 - 440) < 2
    assert 0.45 < np.abs(out[1000:15000]).max() / 32768 < 0.55


@pytest.mark.parametrize(
    "args, message",
    [
        ((16000, 5, 1), "audio width 5 bytes is not supported; allowed 1, 2, 3 or 4"),
        ((16000, 2, 0), "audio channels 0 is out of range; allowed 1..32"),
        ((100, 2, 1), "audio rate 100 Hz is out of range; allowed 1000..768000"),
        (("16000", 2, 1), "audio rate '16000' is not a whole number"),
    ],
)
def test_pcm_converter_refuses_what_it_cannot_read(args, message):
    from edge.audio import AudioError, PcmConverter

    with pytest.raises(AudioError, match=re.escape(message)):
        PcmConverter(*args)


def test_example_config_documents_every_wyoming_and_mqtt_key():
    import dataclasses

    import yaml

    from edge.config import MqttSettings, WyomingSettings, load

    example = yaml.safe_load((ROOT / "examples" / "config.yaml").read_text())
    assert set(example["wyoming"]) == {f.name for f in dataclasses.fields(WyomingSettings)}
    # the password belongs in password_file, so the example leaves it out
    assert set(example["mqtt"]) == {f.name for f in dataclasses.fields(MqttSettings)} - {"password"}
    assert load(ROOT / "examples" / "config.yaml").wyoming == WyomingSettings()
