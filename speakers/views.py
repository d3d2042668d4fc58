from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from .selectors import speaker_list, user_settings_get


@login_required
def profile(request):
    return render(
        request,
        "speakers/profile.html",
        {
            "speakers": speaker_list(user=request.user),
            "user_settings": user_settings_get(user=request.user),
            "speaker_limit": settings.SPEAKERS_PER_USER,
        },
    )
