"""The registry of held requests: who the server is holding, and why a hold ends.

Holding a request open is the heart of Comet. Four things end a wait: the
event arrives, a timer runs out, the client goes away, or the server shuts
down. ``Clients`` counts the holds by kind (``/status`` shows the counts),
caps their number (``--max-clients``), and at shutdown ends every one of
them, so each client gets a complete response.

A holder is anything with an ``end(why)`` method; the handlers in
``handlers/base.py`` are the holders. Nothing here knows about HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Iterator, Optional, Protocol

# Why a hold ended.
WOKEN, TIMEOUT, GONE, CLOSING = "woken", "timeout", "gone", "closing"


class Holder(Protocol):
    def end(self, why: str) -> None: ...


class Full(Exception):
    """The server holds ``--max-clients`` requests already: come back later."""


class Clients:
    """Every request the server is holding, counted by kind."""

    def __init__(self, limit: int = 10000) -> None:
        self.limit = limit
        self.counts: Counter[str] = Counter()
        self.holders: set[Holder] = set()
        self.closing = False
        self._drained: Optional[asyncio.Future] = None

    def admit(self, holder: Holder, kind: str) -> None:
        """Count ``holder`` as held; ``Full`` past the limit.

        During shutdown a request is still let in, and released at once like
        the others: a refusal would make an EventSource give up for good."""
        if len(self.holders) >= self.limit and not self.closing:
            raise Full(f"the server holds {self.limit} clients already")
        self.holders.add(holder)
        self.counts[kind] += 1
        if self.closing:
            holder.end(CLOSING)

    def leave(self, holder: Holder, kind: str) -> None:
        """``holder`` is no longer held (its response has ended)."""
        self.holders.discard(holder)
        self.counts[kind] -= 1
        if not self.holders and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    @contextlib.contextmanager
    def holding(self, holder: Holder, kind: str) -> Iterator[None]:
        """``admit``, and ``leave`` when the ``with`` block ends."""
        self.admit(holder, kind)
        try:
            yield
        finally:
            self.leave(holder, kind)

    # tutorial: release
    async def release_all(self, timeout: float) -> None:
        """End every hold, and wait (up to ``timeout``) until each response
        has gone out."""
        self.closing = True
        for holder in tuple(self.holders):
            holder.end(CLOSING)
        if self.holders:
            self._drained = asyncio.get_running_loop().create_future()
            await asyncio.wait({self._drained}, timeout=timeout)
    # end tutorial: release
