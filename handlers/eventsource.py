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

import asyncio
import random
from dataclasses import dataclass
from typing import Optional

from tornado.iostream import StreamClosedError

from comet.clients import CLOSING, GONE, Clients
from handlers.base import HoldingHandler
from handlers.writer import PlainWriter

# tutorial: heartbeat
KEEP_ALIVE = b": keep-alive\n\n"
# What a stream asked for with ?heartbeat=1 gets instead: an event a script
# can see (a comment it cannot), with no id, so no cursor moves.
HEARTBEAT = b"event: heartbeat\ndata:\n\n"
# end tutorial: heartbeat
# The article's header, and the one CppCMS's contrib reads.
SIMULATION_HEADERS = {"x-event-source-simulate": "long-polling", "x-sse-simulation": "long-polling"}
STREAM_CHUNK = 1 << 16  # bytes per write while replaying a long backlog


@dataclass(frozen=True)
class StreamConfig:
    """What an event source is told at start (app.py's flags of the same names)."""

    retry: int  # ms a reader waits before it reconnects...
    retry_jitter: int  # ...plus up to this many, drawn per response
    keepalive: float  # seconds of quiet before a keep-alive comment
    poll_timeout: float  # seconds a fallback poll is held before an empty batch
    max_backlog: int  # bytes a stuck reader of a queue may fall behind before it is dropped
    drain_retry: int = 0  # ms, at most: the retry: told to streams ended at shutdown (0: none)


class EventSourceHandler(HoldingHandler):
    """GET: waits for the policy ``source`` to owe this reader something."""

    def initialize(self, source, kind: str, clients: Clients, writer: PlainWriter, config: StreamConfig) -> None:
        """``source`` is a policy; ``kind`` names this reader in /status."""
        super().initialize(clients, writer)
        self.source = source
        self.kind = kind
        self.config = config

    # tutorial: stream-get
    def last_event_id(self) -> Optional[str]:
        """The id the reader holds, as sent: the policy reads it."""
        header = self.request.headers.get("Last-Event-ID")
        if header is not None:
            return header
        return self.query("lastEventId")

    def wants_long_polling(self) -> bool:
        return any(
            self.request.headers.get(name, "").strip().lower() == value
            for name, value in SIMULATION_HEADERS.items()
        )

    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("X-Accel-Buffering", "no")
        # Each response draws its own delay, so that readers dropped together
        # (by a restart) do not all come back in the same instant.
        retry = self.config.retry + random.randint(0, self.config.retry_jitter)
        head = b"retry: %d\n\n" % retry
        with self.holding(self.kind):
            prefix, cursor = self.source.resume(self.last_event_id())
            if prefix:  # the id does not fit: is it ahead of this copy?
                await self.source.look_again()
                prefix, cursor = self.source.resume(self.last_event_id())
            if self.wants_long_polling():
                await self.answer_one_batch(head, prefix, cursor)
            else:
                heartbeat = self.query("heartbeat") == "1"
                self.idle_frame = HEARTBEAT if heartbeat else KEEP_ALIVE
                await self.stream(head + (HEARTBEAT if heartbeat else b"") + prefix, cursor)
    # end tutorial: stream-get

    # tutorial: one-batch
    async def answer_one_batch(self, head: bytes, prefix: bytes, cursor) -> None:
        """Hold until something is owed or ``--poll-timeout``, then answer."""
        batch, cursor = self.source.owed(cursor)
        batch = prefix + batch
        if not batch:
            if await self.hold(self.source, timeout=self.config.poll_timeout) is GONE:
                return
            batch, cursor = self.source.owed(cursor)
        self.writer.finish(self, head + (batch or KEEP_ALIVE))
    # end tutorial: one-batch

    # tutorial: stream-loop
    async def stream(self, head: bytes, cursor) -> None:
        """Subscribe ``push`` to the policy and hold the response open until
        the reader goes away or the server shuts down."""
        self.cursor = cursor
        self.writing = False
        self.loop = asyncio.get_running_loop()
        self.last_write = self.loop.time()
        self.keepalive = self.loop.call_later(self.config.keepalive, self.keep_alive)
        self.source.subscribe(self.push)
        try:
            self.wait_for(self.writer.start(self, head))
            if await self.hold() is CLOSING:
                self.hand_over()
        finally:
            self.source.unsubscribe(self.push)
            self.keepalive.cancel()
    # end tutorial: stream-loop

    # tutorial: one-write
    def push(self) -> None:
        """Send what is owed, unless a write is still in flight: then
        ``written()`` will, and a reader too far behind is dropped."""
        if self.done.done():
            return
        if self.writing:
            if self.source.backlog(self.cursor) > self.config.max_backlog:
                self.clients.slow_readers_dropped += 1
                self.drop()
            return
        # A chunk at a time, for as long as the socket takes each one whole.
        while not self.writing and not self.done.done():
            batch, self.cursor = self.source.owed(self.cursor, limit=STREAM_CHUNK)
            if not batch:
                return
            self.send(batch)

    def send(self, data: bytes) -> None:
        """Write ``data`` as the next piece of the response; what the socket
        does not take at once is the one write in flight."""
        self.last_write = self.loop.time()
        try:
            rest = self.writer.send(self, data)
        except StreamClosedError:  # gone; Tornado would tell us a loop turn later
            self.drop()
            return
        if rest is not None:
            self.wait_for(rest)

    def wait_for(self, write: asyncio.Future) -> None:
        self.writing = True
        write.add_done_callback(self.written)

    def written(self, write: asyncio.Future) -> None:
        self.writing = False
        # A failed write closed the connection, which ends the hold.
        if write.exception() is None:
            self.push()  # whatever was published while the write was out
    # end tutorial: one-write

    # tutorial: hand-over
    def hand_over(self) -> None:
        """The server is stopping: with ``--drain-retry``, tell the reader to
        come back sooner than its ``retry:``, since the other processes
        behind the proxy are there to take it (a random delay, so that those
        ended together come back spread out)."""
        most = self.config.drain_retry
        if most:  # through Tornado: it goes out after any write in flight, then the end
            self.write(b"retry: %d\n\n" % random.randint(0, most))
    # end tutorial: hand-over

    def drop(self) -> None:
        """Close a reader that fell too far behind (it resumes by its id), or
        whose socket failed."""
        self.writer.close(self)
        self.end(GONE)  # Tornado calls on_connection_close only when the peer closes

    def keep_alive(self) -> None:
        """A comment (or a heartbeat) after ``--keepalive`` seconds without a
        write, so that proxies and the browser see a live connection; then
        arm again."""
        interval = self.config.keepalive
        quiet_for = self.loop.time() - self.last_write
        if quiet_for >= interval and not self.writing and not self.done.done():
            self.send(self.idle_frame)
            quiet_for = 0.0
        self.keepalive = self.loop.call_later(max(interval - quiet_for, 0.01), self.keep_alive)
