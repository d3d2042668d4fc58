"""Speakers and user-settings JSON API."""

from django.conf import settings
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from magicmirror.errors import NotFound
from magicmirror.openapi import api_errors
from magicmirror.parsers import MultiPartParser
from memory.api import MemorySettingsInput, MemorySettingsOutput, memory_settings_apply, with_memory_settings

from .models import UserSettings
from .selectors import speaker_get, speaker_list, user_settings_get
from .services import (
    audio_too_large_error,
    speaker_create,
    speaker_delete,
    speaker_switch,
    speaker_update,
    time_zone_names,
    user_settings_update,
)

NOT_FOUND = {404: "`speaker_not_found`: not one of your speakers."}
AUDIO_ERRORS = (
    "`empty_audio`, `undecodable_audio`, `audio_too_long`, `audio_too_short`, `audio_rate_too_low`, `audio_silent`: "
    "the reference audio is refused."
)
AUDIO_TOO_LARGE = "`audio_too_large`: over SPEAKER_MAX_UPLOAD_BYTES."


@extend_schema_field(OpenApiTypes.BINARY)
class AudioUploadField(serializers.FileField):
    """An uploaded recording, documented as binary (not as a URI)."""


class SpeakerOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prompt_text = serializers.CharField()
    audio_url = serializers.SerializerMethodField()
    audio_duration = serializers.FloatField()
    is_current = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_audio_url(self, speaker) -> str:
        return f"/api/speakers/{speaker.pk}/audio"

    def get_is_current(self, speaker) -> bool:
        return speaker.pk == self.context.get("current_speaker_id")


class SpeakerListOutput(serializers.Serializer):
    speakers = SpeakerOutput(many=True)
    current_speaker_id = serializers.IntegerField(allow_null=True)
    limit = serializers.IntegerField()


class SpeakerCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=64)
    prompt_text = serializers.CharField(max_length=500)
    audio = AudioUploadField(help_text="Reference clip: wav, webm, ogg, mp3 or m4a; 1-30 s; >= 16 kHz.")
    make_current = serializers.BooleanField(required=False, allow_null=True, default=None)


class SpeakerUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=64, required=False)
    prompt_text = serializers.CharField(max_length=500, required=False)
    audio = AudioUploadField(required=False)


@extend_schema_field({"type": "string", "enum": ["", *time_zone_names()]})
class TimeZoneField(serializers.CharField):
    """An IANA name or "" (the schema lists them; the service checks, with its own error code)."""


class SettingsOutput(MemorySettingsOutput):
    current_speaker_id = serializers.IntegerField(allow_null=True)
    input_mode = serializers.ChoiceField(choices=UserSettings.InputMode.values)
    voice_output = serializers.BooleanField()
    spoken_language = serializers.CharField(help_text='"I speak": zh or en; empty: the interface language.')
    time_zone = TimeZoneField(help_text="IANA name (e.g. Asia/Shanghai); empty: the site's time zone.")


class SettingsInput(MemorySettingsInput):
    input_mode = serializers.ChoiceField(choices=UserSettings.InputMode.values, required=False)
    voice_output = serializers.BooleanField(required=False)
    spoken_language = serializers.ChoiceField(
        choices=["", "zh", "en"], required=False, help_text='"I speak" (recognition language); empty: the interface\'s.'
    )
    time_zone = TimeZoneField(
        max_length=64,
        required=False,
        allow_blank=True,
        help_text="IANA name, e.g. Asia/Shanghai (the time tool, reminders); empty: the site's time zone.",
    )
    current_speaker_id = serializers.IntegerField(
        required=False, allow_null=True, help_text="One of your speakers, or null for the engine's default voice."
    )


def _read_upload(upload) -> bytes:
    if upload.size > settings.SPEAKER_MAX_UPLOAD_BYTES:
        raise audio_too_large_error()  # before reading it into memory
    return upload.read()


def _speaker_data(request, speaker):
    current = user_settings_get(user=request.user).current_speaker_id
    return SpeakerOutput(speaker, context={"current_speaker_id": current}).data


class SpeakerListApi(APIView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(
        operation_id="speakers_list",
        responses=SpeakerListOutput,
        summary="My speakers (at most three) and the current one",
    )
    def get(self, request):
        current = user_settings_get(user=request.user).current_speaker_id
        speakers = SpeakerOutput(speaker_list(user=request.user), many=True, context={"current_speaker_id": current})
        return Response({"speakers": speakers.data, "current_speaker_id": current, "limit": settings.SPEAKERS_PER_USER})

    @extend_schema(
        request={"multipart/form-data": SpeakerCreateInput},
        responses={
            201: SpeakerOutput,
            **api_errors(
                {
                    400: AUDIO_ERRORS,
                    409: "`speaker_limit`: three speakers already; `duplicate_name`: the name is taken; "
                    "`conflict`: a concurrent change, try again.",
                    413: AUDIO_TOO_LARGE,
                }
            ),
        },
        summary="Add a speaker",
    )
    def post(self, request):
        serializer = SpeakerCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        speaker = speaker_create(
            user=request.user,
            name=data["name"],
            prompt_text=data["prompt_text"],
            audio_data=_read_upload(data["audio"]),
            make_current=data["make_current"],
        )
        return Response(_speaker_data(request, speaker), status=status.HTTP_201_CREATED)


class SpeakerDetailApi(APIView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(responses={200: SpeakerOutput, **api_errors(NOT_FOUND)}, summary="One speaker")
    def get(self, request, speaker_id):
        return Response(_speaker_data(request, speaker_get(user=request.user, speaker_id=speaker_id)))

    @extend_schema(
        request={"multipart/form-data": SpeakerUpdateInput, "application/json": SpeakerUpdateInput},
        responses={
            200: SpeakerOutput,
            **api_errors(
                {
                    400: AUDIO_ERRORS,
                    404: NOT_FOUND[404],
                    409: "`duplicate_name`: the name is taken; `conflict`: a concurrent change, try again.",
                    413: AUDIO_TOO_LARGE,
                }
            ),
        },
        summary="Rename, correct the transcript, or replace the audio",
    )
    def patch(self, request, speaker_id):
        speaker_get(user=request.user, speaker_id=speaker_id)  # 404 before 400
        serializer = SpeakerUpdateInput(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        speaker = speaker_update(
            user=request.user,
            speaker_id=speaker_id,
            name=data.get("name"),
            prompt_text=data.get("prompt_text"),
            audio_data=_read_upload(data["audio"]) if "audio" in data else None,
        )
        return Response(_speaker_data(request, speaker))

    @extend_schema(responses={204: None, **api_errors(NOT_FOUND)}, summary="Delete a speaker")
    def delete(self, request, speaker_id):
        speaker_delete(user=request.user, speaker_id=speaker_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SpeakerSwitchApi(APIView):
    @extend_schema(
        request=None,
        responses={200: SettingsOutput, **api_errors(NOT_FOUND)},
        summary="Make this speaker the current voice",
    )
    def post(self, request, speaker_id):
        row = speaker_switch(user=request.user, speaker_id=speaker_id)
        return Response(SettingsOutput(with_memory_settings(row, user=request.user)).data)


class SpeakerAudioApi(APIView):
    @extend_schema(
        responses={
            (200, "audio/wav"): OpenApiResponse(OpenApiTypes.BINARY, description="24 kHz mono 16-bit WAV."),
            **api_errors({404: "`speaker_not_found`; `audio_missing`: the file is gone from MEDIA_ROOT."}),
        },
        summary="The speaker's reference audio (WAV)",
    )
    def get(self, request, speaker_id):
        speaker = speaker_get(user=request.user, speaker_id=speaker_id)
        try:
            audio = speaker.audio.open("rb")
        except FileNotFoundError:
            raise NotFound("This speaker's audio file is missing.", code="audio_missing") from None
        return FileResponse(audio, content_type="audio/wav")


class SettingsApi(APIView):
    @extend_schema(responses=SettingsOutput, summary="My preferences")
    def get(self, request):
        return Response(
            SettingsOutput(with_memory_settings(user_settings_get(user=request.user), user=request.user)).data
        )

    @extend_schema(
        request=SettingsInput,
        responses={200: SettingsOutput, **api_errors({404: "`speaker_not_found`: `current_speaker_id` is not yours."})},
        summary="Change my preferences",
    )
    def patch(self, request):
        # Partial: a form leaving `voice_output` out must not read as false (DRF's HTML-form default).
        serializer = SettingsInput(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if "current_speaker_id" in data:
            speaker_switch(user=request.user, speaker_id=data.pop("current_speaker_id"))
        memory_settings_apply(user=request.user, data=data)  # memory_enabled, persona
        row = user_settings_update(user=request.user, **data)
        return Response(SettingsOutput(with_memory_settings(row, user=request.user)).data)
