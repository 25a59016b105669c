"""Domain adaptation: make the recognisers prefer the words and phrases of the intent model.

Built offline by ``tools/stt_adapt.py`` from the sentences the intent model was trained on, and
stored in its package (manifest section ``stt``); :func:`artefacts` finds them at run time.

PocketSphinx: a trigram LM, mixed with the general English LM
------------------------------------------------------------------
1. The sentences are put in spoken form (:func:`spoken_form`: lower case, numbers as words,
   punctuation dropped) and a trigram model is estimated with interpolated Kneser-Ney smoothing
   (Chen & Goodman 1998; one absolute discount per order, ``D = n1 / (n1 + 2 n2)``, continuation
   counts below the top order), written in ARPA back-off form: the stored probability of a
   seen n-gram is the interpolated one and its history's back-off weight is the interpolation
   weight ``D * N1+(h .) / c(h)``. PocketSphinx ships an ARPA builder (``pocketsphinx.lm``),
   but it uses a fixed discount mass whose unigrams sum to one half, so it is not used.
2. The vocabulary is the domain words plus the ``general_words`` most frequent words of the
   general LM in the PocketSphinx wheel, so words the training sentences never used (names,
   places, out-of-domain requests) can still be recognised. On 120 flite-spoken HWU64 *dev*
   sentences, 3k / 10k / 30k general words gave 12.4 / 11.6 / 10.1 % WER, the larger vocabulary
   costing decoding time; the default 20k sits between.
3. The two models are mixed statically (linear interpolation, as SRILM's ``-mix-lm`` does):
   every domain n-gram and every general unigram of the vocabulary gets
   ``lambda * P_domain + (1 - lambda) * P_general``, where each side backs off in its own model,
   and back-off weights are recomputed so that every history's distribution sums to one.
   ``lambda`` is fitted by EM on a held-out tenth of the *training* sentences (HWU64: 0.86),
   then capped at ``max_lambda`` (0.9): held-out training sentences are more like each other
   than real requests are, so a fitted value near 1 would over-trust the domain (on the dev
   sentences lambda 0.7 / fitted 0.86 / 0.97 gave 11.8 / 11.6 / 12.2 % WER).

Whisper: a prompt
-----------------
Sentences of the package's commands that say its slot values, the rarest last
(``tools.templates.whisper_prompt``), written to ``whisper-prompt.txt`` and given to Whisper as
previous text (``edge.stt.whisper``, which keeps the last whole sentences that fit its window).

Vosk: a phrase list
-------------------
Vosk compiles a runtime grammar from a JSON list of phrases into a bigram (discount 0.5). The
list is the spoken-form training sentences, ``[unk]`` (so other speech is not forced onto domain
words) and the ``vosk_general_words`` most frequent general English words as one-word phrases.
"""

from __future__ import annotations

import collections
import json
import math
import random
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.textnorm import spoken_form

if TYPE_CHECKING:
    from edge.package import ModelPackage

SECTION = "stt"
BOS, EOS = "<s>", "</s>"
ORDER = 3

# --------------------------------------------------------------------------- spoken form

# --------------------------------------------------------------------------- Kneser-Ney


class KneserNey:
    """Interpolated Kneser-Ney trigram model over a fixed vocabulary.

    ``prob(history, word)`` is the smoothed probability; ``ngrams(n)`` lists the n-grams seen
    in training. The lowest order interpolates with the uniform distribution over ``vocab``.
    """

    def __init__(self, sentences: Iterable[list[str]], vocab: set[str], order: int = ORDER) -> None:
        self.order = order
        self.vocab = set(vocab) | {EOS}
        counts: list[collections.Counter[tuple[str, ...]]] = [collections.Counter() for _ in range(order + 1)]
        for words in sentences:
            seq = [BOS] + [w if w in self.vocab else None for w in words] + [EOS]
            for i in range(1, len(seq)):
                for n in range(1, order + 1):
                    if i - n + 1 < 0:
                        break
                    gram = tuple(seq[i - n + 1 : i + 1])
                    if None in gram:
                        break
                    counts[n][gram] += 1
        # Below the top order, an n-gram's count is the number of distinct words seen before it,
        # except for n-grams that start the sentence: nothing can precede <s>.
        self.counts: list[dict[tuple[str, ...], int]] = [{} for _ in range(order + 1)]
        self.counts[order] = dict(counts[order])
        for n in range(order - 1, 0, -1):
            cont: collections.Counter[tuple[str, ...]] = collections.Counter()
            for gram in counts[n + 1]:
                cont[gram[1:]] += 1
            for gram, c in counts[n].items():
                cont[gram] = c if gram[0] == BOS else cont[gram]
            self.counts[n] = {g: c for g, c in cont.items() if c > 0}
        self.discount = [0.0] * (order + 1)
        self.history_total: list[dict[tuple[str, ...], int]] = [{} for _ in range(order + 1)]
        self.history_types: list[dict[tuple[str, ...], int]] = [{} for _ in range(order + 1)]
        for n in range(1, order + 1):
            freq = collections.Counter(self.counts[n].values())
            n1, n2 = freq.get(1, 0), freq.get(2, 0)
            self.discount[n] = n1 / (n1 + 2 * n2) if n1 + n2 > 0 else 0.5
            totals: collections.Counter[tuple[str, ...]] = collections.Counter()
            types: collections.Counter[tuple[str, ...]] = collections.Counter()
            for gram, c in self.counts[n].items():
                totals[gram[:-1]] += c
                types[gram[:-1]] += 1
            self.history_total[n], self.history_types[n] = dict(totals), dict(types)
        self._cache: dict[tuple[tuple[str, ...], str], float] = {}

    def ngrams(self, n: int) -> list[tuple[str, ...]]:
        return list(self.counts[n])

    def backoff_weight(self, history: tuple[str, ...]) -> float:
        """Mass the history leaves to the lower order (1.0 for a history never seen)."""
        n = len(history) + 1
        total = self.history_total[n].get(history)
        if not total:
            return 1.0
        return self.discount[n] * self.history_types[n][history] / total

    def prob(self, history: tuple[str, ...], word: str) -> float:
        history = history[-(self.order - 1) :] if self.order > 1 else ()
        key = (history, word)
        if key not in self._cache:
            self._cache[key] = self._prob(history, word)
        return self._cache[key]

    def _prob(self, history: tuple[str, ...], word: str) -> float:
        n = len(history) + 1
        lower = self.prob(history[1:], word) if history else 1.0 / len(self.vocab)
        total = self.history_total[n].get(history)
        if not total:
            return lower
        c = self.counts[n].get(history + (word,), 0)
        return max(c - self.discount[n], 0.0) / total + self.backoff_weight(history) * lower


# --------------------------------------------------------------------------- the general LM


def _pocketsphinx_model(name: str) -> Path:
    from pocketsphinx import get_model_path

    return Path(get_model_path(name))


class GeneralLM:
    """The general English LM of the PocketSphinx wheel, queried through PocketSphinx itself."""

    def __init__(self, path: Path | None = None) -> None:
        from pocketsphinx import Config, LogMath, NGramModel

        self.path = path or _pocketsphinx_model("en-us/en-us.lm.bin")
        self._config, self._logmath = Config(), LogMath()  # the model points into both: keep them alive
        self._lm = NGramModel(self._config, self._logmath, str(self.path))
        self._ln_base = math.log(1.0001)  # PocketSphinx's default log base
        self._cache: dict[tuple[str, ...], float] = {}

    def prob(self, history: tuple[str, ...], word: str) -> float:
        key = (word,) + tuple(reversed(history[-2:]))  # PocketSphinx wants the word, then its history backwards
        if key not in self._cache:
            self._cache[key] = math.exp(self._lm.prob(list(key)) * self._ln_base)
        return self._cache[key]

    def unigrams(self, words: Iterable[str]) -> dict[str, float]:
        """Unigram probabilities of those ``words`` the model knows.

        Looked up one by one: writing this model out as ARPA crashes PocketSphinx 5.1.
        """
        out = {}
        for word in words:
            score = self._lm.prob([word])
            if score > -(1 << 28):  # unknown words get the log-zero floor
                out[word] = math.exp(score * self._ln_base)
        return out


def read_dictionary(path: Path) -> dict[str, list[str]]:
    """CMU dictionary: word -> its lines (alternative pronunciations are ``word(2) ...``)."""
    entries: dict[str, list[str]] = collections.defaultdict(list)
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            head = line.split(maxsplit=1)[0] if line.strip() else ""
            if head:
                entries[re.sub(r"\(\d+\)$", "", head)].append(line.rstrip("\n"))
    return entries


# --------------------------------------------------------------------------- mixing


def fit_lambda(
    sentences: list[list[str]], vocab: set[str], general: GeneralLM, seed: int = 0, iterations: int = 30
) -> float:
    """EM estimate of the domain weight on a held-out tenth of the sentences."""
    rng = random.Random(seed)
    shuffled = sentences[:]
    rng.shuffle(shuffled)
    cut = max(1, len(shuffled) // 10)
    held, train = shuffled[:cut], shuffled[cut:]
    domain = KneserNey(train, vocab)
    pairs = []
    for words in held:
        seq = [BOS] + words + [EOS]
        for i in range(1, len(seq)):
            if seq[i] in domain.vocab and all(w in domain.vocab or w == BOS for w in seq[max(0, i - 2) : i]):
                history = tuple(seq[max(0, i - 2) : i])
                pairs.append((domain.prob(history, seq[i]), general.prob(history, seq[i])))
    lam = 0.5
    for _ in range(iterations):
        share = [lam * d / (lam * d + (1 - lam) * g) for d, g in pairs if lam * d + (1 - lam) * g > 0]
        lam = sum(share) / len(share)
    return lam


class MixedLM:
    """The static mix of a domain model and the general LM, restricted to ``vocab``."""

    def __init__(self, domain: KneserNey, general: GeneralLM, general_unigrams: dict[str, float], lam: float) -> None:
        self.order = domain.order
        vocab = domain.vocab
        z = sum(general_unigrams.get(w, 0.0) for w in vocab)
        self.probs: list[dict[tuple[str, ...], float]] = [{} for _ in range(self.order + 1)]
        for w in vocab:
            self.probs[1][(w,)] = lam * domain.prob((), w) + (1 - lam) * general_unigrams.get(w, 0.0) / z
        for n in range(2, self.order + 1):
            for gram in domain.ngrams(n):
                history, word = gram[:-1], gram[-1]
                self.probs[n][gram] = lam * domain.prob(history, word) + (1 - lam) * general.prob(history, word)
        self.bows: dict[tuple[str, ...], float] = {}
        for n in range(1, self.order):
            self._fit_backoff(n)

    def _fit_backoff(self, n: int) -> None:
        """Back-off weights of order-``n`` histories, so that each history's distribution sums to one."""
        followers: dict[tuple[str, ...], list[tuple[str, ...]]] = collections.defaultdict(list)
        for gram in self.probs[n + 1]:
            followers[gram[:-1]].append(gram)
        for history, grams in followers.items():
            explicit = sum(self.probs[n + 1][g] for g in grams)
            lower = sum(self.prob(history[1:], g[-1]) for g in grams)
            if explicit > 1.0 - 1e-4:  # the mix gave the seen words (almost) all the mass: leave a little
                scale = (1.0 - 1e-4) / explicit
                for g in grams:
                    self.probs[n + 1][g] *= scale
                explicit = 1.0 - 1e-4
            self.bows[history] = (1.0 - explicit) / max(1.0 - lower, 1e-9)

    def prob(self, history: tuple[str, ...], word: str) -> float:
        history = history[-(self.order - 1) :]
        gram = history + (word,)
        if gram in self.probs[len(gram)]:
            return self.probs[len(gram)][gram]
        if not history:
            return 0.0
        return self.bows.get(history, 1.0) * self.prob(history[1:], word)

    def write_arpa(self, path: Path) -> None:
        with path.open("w", encoding="utf-8") as out:
            out.write("\\data\\\n")
            out.write(f"ngram 1={len(self.probs[1]) + 1}\n")
            for n in range(2, self.order + 1):
                out.write(f"ngram {n}={len(self.probs[n])}\n")
            for n in range(1, self.order + 1):
                out.write(f"\n\\{n}-grams:\n")
                if n == 1:  # <s> is never predicted, only a history
                    out.write(f"-99.0000\t{BOS}\t{math.log10(self.bows.get((BOS,), 1.0)):.4f}\n")
                for gram in sorted(self.probs[n]):
                    line = f"{math.log10(self.probs[n][gram]):.4f}\t{' '.join(gram)}"
                    if n < self.order:
                        line += f"\t{math.log10(self.bows.get(gram, 1.0)):.4f}"
                    out.write(line + "\n")
            out.write("\n\\end\\\n")


# --------------------------------------------------------------------------- build and find


def build(
    sentences: list[str],
    out_dir: str | Path,
    general_words: int = 20000,
    vosk_general_words: int = 1000,
    max_lambda: float = 0.9,
    lam: float | None = None,
    whisper_prompt: str = "",
    grammar: Any = None,
) -> dict[str, Any]:
    """Write the adaptation artefacts for ``sentences`` into ``out_dir``; return what was written.

    The returned mapping has the manifest layout (``{"pocketsphinx": {"lm": ..., "dict": ...},
    "vosk": {"grammar": ...}, "report": ...}``) with paths relative to ``out_dir``'s parent, the
    package directory, plus ``stats`` (vocabulary sizes, lambda, words without pronunciation).
    """
    from pocketsphinx import Config, LogMath, NGramModel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spoken = [words for words in (spoken_form(s).split() for s in sentences) if words]
    if not spoken:
        raise ValueError("no training sentences to adapt to")
    dictionary = read_dictionary(_pocketsphinx_model("en-us/cmudict-en-us.dict"))
    general = GeneralLM()
    unigrams = general.unigrams(list(dictionary) + [EOS])
    domain_counts = collections.Counter(w for words in spoken for w in words)
    missing = sorted(w for w in domain_counts if w not in dictionary)
    common = [
        w
        for w in sorted(unigrams, key=unigrams.__getitem__, reverse=True)
        if w in dictionary and re.fullmatch(r"[a-z][a-z']*", w)
    ]
    vocab = {w for w in domain_counts if w in dictionary} | set(common[:general_words])

    fitted = fit_lambda(spoken, vocab, general) if lam is None else lam
    used = min(fitted, max_lambda)
    mixed = MixedLM(KneserNey(spoken, vocab), general, unigrams, used)
    with tempfile.TemporaryDirectory() as tmp:
        arpa = Path(tmp) / "domain.arpa"
        mixed.write_arpa(arpa)
        config, logmath = Config(), LogMath()
        model = NGramModel(config, logmath, str(arpa))
        model.write(str(out_dir / "pocketsphinx.lm.bin"), NGramModel.str_to_type("bin"))
    with (out_dir / "pocketsphinx.dict").open("w", encoding="utf-8") as fh:
        for word in sorted(vocab):
            fh.write("\n".join(dictionary[word]) + "\n")

    phrases = sorted({" ".join(words) for words in spoken})
    extra = [w for w in common[:vosk_general_words] if w not in domain_counts]
    (out_dir / "vosk-grammar.json").write_text(
        json.dumps(phrases + ["[unk]"] + extra, ensure_ascii=False, indent=0), encoding="utf-8"
    )
    stats = {
        "sentences": len(spoken),
        "domain_words": len(domain_counts),
        "words_without_pronunciation": missing,
        "general_words": general_words,
        "vocabulary": len(vocab),
        "ngrams": [len(mixed.probs[n]) for n in range(1, mixed.order + 1)],
        "lambda_fitted": round(fitted, 4),
        "lambda": round(used, 4),
        "vosk_phrases": len(phrases) + 1 + len(extra),
    }
    (out_dir / "adaptation.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    rel = out_dir.name
    built: dict[str, Any] = {
        "pocketsphinx": {"lm": f"{rel}/pocketsphinx.lm.bin", "dict": f"{rel}/pocketsphinx.dict"},
        "vosk": {"grammar": f"{rel}/vosk-grammar.json"},
        "report": f"{rel}/adaptation.json",
        "stats": stats,
    }
    if grammar is not None:
        from edge.grammar import to_jsgf

        jsgf = to_jsgf(grammar, set(dictionary))
        if jsgf:
            (out_dir / "commands.jsgf").write_text(jsgf, encoding="utf-8")
            built["pocketsphinx"]["jsgf"] = f"{rel}/commands.jsgf"
    if whisper_prompt.strip():
        (out_dir / "whisper-prompt.txt").write_text(" ".join(whisper_prompt.split()) + "\n", encoding="utf-8")
        built["whisper"] = {"prompt": f"{rel}/whisper-prompt.txt"}
    return built


def whisper_prompt(artefacts: dict[str, Path] | None) -> str:
    """The text Whisper is prompted with for a package (its slot values), or "" when it has none."""
    path = (artefacts or {}).get("prompt")
    return Path(path).read_text(encoding="utf-8").strip() if path else ""


def artefacts(package: ModelPackage, engine: str) -> dict[str, Path] | None:
    """The verified adaptation files of ``package`` for ``engine``, or ``None`` if it has none."""
    entry = package.manifest.get(SECTION, {}).get(engine)
    if not isinstance(entry, dict):
        return None
    return {key: package.verify_file(rel) for key, rel in entry.items()}


__all__ = ["GeneralLM", "KneserNey", "MixedLM", "artefacts", "build", "fit_lambda", "spoken_form", "whisper_prompt"]
