"""The GPU smoke run (devtools/gpu_smoke.py) on the CPU: its scenarios pass through the real classes
with the shims it puts in place of WeTextProcessing and PyAV on a GPU host, so what is carried there
is known to work everywhere but on CUDA itself."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import gpu_smoke

from .conftest import import_upstream

import_upstream()
pytestmark = pytest.mark.cosyvoice_real

ROOT = Path(__file__).resolve().parents[3]


def test_the_scenarios_pass_on_the_cpu_with_the_shims_in_place(tmp_path):
    site = tmp_path / "site"
    gpu_smoke.write_shims(site)
    out = tmp_path / "rows.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    command = [sys.executable, "-m", "devtools.gpu_smoke", "scenarios", "--device", "cpu", "--json", str(out)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "shims: tn" in done.stdout  # PyAV and WeTextProcessing really were the shims
    rows = json.loads(out.read_text())
    assert [(row["scenario"], row["fp16"]) for row in rows] == [
        (scenario, fp16)
        for fp16 in ("off", "on")
        for scenario in ("load", "stream", "text stream", f"{gpu_smoke.CONCURRENT} concurrent", "early close")
    ]
    assert all(row["ok"] for row in rows), rows
    streamed = [row for row in rows if row["scenario"] in ("stream", "text stream")]
    assert all(row["audio_s"] > 1 and row["first_chunk_ms"] > 0 for row in streamed)
    assert all("ended by the cap: True" in row["note"] for row in rows if row["scenario"] == "text stream")
