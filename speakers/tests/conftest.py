import functools
import os

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from speakers import services
from voice.tests.samples import tone, wav


@functools.lru_cache
def reference_wav(seconds=1.5, rate=24000, freq=220.0, amplitude=0.4) -> bytes:
    return wav([tone(seconds, rate, freq, amplitude)], rate)


def wav_upload(data=None, name="reference.wav", content_type="audio/wav"):
    return SimpleUploadedFile(name, reference_wav() if data is None else data, content_type=content_type)


def read_bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def stored_files(user) -> list[str]:
    """The reference files on disk for one user."""
    folder = os.path.join(settings.MEDIA_ROOT, "speakers", str(user.pk))
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


@pytest.fixture
def make_speaker():
    def make(user, name="Anna", prompt_text="你好，我是安娜。", audio=None, **extra):
        return services.speaker_create(
            user=user, name=name, prompt_text=prompt_text, audio_data=audio or reference_wav(), **extra
        )

    return make


@pytest.fixture
def admin_user(make_user):
    return make_user("root", is_staff=True, is_superuser=True, email="root@example.com")


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    """Each test its own MEDIA_ROOT, so counting files on disk means something."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    # Users are made in nearly every test; Argon2 would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
