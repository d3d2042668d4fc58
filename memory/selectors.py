"""Reads: a user's memories, their settings and persona, and what a request recalls."""

from django.conf import settings
from django.db.models import QuerySet, Subquery
from django.utils import timezone

from magicmirror.errors import NotFound
from speakers.models import Speaker, UserSettings

from .models import ConversationMemory, Memory, MemoryProfile, SpeakerPersona
from .persona import Persona, language_of, system_message
from .recall import Candidate, recall

RECALL_RECENT_MESSAGES = 4  # the newest messages whose words make a memory relevant


def memory_list(*, user) -> QuerySet[Memory]:
    return Memory.objects.filter(owner=user).order_by("created_at", "id")


def memory_get(*, user, memory_id, for_update=False) -> Memory:
    """The user's memory, or NotFound (another user's looks like none)."""
    memories = Memory.objects.select_for_update() if for_update else Memory.objects
    try:
        return memories.get(owner=user, pk=int(memory_id))
    except (Memory.DoesNotExist, ValueError, TypeError):
        raise NotFound("Memory not found.", code="memory_not_found") from None


def memory_profile_get(*, user) -> MemoryProfile:
    """The user's memory settings and persona (unsaved defaults when they never changed them)."""
    return MemoryProfile.objects.filter(user=user).first() or MemoryProfile(user=user)


def memory_enabled(*, user_id) -> bool:
    """Memory on for this user and for the site."""
    if not settings.MEMORY_ENABLED:
        return False
    return MemoryProfile.objects.filter(user_id=user_id, enabled=False).exists() is False


def user_persona(profile: MemoryProfile) -> Persona:
    return Persona(name=profile.persona_name, personality=profile.persona_personality, address=profile.persona_address)


def speaker_persona_get(*, user, speaker_id) -> SpeakerPersona:
    """A speaker's own persona (unsaved and blank when it has none); NotFound for another user's speaker."""
    try:
        speaker = Speaker.objects.get(owner=user, pk=int(speaker_id))
    except (Speaker.DoesNotExist, ValueError, TypeError):
        raise NotFound("Speaker not found.", code="speaker_not_found") from None
    return SpeakerPersona.objects.filter(speaker=speaker).first() or SpeakerPersona(speaker=speaker)


def conversation_summary_get(*, conversation) -> tuple[str, int]:
    """(summary, the newest message id it covers); ("", 0) when the conversation has none."""
    if conversation is None:
        return "", 0
    row = ConversationMemory.objects.filter(conversation=conversation).values_list("summary", "summary_through").first()
    if not row or not row[0]:
        return "", 0
    return row[0], row[1]


def recalled_memories(*, user_id, recent: list[str], budget: int | None = None) -> list[str]:
    """The memories to send with a request whose newest messages are `recent` (empty when memory is off)."""
    if not settings.MEMORY_ENABLED:
        return []
    # One query: the memories, unless the user turned memory off.
    rows = (
        Memory.objects.filter(owner_id=user_id)
        .exclude(owner__memory_profile__enabled=False)
        .order_by("created_at", "id")
        .values_list("id", "text", "confirmed_at")[: settings.MEMORY_MAX_PER_USER]
    )
    candidates = [Candidate(id=pk, text=text, confirmed_at=confirmed) for pk, text, confirmed in rows]
    budget = settings.MEMORY_RECALL_MAX_CHARS if budget is None else budget
    return [m.text for m in recall(candidates, recent, budget=budget, now=timezone.now())]


def request_persona(*, user_id, speaker_id=None) -> Persona:
    """The persona of a request: the speaker's own (the voice reading the reply, else the user's
    current voice) over the user's."""
    profile = MemoryProfile.objects.filter(user_id=user_id).first()
    persona = user_persona(profile) if profile else Persona()
    speakers = SpeakerPersona.objects.filter(speaker__owner_id=user_id)
    if speaker_id is not None:
        speakers = speakers.filter(speaker_id=speaker_id)
    else:
        current = UserSettings.objects.filter(user_id=user_id).values("current_speaker_id")[:1]
        speakers = speakers.filter(speaker_id=Subquery(current))
    own = speakers.first()
    if own is not None:
        persona = Persona(name=own.name, personality=own.personality, address=own.address).over(persona)
    return persona


def request_system_message(*, user_id, speaker_id=None, history: list[dict], summary: str = "") -> str:
    """The system message of a request: the site's prompt, the persona, the recalled memories and the
    summary of the conversation's older part, in the language of the user's newest message."""
    recent = [m["content"] for m in history[-RECALL_RECENT_MESSAGES:]]
    user_texts = [m["content"] for m in history if m["role"] == "user"]
    memories = recalled_memories(user_id=user_id, recent=recent) if user_id is not None else []
    persona = request_persona(user_id=user_id, speaker_id=speaker_id) if user_id is not None else Persona()
    return system_message(
        base=settings.LLM_SYSTEM_PROMPT,
        persona=persona,
        language=language_of(user_texts[-1] if user_texts else None),
        memories=memories,
        summary=summary,
    )
