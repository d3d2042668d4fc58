"""Request parsers named in REST_FRAMEWORK's settings.

Kept apart from `magicmirror.api`: DRF resolves DEFAULT_PARSER_CLASSES while it defines APIView, so a
parser module must not import rest_framework.views itself (that import cycle failed the system checks
whenever the CSRF failure view happened to be the first thing to load DRF's views).
"""

import re

from django.utils.http import parse_header_parameters
from rest_framework import exceptions, parsers


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
