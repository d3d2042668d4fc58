"""The built-in tools: the time, remembering and forgetting, switching voice, a new conversation.

Each acts only as the turn's user (`ToolContext.user`), through the services of its app. A tool
that changes the voice session (the voice, the conversation) says so in `context.effects`: the turn
relays it (reply_stream's `effect` events).
"""

import datetime
import zoneinfo

from django.conf import settings

from magicmirror.dbasync import db_call
from memory.selectors import memory_enabled, memory_list
from memory.services import memory_create, memory_delete
from speakers.models import Speaker
from speakers.selectors import speaker_list
from speakers.services import speaker_switch

from .registry import Tool, ToolContext, ToolError, provider

WEEKDAYS = {
    "zh": ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}


def now() -> datetime.datetime:
    """The current time (UTC), one place for tests to read it from."""
    return datetime.datetime.now(datetime.UTC)


# -- the time ----------------------------------------------------------------------------------------
async def current_time(context: ToolContext, arguments: dict) -> dict:
    name = arguments.get("time_zone") or context.time_zone
    try:
        zone = zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"{name!r} is not a time zone name.") from None
    local = now().astimezone(zone)
    weekdays = WEEKDAYS.get(context.language, WEEKDAYS["en"])
    return {
        "time_zone": name,
        "date": local.date().isoformat(),
        "time": local.strftime("%H:%M"),
        "weekday": weekdays[local.weekday()],
        "utc_offset": local.strftime("%z"),
        "iso": local.isoformat(timespec="seconds"),
    }


CURRENT_TIME = Tool(
    name="current_time",
    description="The current date, time and weekday where the user is (their time zone), or in another "
    "time zone if one is given. Use it whenever the user asks the time, the date or the day.",
    parameters={
        "type": "object",
        "properties": {
            "time_zone": {"type": "string", "description": "An IANA time zone, e.g. Europe/Paris; omit for the user's."}
        },
        "additionalProperties": False,
    },
    run=current_time,
)


# -- memory ------------------------------------------------------------------------------------------
FACT = {"type": "string", "minLength": 1, "maxLength": settings.MEMORY_TEXT_MAX_CHARS}


async def remember(context: ToolContext, arguments: dict) -> dict:
    if not await db_call(memory_enabled, user_id=context.user.pk):
        raise ToolError("Memory is turned off for this user: nothing can be remembered.")
    memory = await db_call(memory_create, user=context.user, text=arguments["fact"])
    return {"remembered": memory.text}


def _forget(*, user, fact: str) -> list[str]:
    """Delete the user's memory that is this fact (or the only one that contains it)."""
    wanted = " ".join(fact.split()).casefold()
    memories = list(memory_list(user=user))
    matches = [m for m in memories if m.text.casefold() == wanted] or [
        m for m in memories if wanted in m.text.casefold()
    ]
    if not matches:
        raise ToolError("No memory matches that.")
    if len(matches) > 1:
        raise ToolError("Several memories match; ask which one: " + "; ".join(m.text for m in matches[:10]))
    memory_delete(user=user, memory_id=matches[0].pk)
    return [matches[0].text]


async def forget(context: ToolContext, arguments: dict) -> dict:
    # Forgetting works with memory off too: deleting what is kept is always the user's right.
    return {"forgotten": await db_call(_forget, user=context.user, fact=arguments["fact"])}


REMEMBER = Tool(
    name="remember",
    description="Remember a lasting fact or preference about the user, because they asked you to "
    '(e.g. "记住我对花生过敏"). One short phrase in the user\'s language, about the user.',
    parameters={"type": "object", "properties": {"fact": FACT}, "required": ["fact"], "additionalProperties": False},
    run=remember,
)
FORGET = Tool(
    name="forget",
    description="Forget a fact remembered about the user, because they asked you to. Give the fact as "
    "remembered, or a part of it.",
    parameters={"type": "object", "properties": {"fact": FACT}, "required": ["fact"], "additionalProperties": False},
    run=forget,
)


# -- the voice -----------------------------------------------------------------------------------------
def _switch_voice(*, user, name: str | None, slot: int | None) -> Speaker:
    speakers = list(speaker_list(user=user))  # the user's own: another user's voice is never found
    if slot is not None:
        found = [s for s in speakers if s.slot == slot]
    else:
        wanted = " ".join((name or "").split()).casefold()
        found = [s for s in speakers if s.name.casefold() == wanted] or [
            s for s in speakers if wanted and wanted in s.name.casefold()
        ]
    if len(found) != 1:
        have = "; ".join(f"{s.slot}: {s.name}" for s in speakers) or "none"
        raise ToolError(f"No such voice of this user (their voices: {have}).")
    speaker_switch(user=user, speaker_id=found[0].pk)
    return found[0]


async def switch_voice(context: ToolContext, arguments: dict) -> dict:
    if arguments.get("name") is None and arguments.get("slot") is None:
        raise ToolError("Give the voice's name or its slot number.")
    speaker = await db_call(_switch_voice, user=context.user, name=arguments.get("name"), slot=arguments.get("slot"))
    context.effects.append({"effect": "speaker", "speaker": {"id": speaker.pk, "name": speaker.name}})
    return {"voice": speaker.name, "slot": speaker.slot}


def switch_voice_tool(speakers: list[Speaker]) -> Tool:
    names = "; ".join(f"{s.slot}: {s.name}" for s in speakers)
    return Tool(
        name="switch_voice",
        description="Switch the voice replies are read in to another of the user's voices, by name or by "
        f"slot number. The user's voices (slot: name): {names}.",
        parameters={
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 64},
                "slot": {"type": "integer", "minimum": 1, "maximum": settings.SPEAKERS_PER_USER},
            },
            "additionalProperties": False,
        },
        run=switch_voice,
    )


# -- the conversation ---------------------------------------------------------------------------------
async def new_conversation(context: ToolContext, arguments: dict) -> dict:
    # Nothing is created yet: the next message starts the new conversation (no empty ones left behind).
    context.effects.append({"effect": "new_conversation"})
    return {"started": True, "note": "The user's next message starts a new conversation."}


NEW_CONVERSATION = Tool(
    name="new_conversation",
    description="Start a new conversation (a fresh topic, the earlier messages left behind), because the "
    "user asked to. Say a short goodbye to this one after calling it.",
    parameters={"type": "object", "properties": {}, "additionalProperties": False},
    run=new_conversation,
)


def _user_state(user) -> tuple[bool, list[Speaker]]:
    return memory_enabled(user_id=user.pk), list(speaker_list(user=user))


@provider
async def builtin_tools(user) -> list[Tool]:
    memory_on, speakers = await db_call(_user_state, user)
    tools = [CURRENT_TIME]
    if memory_on:
        tools.append(REMEMBER)
    tools.append(FORGET)
    if len(speakers) > 1:
        tools.append(switch_voice_tool(speakers))
    tools.append(NEW_CONVERSATION)
    return tools
