"""Where the default models come from, and which of them this host lacks.

Vosk models: `VOSK_MODELS_URL/<name>.zip`, checked against that host's `model-list.json` (size, MD5).
Piper voices: piper-tts's own layout under `PIPER_VOICES_URL` (`<family>/<lang>/<name>/<quality>/<voice>.onnx`
and `.onnx.json`), checked against its `voices.json` (size, MD5). Both base URLs are settings, so a
mirror (or a test's own server) can stand in for the public hosts.
"""

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.conf import settings

from voice.tts.base import language_code

from .downloads import DownloadError, download, get_json, host_of, verify
from .modelfiles import vosk_missing

try:  # piper-tts names its voices and lays out its voice repository this way (piper/download_voices.py)
    from piper.download_voices import URL_FORMAT as _PIPER_URL_FORMAT
    from piper.download_voices import VOICE_PATTERN as PIPER_VOICE_PATTERN
except ImportError:  # pragma: no cover - piper-tts is a requirement; the same pattern without it
    _PIPER_URL_FORMAT = ""
    PIPER_VOICE_PATTERN = re.compile(
        r"^(?P<lang_family>[^-]+)_(?P<lang_region>[^-]+)-(?P<voice_name>[^-]+)-(?P<voice_quality>.+)$"
    )
# The path part of piper's URL_FORMAT (after the repository's base), without its query string.
PIPER_LAYOUT = (
    _PIPER_URL_FORMAT.split("/resolve/main/", 1)[1].split("?", 1)[0]
    if "/resolve/main/" in _PIPER_URL_FORMAT
    else "{lang_family}/{lang_code}/{voice_name}/{voice_quality}/{lang_code}-{voice_name}-{voice_quality}{extension}"
)


@dataclass(frozen=True)
class Missing:
    """A default model this host lacks."""

    kind: str  # "vosk" or "piper"
    language: str
    name: str  # vosk-model-small-cn-0.22, zh_CN-huayan-medium
    host: str  # where it would come from

    def __str__(self) -> str:
        return f"{'Vosk' if self.kind == 'vosk' else 'Piper'} {self.language} {self.name}"


# -- Vosk -------------------------------------------------------------------------------------------
def vosk_model_name(language: str) -> str:
    return Path(settings.VOSK_MODELS[language]).name


def vosk_model_url(name: str) -> str:
    return f"{settings.VOSK_MODELS_URL.rstrip('/')}/{name}.zip"


def vosk_list_entry(name: str, *, timeout: float) -> dict | None:
    """The model's entry (size, md5) in the host's model-list.json; None if the list lacks it."""
    models = get_json(f"{settings.VOSK_MODELS_URL.rstrip('/')}/model-list.json", timeout=timeout)
    for entry in models if isinstance(models, list) else []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    return None


# -- Piper ------------------------------------------------------------------------------------------
def piper_voice_files(voice: str) -> dict[str, str]:
    """The paths of a voice's model and config under PIPER_VOICES_URL: {".onnx": ..., ".onnx.json": ...}."""
    match = PIPER_VOICE_PATTERN.match(voice)
    if not match:
        raise DownloadError(f"{voice!r} is not a Piper voice name (language-name-quality, e.g. zh_CN-huayan-medium).")
    parts = {
        "lang_family": match["lang_family"],
        "lang_code": f"{match['lang_family']}_{match['lang_region']}",
        "voice_name": match["voice_name"],
        "voice_quality": match["voice_quality"],
    }
    return {ext: PIPER_LAYOUT.format(extension=ext, **parts) for ext in (".onnx.json", ".onnx")}


def install_piper_voice(
    voice: str, folder: Path, *, timeout: float = 30.0, stream: IO[str] | None = sys.stdout
) -> Path:
    """Download a Piper voice into `folder` (MODELS_DIR/piper), each file checked against voices.json
    (size and MD5) before it takes its final name; returns the .onnx path."""
    from voice.tts.piper import voice_language

    files = piper_voice_files(voice)
    base = settings.PIPER_VOICES_URL.rstrip("/")
    catalogue = get_json(f"{base}/voices.json", timeout=timeout)
    entry = catalogue.get(voice) if isinstance(catalogue, dict) else None
    if not isinstance(entry, dict):
        raise DownloadError(f"{voice} is not in the Piper voice list ({base}/voices.json).")
    folder.mkdir(parents=True, exist_ok=True)
    staged: dict[str, Path] = {}
    try:
        for ext, path in files.items():
            info = (entry.get("files") or {}).get(path) or {}
            final = folder / f"{voice}{ext}"
            staged[ext] = staging = final.with_name(final.name + ".download")
            download(f"{base}/{path}", staging, timeout=timeout, stream=stream, size=info.get("size_bytes"))
            verify(staging, size=info.get("size_bytes"), md5=info.get("md5_digest"), sha256=info.get("sha256_digest"))
            if ext == ".onnx.json":
                try:
                    json.loads(staging.read_text(encoding="utf-8"))
                except ValueError as exc:
                    raise DownloadError(f"{final.name} is not valid JSON ({exc}); run the command again.") from None
    except DownloadError as exc:
        if not exc.unreachable:  # a verified file that failed its check is removed (a partial one is resumed)
            for staging in staged.values():
                staging.unlink(missing_ok=True)
        raise
    model = folder / f"{voice}.onnx"
    # The config first: a model is never on disk without the config that says its language.
    staged[".onnx.json"].replace(folder / f"{voice}.onnx.json")
    staged[".onnx"].replace(model)
    expected = language_code((entry.get("language") or {}).get("family") or voice.split("_", 1)[0])
    spoken = voice_language(model)
    if spoken != expected:
        raise DownloadError(f"{voice}'s config names the language {spoken!r}, not {expected!r}.")
    return model


# -- What the defaults lack -------------------------------------------------------------------------
def missing_defaults() -> list[Missing]:
    """The Vosk model of every VOSK_MODELS language and the Piper voice of every PIPER_VOICES language
    that are not on disk (a Piper entry that is a file path is the administrator's own: never fetched)."""
    from voice.tts.piper import voice_path

    missing = []
    for language, path in settings.VOSK_MODELS.items():
        if not path or vosk_missing(Path(path)):
            name = Path(path).name if path else ""
            if name:
                missing.append(Missing("vosk", language_code(language), name, host_of(settings.VOSK_MODELS_URL)))
    for language, voice in settings.PIPER_VOICES.items():
        if voice and PIPER_VOICE_PATTERN.match(voice) and "/" not in voice and voice_path(voice) is None:
            missing.append(Missing("piper", language_code(language), voice, host_of(settings.PIPER_VOICES_URL)))
    return missing
