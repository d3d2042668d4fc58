"""The voice WebSocket protocol (docs/protocol.md): version, frames, limits, errors, and the
validation of the client's `start` and `configure` messages."""

import json
import struct
from dataclasses import dataclass, field

from django.conf import settings
from rest_framework import serializers

from magicmirror.errors import ApplicationError
from voice.asr.base import phrases_problem

PROTOCOL_VERSION = 1
# Binary audio frames to the client: turn id, sentence id, chunk sequence (uint32 LE each), PCM16.
AUDIO_HEADER = struct.Struct("<III")
FRAME_HEADER_DESCRIPTION = "turn_id:uint32le, sentence_id:uint32le, seq:uint32le"
MODES = ("ptt", "handsfree")
CLOSE_NOT_AUTHENTICATED = 4401
CLOSE_TOO_MANY_SESSIONS = 4429  # the user has VOICE_WS_MAX_SOCKETS_PER_USER sockets open already


class SessionError(ApplicationError):
    """Bad input from the client: answered with an `error` event, the session goes on."""


@dataclass
class Limits:
    max_frame_bytes: int = field(default_factory=lambda: settings.VOICE_WS_MAX_FRAME_BYTES)
    max_utterance_s: float = field(default_factory=lambda: settings.VOICE_MAX_UTTERANCE_SECONDS)
    # Audio may arrive faster than real time only by this factor (bursts after a network stall).
    max_audio_rate: float = field(default_factory=lambda: settings.VOICE_MAX_AUDIO_RATE)
    max_message_chars: int = field(default_factory=lambda: settings.CHAT_MESSAGE_MAX_CHARS)
    audio_lead_s: float = field(default_factory=lambda: settings.VOICE_AUDIO_LEAD_SECONDS)

    def as_dict(self) -> dict:
        return {
            "max_frame_bytes": self.max_frame_bytes,
            "max_utterance_seconds": self.max_utterance_s,
            "max_audio_rate": self.max_audio_rate,
            "max_message_chars": self.max_message_chars,
            "concurrent_turns": 1,
        }


def audio_frame(turn_id: int, sentence_id: int, seq: int, pcm: bytes) -> bytes:
    return AUDIO_HEADER.pack(turn_id, sentence_id, seq) + pcm


# -- client messages --------------------------------------------------------------------------------
def parse_message(text: str, *, max_bytes: int) -> dict:
    """A client's text frame as a message dict with a string `type`; SessionError otherwise.

    The size is checked, in UTF-8 bytes, before anything is parsed.
    """
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise SessionError(f"Messages are limited to {max_bytes} bytes.", code="frame_too_large")
    try:
        message = json.loads(text)
    except ValueError:
        raise SessionError("That message is not valid JSON.", code="bad_json") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise SessionError('Messages are JSON objects with a "type".', code="bad_message")
    return message


class _Id(serializers.Field):
    """A conversation or speaker id as the client sent it: the selectors decide (not found is 404-like)."""

    def to_internal_value(self, data):
        return data

    def to_representation(self, value):
        return value


class _StrictBoolean(serializers.Field):
    default_error_messages = {"invalid": "must be true or false.", "null": "must be true or false."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return value


class _StrictInteger(serializers.IntegerField):
    """A JSON integer (not a string of digits, not a boolean)."""

    def to_internal_value(self, data):
        if not isinstance(data, int) or isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class _Word(serializers.CharField):
    def __init__(self, **kwargs):
        super().__init__(allow_blank=True, trim_whitespace=False, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ConfigureSerializer(serializers.Serializer):
    """Fields of `configure` (and `start`); each is optional and only those sent change."""

    conversation_id = _Id(required=False, allow_null=True)
    speaker_id = _Id(required=False, allow_null=True)
    mode = serializers.ChoiceField(
        choices=MODES,
        required=False,
        error_messages={
            "invalid_choice": f"must be one of {', '.join(MODES)}.",
            "null": f"must be one of {', '.join(MODES)}.",
        },
    )
    voice_output = _StrictBoolean(required=False)
    phrases = serializers.ListField(
        child=_Word(),
        required=False,
        allow_null=True,
        error_messages={"not_a_list": "must be a list of words."},
    )
    sample_rate = _StrictInteger(
        required=False,
        min_value=8000,
        max_value=48000,
        error_messages={
            "invalid": "must be an integer between 8000 and 48000.",
            "null": "must be an integer between 8000 and 48000.",
            "min_value": "must be an integer between 8000 and 48000.",
            "max_value": "must be an integer between 8000 and 48000.",
        },
    )

    def validate_phrases(self, value):
        # The caps of POST /api/recognize (voice.asr.base), on the phrases the recogniser would use.
        problem = phrases_problem(value) if value else None
        if problem:
            raise serializers.ValidationError(problem)
        return value

    def to_internal_value(self, data):
        values = super().to_internal_value(data)
        if "phrases" in values:
            values["phrases"] = values["phrases"] or None  # no phrases: the recogniser's full vocabulary
        return values


def parse_config(message: dict, *, start: bool) -> dict:
    """The validated settings of a `start` (start=True) or `configure` message: only the keys sent.

    SessionError `unsupported_protocol` for another protocol version, `invalid_config` for a bad
    field; nothing of an invalid message is applied.
    """
    version = message.get("protocol", PROTOCOL_VERSION)
    if start and (type(version) is not int or version != PROTOCOL_VERSION):  # not True, not 1.0
        raise SessionError(
            f"Unsupported protocol version {message.get('protocol')!r}; this server speaks {PROTOCOL_VERSION}.",
            code="unsupported_protocol",
        )
    serializer = ConfigureSerializer(data=message)
    if not serializer.is_valid():
        name, errors = next(iter(serializer.errors.items()))
        # A list field reports {index: [error]} for a bad item: say what the list must hold.
        detail = errors[0] if isinstance(errors, list) else "must be a list of words."
        raise SessionError(f"{name} {detail}", code="invalid_config")
    return dict(serializer.validated_data)
