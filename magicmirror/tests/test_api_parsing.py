"""Request bodies (magicmirror.parsers.MultiPartParser): a multipart body must be multipart."""

import pytest

from chat.models import Conversation

pytestmark = pytest.mark.django_db

BOUNDARY = "d1b2" * 8
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def post(api, body: bytes):
    return api.post("/api/conversations", body, content_type=MULTIPART)


def test_a_body_with_no_part_delimiter_is_a_parse_error(api, user):
    # Django reads such a body as an empty form: the conversation would be created from nothing.
    response = post(api, b"-157")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert not Conversation.objects.exists()


def test_multipart_forms_still_parse(api, user):
    empty = post(api, f"--{BOUNDARY}--\r\n".encode())  # a form with no fields
    assert empty.status_code == 201 and empty.json()["title"] == ""
    part = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="title"\r\n\r\n周末\r\n--{BOUNDARY}--\r\n'
    titled = post(api, part.encode())
    assert titled.status_code == 201 and titled.json()["title"] == "周末"


@pytest.mark.parametrize(
    "body",
    [
        f"--{BOUNDARY}\r\n[[true, {{}}], []]--{BOUNDARY}--\r\n",  # a part with no headers: not a form
        f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{BOUNDARY}--\r\n",  # a part naming no field
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; filename="a.txt"\r\n\r\nx\r\n--{BOUNDARY}--\r\n',
    ],
)
def test_a_part_that_names_no_field_is_a_parse_error(api, user, body):
    response = post(api, body.encode())
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert not Conversation.objects.exists()


class Trickle:
    """A body read a few bytes at a time: delimiters and headers fall across reads."""

    def __init__(self, data: bytes, step: int):
        self.data, self.step = data, step

    def read(self, size=-1):
        piece, self.data = self.data[: self.step], self.data[self.step :]
        return piece


@pytest.mark.parametrize("step", [1, 3, 7, 64])
def test_the_check_reads_across_chunks(step):
    from magicmirror.parsers import _MultipartShape

    named = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="title"\r\n\r\nhi\r\n--{BOUNDARY}--\r\n'
    unnamed = f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nhi\r\n--{BOUNDARY}--\r\n"
    for body, ok in [(named, True), (named * 2, True), (unnamed, False), ("no parts", False)]:
        shape = _MultipartShape(Trickle(body.encode(), step), BOUNDARY.encode())
        while shape.read(8192):
            pass
        if ok:
            shape.check()
        else:
            with pytest.raises(Exception, match="Multipart form parse error"):
                shape.check()
