"""The voice WebSocket: translates frames to VoiceSession calls and events back to frames."""

import json

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from magicmirror import metrics
from magicmirror.errors import ApplicationError
from voice.selectors import interface_language_from_scope

from .protocol import CLOSE_NOT_AUTHENTICATED, CLOSE_TOO_MANY_SESSIONS, PROTOCOL_VERSION, parse_message
from .session import VoiceSession
from .sockets import SocketSlot, socket_slot_open


def _vad_factory(silence_ms: int):
    from voice.asr.vad import EndOfUtteranceDetector

    # The session's end-of-turn rule sets the silence that ends speech (VAD_SILENCE_MS, or the
    # longer TURN_MAX_SILENCE_MS when the end-of-turn model decides first).
    return EndOfUtteranceDetector.from_settings(silence_ms=silence_ms)


class VoiceConsumer(AsyncWebsocketConsumer):
    session: VoiceSession | None = None
    slot: SocketSlot | None = None  # this socket's place among its user's (live.sockets)
    # No channel-layer channel for the consumer itself: voice jobs answer on reply channels of their
    # own (voice.jobs), and an idle socket then does not depend on Redis (it survives a restart).
    channel_layer_alias = None

    async def connect(self):
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.emit({"type": "error", "code": "not_authenticated", "message": "Log in first."})
            await self.close(code=CLOSE_NOT_AUTHENTICATED)
            return
        self.slot = await socket_slot_open(user=user)
        if self.slot is None:
            limit = settings.VOICE_WS_MAX_SOCKETS_PER_USER
            message = f"You have {limit} voice sessions open already; close one first."
            await self.emit({"type": "error", "code": "too_many_sessions", "message": message})
            await self.close(code=CLOSE_TOO_MANY_SESSIONS)
            return
        self.session = VoiceSession(
            user=user,
            emit=self.emit,
            send_audio=self.send_audio,
            vad_factory=_vad_factory,
            interface_language=interface_language_from_scope(self.scope),  # the default "I speak"
        )
        metrics.session_opened()
        await self.emit({"type": "hello", "protocol": PROTOCOL_VERSION})

    async def disconnect(self, code):
        try:
            if self.session is not None:
                try:
                    await self.session.close()
                finally:
                    metrics.session_closed()
        finally:
            if self.slot is not None:
                await self.slot.close()

    async def emit(self, event: dict):
        await self.send(text_data=json.dumps(event, ensure_ascii=False))

    async def send_audio(self, frame: bytes):
        await self.send(bytes_data=frame)

    async def receive(self, text_data=None, bytes_data=None):
        session = self.session
        if session is None:
            return
        try:
            if bytes_data is not None:
                await session.audio(bytes_data)
            else:
                await session.dispatch(parse_message(text_data, max_bytes=session.limits.max_frame_bytes))
        except ApplicationError as exc:
            await self.emit({"type": "error", "code": exc.code, "message": exc.message})
