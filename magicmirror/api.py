"""API plumbing shared by the apps: one error shape, one exception handler.

Every API error is JSON: {"error": {"code": "...", "message": "...", "fields": {...}?}}.
"""

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django_ratelimit.exceptions import Ratelimited
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import ApplicationError


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
