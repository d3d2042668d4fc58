"""Voice JSON API: recognise a recorded utterance (POST /api/recognize).

The audio goes through the same streaming recognition job as live microphone audio
(voice.jobs.recognize): in a thread of this process in the embedded default, on a Celery worker
of the `asr` queue when Redis is configured.
"""

import base64
import binascii
import logging
import math

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.utils.decorators import method_decorator
from django_ratelimit.decorators import ratelimit
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from magicmirror.api import TextField
from magicmirror.errors import ApplicationError
from magicmirror.openapi import api_errors
from magicmirror.parsers import MultiPartParser

from . import jobs
from .asr.base import MAX_PHRASE_CHARS, MAX_PHRASES, SAMPLE_RATE, phrases_problem
from .audio import AudioError, decode_audio

logger = logging.getLogger(__name__)

# Room in a request body for what is not audio: JSON, multipart headers, a data: URL prefix, phrases.
BODY_OVERHEAD_BYTES = 64 * 1024
# Job errors that mean "try again later" rather than "recognition failed".
UNAVAILABLE_CODES = {"voice_worker_timeout", "voice_unavailable", "asr_model_missing", "asr_audio_timeout"}


def recognize_rate(group, request):
    return settings.RATELIMIT_CHAT


def _format_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.3g} MB"
    return f"{size / 1024:.3g} KB" if size >= 1024 else f"{size} bytes"


def audio_too_large_error() -> ApplicationError:
    limit = settings.ASR_MAX_UPLOAD_BYTES
    return ApplicationError(
        f"The audio is too large (limit {_format_size(limit)}).", code="audio_too_large", status_code=413
    )


def _base64_limit(size: int) -> int:
    return 4 * math.ceil(size / 3)


def audio_from_base64(value: str) -> bytes:
    """The bytes of base64 text, standard or URL-safe, padded or not, optionally a data: URL."""
    text = value.strip()
    if text.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise ApplicationError(
                "The data: URL must be base64-encoded (data:<type>;base64,...).", code="invalid_base64"
            )
    text = "".join(text.split())  # line breaks of MIME-style base64
    if len(text) > _base64_limit(settings.ASR_MAX_UPLOAD_BYTES):
        raise audio_too_large_error()
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApplicationError("The audio is not valid base64.", code="invalid_base64") from exc


def audio_from_upload(upload: UploadedFile) -> bytes:
    if upload.size > settings.ASR_MAX_UPLOAD_BYTES:
        raise audio_too_large_error()  # before reading it into memory
    return upload.read()


def phrases_clean(values, *, split_commas: bool) -> list[str] | None:
    """Phrases as a list of non-blank strings (None for none); comma-separated ones are split."""
    if values is None:
        return None
    if isinstance(values, str):
        values, split_commas = [values], True
    if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
        raise ApplicationError("phrases must be a list of strings.", code="invalid_phrases")
    phrases = []
    for value in values:
        parts = value.split(",") if split_commas else [value]
        phrases += [p.strip() for p in parts if p.strip()]
    problem = phrases_problem(phrases)  # the caps of every entry point (voice.asr.base)
    if problem:
        raise ApplicationError(f"phrases {problem}", code="invalid_phrases")
    return phrases or None


def recognize_request_parse(request) -> tuple[bytes, list[str] | None]:
    """The audio bytes and phrases of a recognition request (base64 JSON or multipart)."""
    data = request.data
    if not hasattr(data, "get"):
        raise ApplicationError("The request body must be a JSON object.", code="invalid")
    audio = data.get("audio")
    if audio is None:
        audio = request.FILES.get("audio")
    if audio is None:
        required = "This field is required."
        raise ApplicationError(f"audio: {required}", code="invalid", extra={"audio": [required]})
    if hasattr(data, "getlist"):  # multipart or form: phrases repeated and/or comma-separated
        phrases = phrases_clean(data.getlist("phrases") or None, split_commas=True)
    else:
        phrases = phrases_clean(data.get("phrases"), split_commas=False)
    if isinstance(audio, UploadedFile):
        return audio_from_upload(audio), phrases
    if isinstance(audio, str):
        return audio_from_base64(audio), phrases
    raise ApplicationError("audio must be base64 text or a file.", code="invalid")


def recognize_audio(*, data: bytes, phrases: list[str] | None) -> dict:
    """Decode an uploaded recording and recognise it; {"text", "duration"} or an ApplicationError."""
    if len(data) > settings.ASR_MAX_UPLOAD_BYTES:
        raise audio_too_large_error()
    try:
        decoded = decode_audio(data, sample_rate=SAMPLE_RATE, max_seconds=settings.ASR_MAX_SECONDS)
    except AudioError as exc:
        raise ApplicationError(str(exc), code=exc.code) from exc
    try:
        message = async_to_sync(jobs.recognize)(pcm=decoded.pcm, phrases=phrases)
    except Exception as exc:  # the broker or the channel layer is down
        logger.exception("Could not run a recognition job")
        raise ApplicationError(
            "Speech recognition is unavailable right now; please try again.", code="voice_unavailable", status_code=503
        ) from exc
    if message["type"] != "voice.asr.final":
        code = message.get("code", "asr_failed")
        raise ApplicationError(
            message.get("message") or "Speech recognition failed.",
            code=code,
            status_code=503 if code in UNAVAILABLE_CODES else 502,
        )
    return {"text": message["text"], "duration": round(decoded.duration, 3)}


class RecognizeJsonInput(serializers.Serializer):
    audio = TextField(help_text="The recording, base64-encoded (a data: URL is accepted): wav, webm, ogg, mp3, m4a.")
    phrases = serializers.ListField(
        child=TextField(max_length=MAX_PHRASE_CHARS),
        required=False,
        max_length=MAX_PHRASES,
        help_text="Recognise only these words or phrases (each must be in the model's vocabulary).",
    )


@extend_schema_field(OpenApiTypes.BINARY)
class AudioFileField(serializers.FileField):
    """A file upload, documented as binary (not as a URI)."""


class RecognizeMultipartInput(serializers.Serializer):
    audio = AudioFileField(help_text="The recording: wav, webm, ogg, mp3 or m4a.")
    phrases = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Repeat the field, or separate phrases with commas."
    )


class RecognizeOutput(serializers.Serializer):
    text = serializers.CharField(help_text="The transcript; empty when nothing was recognised.")
    duration = serializers.FloatField(help_text="Seconds of audio recognised.")


class RecognizeApi(APIView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(
        operation_id="recognize",
        request={"application/json": RecognizeJsonInput, "multipart/form-data": RecognizeMultipartInput},
        responses={
            200: RecognizeOutput,
            **api_errors(
                {
                    400: "`invalid_base64`, `invalid_phrases`, `empty_audio`, `undecodable_audio`, `audio_too_long` "
                    "(over ASR_MAX_SECONDS).",
                    413: "`audio_too_large`: over ASR_MAX_UPLOAD_BYTES.",
                    429: "`rate_limited`: over RATELIMIT_CHAT (this route's own counter).",
                    502: "`asr_failed` and other recognition errors.",
                    503: "`voice_worker_timeout`, `voice_unavailable`, `asr_model_missing`, `asr_audio_timeout`.",
                }
            ),
        },
        summary="Transcribe a recorded utterance",
    )
    @method_decorator(ratelimit(key="user", rate=recognize_rate, method="POST", block=True))
    def post(self, request):
        # Refuse an oversized body before parsing it (a JSON body is not limited by Django).
        length = request.META.get("CONTENT_LENGTH") or ""
        if length.isdigit() and int(length) > _base64_limit(settings.ASR_MAX_UPLOAD_BYTES) + BODY_OVERHEAD_BYTES:
            raise audio_too_large_error()
        data, phrases = recognize_request_parse(request)
        return Response(recognize_audio(data=data, phrases=phrases))
