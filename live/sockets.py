"""How many voice sockets one user may hold open: `VOICE_WS_MAX_SOCKETS_PER_USER`, on all processes.

Each open socket holds one of its user's N slots, cache keys `voice-socket:<user id>:<i>` (i < N)
whose value is the socket's random token. A slot is taken with the cache's atomic `add` (SET NX on
Redis), so sockets on every daphne process count together and two sockets opening at once never
get the same slot; when all N are taken, the socket is refused. A slot expires after
`VOICE_WS_SOCKET_TTL_SECONDS` unless its socket renews it (every third of that while it is open),
so the slots of a process that died without closing its sockets come free on their own; closing a
socket frees its slot at once.

Why slots rather than a counter or a set of socket ids: the Django cache API (the same on Redis
and on the embedded default's memory cache) has an atomic add and expiry, but no atomic set or
sorted-set operations. A counter cannot tell which of its increments belonged to a dead process;
a slot key simply lapses. Opening a socket costs up to N cache calls (N is small). Freeing a slot
reads it and deletes it if it is still this socket's: only when a socket's renewals stopped for a
whole TTL could another socket have taken the slot in between, and lose it.
"""

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache

from magicmirror.dbasync import cache_call

logger = logging.getLogger(__name__)


@dataclass
class SocketSlot:
    key: str  # "" when there is no cap: nothing to keep or free
    token: str
    ttl: int
    _keeper: asyncio.Task | None = field(default=None, repr=False)

    def renew(self) -> bool:
        """Extend the slot's life by a TTL; False if it had lapsed and another socket holds it now."""
        if cache.get(self.key) == self.token and cache.touch(self.key, self.ttl):
            return True
        return cache.add(self.key, self.token, self.ttl)  # lapsed (a stalled process): take it again

    def release(self) -> None:
        if cache.get(self.key) == self.token:
            cache.delete(self.key)

    def keep(self) -> None:
        """Renew the slot every third of its TTL until `close()` (a task on the running loop)."""
        if self.key and self._keeper is None:
            self._keeper = asyncio.create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                if not await cache_call(self.renew):
                    logger.warning("Voice socket slot %s lapsed and was taken by another socket.", self.key)
            except Exception:  # the cache is down: the slot may lapse, the socket goes on
                logger.warning("Could not renew voice socket slot %s", self.key, exc_info=True)

    async def close(self) -> None:
        """The socket closed: stop renewing, free the slot."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        if self.key:
            await cache_call(self.release)


def socket_slot_take(*, user) -> SocketSlot | None:
    """A free slot for a new socket of `user`, or None when all are taken (synchronous: cache calls).

    With VOICE_WS_MAX_SOCKETS_PER_USER = 0 there is no cap: every socket gets an untracked slot.
    """
    token = secrets.token_hex(8)
    ttl = max(1, settings.VOICE_WS_SOCKET_TTL_SECONDS)
    cap = settings.VOICE_WS_MAX_SOCKETS_PER_USER
    if cap <= 0:
        return SocketSlot(key="", token=token, ttl=ttl)
    for index in range(cap):
        key = f"voice-socket:{user.pk}:{index}"
        if cache.add(key, token, ttl):
            return SocketSlot(key=key, token=token, ttl=ttl)
    return None


async def socket_slot_open(*, user) -> SocketSlot | None:
    """A slot for a socket being opened, renewed until `close()`; None: refuse the socket."""
    slot = await cache_call(socket_slot_take, user=user)
    if slot is not None:
        slot.keep()
    return slot
