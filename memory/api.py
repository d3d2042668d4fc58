"""Memory JSON API: the user's memories, forgetting everything, a voice's own persona, the export
of all the user's data; and the memory fields of /api/settings (speakers.api uses them)."""

import json
from dataclasses import asdict, dataclass

from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone, translation
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from magicmirror.api import ServiceTextField, TextField
from magicmirror.openapi import api_errors

from .export import user_data_export
from .persona import DEFAULTS, language_of_code
from .selectors import memory_get, memory_list, memory_profile_get, speaker_persona_get, user_persona
from .services import (
    PERSONA_LIMITS,
    memory_create,
    memory_delete,
    memory_forget_all,
    memory_settings_update,
    memory_update,
    speaker_persona_update,
)

NOT_FOUND = {404: "`memory_not_found`: not one of your memories."}
TEXT_ERRORS = "`invalid_memory`: empty or only whitespace; `memory_too_long`: over 200 characters."


class MemoryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    text = serializers.CharField()
    source = serializers.ChoiceField(
        choices=["conversation", "user"], help_text="`conversation`: learnt from what you said; `user`: added by you."
    )
    source_message_id = serializers.IntegerField(allow_null=True, help_text="The message it was learnt from.")
    created_at = serializers.DateTimeField(help_text="When it was learnt.")
    confirmed_at = serializers.DateTimeField(help_text="When it was last said, changed or confirmed.")
    updated_at = serializers.DateTimeField()


class MemoryListOutput(serializers.Serializer):
    memories = MemoryOutput(many=True)
    enabled = serializers.BooleanField(help_text="Memory on for you (and for the site).")
    limit = serializers.IntegerField()


class MemoryInput(serializers.Serializer):
    text = ServiceTextField(max_chars_setting="MEMORY_TEXT_MAX_CHARS")


class ForgetAllOutput(serializers.Serializer):
    deleted = serializers.IntegerField()


class PersonaOutput(serializers.Serializer):
    name = serializers.CharField(allow_blank=True)
    personality = serializers.CharField(allow_blank=True)
    address = serializers.CharField(allow_blank=True, help_text="How the companion addresses you.")


class PersonaInput(serializers.Serializer):
    name = TextField(required=False, allow_blank=True, max_length=PERSONA_LIMITS["name"])
    personality = TextField(required=False, allow_blank=True, max_length=PERSONA_LIMITS["personality"])
    address = TextField(required=False, allow_blank=True, max_length=PERSONA_LIMITS["address"])


@dataclass
class MemorySettings:
    """The memory part of /api/settings."""

    enabled: bool
    persona: dict
    persona_defaults: dict


def memory_settings_view(*, user) -> MemorySettings:
    """Memory on/off and the persona (blank fields: the defaults, given in the interface's language)."""
    profile = memory_profile_get(user=user)
    return MemorySettings(
        enabled=profile.enabled,
        persona=asdict(user_persona(profile)),
        persona_defaults=DEFAULTS[language_of_code(translation.get_language())],
    )


def memory_settings_apply(*, user, data: dict) -> None:
    """Takes `memory_enabled` and `persona` out of a validated /api/settings body and saves them."""
    enabled, persona = data.pop("memory_enabled", None), data.pop("persona", None)
    if enabled is not None or persona:
        memory_settings_update(user=user, enabled=enabled, persona=persona)


class MemorySettingsOutput(serializers.Serializer):
    """The memory fields of GET /api/settings (speakers.api.SettingsOutput adds its own)."""

    memory_enabled = serializers.BooleanField(
        source="memory.enabled", help_text="Off: nothing is learnt from your turns and nothing is recalled."
    )
    persona = PersonaOutput(source="memory.persona", help_text="The companion's persona; blank fields: the defaults.")
    persona_defaults = PersonaOutput(
        source="memory.persona_defaults", help_text="The defaults, in the interface's language (in a request: yours)."
    )


class MemorySettingsInput(serializers.Serializer):
    memory_enabled = serializers.BooleanField(required=False)
    persona = PersonaInput(required=False, help_text="Fields left out stay; a blank one goes back to the default.")


def with_memory_settings(row, *, user):
    """A UserSettings row with the memory fields (`row.memory`) for SettingsOutput."""
    row.memory = memory_settings_view(user=user)
    return row


class MemoryListApi(APIView):
    @extend_schema(
        operation_id="memories_list", responses=MemoryListOutput, summary="What MagicMirror remembers about me"
    )
    def get(self, request):
        profile = memory_profile_get(user=request.user)
        return Response(
            {
                "memories": MemoryOutput(memory_list(user=request.user), many=True).data,
                "enabled": profile.enabled and settings.MEMORY_ENABLED,
                "limit": settings.MEMORY_MAX_PER_USER,
            }
        )

    @extend_schema(
        request=MemoryInput,
        responses={
            201: MemoryOutput,
            **api_errors(
                {
                    400: TEXT_ERRORS,
                    409: "`duplicate_memory`: you have this one already; `memory_limit`: MEMORY_MAX_PER_USER reached.",
                }
            ),
        },
        summary="Add a memory",
    )
    def post(self, request):
        serializer = MemoryInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        memory = memory_create(user=request.user, text=serializer.validated_data["text"])
        return Response(MemoryOutput(memory).data, status=status.HTTP_201_CREATED)


class MemoryDetailApi(APIView):
    @extend_schema(
        request=MemoryInput,
        responses={
            200: MemoryOutput,
            **api_errors(
                {400: TEXT_ERRORS, 404: NOT_FOUND[404], 409: "`duplicate_memory`: you have this one already."}
            ),
        },
        summary="Correct a memory",
    )
    def patch(self, request, memory_id):
        memory_get(user=request.user, memory_id=memory_id)  # 404 before 400
        serializer = MemoryInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        memory = memory_update(user=request.user, memory_id=memory_id, text=serializer.validated_data["text"])
        return Response(MemoryOutput(memory).data)

    @extend_schema(responses={204: None, **api_errors(NOT_FOUND)}, summary="Forget one memory")
    def delete(self, request, memory_id):
        memory_delete(user=request.user, memory_id=memory_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemoryForgetAllApi(APIView):
    @extend_schema(request=None, responses=ForgetAllOutput, summary="Forget everything MagicMirror remembers about me")
    def post(self, request):
        return Response({"deleted": memory_forget_all(user=request.user)})


SPEAKER_NOT_FOUND = {404: "`speaker_not_found`: not one of your speakers."}


class SpeakerPersonaApi(APIView):
    @extend_schema(
        operation_id="speakers_persona_retrieve",
        responses={200: PersonaOutput, **api_errors(SPEAKER_NOT_FOUND)},
        summary="A voice's own persona (blank fields: yours)",
    )
    def get(self, request, speaker_id):
        own = speaker_persona_get(user=request.user, speaker_id=speaker_id)
        return Response(PersonaOutput(own).data)

    @extend_schema(
        operation_id="speakers_persona_partial_update",
        request=PersonaInput,
        responses={200: PersonaOutput, **api_errors(SPEAKER_NOT_FOUND)},
        summary="Give a voice its own name, personality or way of addressing you",
    )
    def patch(self, request, speaker_id):
        speaker_persona_get(user=request.user, speaker_id=speaker_id)  # 404 before 400
        serializer = PersonaInput(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        own = speaker_persona_update(user=request.user, speaker_id=speaker_id, persona=serializer.validated_data)
        return Response(PersonaOutput(own).data)


class ExportApi(APIView):
    @extend_schema(
        responses={
            (200, "application/json"): OpenApiResponse(
                OpenApiTypes.OBJECT,
                description="One JSON file (a download): account, settings and persona, speakers' metadata, "
                "memories, conversations with their messages and summaries. See docs/api.md.",
            )
        },
        summary="Download all my data",
    )
    def get(self, request):
        body = json.dumps(user_data_export(user=request.user), ensure_ascii=False, indent=1)
        response = HttpResponse(body, content_type="application/json; charset=utf-8")
        stamp = timezone.localdate().isoformat()
        response["Content-Disposition"] = f'attachment; filename="magicmirror-data-{stamp}.json"'
        return response
