"""The voice WebSocket: translates frames to VoiceSession calls and events back to frames."""

import json
import logging

from channels.generic.websocket import AsyncWebsocketConsumer

from magicmirror import metrics
from magicmirror.errors import ApplicationError

from .services.voice_session import PROTOCOL_VERSION, SessionError, VoiceSession

logger = logging.getLogger(__name__)

CLOSE_NOT_AUTHENTICATED = 4401


def _vad_factory():
    from voice.asr.vad import EndOfUtteranceDetector

    return EndOfUtteranceDetector.from_settings()


class VoiceConsumer(AsyncWebsocketConsumer):
    session: VoiceSession | None = None
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
        self.session = VoiceSession(user=user, emit=self.emit, send_audio=self.send_audio, vad_factory=_vad_factory)
        metrics.session_opened()
        await self.emit({"type": "hello", "protocol": PROTOCOL_VERSION})

    async def disconnect(self, code):
        if self.session is not None:
            try:
                await self.session.close()
            finally:
                metrics.session_closed()

    async def emit(self, event: dict):
        await self.send(text_data=json.dumps(event, ensure_ascii=False))

    async def send_audio(self, frame: bytes):
        await self.send(bytes_data=frame)

    async def error(self, code, message, **extra):
        await self.emit({"type": "error", "code": code, "message": message, **extra})

    async def receive(self, text_data=None, bytes_data=None):
        session = self.session
        if session is None:
            return
        try:
            if bytes_data is not None:
                if len(bytes_data) > session.limits.max_frame_bytes:
                    raise SessionError(
                        f"Audio frames are limited to {session.limits.max_frame_bytes} bytes.", code="frame_too_large"
                    )
                if not session.started:
                    raise SessionError("Send a start message before audio.", code="not_started")
                await session.audio(bytes_data)
                return
            if len(text_data) > session.limits.max_frame_bytes:
                raise SessionError(
                    f"Messages are limited to {session.limits.max_frame_bytes} bytes.", code="frame_too_large"
                )
            try:
                message = json.loads(text_data)
            except ValueError:
                raise SessionError("That message is not valid JSON.", code="bad_json") from None
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                raise SessionError('Messages are JSON objects with a "type".', code="bad_message")
            await self.dispatch_message(session, message)
        except ApplicationError as exc:
            await self.error(exc.code, exc.message)

    async def dispatch_message(self, session: VoiceSession, message: dict):
        kind = message["type"]
        if kind == "ping":
            await self.emit({"type": "pong", "id": message.get("id")})
            return
        if kind == "start":
            await self.emit(await session.start(message))
            return
        if not session.started:
            raise SessionError("Send a start message first.", code="not_started")
        if kind == "configure":
            await session.configure(message)
            await self.emit(await session.ready_event())
        elif kind == "audio_end":
            await session.audio_end()
        elif kind == "text":
            await session.text(message.get("text"))
        elif kind == "interrupt":
            if await session.interrupt() is None:
                await self.emit({"type": "interrupted", "turn_id": None, "message_id": None})
        else:
            raise SessionError(f"Unknown message type {kind!r}.", code="unknown_type")
