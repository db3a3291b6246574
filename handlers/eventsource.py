"""The generic event source, like CppCMS's ``sse::event_source``.

``EventSourceHandler`` serves any policy from ``policies.py``: it reads the id
the reader holds, asks the policy what that reader is owed, writes it, and
waits for the policy to change. It knows nothing about chat or prices.

Two ways to be served, one protocol:

- a stream: one response kept open, a frame written as each event comes,
  a ``: keep-alive`` comment when idle;
- the long-poll fallback (``X-Event-Source-Simulate: Long-Polling``): the
  same headers and frames, but the response ends after the first batch. The
  client keeps the last id itself and asks again.

One write is in flight per reader at a time. While it is stuck, what the
reader is owed stays in the policy, not in a per-reader buffer; a reader that
falls too far behind a queue is disconnected and resumes by its id.
"""

from __future__ import annotations

from typing import Optional

from handlers.base import CLOSING, GONE, TIMEOUT, HoldingHandler
from handlers.policies import parse_event_id

KEEP_ALIVE = b": keep-alive\n\n"
# The article's header, and the one CppCMS's contrib reads.
SIMULATION_HEADERS = {"x-event-source-simulate": "long-polling", "x-sse-simulation": "long-polling"}
STREAM_CHUNK = 1 << 16  # bytes per write while replaying a long backlog


class EventSourceHandler(HoldingHandler):
    """GET: waits for the policy ``source`` to owe this reader something."""

    def initialize(self, source, kind: str, clients) -> None:
        """``source`` is a policy; ``kind`` names this reader in /status."""
        super().initialize(clients)
        self.source = source
        self.kind = kind

    def compute_etag(self) -> Optional[str]:
        return None  # an event batch is never a cache hit

    def last_event_id(self) -> Optional[int]:
        header = self.request.headers.get("Last-Event-ID")
        if header is not None:
            return parse_event_id(header)
        return parse_event_id(self.get_query_argument("lastEventId", None))

    def wants_long_polling(self) -> bool:
        return any(
            self.request.headers.get(name, "").strip().lower() == value
            for name, value in SIMULATION_HEADERS.items()
        )

    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        retry = b"retry: %d\n\n" % self.settings["retry"]
        with self.clients.holding(self.kind):
            prefix, cursor = self.source.resume(self.last_event_id())
            if self.wants_long_polling():
                await self.answer_one_batch(retry, prefix, cursor)
            else:
                await self.stream(retry + prefix, cursor)

    async def answer_one_batch(self, head: bytes, prefix: bytes, cursor) -> None:
        """Hold until something is owed or ``--poll-timeout``, then answer."""
        batch, cursor = self.source.owed(cursor)
        batch = prefix + batch
        if not batch:
            woke = await self.hold(self.source.changed(), timeout=self.settings["poll_timeout"])
            if woke is GONE:
                return
            if woke not in (CLOSING, TIMEOUT):
                batch, cursor = self.source.owed(cursor)
        self.finish(head + (batch or KEEP_ALIVE))

    async def stream(self, head: bytes, cursor) -> None:
        """Write what is owed, then wait for a change or the keep-alive timer,
        until the reader goes away or the server shuts down."""
        if not await self.send(head, cursor):
            return
        while True:
            batch, cursor = self.source.owed(cursor, limit=STREAM_CHUNK)
            if batch:
                if not await self.send(batch, cursor):
                    return
                continue
            woke = await self.hold(self.source.changed(), timeout=self.settings["keepalive"])
            if woke in (GONE, CLOSING):
                return
            if woke is TIMEOUT and not await self.send(KEEP_ALIVE, cursor):
                return

    async def send(self, data: bytes, cursor) -> bool:
        """Write and wait until the socket took it. False: stop streaming."""
        self.write(data)
        sent = self.flush()
        while True:
            woke = await self.hold(sent, self.source.changed(), timeout=None)
            if woke is sent:
                return sent.exception() is None
            if woke in (GONE, CLOSING):
                return False
            # The policy moved on while this reader's write is stuck.
            if self.source.backlog(cursor) > self.settings["max_backlog"]:
                self.request.connection.close()
                return False
