"""What every handler shares: clean errors, and a way to hold a request.

A held request waits on one future, ``done``, completed with the reason its
hold ends (``comet.clients``: woken, timeout, gone, closing). The client
going away is the subtle one: Tornado notices a closed socket while the
request is idle and calls ``on_connection_close``. The handler turns that
call into ``done``'s result, so a waiting coroutine wakes up at once and
forgets the client without having to write anything first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Iterator, Optional

import tornado.httputil
import tornado.web
from tornado.log import access_log

from comet.clients import CLOSING, GONE, TIMEOUT, WOKEN, Clients, Full
from handlers.writer import PlainWriter


class RetryLater(tornado.web.HTTPError):
    """A refusal that says when to ask again: ``Retry-After``, in seconds."""

    def __init__(self, status_code: int, retry_after: int, log_message: str, *args) -> None:
        super().__init__(status_code, log_message, *args)
        self.retry_after = retry_after


class BaseHandler(tornado.web.RequestHandler):
    """Plain-text errors without tracebacks, and the security headers."""

    refusal: Optional[str] = None  # why the request was refused, for the access log

    def log_exception(self, typ, value, tb) -> None:
        log_exception(self, typ, value, tb)

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")

    def query(self, name: str) -> Optional[str]:
        """The query parameter ``name`` (its last value), or None. Bytes that
        are not UTF-8 become U+FFFD instead of a 400: a garbled value is
        just a value that matches nothing."""
        values = self.request.query_arguments.get(name)
        return values[-1].decode("utf-8", "replace") if values else None

    def write_error(self, status_code: int, **kwargs) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, tornado.web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            message = kwargs.get("message") or tornado.httputil.responses.get(status_code, "Unknown")
        self.refusal = self.refusal or message
        if self.settings.get("serve_traceback"):
            return super().write_error(status_code, **kwargs)
        if status_code == 503 or isinstance(exc, RetryLater):
            self.set_header("Retry-After", str(getattr(exc, "retry_after", 5)))
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        reason = getattr(exc, "reason", None) or tornado.httputil.responses.get(status_code, "Unknown")
        self.finish(f"{status_code} {reason}: {message}\n")


class UncachedHandler(BaseHandler):
    """An answer that depends on when it was asked (a message, a batch of
    events): ``Cache-Control: no-cache`` on every answer, errors included,
    and never an ETag or a 304."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-cache")

    def compute_etag(self) -> Optional[str]:
        return None


class HoldingHandler(UncachedHandler):
    """A handler that may keep its request open while it waits, and
    writes what it owes through ``writer`` (handlers/writer.py).

    Each request has one future, ``done``. Nothing else is awaited, and
    nothing is shared between clients: ten thousand held requests are ten
    thousand small futures.
    """

    def initialize(self, clients: Clients, writer: PlainWriter) -> None:
        self.clients = clients
        self.writer = writer
        self.done: Optional[asyncio.Future] = None

    # tutorial: peer-gone
    def prepare(self) -> None:
        self.done = asyncio.get_running_loop().create_future()

    def on_connection_close(self) -> None:
        # The peer went away while we held its request: end the hold now, so
        # it is forgotten at once, not at the next event.
        self.end(GONE)
    # end tutorial: peer-gone

    @contextlib.contextmanager
    def holding(self, kind: str) -> Iterator[None]:
        """Count this request in ``clients`` as ``kind`` while the ``with``
        block runs; a 503 with ``Retry-After`` when the server, or this
        client's address, holds its limit already. The address is the
        peer's, or with ``--xheaders`` the one the proxy in front names."""
        try:
            self.clients.admit(self, kind, self.request.remote_ip or "")
        except Full as full:
            raise tornado.web.HTTPError(503, "%s, try again later", full) from None
        try:
            yield
        finally:
            self.clients.leave(self, kind)

    def end(self, why: str) -> None:
        """End the hold (the first reason wins)."""
        if self.done is None or self.done.done():
            return
        if why is CLOSING:
            # Reconnect elsewhere: this connection is about to close. (Once
            # the headers are out, as for a stream, this changes nothing.)
            self.set_header("Connection", "close")
        self.done.set_result(why)

    def wake(self) -> None:
        """Called by a policy this request waits on: it changed."""
        self.end(WOKEN)

    # tutorial: hold
    async def hold(self, source=None, timeout: Optional[float] = None) -> str:
        """Wait until the policy ``source`` changes, ``timeout`` seconds
        pass, the client goes away or the server shuts down; return which:
        ``WOKEN``, ``TIMEOUT``, ``GONE`` or ``CLOSING``."""
        if self.writer.closed(self):
            # Closed before Tornado was listening for it (a client that sends
            # its request and resets at once): no callback will come.
            self.end(GONE)
        timer = None
        if timeout is not None:
            timer = asyncio.get_running_loop().call_later(timeout, self.end, TIMEOUT)
        if source is not None:
            source.subscribe(self.wake)
        try:
            return await self.done
        finally:
            if source is not None:
                source.unsubscribe(self.wake)
            if timer is not None:
                timer.cancel()
    # end tutorial: hold


def log_exception(handler: tornado.web.RequestHandler, typ, value, tb) -> None:
    """A refused request (an ``HTTPError``) is one line of the server's log,
    the access log's, which carries the reason (``log_request``): Tornado
    would also log each one as a warning of its own. Anything else is a
    bug, logged with its traceback."""
    if isinstance(value, tornado.web.HTTPError):
        if value.log_message:
            handler.refusal = value.log_message % value.args if value.args else value.log_message
        return
    tornado.web.RequestHandler.log_exception(handler, typ, value, tb)


def log_request(handler: tornado.web.RequestHandler) -> None:
    """The access log, minus the routine of Comet: a poll answered or a
    stream ended is logged at DEBUG only (``--logging=debug`` shows them),
    since with thousands of clients those lines would be most of the
    server's work. Errors are logged as Tornado would, with the reason a
    refusal gave: the one line a refused request makes."""
    status = handler.get_status()
    if status < 400:
        if isinstance(handler, HoldingHandler):
            if not access_log.isEnabledFor(logging.DEBUG):
                return  # the common case: nothing to format
            log = access_log.debug
        else:
            log = access_log.info
    else:
        log = access_log.warning if status < 500 else access_log.error
    request = handler.request
    summary = (status, request.method, request.uri, request.remote_ip, 1000.0 * request.request_time())
    refusal = getattr(handler, "refusal", None) if status >= 400 else None
    if refusal:
        log("%d %s %s (%s) %.2fms: %s", *summary, refusal)
    else:
        log("%d %s %s (%s) %.2fms", *summary)
