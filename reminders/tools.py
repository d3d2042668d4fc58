"""The reminder tools offered to the LLM: set_reminder, list_reminders, cancel_reminder.

Each acts as the turn's user only (ToolContext.user) through the same services as the API."""

import datetime as dt
import zoneinfo

from django.conf import settings
from django.utils import timezone

from magicmirror.dbasync import db_call
from tools.registry import Tool, ToolContext, provider

from .models import REMINDER_TEXT_MAX_CHARS, Reminder
from .selectors import reminder_list, user_time_zone
from .services import reminder_cancel, reminder_create, reminder_due_at


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def _describe(reminder: Reminder, zone: zoneinfo.ZoneInfo) -> dict:
    return {
        "id": reminder.pk,
        "text": reminder.text,
        "due_local": reminder.due_at.astimezone(zone).strftime("%Y-%m-%d %H:%M (%A)"),
        "state": reminder.state,
    }


def _time_zone(ctx: ToolContext) -> str:
    return ctx.time_zone or user_time_zone(user=ctx.user)


def _set(ctx: ToolContext, args: dict, now: dt.datetime) -> dict:
    time_zone = _time_zone(ctx)
    due_at = reminder_due_at(now=now, time_zone=time_zone, in_minutes=args.get("in_minutes"), at=args.get("at"))
    reminder = reminder_create(
        user=ctx.user,
        text=args.get("text"),
        due_at=due_at,
        conversation_id=ctx.conversation_id,
        language=ctx.language or "",
        now=now,
    )
    zone = _zone(time_zone)
    return {
        **_describe(reminder, zone),
        "now_local": now.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        "time_zone": time_zone,
    }


async def set_reminder(ctx: ToolContext, args: dict) -> dict:
    return await db_call(_set, ctx, args, timezone.now())


def _list(ctx: ToolContext) -> dict:
    zone = _zone(_time_zone(ctx))
    rows = reminder_list(user=ctx.user, states=[Reminder.State.PENDING])[:50]
    return {"reminders": [_describe(r, zone) for r in rows]}


async def list_reminders(ctx: ToolContext, args: dict) -> dict:
    return await db_call(_list, ctx)


def _cancel(ctx: ToolContext, reminder_id) -> dict:
    reminder = reminder_cancel(user=ctx.user, reminder_id=reminder_id)
    return {"cancelled": _describe(reminder, _zone(_time_zone(ctx)))}


async def cancel_reminder(ctx: ToolContext, args: dict) -> dict:
    return await db_call(_cancel, ctx, args["id"])


SET_REMINDER = Tool(
    name="set_reminder",
    description=(
        "Set a reminder or timer for the user; it is spoken to them at that time and saved in this "
        "conversation. Give either in_minutes (a timer: 'in ten minutes' is 10) or at, a local time "
        "in the user's time zone: 'HH:MM' (the next such time) or 'YYYY-MM-DD HH:MM'."
    ),
    parameters={
        "type": "object",
        "properties": {
            "text": {
                "type": "string",
                "minLength": 1,
                "maxLength": REMINDER_TEXT_MAX_CHARS,
                "description": "What to remind the user of, short, in their language (e.g. 关火).",
            },
            "in_minutes": {"type": "number", "exclusiveMinimum": 0, "description": "Minutes from now."},
            "at": {"type": "string", "description": "Local time: 'HH:MM' or 'YYYY-MM-DD HH:MM'."},
        },
        "required": ["text"],
        "additionalProperties": False,
    },
    run=set_reminder,
    source="reminders",
)
LIST_REMINDERS = Tool(
    name="list_reminders",
    description="The user's reminders that have not fired yet, soonest first, with their ids and local times.",
    parameters={"type": "object", "properties": {}, "additionalProperties": False},
    run=list_reminders,
    source="reminders",
)
CANCEL_REMINDER = Tool(
    name="cancel_reminder",
    description="Cancel one of the user's pending reminders by its id (from list_reminders).",
    parameters={
        "type": "object",
        "properties": {"id": {"type": "integer", "description": "The reminder's id."}},
        "required": ["id"],
        "additionalProperties": False,
    },
    run=cancel_reminder,
    source="reminders",
)


@provider
async def reminder_tools(user) -> list[Tool]:
    if not settings.REMINDERS_ENABLED:
        return []
    return [SET_REMINDER, LIST_REMINDERS, CANCEL_REMINDER]
