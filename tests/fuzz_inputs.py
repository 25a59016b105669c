"""Hostile inputs for edge's five ways in, as hypothesis strategies, and one function per way in.

Shared by the property tests (``tests/test_fuzz.py``, a few hundred examples each) and the long
run (``benchmarks/fuzz.py``, 100,000 and more). A target function takes one generated input,
feeds it to the real code and returns what happened (``"ok"`` or the documented error's class
name); anything else it lets through is a crash. The strategies start from valid inputs and
break them (truncation, wrong types, huge or special values, duplicated keys, nesting), which
reaches much deeper than random bytes, which most parsers refuse at the first byte.
"""

from __future__ import annotations

import json
import socket
import struct
import tempfile
from pathlib import Path

from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- text -> classify

COMMANDS = [
    "turn off the lights in the kitchen",
    "what is the weather like in london",
    "play some jazz music",
    "set an alarm for seven am",
    "wake me up at 7",
    "order a pizza",
]
ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=())
ODD_CHARS = st.sampled_from(
    [
        "\u200b",
        "\ufeff",
        "\u200d",
        "\u2060",
        "\x00",
        "\x07",
        "\ud800",
        "\udfff",
        "\u0301",
        "\U0001f600",
        "\u202e",
        "\r",
        "\t",
        " ",
        "\uffff",
        "\U0010ffff",
        "ß",
        "İ",
        "ﬁ",
    ]
)


@st.composite
def texts(draw) -> str:
    """Unicode of every category (lone surrogates included), alone or spliced into real commands."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.text(ANY_CHAR, max_size=300))
    if kind == 1:
        return draw(st.text(ODD_CHARS, max_size=40))
    base = draw(st.sampled_from(COMMANDS))
    if kind == 2:
        at = draw(st.integers(0, len(base)))
        return base[:at] + draw(st.text(st.one_of(ODD_CHARS, ANY_CHAR), max_size=20)) + base[at:]
    return base * draw(st.integers(1, 400))  # past the model's 64 pieces and the 2,000-character cut


def classify_target(classifier):
    from edge.classifier import InputError

    def run(text: str) -> str:
        try:
            result = classifier.classify(text)
        except InputError:
            return "InputError"
        assert result.guess in classifier.labels and 0.0 <= result.guess_confidence <= 1.0
        assert result.intent is None or result.intent == result.guess
        for slot in result.slots:
            assert 0 <= slot.start <= slot.end <= len(result.text)
        return "ok"

    return run


# --------------------------------------------------------------------------- bytes -> WAV reader


def _rare(draw, n: int) -> bool:
    """True about once in ``n`` draws (hypothesis favours the ends of an integer range, so not ``integers() == 0``)."""
    return draw(st.sampled_from([False] * (n - 1) + [True]))


def _chunk(tag: bytes, body: bytes, size: int | None = None) -> bytes:
    return (
        tag + struct.pack("<I", (len(body) if size is None else size) & 0xFFFFFFFF) + body + b"\x00" * (len(body) & 1)
    )


@st.composite
def wav_files(draw) -> bytes:
    """WAV files built from (often wrong) header fields, extra chunks, lying sizes, then cut or flipped."""
    if _rare(draw, 10):
        return draw(st.binary(max_size=200))
    if draw(st.booleans()):  # a valid format, so that the corruptions below reach past the header checks
        tag, bits = draw(
            st.sampled_from([(1, 8), (1, 16), (1, 24), (1, 32), (3, 32), (3, 64), (0xFFFE, 16), (0xFFFE, 32)])
        )
        channels = draw(st.integers(1, 4))
        rate = draw(st.sampled_from([16000, 8000, 22050, 44100, 48000, 7000, 1000, 96000]))
    else:
        tag = draw(st.sampled_from([1, 3, 0xFFFE, 0, 2, 0x55, 7, draw(st.integers(0, 0xFFFF))]))
        channels = draw(st.sampled_from([1, 2, 0, 6, 33, draw(st.integers(0, 0xFFFF))]))
        rate = draw(
            st.sampled_from([16000, 8000, 44100, 48000, 7000, 1, 0, 999, 768001, draw(st.integers(0, 2**32 - 1))])
        )
        bits = draw(st.sampled_from([8, 16, 24, 32, 64, 0, 12, draw(st.integers(0, 0xFFFF))]))
    block_align = draw(
        st.sampled_from([max(channels * bits // 8, 0) & 0xFFFF] * 4 + [0, 1, draw(st.integers(0, 0xFFFF))])
    )
    fmt = struct.pack(
        "<HHIIHH", tag, channels & 0xFFFF, rate, (rate * block_align) & 0xFFFFFFFF, block_align, bits & 0xFFFF
    )
    if tag == 0xFFFE or _rare(draw, 4):
        sub = draw(st.sampled_from([1, 1, 3, 0x55, draw(st.integers(0, 0xFFFF))]))
        fmt += struct.pack("<HHI", 22, bits & 0xFFFF, 0) + struct.pack("<H", sub) + b"\x00" * 14
    fmt = fmt[: draw(st.integers(0, len(fmt)))] if _rare(draw, 7) else fmt
    samples = draw(st.binary(max_size=4000))
    chunks = [
        _chunk(
            b"fmt ", fmt, draw(st.sampled_from([None] * 6 + [16, 40, 2, 0xFFFFFFFF, draw(st.integers(0, 2**32 - 1))]))
        )
    ]
    if _rare(draw, 3):
        chunks.insert(
            draw(st.integers(0, 1)),
            _chunk(draw(st.sampled_from([b"LIST", b"fact", b"JUNK", b"data"])), draw(st.binary(max_size=50))),
        )
    chunks.append(
        _chunk(
            b"data",
            samples,
            draw(st.sampled_from([None] * 4 + [0, 0xFFFFFFFF, 0x7FFFFFFF, draw(st.integers(0, 2**32 - 1))])),
        )
    )
    if _rare(draw, 8):
        chunks.reverse()
    body = b"WAVE" + b"".join(chunks)
    data = (
        (draw(st.sampled_from([b"RIFX", b"RF64"])) if _rare(draw, 8) else b"RIFF") + struct.pack("<I", len(body)) + body
    )
    if _rare(draw, 6):
        data = data[: draw(st.integers(0, len(data)))]
    if _rare(draw, 6) and data:
        flips = draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)), max_size=4))
        buf = bytearray(data)
        for at, bit in flips:
            buf[at] ^= bit
        data = bytes(buf)
    return data


def wav_target(max_seconds: float = 10.0):
    import numpy as np

    from edge.audio import AudioError, read_wav_bytes

    def run(data: bytes) -> str:
        try:
            samples, info = read_wav_bytes(data, "fuzz", max_seconds=max_seconds)
        except AudioError as exc:
            assert str(exc).startswith("fuzz: "), exc
            return type(exc).__name__
        assert samples.dtype == np.int16 and samples.ndim == 1 and info.frames > 0
        return "ok"

    return run


# --------------------------------------------------------------------------- YAML -> settings

SECTIONS = {
    "model": ["name", "backend", "precision", "threads", "threshold"],
    "audio": ["enabled", "device", "stale_s", "retry_min_s", "retry_max_s", "max_frame_age_s"],
    "http": [
        "enabled",
        "listen",
        "token",
        "max_text_bytes",
        "max_wav_bytes",
        "max_wav_seconds",
        "timeout_s",
        "workers",
        "max_connections",
        "max_receiving_bytes",
        "recognize_timeout_s",
        "publish",
    ],
    "mqtt": ["enabled", "host", "port", "topic", "topics", "qos", "retain", "queue_size", "keepalive_s"],
    "hooks": ["commands", "timeout_s", "concurrency", "queue_size"],
    "liveloop": ["activation", "command_max_s", "no_speech_timeout_s"],
    "vad": ["threshold", "trailing_silence_ms"],
    "stt": ["engine", "model"],
    "wake": ["phrases", "engine"],
    "stdout": ["enabled"],
    "profiler": ["path", "enabled"],
}
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 2**31, 65536, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        ["127.0.0.1:8765", "[::1]:0", "onnx", "int8", "vad", "wake", "auto", "/bin/true", "hermes/#", "{x}"]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
YAML_TRICKS = st.sampled_from(
    [
        ".nan",
        ".inf",
        "-.inf",
        "1e999",
        "0x7fffffff",
        "0o777",
        "1_000",
        "~",
        "!!binary aGVsbG8=",
        "!!python/object:os.system x",
        "&a [*a]",
        "*undefined",
        "[" * 80 + "]" * 80,
        "{a: 1, a: 2}",
        "9" * 120,
        "'\\ud800'",
        '"\\ud800"',
        "|\n  block",
        "? complex\n: key",
        "!!set {a, b}",
        "!!timestamp 2001-12-14",
        "<<: *m",
        '"\\x00"',
        "---\n---",
    ]
)


@st.composite
def settings_files(draw) -> str:
    """Configuration files: known sections and keys with values of any type, YAML's odd corners, and bombs."""
    import yaml

    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.text(max_size=200))
    doc = {}
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=4, unique=True)):
        keys = draw(st.lists(st.sampled_from(SECTIONS[section] + ["unknown"]), max_size=4, unique=True))
        doc[section] = {k: draw(VALUES) for k in keys} if draw(st.integers(0, 5)) else draw(VALUES)
    text = yaml.safe_dump(doc, allow_unicode=True)
    if kind == 1:  # a YAML trick as some value
        lines = text.splitlines() or ["model:"]
        at = draw(st.integers(0, len(lines) - 1))
        key = lines[at].split(":")[0] if ":" in lines[at] else "model"
        lines[at] = f"{key}: {draw(YAML_TRICKS)}"
        text = "\n".join(lines) + "\n"
    elif kind == 2:  # an alias bomb of some depth
        levels, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
        text = (
            "x-a:\n  a0: &a0 [lol]\n"
            + "".join(f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]\n" for i in range(1, levels))
            + f"model: {{name: *a{levels - 1}}}\n"
        )
    elif kind == 3:  # deep nesting, in block or flow style
        depth = draw(st.integers(1, 400))
        text = (
            ("model:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(depth)))
            if draw(st.booleans())
            else "model: {name: " + "[" * depth + "]" * depth + "}\n"
        )
    elif kind == 4 and text.strip() != "{}":  # a line given twice
        lines = text.splitlines()
        at = draw(st.integers(0, len(lines) - 1))
        text = "\n".join(lines[: at + 1] + [lines[at]] + lines[at + 1 :]) + "\n"
    if _rare(draw, 6) and text:
        text = text[: draw(st.integers(0, len(text)))]
    return text


def _file_target(path: Path, load, errors: tuple[type[Exception], ...], named: bool = True, max_message: int = 2000):
    """A target that writes each input to ``path`` and loads it: the documented errors (starting with the
    file's name when ``named``, at most ``max_message`` characters) are outcomes."""

    def run(text: str) -> str:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load(path)
        except errors as exc:
            assert not named or str(exc).startswith(f"{path}"), exc
            assert len(str(exc)) < max_message, len(str(exc))
            return type(exc).__name__
        return "ok"

    return run


def settings_target(tmp: Path):
    from edge import config as config_mod
    from edge.settings import SettingsError

    return _file_target(tmp / "config.yaml", config_mod.load, (SettingsError,))


# --------------------------------------------------------------------------- manifest -> package

JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=20),
        st.sampled_from(["../../etc/passwd", "/etc/passwd", "tokenizer.json", "model.int8.onnx", "", "a" * 64]),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)),
    max_leaves=8,
)


def shipped_manifest() -> dict:
    return json.loads((ROOT / "models" / "squeezebert-hwu64" / "manifest.json").read_text())


@st.composite
def manifests(draw, base: dict | None = None) -> bytes:
    """The shipped manifest with keys dropped, retyped, renamed to paths out of the package, or not JSON at all."""
    manifest = json.loads(json.dumps(base or shipped_manifest()))
    if _rare(draw, 10):
        return draw(st.binary(max_size=100))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.integers(0, 5))
        if action == 0 and manifest:
            manifest.pop(draw(st.sampled_from(sorted(manifest))))
        elif action == 1 and manifest:
            manifest[draw(st.sampled_from(sorted(manifest)))] = draw(JSON_VALUES)
        elif (
            action == 2
            and isinstance(manifest.get("variants"), list)
            and manifest["variants"]
            and isinstance(manifest["variants"][0], dict)
        ):
            manifest["variants"][0][draw(st.sampled_from(["file", "backend", "groups", "signatures", "runtimes"]))] = (
                draw(JSON_VALUES)
            )
        elif action == 3 and isinstance(manifest.get("files"), dict) and manifest["files"]:
            name = draw(st.sampled_from(sorted(manifest["files"])))
            entry = manifest["files"].pop(name)
            manifest["files"][draw(st.sampled_from(["../../../../etc/passwd", "/etc/hostname", name, "x/../../y"]))] = (
                draw(st.one_of(st.just(entry), JSON_VALUES))
            )
        elif action == 4:
            manifest["tokenizer"] = draw(
                st.sampled_from(["tokenizer.json", "../tokenizer.json", "/etc/passwd", 7, None])
            )
        else:
            manifest[draw(st.text(max_size=8))] = draw(JSON_VALUES)
    return json.dumps(manifest).encode()


def package_target(tmp: Path):
    """A package directory holding the shipped tokenizer; each input is its manifest."""
    import shutil

    from edge.package import ModelPackage, PackageError

    pkg = tmp / "pkg"
    pkg.mkdir(exist_ok=True)
    shutil.copy(ROOT / "models" / "squeezebert-hwu64" / "tokenizer.json", pkg / "tokenizer.json")
    (tmp / "outside").write_text("secret\n")
    (pkg / "escape.onnx").unlink(missing_ok=True)
    (pkg / "escape.onnx").symlink_to(tmp / "outside")

    def run(manifest: bytes) -> str:
        (pkg / "manifest.json").write_bytes(manifest)
        try:
            package = ModelPackage.load(pkg)
            problems = package.verify_all()
            assert all(isinstance(p, str) for p in problems)
            for v in package.variants:
                package.find_variant(v.backend, v.precision)
                try:
                    package.path(v.file)
                except PackageError:
                    pass
            _ = (package.labels, package.slot_tags, package.max_seq_len, package.oos_threshold, package.slot_values)
        except PackageError:
            return "PackageError"
        return "ok"

    return run


# --------------------------------------------------------------------------- raw bytes -> HTTP server

METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "G\x00T", "post", ""])
PATHS = st.sampled_from(
    [
        "/v1/intent",
        "/v1/recognize",
        "/v1/listen",
        "/healthz",
        "/metrics",
        "/",
        "*",
        "/v1/intent?publish=false",
        "/v1/intent?publish=maybe",
        "/../../etc/passwd",
        "/%00",
        "http://x/healthz",
        "/" + "a" * 20000,
    ]
)
HEADER_NAMES = st.sampled_from(
    [
        "Content-Length",
        "content-length",
        "Content-Type",
        "Transfer-Encoding",
        "Authorization",
        "Expect",
        "Connection",
        "Host",
        "X-A",
        "Content-Length ",
        " Content-Length",
        "Bad Name",
    ]
)
HEADER_VALUES = st.one_of(
    st.sampled_from(
        [
            "0",
            "5",
            "²",
            "-1",
            "1e3",
            "99999999999999999999999",
            "5, 5",
            "chunked",
            "gzip",
            "application/json",
            "text/plain",
            "audio/wav",
            "100-continue",
            "close",
            "keep-alive",
            "Bearer x",
            "\x00",
            "a\r\nInjected: 1",
        ]
    ),
    st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=30),
)
JSON_BODIES = st.one_of(
    st.builds(lambda v: json.dumps({"text": v}).encode(), st.one_of(st.text(ANY_CHAR, max_size=50), JSON_VALUES)),
    st.builds(lambda n: b'{"text": ' + b"[" * n + b"]" * n + b"}", st.integers(1, 6000)),
    st.builds(lambda n: b'{"text": ' + b"9" * n + b"}", st.integers(1, 6000)),
    st.sampled_from(
        [b'{"text": "turn off the lights"}', b"{", b"null", b'{"text": "\\ud800"}', b'{"text": "\\u200b"}']
    ),
    st.binary(max_size=300),
)


@st.composite
def http_requests(draw) -> bytes:
    """Request heads from real and broken parts with bodies of any length (often not the one declared)."""
    if _rare(draw, 10):
        return draw(st.binary(max_size=400))
    if draw(st.booleans()):  # a well-formed request, so that mutations of it reach the endpoints
        path = draw(
            st.sampled_from(
                [
                    "/v1/intent",
                    "/v1/intent?publish=false",
                    "/v1/recognize?publish=false",
                    "/healthz",
                    "/metrics",
                    "/v1/listen",
                ]
            )
        )
        if path.startswith("/v1/intent"):
            body, ctype = draw(
                st.one_of(
                    st.tuples(JSON_BODIES, st.just("application/json")),
                    st.tuples(
                        st.text(ANY_CHAR, max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
                        st.just("text/plain"),
                    ),
                )
            )
        elif path.startswith("/v1/recognize"):
            body, ctype = draw(wav_files()), "audio/wav"
        else:
            body, ctype = b"", None
        method = "GET" if path in ("/healthz", "/metrics") else "POST"
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: edge\r\n"
            + (f"Content-Type: {ctype}\r\n" if ctype else "")
            + (f"Content-Length: {len(body)}\r\n" if method == "POST" else "")
            + "\r\n"
        )
        return head.encode() + body
    body = draw(st.one_of(JSON_BODIES, wav_files()))
    line = (
        f"{draw(METHODS)} {draw(PATHS)} {draw(st.sampled_from(['HTTP/1.1', 'HTTP/1.0', 'HTTP/2', 'HTTP/1.1 x', '']))}"
    )
    headers = [("Host", "edge")]
    if draw(st.integers(0, 3)):
        headers.append(("Content-Length", str(len(body))))
    headers += draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=5))
    eol = draw(st.sampled_from(["\r\n", "\r\n", "\n", "\r"]))
    head = line + eol + "".join(f"{k}: {v}{eol}" for k, v in headers) + eol
    data = head.encode("utf-8", "surrogatepass") + body
    if _rare(draw, 5):
        data = data[: draw(st.integers(0, len(data)))]
    return data


ALLOWED_STATUSES = {200, 400, 401, 404, 405, 408, 409, 411, 413, 415, 431, 503}


def http_target(address: tuple[str, int], timeout: float = 10.0):
    """Send the bytes, close our sending side, read the answer: well-formed, a documented status, never 500."""

    def run(data: bytes) -> str:
        with socket.create_connection(address, timeout=timeout) as sock:
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except OSError:  # the server answered and closed while we were still sending
                pass
            received = b""
            try:
                while chunk := sock.recv(65536):
                    received += chunk
            except ConnectionResetError:
                pass
        if not received:
            return "no answer"  # the request was cut before its head ended, or inside its body: nothing to answer
        statuses = []
        rest = received
        while rest:
            head, sep, after = rest.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 ") and sep, (rest[:300], data[:300])
            status = int(head[9:12])
            if status == 100 and b"expect" in data.lower():  # the interim answer to Expect: 100-continue
                rest = after
                continue
            assert status in ALLOWED_STATUSES, (status, rest[:300], data[:300])
            lengths = [
                int(h.split(b":")[1]) for h in head.split(b"\r\n")[1:] if h.lower().startswith(b"content-length:")
            ]
            assert len(lengths) == 1, head
            statuses.append(status)
            if data.upper().startswith(b"HEAD"):
                break  # whether the answer to HEAD carries its body depends on whether h11 could read the method
            body, rest = after[: lengths[0]], after[lengths[0] :]
            assert len(body) == lengths[0], (head, body)
            if status >= 400:
                assert "error" in json.loads(body), body
        return str(statuses[-1]) if statuses else "no answer"  # only the 100 Continue: the body never came whole

    return run


def temporary_directory() -> Path:
    return Path(tempfile.mkdtemp(prefix="edge-fuzz-"))


# --------------------------------------------------------------------------- intents YAML -> templates.load

INTENT_SENTENCES = st.sampled_from(
    [
        "(turn|switch) on [the] {area} lights",
        "[the] <rule> please",
        "set volume to {volume}",
        "what is <r1>",
        "(a|b|(c|(d|e)))",
        "[[[[x]]]]",
        "{undefined}",
        "<undefined>",
        "(unclosed",
        "]",
        "{area:alias}",
        "{volume} percent",
        "(a;b;c)",
        "((a|b) (c|d)){0}",
        "x" * 300,
    ]
)


@st.composite
def intents_files(draw) -> str:
    """Home Assistant intents files: rule chains that double, huge ranges, bad templates, wrong types."""
    import yaml

    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.text(max_size=200))
    doc: dict = {"language": draw(st.sampled_from(["en", "xx", 7, None]))}
    doc["intents"] = {
        draw(st.sampled_from(["LightOn", "Light Off", "", "x" * 100])): {
            "data": [{"sentences": draw(st.lists(INTENT_SENTENCES, min_size=1, max_size=3))}]
        }
    }
    doc["lists"] = {
        "area": {
            "values": draw(
                st.lists(
                    st.one_of(
                        st.text(max_size=10),
                        st.fixed_dictionaries({"in": st.text(max_size=10), "out": st.text(max_size=10)}),
                    ),
                    max_size=3,
                )
            )
        },
        "volume": {
            "range": {
                "from": draw(st.integers(-(10**13), 10**3)),
                "to": draw(st.integers(-10, 10**13)),
                "step": draw(st.sampled_from([1, 0, -1, 5])),
            }
        },
    }
    levels = draw(st.integers(0, 30))
    rules = {"r0": "(a|b)"}
    for i in range(1, levels):
        rules[f"r{i}"] = draw(st.sampled_from([f"(<r{i - 1}>|<r{i - 1}>)", f"<r{i - 1}> <r{i - 1}>", f"[<r{i - 1}>]"]))
    rules["rule"] = f"<r{max(levels - 1, 0)}>"
    rules["r1" if levels < 2 else "loop"] = "<loop>" if draw(st.booleans()) else "x"
    doc["expansion_rules"] = rules
    if kind == 2:
        doc[draw(st.text(max_size=6))] = draw(JSON_VALUES)
    text = yaml.safe_dump(doc, allow_unicode=True)
    if kind == 3 and text:
        text = text[: draw(st.integers(0, len(text)))]
    return text


def intents_target(tmp: Path):
    """What ``edge-train`` does with an intents file before training: read and check it
    (``tools.templates.load``), then expand it into training sentences (a few, to keep it quick)."""
    from tools import templates
    from tools.data import DataError

    def load_and_expand(path: Path) -> None:
        templates.load(path)
        templates.expand_intents_file(path, seed=1, max_sentences=60)

    warm = tmp / "warm-up.yaml"  # loads the word lists once, before any input is timed
    warm.write_text("language: en\nintents:\n  Go:\n    data:\n      - sentences: [go now]\n", encoding="utf-8")
    load_and_expand(warm)
    # The checker lists every problem of a file at once, a line each: its message grows with the input.
    return _file_target(tmp / "intents.yaml", load_and_expand, (DataError,), named=False, max_message=20_000)
