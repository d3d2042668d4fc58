from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from voice.selectors import spoken_language_get, voice_offer

from .models import UserSettings
from .selectors import speaker_list, user_settings_get, user_time_zone


@login_required
@ensure_csrf_cookie  # profile.js sends the cookie's token with its API calls
def profile(request):
    speakers = list(speaker_list(user=request.user))
    user_settings = user_settings_get(user=request.user)
    spoken = spoken_language_get(user_settings=user_settings, interface_language=request.LANGUAGE_CODE)
    return render(
        request,
        "speakers/profile.html",
        {
            "speakers": speakers,
            "user_settings": user_settings,
            # What an empty time zone means for this user (shown as the field's placeholder).
            "default_time_zone": user_time_zone(UserSettings(spoken_language=user_settings.spoken_language)),
            # Which recognition and voice this user gets here, in the page's language (voice/selectors.py).
            "voice_offer": voice_offer(spoken_language=spoken),
            "speaker_limit": settings.SPEAKERS_PER_USER,
            "speaker_limit_reached": len(speakers) >= settings.SPEAKERS_PER_USER,
            "speaker_min_seconds": settings.SPEAKER_MIN_SECONDS,
            "speaker_max_seconds": settings.SPEAKER_MAX_SECONDS,
            "speaker_max_upload_bytes": settings.SPEAKER_MAX_UPLOAD_BYTES,
            "speaker_max_upload_mb": settings.SPEAKER_MAX_UPLOAD_BYTES // (1024 * 1024),
            # Only CosyVoice2 clones a voice from a clip; the CPU engines speak in their own voice.
            "voice_cloning": settings.VOICE_TTS_ENGINES[:1] == ["cosyvoice2"]
            and Path(settings.COSYVOICE_MODEL_DIR).is_dir(),
        },
    )
