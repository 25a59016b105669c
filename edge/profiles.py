"""Device profiles: what this board is, and how to run the model on it.

A profile (``device_profiles/<name>.yaml``) says how a device class is recognised and which
backend, execution providers, thread count, precision and energy sensor suit it. Detection reads
the device tree (``/proc/device-tree/model`` and ``compatible``), ``/etc/nv_tegra_release`` and
the CPU architecture, most specific first; ``--profile NAME`` or ``EDGE_PROFILE`` override it.
Every path is read below a ``root`` so tests run against recorded trees of real boards.

A local override written by ``edge-profile --save-profile`` (``$EDGE_PROFILE_OVERRIDE``, else
``~/.config/edge/profile-override.yaml``) replaces the tuning fields of whichever profile was
chosen: it records what was measured fastest on this very device.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from pathlib import Path
from typing import Literal

from edge import resources
from edge.settings import SettingsError, from_mapping, load_file, load_yaml

PROFILE_DIRS_ENV = "EDGE_PROFILES_PATH"
BackendName = Literal["onnx", "tflite"]
Precision = Literal["int8", "fp32"]


@dataclasses.dataclass(frozen=True)
class Match:
    """How a device class is recognised; any one rule that matches selects the profile."""

    device_tree_compatible: tuple[str, ...] = ()
    """Strings of ``/proc/device-tree/compatible`` (NUL-separated) that identify the board."""
    device_tree_model: tuple[str, ...] = ()
    """Prefixes of ``/proc/device-tree/model`` (revision suffixes vary)."""
    nv_tegra_release: bool = False
    """True: the presence of ``/etc/nv_tegra_release`` identifies the profile (Jetson family)."""
    arch: tuple[str, ...] = ()
    """``uname -m`` values; the weakest rule, for generic profiles."""


@dataclasses.dataclass(frozen=True)
class OnnxSettings:
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    """Execution providers in preference order; missing ones are skipped with one log line."""
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    """ONNX Runtime graph optimisation level."""


@dataclasses.dataclass(frozen=True)
class TfliteSettings:
    xnnpack: bool = True
    """Use the XNNPACK delegate (the fast path for fp32 and dynamic-range int8 on Arm and x86)."""


@dataclasses.dataclass(frozen=True)
class Power:
    """Energy model used when no power sensor can be read (see edge/energy.py)."""

    idle_w: float
    """Board power at idle, in watts."""
    active_w_per_core: float
    """Extra watts per fully busy CPU core."""
    sensor: Literal["none", "ina3221", "pi5_pmic", "rapl"] = "none"
    """The power sensor this board has, read in preference to the model."""
    source: str = ""
    """Where the numbers come from."""

    def __post_init__(self) -> None:
        if self.idle_w < 0 or self.active_w_per_core < 0:
            raise ValueError("power figures must be >= 0 W")


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    """Profile name, equal to the YAML file's stem."""
    description: str
    """The device class in words."""
    match: Match
    """Detection rules."""
    backends: tuple[BackendName, ...]
    """Backend preference order; the first one installed and shipped by the model is used."""
    threads: int
    """Inference threads (intra-op)."""
    precision: Precision = "int8"
    """Model precision to load when the package offers several."""
    onnx: OnnxSettings = OnnxSettings()
    """ONNX Runtime settings."""
    tflite: TfliteSettings = TfliteSettings()
    """LiteRT / TFLite settings."""
    stt: Literal["pocketsphinx", "vosk", "whisper"] = "pocketsphinx"
    """Preferred speech-to-text engine when it is installed (PocketSphinx needs no download)."""
    stt_model: str | None = None
    """Whisper model for this class of device (``tiny.en``, ``base``); the profile file says why."""
    stt_threads: int = 1
    """Whisper decoding threads."""
    power: Power = Power(idle_w=5.0, active_w_per_core=2.0)
    """Energy model and sensor."""

    def __post_init__(self) -> None:
        if not self.backends:
            raise ValueError("backends: at least one backend is required (onnx, tflite)")
        if not 1 <= self.threads <= 64:
            raise ValueError(f"threads: {self.threads} is out of range; allowed 1..64")
        if not 1 <= self.stt_threads <= 64:
            raise ValueError(f"stt_threads: {self.stt_threads} is out of range; allowed 1..64")


@dataclasses.dataclass(frozen=True)
class Override:
    """A measured tuning saved by ``edge-profile --save-profile`` for this device."""

    backend: BackendName
    precision: Precision
    threads: int
    measured: dict[str, float] = dataclasses.field(default_factory=dict)
    """The numbers that made this configuration the best (p90 ms, mJ, accuracy)."""
    base_profile: str = ""
    """The profile that was detected when it was measured."""


@dataclasses.dataclass(frozen=True)
class Detection:
    profile: Profile
    reason: str


def profile_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get(PROFILE_DIRS_ENV, "").split(os.pathsep) if p]
    dirs += [Path("/etc/edge/device_profiles"), resources.path("device_profiles").resolve()]
    return [d for d in dirs if d.is_dir()]


def available_profiles() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in profile_dirs():
        for f in sorted(d.glob("*.yaml")):
            found.setdefault(f.stem, f)
    return found


def load_profile(name_or_path: str) -> Profile:
    """Load a profile by name (from the profile directories) or by YAML path."""
    path = Path(name_or_path)
    if not path.suffix:
        profiles = available_profiles()
        if name_or_path not in profiles:
            raise SettingsError(
                "--profile", "", f"unknown profile {name_or_path!r}; available: {', '.join(sorted(profiles))}"
            )
        path = profiles[name_or_path]
    profile = load_file(Profile, path)
    if profile.name != path.stem:
        raise SettingsError(str(path), "name", f"{profile.name!r} must equal the file name {path.stem!r}")
    return profile


def _read(root: Path, rel: str) -> str | None:
    try:
        return (root / rel).read_bytes().decode("utf-8", "replace")
    except OSError:
        return None


def read_device_facts(root: str | Path = "/") -> dict[str, object]:
    root = Path(root)
    model = _read(root, "proc/device-tree/model") or _read(root, "sys/firmware/devicetree/base/model")
    compatible = _read(root, "proc/device-tree/compatible") or _read(root, "sys/firmware/devicetree/base/compatible")
    arch_file = _read(root, "proc/sys/kernel/arch")
    return {
        "model": model.strip("\x00\n ") if model else None,
        "compatible": [c for c in compatible.split("\x00") if c] if compatible else [],
        "nv_tegra_release": _read(root, "etc/nv_tegra_release"),
        "arch": arch_file.strip() if arch_file else platform.machine(),
    }


def detect(root: str | Path = "/", override: str | None = None) -> Detection:
    """Choose the profile: explicit name, then ``EDGE_PROFILE``, then the most specific rule that matches."""
    chosen = override or os.environ.get("EDGE_PROFILE")
    if chosen:
        source = "--profile" if override else "EDGE_PROFILE"
        return Detection(apply_local_override(load_profile(chosen)), f"{source}={chosen}")
    facts = read_device_facts(root)
    profiles = [load_profile(str(p)) for p in available_profiles().values()]
    best: tuple[int, int, Profile, str] | None = None
    for profile in profiles:
        score, why = _match(profile.match, facts)
        if score and (best is None or (score, -len(why)) > (best[0], best[1])):
            best = (score, -len(why), profile, why)
    if best is None:
        raise SettingsError(
            "device profiles", "", f"no profile matches this device ({facts['arch']}); use --profile NAME"
        )
    return Detection(apply_local_override(best[2]), best[3])


def _match(rule: Match, facts: dict) -> tuple[int, str]:
    compatible = facts["compatible"]
    for c in rule.device_tree_compatible:
        if c in compatible:
            return 4, f"device-tree compatible contains {c!r}"
    model = facts["model"]
    if model:
        for prefix in rule.device_tree_model:
            if model.startswith(prefix):
                return 3, f"device-tree model {model!r} starts with {prefix!r}"
    if rule.nv_tegra_release and facts["nv_tegra_release"]:
        return 2, "/etc/nv_tegra_release is present: " + facts["nv_tegra_release"].splitlines()[0].strip()
    if facts["arch"] in rule.arch:
        return 1, f"architecture {facts['arch']} (no more specific profile matched)"
    return 0, ""


def override_path() -> Path:
    env = os.environ.get("EDGE_PROFILE_OVERRIDE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edge" / "profile-override.yaml"


def apply_local_override(profile: Profile) -> Profile:
    """Apply a measured override when one was saved on this device for this profile."""
    path = override_path()
    if not path.is_file():
        return profile
    data = load_yaml(path) or {}
    override = from_mapping(Override, data, source=str(path))
    if override.base_profile and override.base_profile != profile.name:
        return profile
    backends = (override.backend,) + tuple(b for b in profile.backends if b != override.backend)
    return dataclasses.replace(profile, backends=backends, precision=override.precision, threads=override.threads)
