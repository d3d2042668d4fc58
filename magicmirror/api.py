"""API plumbing shared by the apps: one error shape, one exception handler.

Every API error is JSON: {"error": {"code": "...", "message": "...", "fields": {...}?}}.
"""

import re

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils.http import parse_header_parameters
from django_ratelimit.exceptions import Ratelimited
from rest_framework import exceptions, parsers, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import ApplicationError


class _MultipartShape:
    """The request body as Django's multipart parser reads it, checked on the way: it has part
    delimiters, and each part's headers name a form field (Django skips a part that names none,
    so a body that is no form at all would pass for an empty one)."""

    MAX_HEADERS = 16 * 1024
    NAMED = re.compile(rb"(?im)^content-disposition:[^\r\n]*;\s*name=")

    def __init__(self, stream, boundary: bytes):
        self.stream, self.delimiter = stream, b"--" + boundary
        self.delimiters = 0
        self.problem = ""
        self._buffer, self._in_headers, self._closed = b"", False, False

    def read(self, size=-1):
        data = self.stream.read(size)
        if data and not (self._closed or self.problem):
            self._scan(self._buffer + data)
        return data

    def _scan(self, buffer: bytes) -> None:
        while not self.problem:
            if self._in_headers:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > self.MAX_HEADERS:
                        self.problem = "a part's headers do not end"
                    break
                if not self.NAMED.search(buffer[:end]):
                    self.problem = "a part names no form field"
                buffer, self._in_headers = buffer[end + 4 :], False
                continue
            start = buffer.find(self.delimiter)
            after = start + len(self.delimiter)
            if start < 0 or len(buffer) < after + 2:  # keep what may be the start of a delimiter
                buffer = buffer[start:] if start >= 0 else buffer[-(len(self.delimiter) + 1) :]
                break
            self.delimiters += 1
            if buffer[after : after + 2] == b"--":  # the closing delimiter: the rest is an epilogue
                self._closed = True
                break
            buffer, self._in_headers = buffer[after:], True
        self._buffer = buffer

    def check(self) -> None:
        if not self.problem and self._in_headers:
            self.problem = "a part's headers do not end"
        if not self.problem and not self.delimiters:
            self.problem = "the body has no part delimiter"
        if self.problem:
            raise exceptions.ParseError(f"Multipart form parse error - {self.problem}.")


class MultiPartParser(parsers.MultiPartParser):
    """DRF's multipart parser, refusing a body that is not a form: no part delimiter at all, or a
    part that names no field. Django's parser reads either as an empty form, valid as any."""

    def parse(self, stream, media_type=None, parser_context=None):
        boundary = parse_header_parameters(media_type or "")[1].get("boundary", "")
        shape = _MultipartShape(stream, boundary.encode("latin-1", "replace"))
        result = super().parse(shape, media_type, parser_context)  # no boundary: its own ParseError
        shape.check()
        return result


class TextField(serializers.CharField):
    """A CharField that refuses numbers, lists and objects instead of coercing them to text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ServiceTextField(TextField):
    """Text a service trims and checks itself, with its own error codes (empty, too long): the
    field only refuses what is not text. `max_chars_setting` names the limit, for the schema."""

    def __init__(self, *, max_chars_setting: str, **kwargs):
        self.max_chars_setting = max_chars_setting
        super().__init__(allow_blank=True, trim_whitespace=False, **kwargs)


class ErrorDetailOutput(serializers.Serializer):
    code = serializers.CharField(help_text="Stable and machine-readable: see docs/api.md#error-codes.")
    message = serializers.CharField(help_text="One sentence a person can read.")
    fields = serializers.DictField(
        required=False, help_text="Validation errors only (code `invalid`): each field with its messages."
    )


class ErrorOutput(serializers.Serializer):
    """The one shape of every API error."""

    error = ErrorDetailOutput()


def error_body(code, message, fields=None):
    body = {"error": {"code": code, "message": message}}
    if fields:
        body["error"]["fields"] = fields
    return body


def _first_message(detail):
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        msg = _first_message(value)
        return msg if key == "non_field_errors" else f"{key}: {msg}"
    return str(detail)


def exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, exc.extra or None), status=exc.status_code)
    if isinstance(exc, Ratelimited):
        return Response(
            error_body("rate_limited", "Too many requests; please slow down and try again shortly."),
            status=status.HTTP_429_TOO_MANY_REQUESTS,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body("invalid", _first_message(exc.detail), exc.detail)
    else:
        code = getattr(exc, "default_code", "error")
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        response.data = error_body(code, _first_message(detail))
    return response
