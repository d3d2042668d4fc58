"""What a user gets from the voice stack here, read from the configuration and the files on disk (no
engine is loaded): the "I speak" language, the recognition model and the voice of that language,
told in the user's own interface language on the chat and profile pages."""

import shutil
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .tts.base import language_code

LANGUAGE_NAMES = {
    "zh": gettext_lazy("Chinese"),
    "en": gettext_lazy("English"),
    "ko": gettext_lazy("Korean"),
    "ja": gettext_lazy("Japanese"),
    "yue": gettext_lazy("Cantonese"),
}


def language_name(code: str) -> str:
    return str(LANGUAGE_NAMES.get(code, code))


def spoken_language_get(*, user_settings, interface_language: str | None = None) -> str:
    """The user's "I speak": their preference, else the interface language they see (the language
    cookie / Accept-Language of the request), else the site's LANGUAGE_CODE."""
    return user_settings.spoken_language or language_code(interface_language or settings.LANGUAGE_CODE)


def interface_language_from_scope(scope) -> str | None:
    """The interface language of a WebSocket's handshake, as LocaleMiddleware picks it for a page:
    the language cookie, else Accept-Language; None when neither names a site language."""
    from django.utils.translation import trans_real

    cookie = (scope.get("cookies") or {}).get(settings.LANGUAGE_COOKIE_NAME)
    candidates = [cookie] if cookie else []
    headers = dict(scope.get("headers") or [])
    accept = headers.get(b"accept-language", b"").decode("latin-1")
    candidates += [lang for lang, _q in trans_real.parse_accept_lang_header(accept) if lang != "*"]
    for candidate in candidates:
        try:
            return trans_real.get_supported_language_variant(candidate)
        except LookupError:
            continue
    return None


@dataclass(frozen=True)
class VoiceOffer:
    recognition: str  # one sentence each, in the active language
    voice: str
    natural: bool  # the voice is a neural one (CosyVoice2 or Piper), not espeak-ng's formant one


def _tts_engine_for(language: str) -> tuple[str, str] | None:
    """(engine, voice) that would speak `language`: the first of the chain whose files are here."""
    from .tts.piper import configured_voices

    for name in settings.VOICE_TTS_ENGINES:
        name = name.strip().lower()
        if name == "cosyvoice2" and Path(settings.COSYVOICE_MODEL_DIR).is_dir():
            if language in {"zh", "en", "ja", "ko", "yue"}:
                return "cosyvoice2", ""
        elif name == "piper":
            path = configured_voices().get(language)
            if path is not None:
                return "piper", path.stem
        elif name in {"espeak-ng", "espeak"} and shutil.which("espeak-ng") and language in settings.ESPEAK_VOICES:
            return "espeak-ng", settings.ESPEAK_VOICES[language]
    return None


def voice_offer(*, spoken_language: str) -> VoiceOffer:
    """Which recognition and which voice a speaker of `spoken_language` gets, and how to get better."""
    from .asr.registry import model_choice

    language = language_code(spoken_language)
    name = language_name(language)
    choice = model_choice(language)
    if choice.path is None:
        recognition = _("Recognition: none — no speech model is installed.")
    elif choice.fallback:
        recognition = _(
            "Recognition: Korean test model — %(language)s is not recognised until the administrator runs "
            "manage.py download_models --vosk %(code)s."
        ) % {"language": name, "code": language}
    else:
        recognition = _("Recognition: %(language)s (Vosk %(model)s).") % {"language": name, "model": choice.path.name}
    engine = _tts_engine_for(language)
    if language == "zh":  # the voices speak Mandarin, whatever Chinese the recogniser hears
        name = _("Mandarin")
    wanted = settings.PIPER_VOICES.get(language, "")
    if engine is None:
        voice = _("Voice: none for %(language)s — such replies are shown, not spoken.") % {"language": name}
    elif engine[0] == "cosyvoice2":
        voice = _("Voice: CosyVoice2 — natural, in your current voice.")
    elif engine[0] == "piper":
        voice = _("Voice: Piper %(voice)s — natural.") % {"voice": engine[1]}
    elif wanted:
        voice = _(
            "Voice: espeak-ng %(language)s (robotic) — a natural voice: the administrator runs "
            "manage.py download_models --piper %(voice)s."
        ) % {"language": name, "voice": wanted}
    else:
        voice = _("Voice: espeak-ng %(language)s (robotic).") % {"language": name}
    return VoiceOffer(recognition=recognition, voice=voice, natural=engine is not None and engine[0] != "espeak-ng")
