"""What the GPU smoke run carries and the shims it installs (devtools/gpu_smoke.py); its scenarios run
for real in voice/tests/cosyvoice_real/test_gpu_smoke.py."""

import os
import subprocess
import sys

import numpy as np
import pytest

from devtools import gpu_smoke
from voice.tests.samples import tone, wav


def test_what_the_image_has_stays_behind_unless_its_version_matters():
    found = {"torch": "2.13.0", "numpy": "1.26.4", "transformers": "4.40.1", "conformer": "0.3.2", "pynini": "2.1.7"}
    assert gpu_smoke.to_carry(found) == {"conformer": "0.3.2", "transformers": "4.40.1"}


def test_the_shims_import_in_place_of_the_real_packages(tmp_path):
    gpu_smoke.write_shims(tmp_path)
    probe = (
        "import av, tn.chinese.normalizer as zh, tn.english.normalizer as en\n"
        f"assert av.SMOKE_SHIM and av.__file__.startswith({str(tmp_path)!r})\n"
        "assert zh.Normalizer(remove_erhua=False).normalize('一共3个') == '一共3个'\n"
        "assert en.Normalizer().normalize('3 cats') == '3 cats'\n"
        "try:\n    av.open('x.wav')\nexcept RuntimeError as exc:\n    print(exc)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "PyAV is not installed on this host" in done.stdout


def test_the_prompt_reader_without_pyav_reads_the_runs_own_wav():
    samples = tone(0.5, gpu_smoke.PROMPT_RATE)
    decoded = gpu_smoke._read_wav_without_av(wav([samples], gpu_smoke.PROMPT_RATE), sample_rate=gpu_smoke.PROMPT_RATE)
    assert decoded.sample_rate == gpu_smoke.PROMPT_RATE
    assert np.array_equal(np.frombuffer(decoded.pcm, dtype="<i2"), np.frombuffer(wav([samples], 16000)[44:], "<i2"))
    with pytest.raises(RuntimeError, match="PCM16 mono WAV"):
        gpu_smoke._read_wav_without_av(wav([tone(0.5, 24000)], 24000), sample_rate=gpu_smoke.PROMPT_RATE)
