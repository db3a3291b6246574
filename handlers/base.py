"""What every handler shares: clean errors, and a way to hold a request.

Holding a request open is the heart of Comet. Four things end a wait: the
event arrives, a timer runs out, the client goes away, or the server shuts
down. The client going away is the subtle one: Tornado notices a closed socket while the request is idle
and calls ``on_connection_close``. The handler turns that call into a future
(``gone``), so a waiting coroutine wakes up at once and can forget the client
without having to write anything first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from http import HTTPStatus
from typing import Iterator, Optional

import tornado.web

GONE, CLOSING, TIMEOUT = "gone", "closing", "timeout"


class Clients:
    """Every request the server is holding, counted by kind.

    ``/status`` reads the counts, ``--max-clients`` caps their sum, and at
    shutdown ``release_all()`` tells every holder to finish its response.
    """

    def __init__(self, limit: int = 10000) -> None:
        self.limit = limit
        self.counts: Counter[str] = Counter()
        self.held = 0
        self.closing = False
        self._release: Optional[asyncio.Future] = None
        self._drained: Optional[asyncio.Future] = None

    @contextlib.contextmanager
    def holding(self, kind: str) -> Iterator[None]:
        """Count one held request for as long as the ``with`` block runs.

        During shutdown a request is still let in, and released at once like
        the others: a 503 would make an EventSource give up for good."""
        if self.held >= self.limit and not self.closing:
            raise tornado.web.HTTPError(503, "too many clients, try again later")
        self.held += 1
        self.counts[kind] += 1
        try:
            yield
        finally:
            self.held -= 1
            self.counts[kind] -= 1
            if self.held == 0 and self._drained is not None and not self._drained.done():
                self._drained.set_result(None)

    # tutorial: release
    def released(self) -> asyncio.Future:
        """Every hold() waits on this one future, so a shutdown releases
        every held request at once."""
        if self._release is None:
            self._release = asyncio.get_running_loop().create_future()
            if self.closing:
                self._release.set_result(None)
        return self._release

    async def release_all(self, timeout: float) -> None:
        """Tell every holder to finish, and wait (up to ``timeout``) until
        all have: at shutdown, each client gets a complete response."""
        self.closing = True
        if self._release is not None and not self._release.done():
            self._release.set_result(None)
        if self.held:
            self._drained = asyncio.get_running_loop().create_future()
            await asyncio.wait({self._drained}, timeout=timeout)
    # end tutorial: release


class BaseHandler(tornado.web.RequestHandler):
    """Plain-text errors without tracebacks, and the security headers."""

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")

    def write_error(self, status_code: int, **kwargs) -> None:
        if self.settings.get("serve_traceback"):
            return super().write_error(status_code, **kwargs)
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            message = kwargs.get("message") or HTTPStatus(status_code).phrase
        if status_code == 503:
            self.set_header("Retry-After", "5")
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish(f"{status_code} {self._reason}: {message}\n")


class HoldingHandler(BaseHandler):
    """A handler that may keep its request open while it waits."""

    def initialize(self, clients: Clients) -> None:
        self.clients = clients
        self.gone: Optional[asyncio.Future] = None

    # tutorial: peer-gone
    def prepare(self) -> None:
        self.gone = asyncio.get_running_loop().create_future()

    def on_connection_close(self) -> None:
        # The peer went away while we held its request: wake the waiting
        # coroutine now, so it is forgotten at once, not at the next event.
        if self.gone is not None and not self.gone.done():
            self.gone.set_result(None)
    # end tutorial: peer-gone

    # tutorial: hold
    async def hold(self, *futures: asyncio.Future, timeout: Optional[float]) -> object:
        """Wait for the first of ``futures``, the timeout, the client leaving
        or the server shutting down. Returns the future that completed, or
        ``TIMEOUT``, ``GONE`` or ``CLOSING``. The futures are never cancelled:
        they may be shared with every other waiter."""
        release = self.clients.released()
        done, _ = await asyncio.wait(
            {self.gone, release, *futures},
            timeout=timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if self.gone in done:
            return GONE
        if release in done:
            if not self._headers_written:
                # Reconnect elsewhere: this connection is about to close.
                self.set_header("Connection", "close")
            return CLOSING
        for future in futures:
            if future in done:
                return future
        return TIMEOUT
    # end tutorial: hold
