"""Fixtures for the tests of the real upstream CosyVoice2 classes (requirements-cosyvoice-test.txt).

Nothing here imports torch or the upstream code at import time: in the project's main environment these
tests skip (each module calls pytest.importorskip) and this file must still load.
"""

import os
import shutil
import threading
from pathlib import Path

import pytest

from voice.tts.base import VoiceRef

from ..samples import tone, wav
from . import netguard

# No model hub, whatever the code under test asks for; set before transformers is imported.
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_name, "1")

UPSTREAM_MODULE = "cosyvoice.cli.cosyvoice"
SKIP_REASON = (
    "the upstream CosyVoice2 code is not installed here: ./dev test runs these tests in .venv-cosyvoice "
    "(requirements-cosyvoice-test.txt)"
)


def import_upstream():
    """The upstream module, or skip the calling test module (the main environment has no torch)."""
    return pytest.importorskip(UPSTREAM_MODULE, reason=SKIP_REASON)


@pytest.fixture(scope="session", autouse=True)
def _no_network():
    netguard.install()
    yield


@pytest.fixture(autouse=True)
def _nothing_tried_the_network():
    netguard.refused.clear()
    yield
    assert netguard.refused == [], "the code under test tried to use the network"


@pytest.fixture(scope="session")
def tiny_model_template(tmp_path_factory):
    """The generated tiny model, built once per session; tests get copies (tiny_model_dir)."""
    from .tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("cosyvoice2") / "CosyVoice2-tiny")


def copy_model(template: Path, target: Path) -> Path:
    """A model folder of its own (hard links: upstream only reads them, and writes spk2info.pt anew)."""

    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(template, target, copy_function=link)
    return target


@pytest.fixture
def tiny_model_dir(tiny_model_template, tmp_path):
    return copy_model(tiny_model_template, tmp_path / "CosyVoice2-tiny")


@pytest.fixture(scope="session")
def real_engine(tiny_model_template, tmp_path_factory):
    """One CosyVoice2Engine over the real classes, loaded once for the session (loading takes ~20 s)."""
    from voice.tts.cosyvoice2 import CosyVoice2Engine

    model_dir = copy_model(tiny_model_template, tmp_path_factory.mktemp("engine") / "CosyVoice2-tiny")
    engine = CosyVoice2Engine(model_dir, warmup=False)
    engine._ensure_loaded()
    return engine


@pytest.fixture
def make_voice(tmp_path):
    """A speaker's reference clip (a 2 s, 24 kHz tone: 50 speech tokens, so no prompt padding)."""

    def make(speaker_id=7, version="v1", seconds=2.0, rate=24000):
        audio = tmp_path / f"speaker-{speaker_id}-{version}.wav"
        audio.write_bytes(wav([tone(seconds, rate)], rate))
        return VoiceRef(
            speaker_id=speaker_id,
            name=f"Speaker {speaker_id}",
            prompt_text="This is how I sound.",
            audio_path=str(audio),
            version=version,
        )

    return make


class ModelSpy:
    """Records what one real CosyVoice2Model object does: its tts calls and every token2wav step.

    `calls` holds one dict per `tts` call: the thread, the `token_hop_len` at its start, the hops it
    streamed (tokens per token2wav step before the last) and the `tts_speech` tensors it yielded.
    `max_active` is the most `tts` calls running at once on this model object.
    """

    def __init__(self, model, monkeypatch, grow_hop_len=False):
        self.inner = model.model
        self.calls: list[dict] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        self._current = threading.local()
        tts, token2wav = self.inner.tts, self.inner.token2wav
        inner = self.inner

        def spied_tts(*args, **kwargs):
            call = {"thread": threading.get_ident(), "hop_len_at_start": inner.token_hop_len, "hops": [], "speech": []}
            with self._lock:
                self.calls.append(call)
                self.active += 1
                self.max_active = max(self.max_active, self.active)
            self._current.call = call
            try:
                for output in tts(*args, **kwargs):
                    call["speech"].append(output["tts_speech"])
                    yield output
            finally:
                with self._lock:
                    self.active -= 1

        def spied_token2wav(token, prompt_token, prompt_feat, embedding, token_offset, uuid, *args, **kwargs):
            call = getattr(self._current, "call", None)
            streamed_hop = not kwargs.get("finalize", False)
            if call is not None and streamed_hop:
                call["hops"].append(token.shape[1] - token_offset - inner.flow.pre_lookahead_len)
            speech = token2wav(token, prompt_token, prompt_feat, embedding, token_offset, uuid, *args, **kwargs)
            if grow_hop_len and streamed_hop:
                # What upstream does since f26cde5 (2026-01-29; open PR #1849): after every streamed hop the
                # shared hop length doubles, up to 4 x 25, and is never set back.
                inner.token_hop_len = min(100, inner.token_hop_len * 2)
            return speech

        monkeypatch.setattr(self.inner, "tts", spied_tts)
        monkeypatch.setattr(self.inner, "token2wav", spied_token2wav)

    def first_hops(self):
        return [call["hops"][0] if call["hops"] else None for call in self.calls]


@pytest.fixture
def spy_model(monkeypatch):
    def spy(model, grow_hop_len=False):
        return ModelSpy(model, monkeypatch, grow_hop_len=grow_hop_len)

    return spy


@pytest.fixture(scope="session")
def worker_netguard(tmp_path_factory):
    """Environment that makes a Python process (a Celery worker) install the network guard at start."""
    folder = tmp_path_factory.mktemp("netguard")
    (folder / "sitecustomize.py").write_text(
        "import importlib.util\n"
        f"_spec = importlib.util.spec_from_file_location('mm_netguard', {str(Path(netguard.__file__))!r})\n"
        "_guard = importlib.util.module_from_spec(_spec)\n"
        "_spec.loader.exec_module(_guard)\n"
        "_guard.install()\n"
    )
    log = folder / "refused.log"
    paths = [str(folder), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return {"PYTHONPATH": os.pathsep.join(paths), netguard.LOG_ENV: str(log)}, log
