"""The per-user budget of chat turns: every reply a user asks the LLM for counts, whatever its source.

`POST /api/chat`, a typed message on the voice WebSocket and a spoken utterance there all take
from one budget, `RATELIMIT_CHAT` per user. django-ratelimit counts it in the cache: Redis when
`REDIS_URL` is set, so all of a user's requests and sockets, on every daphne process, count
together (each process's memory in the embedded default). Take from it before the LLM is called:
a refused turn costs nothing.
"""

from django.conf import settings
from django_ratelimit.core import get_usage

from magicmirror.errors import ApplicationError

# One counter for every source of turns (HTTP and WebSocket).
TURN_BUDGET_GROUP = "chat.turn"


def turn_budget_take(*, user) -> None:
    """Count one turn of `user`; ApplicationError `rate_limited` (429) when the budget is spent.

    Refused turns count too (as with django-ratelimit's decorator): retrying at once does not help.
    Synchronous (a cache call): from async code run it in a thread.
    """
    usage = get_usage(
        None,  # no request: the key is the user, whichever way the turn came
        group=TURN_BUDGET_GROUP,
        key=lambda group, request: str(user.pk),
        rate=settings.RATELIMIT_CHAT,
        increment=True,
    )
    if usage is not None and usage["should_limit"]:
        wait = max(1, usage["time_left"])  # the cache failing also refuses, with time_left -1
        raise ApplicationError(
            f"Too many messages; please wait {wait} s and try again.", code="rate_limited", status_code=429
        )
