"""daphne leaves request bodies to Django: Twisted does not parse form uploads first.

daphne's HTTP request class is Twisted's, and Twisted by default parses every POST body that is a
form (multipart or URL-encoded) into `request.args` as the request arrives. daphne never reads
those (it hands the raw body to Django, which parses it again), so each upload was held in memory
a second time, and a multipart body that Twisted's parser refuses (one with no parts, say) was
answered by Twisted itself: a bare `400` with no body and no content type, never reaching the API
and its JSON errors. Twisted's `parsePOSTFormSubmission=False` turns that parsing off.

`leave_request_bodies_to_django()` is called from magicmirror/asgi.py, which daphne imports before it
accepts connections, whichever way it is started.
"""

import inspect
import logging

logger = logging.getLogger(__name__)


def leave_request_bodies_to_django() -> None:
    try:
        from daphne import http_protocol
        from twisted.web import http
    except ImportError:  # pragma: no cover - daphne is a dependency
        return
    base = http_protocol.WebRequest
    if getattr(base, "parses_forms", True) is False:
        return  # already done
    if "parsePOSTFormSubmission" not in inspect.signature(http.Request.__init__).parameters:
        logger.error("twisted.web.http.Request has no parsePOSTFormSubmission: Twisted parses form bodies")
        return

    class WebRequest(base):  # type: ignore[misc,valid-type]  # a class chosen at run time
        parses_forms = False

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "parsePOSTFormSubmission": False})

    # daphne's HTTPFactory.buildProtocol reads this module global for every connection.
    http_protocol.WebRequest = WebRequest
