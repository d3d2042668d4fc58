"""Text to speech over HTTP: POST /api/tts/stream (audio streamed as it is synthesised) and
POST /api/tts (one whole WAV file).

Each endpoint is a DRF view (authentication, rate limit, input checks, the one JSON error shape)
wrapped in a thin async view. The DRF part runs in Django's sync thread and never waits for
synthesis; the wrapper then starts the job through `voice.jobs` and waits for its first message
in the event loop, so no thread is held while a worker synthesises. The web process never loads a
model itself (unless jobs run in-process, the embedded default).

Errors known before any audio is sent are JSON with a 4xx/5xx status: bad input (400), another
user's speaker (404), no voice service (503), a failed synthesis (502). Once audio is flowing the
status is sent: a failure then ends the stream early.
"""

import functools
import logging
import struct
from urllib.parse import quote

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path
from django.utils.decorators import method_decorator
from django_ratelimit.decorators import ratelimit
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from magicmirror.api import ServiceTextField, error_body
from magicmirror.errors import ApplicationError
from magicmirror.openapi import api_errors
from speakers.models import Speaker
from speakers.selectors import current_speaker_get, speaker_get

from . import jobs
from .jobs.runners import tts_text_clean
from .tts import TTSError

logger = logging.getLogger(__name__)

UNKNOWN_SIZE = 0xFFFFFFFF  # a streamed WAV's RIFF and data sizes: not known when the header is sent

# Errors of a job that has produced no audio yet, as HTTP statuses.
ERROR_STATUS = {
    "tts_empty_text": 400,
    "tts_text_too_long": 400,
    "speaker_not_found": 404,
    "no_speaker": 400,  # the engine needs a voice to clone and none is set
    "speaker_audio_missing": 422,
    "speaker_audio_invalid": 422,
    "tts_engine_unknown": 503,
    "tts_engine_missing": 503,
    "tts_engine_failed": 503,
    "tts_model_missing": 503,
    "tts_load_failed": 503,
    "voice_unavailable": 503,
    "voice_worker_timeout": 503,
}


def tts_rate(group, request):
    return settings.RATELIMIT_TTS


def wav_header(sample_rate: int, data_bytes: int | None = None, channels: int = 1) -> bytes:
    """A 44-byte PCM16 WAV header; `data_bytes=None` writes 0xFFFFFFFF sizes for a stream."""
    block_align = channels * 2
    riff_size = UNKNOWN_SIZE if data_bytes is None else 36 + data_bytes
    data_size = UNKNOWN_SIZE if data_bytes is None else data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block_align, block_align, 16)
        + b"data"
        + struct.pack("<I", data_size)
    )


class TTSInput(serializers.Serializer):
    text = ServiceTextField(max_chars_setting="TTS_MAX_CHARS", help_text="What to say.")
    speaker_id = serializers.IntegerField(
        required=False, allow_null=True, help_text="One of your speakers; default: your current speaker."
    )


class TTSStreamInput(TTSInput):
    format = serializers.ChoiceField(choices=["wav", "pcm"], default="wav", required=False)


class PendingSynthesis(HttpResponse):
    """What the DRF view hands to the async wrapper: a checked request, no audio yet."""

    def __init__(self, *, text, speaker_id, audio_format, stream):
        super().__init__(status=202)
        self.text, self.speaker_id, self.audio_format, self.stream = text, speaker_id, audio_format, stream


def _checked(request, serializer_class) -> dict:
    """Validate the body and the speaker before any job starts (errors become JSON 4xx)."""
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    data = serializer.validated_data
    try:
        text = tts_text_clean(data["text"])
    except TTSError as exc:
        raise ApplicationError(str(exc), code=exc.code) from None
    speaker_id = data.get("speaker_id")
    speaker: Speaker | None
    if speaker_id is not None:
        speaker = speaker_get(user=request.user, speaker_id=speaker_id)  # another user's: 404
    else:
        speaker = current_speaker_get(user=request.user)
    return {"text": text, "speaker_id": speaker.pk if speaker else None, "audio_format": data.get("format", "wav")}


def _error_response(message: dict) -> JsonResponse:
    code = message.get("code") or "tts_failed"
    text = message.get("message") or "Speech synthesis failed."
    return JsonResponse(error_body(code, text), status=ERROR_STATUS.get(code, 502))


def _audio_headers(response, first: dict, audio_format: str) -> None:
    rate = first["sample_rate"]
    response["Cache-Control"] = "no-cache"
    response["X-Sample-Rate"] = str(rate)
    response["X-Channels"] = "1"
    response["X-Audio-Format"] = "s16le"
    if first.get("engine"):
        response["X-TTS-Engine"] = first["engine"]
    if first.get("voice"):
        response["X-TTS-Voice"] = quote(first["voice"], safe=" -_.()")  # percent-encoded UTF-8
    if "clones" in first:
        response["X-TTS-Clones"] = "true" if first["clones"] else "false"
    if first.get("language"):
        response["X-TTS-Language"] = first["language"]


def _whole_headers(response, last: dict) -> None:
    """A whole file knows every engine that spoke: one entry per run, "language=engine/voice"."""
    spoken = last.get("spoken") or []
    if spoken:
        response["X-TTS-Voices"] = quote(
            ", ".join(f"{p['language']}={p['engine']}/{p['voice']}" for p in spoken), safe=" -_.()=/,"
        )
    response["X-TTS-Unspoken"] = str(len(last.get("unspoken") or []))


async def _next_message(messages) -> dict:
    async for message in messages:
        return message
    return {"type": "voice.tts.error", "code": "tts_failed", "message": "The synthesis ended without audio."}


async def _audio_body(first: dict, messages, audio_format: str):
    """Bytes of the response: the header (WAV only), the first chunk, then each chunk as it arrives."""
    try:
        if audio_format == "wav":
            yield wav_header(first["sample_rate"])
        if first["pcm"]:
            yield first["pcm"]
        async for message in messages:
            if message["type"] == "voice.tts.chunk":
                yield message["pcm"]
            elif message["type"] == "voice.tts.error":
                logger.warning("TTS stream ended early: %s %s", message.get("code"), message.get("message"))
    finally:
        # The client went away or the job ended: closing the job's messages stops a running job.
        await messages.aclose()


async def _collect(first: dict, messages) -> tuple[bytes, dict]:
    """All the audio of a job (whole-file answers). Returns (pcm, the terminal message)."""
    parts, last = [first["pcm"]], first
    try:
        async for message in messages:
            last = message
            if message["type"] == "voice.tts.chunk":
                parts.append(message["pcm"])
    finally:
        await messages.aclose()
    return b"".join(parts), last


async def _synthesis_response(pending: PendingSynthesis, request) -> HttpResponse:
    messages = jobs.synthesize(text=pending.text, speaker_id=pending.speaker_id)
    first = await _next_message(messages)
    if first["type"] == "voice.tts.done":
        # Done without a sample: nothing in the text could be spoken (an emoji, a control character).
        # That is silence, not a failed synthesis: a WAV (or PCM) of no samples.
        first = {**first, "pcm": b""}
    elif first["type"] != "voice.tts.chunk":
        await messages.aclose()
        return _error_response(first)
    fmt = pending.audio_format
    content_type = "audio/wav" if fmt == "wav" else "application/octet-stream"
    if pending.stream and isinstance(request, ASGIRequest):
        response = StreamingHttpResponse(_audio_body(first, messages, fmt), content_type=content_type)
        response["X-Accel-Buffering"] = "no"  # nginx: pass each chunk on as it comes
    else:
        # Whole file, or a WSGI server (nothing streams there): wait for all of it.
        pcm, last = await _collect(first, messages)
        if last["type"] == "voice.tts.error":
            return _error_response(last)
        body = (wav_header(first["sample_rate"], len(pcm)) if fmt == "wav" else b"") + pcm
        response = HttpResponse(body, content_type=content_type)
        response["Content-Length"] = str(len(body))
        if last.get("duration") is not None:
            response["X-Duration"] = f"{last['duration']:.3f}"
        _whole_headers(response, last)
    _audio_headers(response, first, fmt)
    return response


def _header(name: str, type_, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, type_, OpenApiParameter.HEADER, description=description, response=[200])


AUDIO_HEADERS = [
    _header("X-Sample-Rate", int, "The engine's sample rate (CosyVoice2: 24000)."),
    _header("X-Channels", int, "Always 1."),
    _header("X-Audio-Format", str, "s16le: signed 16-bit little-endian PCM."),
    _header("X-TTS-Engine", str, "cosyvoice2, piper or espeak-ng."),
    _header("X-TTS-Voice", str, "The voice, percent-encoded UTF-8."),
    _header("X-TTS-Clones", str, "true when the speaker's own voice is used."),
    _header("X-TTS-Language", str, "The language of the first sentence spoken (zh, en, ...)."),
]
TTS_ERRORS = api_errors(
    {
        400: "`tts_empty_text`: nothing but whitespace; `tts_text_too_long`: over TTS_MAX_CHARS; `no_speaker`: the "
        "engine needs a voice to clone and none is set.",
        404: "`speaker_not_found`: not one of your speakers.",
        422: "`speaker_audio_missing`, `speaker_audio_invalid`: the speaker's reference recording is unusable.",
        429: "`rate_limited`: over RATELIMIT_TTS (both routes share one counter).",
        502: "`tts_failed` and other synthesis errors.",
        503: "`tts_engine_*`, `tts_model_missing`, `tts_load_failed`: no engine loads; `voice_unavailable`, "
        "`voice_worker_timeout`: no synthesis worker.",
    }
)


def synthesis_view(sync_view):
    """`sync_view` (authentication, limits, checks) in the sync thread; when it answers with a
    PendingSynthesis, the synthesis in the event loop. The speaker admin's try-a-voice uses it too."""

    @functools.wraps(sync_view)
    async def view(request, *args, **kwargs):
        response = await sync_to_async(sync_view)(request, *args, **kwargs)
        if isinstance(response, PendingSynthesis):
            response = await _synthesis_response(response, request)
        return response

    return view


def async_synthesis_view(view_class):
    """The DRF view in the sync thread, then the synthesis in the event loop."""
    return synthesis_view(view_class.as_view())


@method_decorator(ratelimit(key="user", group="voice.tts", rate=tts_rate, method="POST", block=True), name="post")
class TTSStreamApi(APIView):
    @extend_schema(
        request=TTSStreamInput,
        parameters=AUDIO_HEADERS,
        responses={
            (200, "audio/wav"): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="format=wav: a WAV stream (header sizes 0xFFFFFFFF), or with "
                "format=pcm (application/octet-stream) the raw PCM16 samples; rate and format in the headers.",
            ),
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY),
            **TTS_ERRORS,
        },
        summary="Speak a text; the audio streams back as it is synthesised",
    )
    def post(self, request):
        return PendingSynthesis(**_checked(request, TTSStreamInput), stream=True)


@method_decorator(ratelimit(key="user", group="voice.tts", rate=tts_rate, method="POST", block=True), name="post")
class TTSApi(APIView):
    @extend_schema(
        request=TTSInput,
        parameters=[
            *AUDIO_HEADERS,
            _header("X-Duration", str, "Seconds, three decimals."),
            _header("X-TTS-Voices", str, "Each run of sentences: language=engine/voice, comma-separated."),
            _header("X-TTS-Unspoken", int, "Sentences no engine speaks (shown, not spoken)."),
        ],
        responses={
            (200, "audio/wav"): OpenApiResponse(OpenApiTypes.BINARY, description="One WAV file (Content-Length set)."),
            **TTS_ERRORS,
        },
        summary="Speak a text; one whole WAV file",
    )
    def post(self, request):
        checked = _checked(request, TTSInput)
        checked["audio_format"] = "wav"
        return PendingSynthesis(**checked, stream=False)


tts_api_urlpatterns = [
    path("tts", async_synthesis_view(TTSApi), name="api-tts"),
    path("tts/stream", async_synthesis_view(TTSStreamApi), name="api-tts-stream"),
]
