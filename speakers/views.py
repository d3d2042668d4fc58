from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from .selectors import speaker_list, user_settings_get


@login_required
@ensure_csrf_cookie  # profile.js sends the cookie's token with its API calls
def profile(request):
    speakers = list(speaker_list(user=request.user))
    return render(
        request,
        "speakers/profile.html",
        {
            "speakers": speakers,
            "user_settings": user_settings_get(user=request.user),
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
