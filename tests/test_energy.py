"""Energy sources and thermal readers against recorded sysfs trees and vcgencmd output.

The trees are in tests/fixtures/sysfs/ (see its README for what is recorded and what is derived).
Tests that change a sensor's value work on a temporary copy.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from edge import energy, thermal
from edge.profiles import Power

FIXTURES = Path(__file__).parent / "fixtures" / "sysfs"
VCGENCMD = FIXTURES / "rpi5" / "bin" / "vcgencmd"
ORIN_HWMON = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"


def copy_tree(name: str, dest: Path) -> Path:
    shutil.copytree(FIXTURES / name, dest, dirs_exist_ok=True)
    return dest


def number(path: Path) -> float:
    return float(path.read_text())


class FakeClock:
    """A clock the test advances, so integrated energy can be checked exactly."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


# --- Jetson INA3221 ---------------------------------------------------------------------------------


def test_orin_nano_reads_board_input_rail_and_integrates_power(tmp_path):
    root = copy_tree("jetson-orin-nano-jp6", tmp_path)
    hw = root / ORIN_HWMON
    clock = FakeClock()
    src = energy.probe_ina3221(root, clock=clock)
    assert src.name == "ina3221" and src.measured
    assert "rail VDD_IN" in src.detail and "hwmon" in src.detail
    p0 = number(hw / "in1_input") * number(hw / "curr1_input") / 1000
    assert src.power_mw() == pytest.approx(p0)
    assert src.read() == 0.0  # the first read only starts the integration
    # The load rises: the current file changes in place, as sysfs regenerates it.
    (hw / "curr1_input").write_text("1500\n")
    clock.t += 0.25
    p1 = number(hw / "in1_input") * 1500 / 1000
    assert src.read() == pytest.approx((p0 + p1) / 2 * 0.25)
    clock.t += 0.5
    assert src.read() == pytest.approx((p0 + p1) / 2 * 0.25 + p1 * 0.5)
    src.close()


def test_orin_rails_match_tegrastats_sample():
    # DEVICES.md: "VDD_IN 4824mW VDD_CPU_GPU_CV 518mW VDD_SOC 1475mW"; the fixture was derived from it.
    hw = FIXTURES / "jetson-orin-nano-jp6" / ORIN_HWMON
    for i, mw in ((1, 4824), (2, 518), (3, 1475)):
        assert number(hw / f"in{i}_input") * number(hw / f"curr{i}_input") / 1000 == pytest.approx(mw, abs=2)


def test_agx_orin_without_board_rail_sums_connected_rails_of_both_chips():
    root = FIXTURES / "jetson-agx-orin-jp6"
    src = energy.probe_ina3221(root)
    labels = [r.label for r in src.rails]
    assert labels == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]
    assert "NC" not in labels
    assert "no board-input rail" in src.detail
    expected = 0.0
    for dev, hw in (("1-0040", "hwmon3"), ("1-0041", "hwmon4")):
        d = root / "sys/bus/i2c/drivers/ina3221" / dev / "hwmon" / hw
        for i in (1, 2, 3):
            if (d / f"in{i}_label").read_text().strip() != "NC":
                expected += number(d / f"in{i}_input") * number(d / f"curr{i}_input") / 1000
    assert src.power_mw() == pytest.approx(expected)
    src.close()


def test_unreadable_rail_is_skipped_and_named(tmp_path):
    root = copy_tree("jetson-agx-orin-jp6", tmp_path)
    bad = root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3/in2_input"
    bad.unlink()
    bad.mkdir()  # reading it fails with an OSError, as a disabled channel's file does on the board
    src = energy.probe_ina3221(root)
    assert [r.label for r in src.rails] == ["VDD_GPU_SOC", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]
    assert any(n.startswith("VDD_CPU_CV: unreadable") for n in src.notes)
    src.close()


def test_ina3221_with_no_readable_rail_falls_back_to_model_and_says_why(tmp_path):
    root = copy_tree("jetson-orin-nano-jp6", tmp_path)
    hw = root / ORIN_HWMON
    for i in (1, 2, 3):
        (hw / f"curr{i}_input").write_text("not a number\n")
    with pytest.raises(energy.SensorUnavailable, match="no rail could be read.*VDD_IN: unreadable"):
        energy.probe_ina3221(root)
    power = Power(idle_w=4.5, active_w_per_core=0.7, sensor="ina3221", source="profile")
    sel = energy.select_source(root, power=power, pmic_command=(str(tmp_path / "no-vcgencmd"),))
    assert sel.source.name == "model" and not sel.source.measured
    assert sel.tried[0][0] == "ina3221" and "VDD_IN: unreadable" in sel.tried[0][1]
    assert "4.5 W idle" in sel.describe() and "not used: ina3221" in sel.describe()


def test_jetpack4_iio_layout_reads_pom_5v_in():
    root = FIXTURES / "jetson-nano-jp4"
    d = root / "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    src = energy.probe_ina3221(root)
    assert "IIO" in src.detail and "rail POM_5V_IN" in src.detail
    assert src.power_mw() == number(d / "in_power0_input")
    src.close()


def test_no_ina3221_says_so(tmp_path):
    with pytest.raises(energy.SensorUnavailable, match="no INA3221"):
        energy.probe_ina3221(tmp_path)


# --- Raspberry Pi 5 PMIC ----------------------------------------------------------------------------


def _pmic_expected_watts() -> tuple[float, int]:
    """Σ V×I computed independently of the parser: pair by the text before ``_A``/``_V``."""
    values: dict[str, dict[str, float]] = {}
    for line in (FIXTURES / "rpi5/vcgencmd/pmic_read_adc.txt").read_text().splitlines():
        name, value = line.split()[0], float(line.split("=")[1][:-1])
        values.setdefault(name[:-2], {})[name[-1]] = value
    pairs = [v for v in values.values() if "A" in v and "V" in v]
    return sum(v["A"] * v["V"] for v in pairs), len(pairs)


def test_pmic_output_is_paired_by_rail_name_not_position():
    rails = energy.parse_pmic_read_adc((FIXTURES / "rpi5/vcgencmd/pmic_read_adc.txt").read_text())
    assert len(rails) == 12
    assert "EXT5V" not in rails and "BATT" not in rails  # voltage only
    # 0V8_AON's current is index 16 and its voltage index 19: position would pair it wrongly.
    assert rails["0V8_AON"] == (0.79736190, 0.00579975)
    assert rails["VDD_CORE"] == (0.89745940, 10.87674000)
    watts, n = _pmic_expected_watts()
    assert n == 12
    assert sum(v * a for v, a in rails.values()) == pytest.approx(watts)


def test_pmic_source_runs_vcgencmd_and_samples_in_background(monkeypatch):
    monkeypatch.delenv("VCGENCMD_FAIL", raising=False)
    src = energy.probe_pi5_pmic((str(VCGENCMD), "pmic_read_adc"), interval_s=0.05)
    try:
        watts, _ = _pmic_expected_watts()
        assert src.name == "pi5_pmic" and "12 rails" in src.detail
        assert src.power_mw() == pytest.approx(watts * 1000)
        first = src.read()
        time.sleep(0.02)
        assert src.read() > first
        # vcgencmd starts failing (firmware mailbox gone): reads raise, so the profiler falls back.
        monkeypatch.setenv("VCGENCMD_FAIL", "1")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                src.read()
            except OSError as exc:
                assert "VCHI initialization failed" in str(exc)
                break
            time.sleep(0.02)
        else:
            pytest.fail("the sampler never noticed vcgencmd failing")
    finally:
        src.close()


def test_pmic_unavailable_when_vcgencmd_fails_or_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("VCGENCMD_FAIL", "1")
    with pytest.raises(energy.SensorUnavailable, match="VCHI initialization failed"):
        energy.probe_pi5_pmic((str(VCGENCMD), "pmic_read_adc"))
    with pytest.raises(energy.SensorUnavailable, match="not installed"):
        energy.probe_pi5_pmic((str(tmp_path / "vcgencmd"), "pmic_read_adc"))


# --- RAPL -------------------------------------------------------------------------------------------


def test_rapl_reads_package_zone_and_undoes_wraparound(tmp_path):
    root = copy_tree("rapl-intel", tmp_path)
    zone = root / "sys/class/powercap/intel-rapl:0"
    max_uj = int(number(zone / "max_energy_range_uj"))
    start = int(number(zone / "energy_uj"))
    src = energy.probe_rapl(root)
    assert src.detail == "powercap package-0 energy_uj"  # subzones (core, uncore) are parts of it
    assert src.read() == 0.0
    (zone / "energy_uj").write_text(f"{start + 200_000}\n")
    assert src.read() == pytest.approx(200.0)  # 200 000 µJ = 200 mJ
    # The counter passes max_energy_range_uj and starts again near 0.
    (zone / "energy_uj").write_text("500000\n")
    assert src.read() == pytest.approx((max_uj - start + 500_000) / 1000.0)
    src.close()


def test_rapl_prefers_platform_zone(tmp_path):
    root = copy_tree("rapl-intel", tmp_path)
    psys = root / "sys/class/powercap/intel-rapl:1"
    psys.mkdir()
    (psys / "name").write_text("psys\n")
    (psys / "energy_uj").write_text("1000\n")
    (psys / "max_energy_range_uj").write_text("262143328850\n")
    src = energy.probe_rapl(root)
    assert src.detail == "powercap psys energy_uj"
    src.close()


def test_rapl_permission_denied_is_a_normal_fallback(tmp_path):
    # energy_uj is 0400 root:root since CVE-2020-8694. Probe it as an unprivileged user.
    base = Path(tempfile.mkdtemp(prefix="edge-rapl-"))
    try:
        os.chmod(base, 0o755)
        root = copy_tree("rapl-intel", base / "root")
        for dirpath, _dirnames, filenames in os.walk(root):
            os.chmod(dirpath, 0o755)
            for f in filenames:
                os.chmod(os.path.join(dirpath, f), 0o400 if f == "energy_uj" else 0o444)
        name, described = _select_as_unprivileged_user(root)
        assert name == "model"
        assert "rapl: package-0: permission denied" in described and "CVE-2020-8694" in described
    finally:
        shutil.rmtree(base)


def _select_as_unprivileged_user(root: Path) -> tuple[str, str]:
    """Run ``select_source(root, prefer="rapl")`` in a forked child that dropped root (uid 65534)."""
    if os.geteuid() != 0:
        sel = energy.select_source(root, prefer="rapl")
        return sel.source.name, sel.describe()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no pytest machinery from here on, only os._exit
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            sel = energy.select_source(root, prefer="rapl")
            os.write(write_end, f"{sel.source.name}\n{sel.describe()}".encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        out = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    name, described = out.split("\n", 1)
    return name, described


def test_no_rapl_says_so(tmp_path):
    with pytest.raises(energy.SensorUnavailable, match="no powercap RAPL zones"):
        energy.probe_rapl(tmp_path)


# --- model and selection ----------------------------------------------------------------------------


def test_model_is_idle_times_wall_plus_active_times_cpu():
    wall, cpu = FakeClock(), FakeClock()
    src = energy.ModelSource(2.0, 1.5, clock=wall, cpu_clock=cpu)
    assert not src.measured and src.name == "model"
    wall.t += 2.0
    cpu.t += 1.0
    assert src.read() == pytest.approx((2.0 * 2.0 + 1.5 * 1.0) * 1000)
    assert src.estimate(0.010, 0.020) == pytest.approx((0.010 * 2.0 + 0.020 * 1.5) * 1000)


def test_model_uses_profile_power():
    src = energy.model_source(Power(idle_w=2.7, active_w_per_core=1.3, sensor="pi5_pmic", source="rpi5 guess"))
    assert (src.idle_w, src.active_w_per_core) == (2.7, 1.3)
    assert "rpi5 guess" in src.detail


def test_selection_order_profile_hint_first_then_best_first(tmp_path):
    root = copy_tree("jetson-orin-nano-jp6", tmp_path)
    copy_tree("rapl-intel", tmp_path)
    no_pmic = (str(tmp_path / "absent-vcgencmd"),)
    assert energy.select_source(root, pmic_command=no_pmic).source.name == "ina3221"
    hint = Power(idle_w=8, active_w_per_core=4, sensor="rapl")
    assert energy.select_source(root, power=hint, pmic_command=no_pmic).source.name == "rapl"
    only_pmic = energy.select_source(root, power=hint, prefer="pi5_pmic", pmic_command=no_pmic)
    assert only_pmic.source.name == "model" and [t[0] for t in only_pmic.tried] == ["pi5_pmic"]
    forced = energy.select_source(root, prefer="model")
    assert forced.source.name == "model" and forced.tried == []
    with pytest.raises(ValueError, match="unknown; allowed: auto, ina3221"):
        energy.select_source(root, prefer="wattmeter")


def test_selection_on_a_machine_without_sensors_tries_all_and_falls_back(tmp_path):
    sel = energy.select_source(tmp_path, pmic_command=(str(tmp_path / "vcgencmd"),))
    assert sel.source.name == "model"
    assert [t[0] for t in sel.tried] == list(energy.BEST_FIRST)


def test_pi5_selection_uses_pmic(monkeypatch):
    monkeypatch.delenv("VCGENCMD_FAIL", raising=False)
    sel = energy.select_source(
        FIXTURES / "rpi5",
        power=Power(idle_w=2.7, active_w_per_core=1.3, sensor="pi5_pmic"),
        pmic_command=(str(VCGENCMD), "pmic_read_adc"),
    )
    try:
        assert sel.source.name == "pi5_pmic" and sel.tried == []
    finally:
        sel.source.close()


# --- thermal ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tree, zone_type, celsius, mhz",
    [
        ("jetson-nano-jp4", "CPU-therm", 38.5, 1479.0),  # PMIC-Die (always 100 °C) is never chosen
        ("jetson-orin-nano-jp6", "cpu-thermal", 45.5, 1510.4),
        ("rpi5", "cpu-thermal", 52.1, 2400.0),
        ("rapl-intel", "x86_pkg_temp", 48.0, 3400.0),  # the highest policy's frequency
    ],
)
def test_thermal_reader_picks_cpu_zone(tree, zone_type, celsius, mhz):
    reader = thermal.ThermalReader(FIXTURES / tree, vcgencmd=("absent-vcgencmd",))
    assert reader.zone_type == zone_type
    assert reader.temperature_c() == pytest.approx(celsius)
    assert reader.frequency_mhz() == pytest.approx(mhz)
    reader.close()


def test_thermal_reader_without_sensors_returns_none(tmp_path):
    reader = thermal.ThermalReader(tmp_path, vcgencmd=(str(tmp_path / "vcgencmd"),))
    assert reader.temperature_c() is None and reader.frequency_mhz() is None
    assert reader.describe() == {"temperature": None, "frequency": None}


def test_thermal_falls_back_to_vcgencmd_without_a_zone(tmp_path, monkeypatch):
    monkeypatch.delenv("VCGENCMD_FAIL", raising=False)
    reader = thermal.ThermalReader(tmp_path, vcgencmd=(str(VCGENCMD),))
    assert reader.temperature_c() == 52.1
    assert reader.describe()["temperature"] == "vcgencmd measure_temp"


def test_get_throttled_bits():
    t = thermal.throttled((str(VCGENCMD),))
    # 0x50000: under-voltage and throttling have occurred since boot; nothing is happening now.
    assert t.raw == 0x50000
    assert t.under_voltage_occurred and t.throttled_occurred
    assert not (t.under_voltage or t.throttled or t.frequency_capped or t.soft_temp_limit)
    assert t.summary() == "0x50000 (under_voltage_occurred, throttled_occurred)"
    assert thermal.parse_throttled("throttled=0x0").summary() == "0x0 (ok)"
    assert thermal.parse_throttled("VCHI initialization failed") is None
