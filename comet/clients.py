"""The registry of held requests: who the server is holding, and why a hold ends.

Holding a request open is the heart of Comet. Four things end a wait: the
event arrives, a timer runs out, the client goes away, or the server shuts
down. ``Clients`` counts the holds by kind (``/status`` shows the counts),
caps their number (``--max-clients``) and the number from one address
(``--max-clients-per-address``), and at shutdown ends every one of them, so
each client gets a complete response.

A holder is anything with an ``end(why)`` method; the handlers in
``handlers/base.py`` are the holders. Nothing here knows about HTTP.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Optional, Protocol

# Why a hold ended.
WOKEN, TIMEOUT, GONE, CLOSING = "woken", "timeout", "gone", "closing"


class Holder(Protocol):
    def end(self, why: str) -> None: ...


class Full(Exception):
    """The server holds ``--max-clients`` requests already, or this address
    its ``--max-clients-per-address``: come back later."""


class Clients:
    """Every request the server is holding, counted by kind."""

    def __init__(self, limit: int = 10000, per_address: int = 0) -> None:
        """At most ``limit`` holds, and ``per_address`` from one address
        (0: no cap per address)."""
        self.limit = limit
        self.per_address = per_address
        self.counts: Counter[str] = Counter()
        self.holders: dict[Holder, str] = {}  # each held request, and the address it came from
        self.by_address: Counter[str] = Counter()  # only addresses that hold something
        self.closing = False
        # For the metrics: refusals by reason, and readers dropped for falling behind.
        self.refused: Counter[str] = Counter()
        self.slow_readers_dropped = 0
        self._drained: Optional[asyncio.Future] = None

    def admit(self, holder: Holder, kind: str, address: str = "") -> None:
        """Count ``holder``, from ``address``, as held; ``Full`` past either
        limit.

        During shutdown a request is still let in, and released at once like
        the others: a refusal would make an EventSource give up for good."""
        if not self.closing:
            if len(self.holders) >= self.limit:
                self.refused["max_clients"] += 1
                raise Full(f"the server holds {self.limit} clients already")
            if self.per_address and self.by_address[address] >= self.per_address:
                self.refused["per_address"] += 1
                raise Full(f"{address or 'this address'} holds {self.per_address} streams and polls already")
        self.holders[holder] = address
        self.by_address[address] += 1
        self.counts[kind] += 1
        if self.closing:
            holder.end(CLOSING)

    def leave(self, holder: Holder, kind: str) -> None:
        """``holder`` is no longer held (its response has ended)."""
        address = self.holders.pop(holder)
        self.by_address[address] -= 1
        if not self.by_address[address]:
            del self.by_address[address]  # a passing crowd of addresses leaves nothing behind
        self.counts[kind] -= 1
        if not self.holders and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # tutorial: release
    async def release_all(self, timeout: float, spread: float = 0.0) -> None:
        """End every hold, a slice at a time over ``spread`` seconds, and
        wait (up to ``timeout`` more) until each response has gone out.
        Spread out, the clients come back to the other processes a few at a
        time instead of all in the same instant."""
        self.closing = True
        holders = tuple(self.holders)
        slices = max(1, min(len(holders), round(spread * 20)))  # twenty a second
        for index in range(slices):
            if index:
                await asyncio.sleep(spread / slices)
            for holder in holders[index::slices]:
                holder.end(CLOSING)
        if self.holders:
            self._drained = asyncio.get_running_loop().create_future()
            await asyncio.wait({self._drained}, timeout=timeout)
    # end tutorial: release
