"""CPU temperature, frequency and throttling, where the board exposes them.

Temperature comes from ``/sys/class/thermal/thermal_zone*/temp`` (millidegrees C), choosing the
zone whose ``type`` names the CPU (Pi ``cpu-thermal``, Jetson Nano ``CPU-therm``, Orin
``cpu-thermal``, x86 ``x86_pkg_temp``); frequency from ``cpufreq/policy*/scaling_cur_freq`` (kHz,
the highest policy: inference runs on the fastest cluster). On a Pi that is the *requested*
frequency; firmware throttling shows in ``vcgencmd get_throttled``, which :func:`throttled`
decodes. ``vcgencmd`` is a subprocess (milliseconds), so it is for ``edge-profile`` runs and a
fallback temperature, never for the per-inference path.
"""

from __future__ import annotations

import dataclasses
import glob
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from edge.sysfs import Attr, open_number, read_text

CPU_ZONE_TYPES = ("cpu-thermal", "cpu_thermal", "CPU-therm", "x86_pkg_temp", "soc_thermal", "tj-thermal", "acpitz")
"""Thermal zone types in preference order; earlier names are closer to the CPU cores."""
BOGUS_ZONE_TYPES = ("PMIC-Die",)
"""Zones that report a constant (Jetson Nano's PMIC-Die always reads 100000)."""


class ThermalReader:
    """Resolves the CPU zone and cpufreq files once; each read is a ``pread`` per file."""

    def __init__(self, root: str | Path = "/", vcgencmd: Sequence[str] = ("vcgencmd",)):
        root = Path(root)
        self.vcgencmd = tuple(vcgencmd)
        self.zone_type: str | None = None
        self._temp: Attr | None = None
        zones = []
        for zone in sorted(glob.glob(str(root / "sys/class/thermal/thermal_zone*"))):
            ztype = read_text(Path(zone) / "type") or ""
            if ztype in BOGUS_ZONE_TYPES:
                continue
            rank = CPU_ZONE_TYPES.index(ztype) if ztype in CPU_ZONE_TYPES else len(CPU_ZONE_TYPES)
            zones.append((rank, zone, ztype))
        for _, zone, ztype in sorted(zones):
            try:
                self._temp = open_number(Path(zone) / "temp")
                self.zone_type = ztype
                break
            except (OSError, ValueError):
                continue
        self._freqs: list[Attr] = []
        policies = sorted(glob.glob(str(root / "sys/devices/system/cpu/cpufreq/policy*/scaling_cur_freq")))
        if not policies:
            policies = sorted(glob.glob(str(root / "sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq")))[:1]
        for path in policies:
            try:
                self._freqs.append(open_number(path))
            except (OSError, ValueError):
                continue
        self._use_vcgencmd = self._temp is None and shutil.which(self.vcgencmd[0]) is not None

    def temperature_c(self) -> float | None:
        """CPU temperature in °C, or ``None`` when no zone (or ``vcgencmd``) can be read."""
        if self._temp is not None:
            try:
                return self._temp.read_int() / 1000.0
            except (OSError, ValueError):
                return None
        if self._use_vcgencmd:
            return measure_temp(self.vcgencmd)
        return None

    def frequency_mhz(self) -> float | None:
        """Highest current CPU frequency over the cpufreq policies, in MHz."""
        best = None
        for attr in self._freqs:
            try:
                mhz = attr.read_int() / 1000.0
            except (OSError, ValueError):
                continue
            best = mhz if best is None or mhz > best else best
        return best

    def describe(self) -> dict[str, object]:
        return {
            "temperature": (
                f"thermal zone {self.zone_type!r} ({self._temp.path})"
                if self._temp
                else "vcgencmd measure_temp"
                if self._use_vcgencmd
                else None
            ),
            "frequency": f"{len(self._freqs)} cpufreq polic{'y' if len(self._freqs) == 1 else 'ies'}"
            if self._freqs
            else None,
        }

    def close(self) -> None:
        for attr in ([self._temp] if self._temp else []) + self._freqs:
            attr.close()


def _vcgencmd(command: Sequence[str]) -> str | None:
    try:
        proc = subprocess.run(list(command), capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def parse_measure_temp(text: str) -> float | None:
    """``temp=52.1'C`` -> 52.1."""
    m = re.search(r"temp=([-0-9.]+)'C", text or "")
    return float(m.group(1)) if m else None


def measure_temp(vcgencmd: Sequence[str] = ("vcgencmd",)) -> float | None:
    return parse_measure_temp(_vcgencmd([*vcgencmd, "measure_temp"]) or "")


@dataclasses.dataclass(frozen=True)
class Throttled:
    """``vcgencmd get_throttled`` decoded: what is true now, and what has happened since boot."""

    raw: int
    under_voltage: bool
    frequency_capped: bool
    throttled: bool
    soft_temp_limit: bool
    under_voltage_occurred: bool
    frequency_capped_occurred: bool
    throttled_occurred: bool
    soft_temp_limit_occurred: bool

    @classmethod
    def from_bits(cls, raw: int) -> Throttled:
        bit = lambda n: bool(raw >> n & 1)  # noqa: E731
        return cls(raw, bit(0), bit(1), bit(2), bit(3), bit(16), bit(17), bit(18), bit(19))

    def summary(self) -> str:
        names = [f.name for f in dataclasses.fields(self) if f.name != "raw" and getattr(self, f.name)]
        return f"0x{self.raw:x}" + (f" ({', '.join(names)})" if names else " (ok)")


def parse_throttled(text: str) -> Throttled | None:
    """``throttled=0x50000`` -> :class:`Throttled`."""
    m = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", text or "")
    return Throttled.from_bits(int(m.group(1), 0)) if m else None


def throttled(vcgencmd: Sequence[str] = ("vcgencmd",)) -> Throttled | None:
    """The Pi firmware's throttling flags, or ``None`` off a Pi."""
    if shutil.which(vcgencmd[0]) is None:
        return None
    return parse_throttled(_vcgencmd([*vcgencmd, "get_throttled"]) or "")


__all__ = ["ThermalReader", "Throttled", "measure_temp", "parse_measure_temp", "parse_throttled", "throttled"]
