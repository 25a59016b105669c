"""The settings are one light module: reading and checking a configuration loads no stage and no NumPy."""

from __future__ import annotations

import json
import subprocess
import sys

from edge import resources


def test_loading_the_example_config_imports_no_stage_code():
    code = (
        "import json, sys\n"
        "from edge import config\n"
        f"config.load({str(resources.path('examples/config.yaml'))!r})\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('edge', 'numpy')))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["edge", "edge.config", "edge.settings"]


def test_the_stages_read_their_settings_from_it():
    from edge import config, denoise, liveloop, profiler, stt, vad, wake

    assert vad.VadSettings is config.VadSettings and stt.SttSettings is config.SttSettings
    assert liveloop.LiveLoopSettings is config.LiveLoopSettings and wake.WakeSettings is config.WakeSettings
    assert profiler.ProfilerSettings is config.ProfilerSettings and denoise.DenoiseSettings is config.DenoiseSettings
