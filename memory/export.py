"""All of a user's data as one JSON document (GET /api/export): account, settings and persona,
speakers' metadata (not their audio), conversations with their messages and summaries, memories."""

from django.utils import timezone

from chat.models import Conversation, Message
from speakers.models import Speaker, UserSettings

from .models import ConversationMemory, Memory, MemoryProfile, SpeakerPersona

EXPORT_VERSION = 1


def _when(value):
    return timezone.localtime(value).isoformat() if value else None


def user_data_export(*, user) -> dict:
    settings_row = UserSettings.objects.filter(user=user).first()
    profile = MemoryProfile.objects.filter(user=user).first()
    personas = {p.speaker_id: p for p in SpeakerPersona.objects.filter(speaker__owner=user)}
    summaries = {
        s.conversation_id: s for s in ConversationMemory.objects.filter(conversation__owner=user).exclude(summary="")
    }
    messages: dict[int, list[dict]] = {}
    for m in Message.objects.filter(conversation__owner=user).order_by("created_at", "id"):
        messages.setdefault(m.conversation_id, []).append(
            {
                "id": m.pk,
                "role": m.role,
                "content": m.content,
                "source": m.source,
                "interrupted": m.interrupted,
                "error_code": m.error_code,
                "speaker_id": m.speaker_id,
                "created_at": _when(m.created_at),
            }
        )
    return {
        "format": "magicmirror-export",
        "version": EXPORT_VERSION,
        "exported_at": _when(timezone.now()),
        "account": {"username": user.get_username(), "date_joined": _when(user.date_joined)},
        "settings": {
            "input_mode": settings_row.input_mode if settings_row else None,
            "voice_output": settings_row.voice_output if settings_row else None,
            "current_speaker_id": settings_row.current_speaker_id if settings_row else None,
            "memory_enabled": profile.enabled if profile else True,
            "persona": {
                "name": profile.persona_name if profile else "",
                "personality": profile.persona_personality if profile else "",
                "address": profile.persona_address if profile else "",
            },
        },
        "speakers": [
            {
                "id": s.pk,
                "name": s.name,
                "prompt_text": s.prompt_text,
                "audio_duration": s.audio_duration,
                "created_at": _when(s.created_at),
                "persona": {
                    "name": personas[s.pk].name,
                    "personality": personas[s.pk].personality,
                    "address": personas[s.pk].address,
                }
                if s.pk in personas
                else None,
            }
            for s in Speaker.objects.filter(owner=user).order_by("slot")
        ],
        "memories": [
            {
                "id": m.pk,
                "text": m.text,
                "source": m.source,
                "source_message_id": m.source_message_id,
                "created_at": _when(m.created_at),
                "confirmed_at": _when(m.confirmed_at),
            }
            for m in Memory.objects.filter(owner=user).order_by("created_at", "id")
        ],
        "conversations": [
            {
                "id": c.pk,
                "title": c.title,
                "created_at": _when(c.created_at),
                "updated_at": _when(c.updated_at),
                "summary": summaries[c.pk].summary if c.pk in summaries else "",
                "messages": messages.get(c.pk, []),
            }
            for c in Conversation.objects.filter(owner=user).order_by("created_at", "id")
        ],
    }
