from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from speakers.selectors import speaker_list, user_settings_get
from voice.selectors import spoken_language_get, voice_offer

from .selectors import conversation_list


@login_required
@ensure_csrf_cookie  # chat.js sends the cookie's token with its API calls
def home(request):
    user_settings = user_settings_get(user=request.user)
    spoken = spoken_language_get(user_settings=user_settings, interface_language=request.LANGUAGE_CODE)
    return render(
        request,
        "chat/home.html",
        {
            "conversations": conversation_list(user=request.user)[:100],
            "speakers": speaker_list(user=request.user),
            "user_settings": user_settings,
            "voice_offer": voice_offer(spoken_language=spoken),  # which recognition and voice, in words
        },
    )
