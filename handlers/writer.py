"""How a held request's bytes reach the socket: the writer.

Every piece of an event stream and every answer to a poll goes through a
writer, chosen once at start (``--writer``), so the handlers never ask how
fast it is. ``PlainWriter`` is Tornado's public API alone: ``write()``,
``flush()`` and ``finish()``, and the connection's stream as Tornado's chat
demo reads it. It is what to copy. ``handlers/fast_writer.py`` is the same
interface reaching past Tornado for speed; it is optional, and
``choose_writer()`` falls back to this one when it cannot run.
"""

from __future__ import annotations

import asyncio
import time
from typing import Hashable, Optional

import tornado.web
from tornado.httputil import format_timestamp


# tutorial: plain-writer
class PlainWriter:
    """Writes through Tornado's public API."""

    name = "plain"

    def start(self, handler: tornado.web.RequestHandler, data: bytes) -> asyncio.Future:
        """The headers and the first bytes of a stream. Tornado chooses the
        framing: chunks for HTTP/1.1, the bytes as they are for HTTP/1.0."""
        handler.write(data)
        return handler.flush()

    def send(self, handler: tornado.web.RequestHandler, data: bytes) -> Optional[asyncio.Future]:
        """The next piece of a started stream, with no write in flight: the
        future of the write (a writer that sees the socket take it all at
        once may return None instead)."""
        handler.write(data)
        return handler.flush()

    # tutorial: plain-finish
    def finish(self, handler: tornado.web.RequestHandler, body: Optional[bytes] = None,
               same_as: Optional[Hashable] = None) -> None:
        """End the response with ``body``. Answers given the same
        ``same_as`` are the same bytes for every handler (but the Date), so a
        writer may format them once; this one has no use for it."""
        # Dated now: Tornado dates a response when its request came in,
        # which for a held poll can be minutes ago.
        handler.set_header("Date", format_timestamp(time.time()))
        handler.finish(body)
    # end tutorial: plain-finish

    def closed(self, handler: tornado.web.RequestHandler) -> bool:
        """Whether the client has gone already, before Tornado has told the
        handler (it does a loop turn later, or never if the client sent its
        request and reset at once). Tornado's chat demo asks the same."""
        stream = handler.request.connection.stream
        return stream is None or stream.closed()

    def close(self, handler: tornado.web.RequestHandler) -> None:
        """Hang up now, whatever is still unsent."""
        stream = handler.request.connection.stream
        if stream is not None:
            stream.close()
# end tutorial: plain-writer


def choose_writer(name: str) -> tuple[PlainWriter, Optional[str]]:
    """The writer ``--writer=name`` names, and the one line to print when the
    fast one cannot run here and the plain one serves instead (else None).
    Call it with the IOLoop running: the check makes a connection object."""
    if name == "plain":
        return PlainWriter(), None
    try:
        from handlers.fast_writer import FastWriter
    except ImportError as error:
        return PlainWriter(), f"--writer=fast: {error}; serving with --writer=plain"
    missing = FastWriter.missing()
    if missing:
        return PlainWriter(), (f"--writer=fast: this Tornado lacks {', '.join(missing)}; "
                               "serving with --writer=plain")
    return FastWriter(), None
