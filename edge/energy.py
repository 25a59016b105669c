"""Energy sources behind one interface, best available first.

Every source answers one question, ``read()``: how many millijoules has the device used since the
source was opened? The energy of an inference is the difference of two reads around it, whatever
the sensor behind it is:

``ina3221``   Jetson INA3221 power monitor. JetPack 5/6 expose it through hwmon (bus mV and mA per
              rail, power = mV x mA); JetPack 4 through the ``ina3221x`` IIO driver (mW per rail).
              We read the board-input rail (``VDD_IN``, Nano ``POM_5V_IN``) and integrate the power
              over time (trapezoid between reads); boards without one (AGX Orin) use the sum of
              their connected rails, and the detail string says so.
``pi5_pmic``  Raspberry Pi 5 PMIC through ``vcgencmd pmic_read_adc``: the sum of V x I over the rails,
              pairing current and voltage by rail name. A ``vcgencmd`` call costs milliseconds, far
              more than an inference may spend on profiling, so a background thread samples it
              (default once a second) and reads integrate the latest sample.
``rapl``      Linux powercap (Intel RAPL, and AMD via ``intel_rapl_msr``): a cumulative ``energy_uj``
              counter that wraps at ``max_energy_range_uj``. Since CVE-2020-8694 only root may read
              it, so "permission denied" is a normal answer, not an error. It measures the CPU
              package (or the platform, ``psys``, where the CPU offers it), not the whole board.
``model``     No sensor: the device profile's ``idle_w`` x wall time + ``active_w_per_core`` x process
              CPU time. Records carry ``energy_method: "model"`` so nobody takes an estimate for a
              measurement.

Only the standard library is used: these readers run inside every profiled inference, on boards
as small as a Pi Zero 2 W.
"""

from __future__ import annotations

import abc
import dataclasses
import glob
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from edge.sysfs import Attr, open_number, read_text

BEST_FIRST = ("ina3221", "pi5_pmic", "rapl")
"""Sensors in the order they are tried: whole-board measurements before CPU-package ones."""
METHODS = BEST_FIRST + ("model",)
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
"""Jetson INA3221 rails that carry the whole module's input power."""
PMIC_COMMAND = ("vcgencmd", "pmic_read_adc")


class SensorUnavailable(RuntimeError):
    """This sensor cannot be used here; the message says why (missing, unreadable, not permitted)."""


class EnergySource(abc.ABC):
    """A cumulative energy counter in millijoules."""

    name: str = ""
    """The method recorded with each energy figure: one of :data:`METHODS`."""
    measured: bool = True
    """False only for the model: the figure is an estimate."""
    detail: str = ""
    """What exactly is read, in words (rail names, file paths, model figures)."""

    @abc.abstractmethod
    def read(self) -> float:
        """Millijoules used since the source was opened; never decreases.

        Raises ``OSError`` or ``ValueError`` when the sensor stops answering (a channel that went
        away, ``vcgencmd`` failing); the profiler then falls back to the model and says so.
        """

    def close(self) -> None:
        """Release files and threads; the source must not be read afterwards."""

    def describe(self) -> str:
        return f"{self.name}: {self.detail}" if self.detail else self.name


class _PowerIntegrator(EnergySource):
    """Turns an instantaneous power reading (mW) into a cumulative energy counter (mJ)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._energy_mj = 0.0
        self._last: tuple[float, float] | None = None

    @abc.abstractmethod
    def power_mw(self) -> float:
        """Power now, in milliwatts."""

    def read(self) -> float:
        p = self.power_mw()
        t = self._clock()
        with self._lock:
            if self._last is not None:
                t0, p0 = self._last
                # mW x s = mJ; the trapezoid between the two reads that bracket an inference.
                self._energy_mj += (p0 + p) / 2.0 * max(0.0, t - t0)
            self._last = (t, p)
            return self._energy_mj


# --- Jetson INA3221 --------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class Rail:
    """One INA3221 channel that could be read at probe time."""

    label: str
    files: tuple[Attr, ...]
    """hwmon: (bus mV, mA); IIO: (mW,)."""

    def power_mw(self) -> float:
        if len(self.files) == 1:
            return self.files[0].read_float()
        mv, ma = self.files
        return mv.read_float() * ma.read_float() / 1000.0

    def close(self) -> None:
        for f in self.files:
            f.close()


class Ina3221Source(_PowerIntegrator):
    name = "ina3221"

    def __init__(
        self, rails: Sequence[Rail], layout: str, notes: Sequence[str] = (), clock: Callable[[], float] = time.monotonic
    ):
        super().__init__(clock)
        self.all_rails = list(rails)
        total = [r for r in rails if r.label in TOTAL_RAILS]
        self.rails = total[:1] or list(rails)
        for r in self.all_rails:
            if r not in self.rails:
                r.close()
        names = "+".join(r.label for r in self.rails)
        what = f"rail {names}" if total else f"sum of rails {names} (no board-input rail)"
        self.detail = f"Jetson INA3221 ({layout}), {what}"
        self.notes = list(notes)

    def power_mw(self) -> float:
        return sum(r.power_mw() for r in self.rails)

    def close(self) -> None:
        for r in self.rails:
            r.close()


def _unique_dirs(root: Path, patterns: Iterable[str]) -> list[Path]:
    seen: set[str] = set()
    out: list[Path] = []
    for pattern in patterns:
        for d in sorted(glob.glob(str(root / pattern))):
            real = os.path.realpath(d)
            if os.path.isdir(d) and real not in seen:
                seen.add(real)
                out.append(Path(d))
    return out


def _hwmon_rails(d: Path, notes: list[str]) -> list[Rail]:
    rails = []
    for i in (1, 2, 3):
        label = read_text(d / f"in{i}_label")
        if label is None and not (d / f"in{i}_input").exists():
            continue
        label = label or f"in{i}"
        if label.upper() == "NC":  # unconnected channel; reading it fails with an I/O error anyway
            continue
        if read_text(d / f"in{i}_enable") == "0":
            notes.append(f"{label}: channel disabled")
            continue
        try:
            rails.append(Rail(label, (open_number(d / f"in{i}_input"), open_number(d / f"curr{i}_input"))))
        except (OSError, ValueError) as exc:
            notes.append(f"{label}: unreadable ({_why(exc)})")
    return rails


def _iio_rails(d: Path, notes: list[str]) -> list[Rail]:
    rails = []
    for i in range(8):
        label = read_text(d / f"rail_name_{i}")
        if label is None:
            continue
        try:
            if (d / f"in_power{i}_input").exists():
                files: tuple[Attr, ...] = (open_number(d / f"in_power{i}_input"),)
            else:
                files = (open_number(d / f"in_voltage{i}_input"), open_number(d / f"in_current{i}_input"))
            rails.append(Rail(label, files))
        except (OSError, ValueError) as exc:
            notes.append(f"{label}: unreadable ({_why(exc)})")
    return rails


def probe_ina3221(root: str | Path = "/", clock: Callable[[], float] = time.monotonic) -> Ina3221Source:
    """Find the Jetson INA3221 rails (hwmon layout first, then the JetPack 4 IIO layout)."""
    root = Path(root)
    notes: list[str] = []
    hwmon = _unique_dirs(root, ["sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"])
    hwmon += [
        d
        for d in _unique_dirs(root, ["sys/class/hwmon/hwmon*"])
        if read_text(d / "name") == "ina3221" and d.resolve() not in {h.resolve() for h in hwmon}
    ]
    rails = [r for d in hwmon for r in _hwmon_rails(d, notes)]
    if rails:
        return Ina3221Source(rails, "hwmon", notes, clock)
    iio = _unique_dirs(root, ["sys/bus/i2c/drivers/ina3221x/*/iio:device*"])
    rails = [r for d in iio for r in _iio_rails(d, notes)]
    if rails:
        return Ina3221Source(rails, "IIO ina3221x", notes, clock)
    if hwmon or iio:
        raise SensorUnavailable("INA3221 found but no rail could be read: " + "; ".join(notes))
    raise SensorUnavailable("no INA3221 power monitor (not a Jetson, or the ina3221 driver is not loaded)")


# --- Raspberry Pi 5 PMIC ----------------------------------------------------------------------------

_PMIC_LINE = re.compile(r"^\s*(?P<rail>\S+)_(?P<kind>[AV])\s+(?:current|volt)\(\d+\)=(?P<value>[-+0-9.eE]+)[AV]\s*$")


def parse_pmic_read_adc(text: str) -> dict[str, tuple[float, float]]:
    """``{rail: (volts, amps)}`` from ``vcgencmd pmic_read_adc``, paired by rail name.

    Rails with only a voltage (``EXT5V``, ``BATT``) carry no current and are left out.
    """
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for line in text.splitlines():
        m = _PMIC_LINE.match(line)
        if m:
            (amps if m["kind"] == "A" else volts)[m["rail"]] = float(m["value"])
    return {rail: (volts[rail], amps[rail]) for rail in amps if rail in volts}


class Pi5PmicSource(_PowerIntegrator):
    name = "pi5_pmic"

    def __init__(
        self, command: Sequence[str] = PMIC_COMMAND, interval_s: float = 1.0, scale: float = 1.0, offset_w: float = 0.0
    ):
        super().__init__()
        self.command = tuple(command)
        self.interval_s = interval_s
        self.scale = scale
        self.offset_w = offset_w
        self._sample_mw = self._sample()  # raises SensorUnavailable: probe-time failure
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="edge-pmic-sampler", daemon=True)
        self._thread.start()
        fix = "" if (scale, offset_w) == (1.0, 0.0) else f", corrected x{scale:g} + {offset_w:g} W"
        self.detail = f"Raspberry Pi 5 PMIC, sum of V x I over {self.rails} rails{fix}, sampled every {interval_s:g} s"

    def _sample(self) -> float:
        try:
            proc = subprocess.run(self.command, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SensorUnavailable(f"{' '.join(self.command)}: {_why(exc)}") from None
        rails = parse_pmic_read_adc(proc.stdout)
        if proc.returncode != 0 or not rails:
            said = (proc.stderr or proc.stdout).strip().splitlines()
            raise SensorUnavailable(
                f"{' '.join(self.command)} gave no rail readings"
                + (f": {said[0]}" if said else f" (exit {proc.returncode})")
            )
        self.rails = len(rails)
        watts = sum(v * a for v, a in rails.values())
        return (watts * self.scale + self.offset_w) * 1000.0

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample_mw = self._sample()
                self._error = None
            except SensorUnavailable as exc:
                self._error = str(exc)

    def power_mw(self) -> float:
        if self._error:
            raise OSError(self._error)
        return self._sample_mw

    def close(self) -> None:
        self._stop.set()


def probe_pi5_pmic(command: Sequence[str] = PMIC_COMMAND, interval_s: float = 1.0) -> Pi5PmicSource:
    if shutil.which(command[0]) is None:
        raise SensorUnavailable(f"{command[0]} is not installed (Raspberry Pi firmware tools)")
    return Pi5PmicSource(command, interval_s)


# --- Linux powercap RAPL ----------------------------------------------------------------------------


@dataclasses.dataclass
class _Counter:
    name: str
    attr: Attr
    max_uj: int
    last_uj: int


class RaplSource(EnergySource):
    name = "rapl"

    def __init__(self, counters: Sequence[_Counter]):
        self._lock = threading.Lock()
        self.counters = list(counters)
        self._total_uj = 0
        self.detail = "powercap " + "+".join(c.name for c in self.counters) + " energy_uj"

    def read(self) -> float:
        with self._lock:
            for c in self.counters:
                now = c.attr.read_int()
                # The counter wraps at max_energy_range_uj back to 0.
                delta = now - c.last_uj if now >= c.last_uj else now + c.max_uj - c.last_uj
                c.last_uj = now
                self._total_uj += delta
            return self._total_uj / 1000.0

    def close(self) -> None:
        for c in self.counters:
            c.attr.close()


def probe_rapl(root: str | Path = "/") -> RaplSource:
    """The platform zone (``psys``) when there is one, else the sum of the CPU package zones."""
    zones = _unique_dirs(
        Path(root), ["sys/class/powercap/intel-rapl:*", "sys/devices/virtual/powercap/intel-rapl/intel-rapl:*"]
    )
    zones = [z for z in zones if z.name.count(":") == 1]  # top-level zones; subzones are parts of them
    if not zones:
        raise SensorUnavailable("no powercap RAPL zones (/sys/class/powercap/intel-rapl:*)")
    named = [(read_text(z / "name") or z.name, z) for z in zones]
    psys = [nz for nz in named if nz[0] == "psys"]
    chosen = psys or [nz for nz in named if nz[0].startswith("package")] or named
    counters, problems = [], []
    for name, z in chosen:
        try:
            attr = Attr(z / "energy_uj")
            # Without max_energy_range_uj a wrap cannot be undone; 2**64 makes it look like no wrap.
            max_uj = int(read_text(z / "max_energy_range_uj") or 0) or 2**64
            counters.append(_Counter(name, attr, max_uj, attr.read_int()))
        except PermissionError:
            problems.append(
                f"{name}: permission denied reading {z / 'energy_uj'} "
                "(root-only since CVE-2020-8694; run as root or grant read access)"
            )
        except (OSError, ValueError) as exc:
            problems.append(f"{name}: {z / 'energy_uj'} unreadable ({_why(exc)})")
    if problems:
        for c in counters:
            c.attr.close()
        raise SensorUnavailable("; ".join(problems))
    return RaplSource(counters)


# --- the model -------------------------------------------------------------------------------------


class ModelSource(EnergySource):
    """idle W x wall time + active W per core x process CPU time (all threads of this process)."""

    name = "model"
    measured = False

    def __init__(
        self,
        idle_w: float,
        active_w_per_core: float,
        source: str = "",
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.process_time,
    ):
        self.idle_w = idle_w
        self.active_w_per_core = active_w_per_core
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._t0 = clock()
        self._c0 = cpu_clock()
        self.detail = f"estimate: {idle_w:g} W idle + {active_w_per_core:g} W per busy core" + (
            f" ({source})" if source else ""
        )

    def estimate(self, wall_s: float, cpu_s: float) -> float:
        """Millijoules for a span of ``wall_s`` seconds that used ``cpu_s`` seconds of CPU."""
        return (wall_s * self.idle_w + cpu_s * self.active_w_per_core) * 1000.0

    def read(self) -> float:
        return self.estimate(self._clock() - self._t0, self._cpu_clock() - self._c0)


def model_source(power=None) -> ModelSource:
    """The model from a profile's ``power`` section (``idle_w``, ``active_w_per_core``, ``source``)."""
    if power is None:
        from edge.profiles import Power  # its defaults are the generic guess

        power = Power(idle_w=5.0, active_w_per_core=2.0, source="no device profile: generic guess")
    return ModelSource(power.idle_w, power.active_w_per_core, getattr(power, "source", ""))


# --- choosing ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Selection:
    source: EnergySource
    tried: list[tuple[str, str]]
    """Sensors tried before the chosen one, each with the reason it was not used."""

    def describe(self) -> str:
        text = self.source.describe()
        if self.tried:
            text += "; not used: " + "; ".join(f"{name}: {why}" for name, why in self.tried)
        return text


def select_source(
    root: str | Path = "/",
    power=None,
    prefer: str = "auto",
    pmic_command: Sequence[str] = PMIC_COMMAND,
    pmic_interval_s: float = 1.0,
) -> Selection:
    """The best energy source on this device.

    ``prefer``: ``"auto"`` tries the profile's ``power.sensor`` first, then :data:`BEST_FIRST`;
    a sensor name tries only that sensor; ``"model"`` skips the sensors. The model is the
    fallback in every case, and ``Selection.tried`` says why each sensor was not used.
    """
    if prefer not in ("auto",) + METHODS:
        raise ValueError(f"energy source {prefer!r} is unknown; allowed: auto, {', '.join(METHODS)}")
    if prefer == "auto":
        hint = getattr(power, "sensor", "none")
        order = ([hint] if hint in BEST_FIRST else []) + [s for s in BEST_FIRST if s != hint]
    else:
        order = [s for s in BEST_FIRST if s == prefer]
    probes: dict[str, Callable[[], EnergySource]] = {
        "ina3221": lambda: probe_ina3221(root),
        "pi5_pmic": lambda: probe_pi5_pmic(pmic_command, pmic_interval_s),
        "rapl": lambda: probe_rapl(root),
    }
    tried: list[tuple[str, str]] = []
    for name in order:
        try:
            return Selection(probes[name](), tried)
        except SensorUnavailable as exc:
            tried.append((name, str(exc)))
    return Selection(model_source(power), tried)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


__all__ = [
    "BEST_FIRST",
    "EnergySource",
    "Ina3221Source",
    "METHODS",
    "ModelSource",
    "Pi5PmicSource",
    "RaplSource",
    "Selection",
    "SensorUnavailable",
    "model_source",
    "parse_pmic_read_adc",
    "probe_ina3221",
    "probe_pi5_pmic",
    "probe_rapl",
    "select_source",
]
