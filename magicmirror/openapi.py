"""The OpenAPI schema (drf-spectacular): what every operation can answer besides its success.

`AutoSchema` adds to each operation the errors that come from the shared plumbing rather than
from the view (authentication and CSRF, content negotiation, parsing and validation, unknown ids),
all in the one error shape of `magicmirror.api`; views declare their own errors with
`api_errors()`. Field extensions describe what drf-spectacular cannot see: text that a service
trims and checks itself, constant strings, and the JSON text of a server-sent event's `data:`.
"""

from django.conf import settings
from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiSerializerFieldExtension, OpenApiViewExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers

from .api import ErrorOutput, ServiceTextField

# DRF refuses NUL in every text field; trimmed text must also keep a character that is not
# whitespace. Whitespace as Python's str.strip() sees it, spelled out: a pattern's \s is ECMA's,
# which differs (U+001C-U+001F, U+0085, U+FEFF).
PYTHON_WHITESPACE = r"\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NO_NUL = r"^[^\u0000]*$"
NOT_BLANK = rf"^[^\u0000]*[^\u0000{PYTHON_WHITESPACE}][^\u0000]*$"

COMMON_ERRORS = {
    "403": "`not_authenticated`: no session and no token; `authentication_failed`: unknown token; "
    "`permission_denied`: CSRF check failed (a session request that changes something needs X-CSRFToken).",
    "406": "`not_acceptable`: the Accept header excludes application/json.",
}
BODY_ERRORS = {
    "400": "`invalid`: validation failed (see `fields`); `parse_error`: the body is not valid JSON or form data.",
    "415": "`unsupported_media_type`: the body is not JSON, form or multipart.",
}
PATH_ERRORS = {"404": "`not_found` or the object's own code: no such id among yours."}


FORM_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def api_errors(errors: dict[int, str]) -> dict:
    """`extend_schema(responses=...)` entries for a view's own errors: {status: description}."""
    return {
        (status, "application/json"): OpenApiResponse(ErrorOutput, description=description)
        for status, description in errors.items()
    }


class AutoSchema(openapi.AutoSchema):
    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        errors = dict(COMMON_ERRORS)
        if "requestBody" in operation:
            errors.update(BODY_ERRORS)
        if any(parameter["in"] == "path" for parameter in operation.get("parameters", [])):
            errors.update(PATH_ERRORS)
        responses = operation["responses"]
        for status, description in errors.items():
            if status in responses:  # the view's own description comes first
                responses[status]["description"] = f"{responses[status]['description']} {description}".strip()
            else:
                responses[status] = self._get_response_for_code(
                    OpenApiResponse(ErrorOutput, description=description), status, media_types=["application/json"]
                )
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def get_auth(self):
        # A view without permission classes (POST /api/auth/token) is open to anyone.
        if not self.view.get_permissions():
            return []
        return super().get_auth()

    def _get_format_parameters(self):
        return []  # DRF's ?format= override is no part of this API: Accept chooses

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if direction == "request" and isinstance(field, serializers.CharField) and "pattern" not in schema:
            # DRF trims text first (only whitespace is as blank as nothing) and refuses NUL characters.
            blank_refused = field.trim_whitespace and not field.allow_blank
            schema["pattern"] = NOT_BLANK if blank_refused else NO_NUL
        return schema


def _without_null(schema: dict) -> tuple[dict, bool]:
    """The schema without its null choice, and whether it had one."""
    schema = dict(schema)
    nullable = False
    if isinstance(schema.get("type"), list) and "null" in schema["type"]:
        nullable = True
        types = [t for t in schema["type"] if t != "null"]
        schema["type"] = types[0] if len(types) == 1 else types
    if {"type": "null"} in schema.get("oneOf", []):
        nullable = True
        choices = [choice for choice in schema.pop("oneOf") if choice != {"type": "null"}]
        schema.update(choices[0] if len(choices) == 1 else {"oneOf": choices})
    return schema, nullable


def _form_property(schema: dict, required: bool) -> dict:
    # DRF reads an empty form value as null (nullable fields) or as the field left out (optional ones).
    schema, nullable = _without_null(schema)
    if nullable or not required:
        return {"anyOf": [schema, {"type": "string", "const": ""}]}
    return schema


def form_bodies(result, generator, request, public):
    """Postprocessing hook: a form has no null and no JSON types, and DRF reads an empty value as
    null or as left out; form and multipart bodies get a component of their own that says so."""
    schemas = result.get("components", {}).get("schemas", {})
    for path in result.get("paths", {}).values():
        for operation in path.values():
            content = operation.get("requestBody", {}).get("content", {})
            for media_type in FORM_MEDIA_TYPES:
                ref = content.get(media_type, {}).get("schema", {}).get("$ref", "")
                name = ref.rsplit("/", 1)[-1]
                component = schemas.get(name)
                if not component or name.endswith("Form"):
                    continue
                required = set(component.get("required", []))
                properties = {
                    key: _form_property(value, key in required) for key, value in component["properties"].items()
                }
                if properties != component["properties"]:
                    description = "As a form: an empty value is null, or the field left out when it is optional."
                    schemas[f"{name}Form"] = {**component, "properties": properties, "description": description}
                    content[media_type]["schema"] = {"$ref": f"#/components/schemas/{name}Form"}
    result["components"]["schemas"] = dict(sorted(schemas.items()))
    return result


class ServiceTextFieldExtension(OpenApiSerializerFieldExtension):
    target_class = ServiceTextField

    def map_serializer_field(self, auto_schema, direction):
        return {
            "type": "string",
            "minLength": 1,
            "maxLength": getattr(settings, self.target.max_chars_setting),
            "pattern": NOT_BLANK,
            "description": f"Trimmed; not empty, at most {self.target.max_chars_setting} characters.",
        }


class ConstField(serializers.CharField):
    """A string that is always `value`: an event's name, a payload's `type`."""

    def __init__(self, value: str, **kwargs):
        self.value = value
        super().__init__(**kwargs)


class ConstFieldExtension(OpenApiSerializerFieldExtension):
    target_class = ConstField

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "const": self.target.value}


class JsonTextField(serializers.Field):
    """A string holding one JSON document shaped like `payload`: a server-sent event's `data:`."""

    def __init__(self, payload, **kwargs):
        self.payload = payload
        super().__init__(**kwargs)


class JsonTextFieldExtension(OpenApiSerializerFieldExtension):
    target_class = JsonTextField

    def map_serializer_field(self, auto_schema, direction):
        component = auto_schema.resolve_serializer(self.payload_instance(), direction)
        # JSON Schema's keywords for "a string that is a JSON document of this schema" (OpenAPI 3.1).
        return {"type": "string", "contentMediaType": "application/json", "contentSchema": component.ref}

    def payload_instance(self):
        payload = self.target.payload
        return payload() if isinstance(payload, type) else payload


def sse_event(name: str, payload) -> serializers.Serializer:
    """One server-sent event as OpenAPI 3.1 tools read a `text/event-stream` schema: `event: <name>`
    and a `data:` line of JSON shaped like `payload`."""
    component = "".join(part.capitalize() for part in name.split("_")) + "Event"
    return inline_serializer(component, {"event": ConstField(name), "data": JsonTextField(payload)})


class AuthTokenOutput(serializers.Serializer):
    token = serializers.CharField(help_text="Send it as `Authorization: Token <key>`.")


class ObtainAuthTokenExtension(OpenApiViewExtension):
    """POST /api/auth/token (rest_framework.authtoken), with its answers."""

    target_class = "rest_framework.authtoken.views.ObtainAuthToken"
    match_subclasses = True
    priority = 1  # over drf-spectacular's own (which only fixes DRF < 3.12)

    def view_replacement(self):
        class ObtainAuthToken(self.target):
            @extend_schema(
                operation_id="auth_token",
                summary="Exchange a username and password for a token",
                responses={
                    200: AuthTokenOutput,
                    **api_errors(
                        {
                            400: "`invalid`: wrong username or password (in `fields.non_field_errors`), "
                            "or a field missing.",
                            429: "`rate_limited`: over RATELIMIT_LOGIN from this client IP.",
                        }
                    ),
                },
            )
            def post(self, request, *args, **kwargs):
                return super().post(request, *args, **kwargs)

        return ObtainAuthToken
