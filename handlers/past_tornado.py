"""The one place that reaches past Tornado's public API, and why.

Tornado documents a handler's ``write()`` and ``flush()``, and for a
connection ``write_headers()``, ``write()`` and ``finish()``. It does not
document a request's ``HTTP1Connection.stream`` (the ``IOStream``), that
connection's ``close()``, or ``IOStream.socket``; and its rule for framing a
response body lives inside ``HTTP1Connection.write_headers``. Three things
need them:

- ``send()``: a piece of an event stream straight to the socket, framed as
  Tornado frames the response: one system call. Through ``write()`` and
  ``flush()`` each piece costs two futures and two loop callbacks, and for
  one price sent to ten thousand readers about three times the CPU
  (docs/bench-history.md, issue 11).
- ``closed()``: whether the peer has gone already, before Tornado has told
  the handler (a client that sends its request and resets at once).
- ``close()``: hang up on a reader that fell too far behind.

tests/app/test_past_tornado.py fails if Tornado changes under any of them.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from tornado.httputil import HTTPServerRequest
from tornado.iostream import StreamClosedError


def chunked(request: HTTPServerRequest) -> bool:
    """Whether Tornado frames a streamed response to ``request`` (one with no
    Content-Length) in chunks. It does for HTTP/1.1; an HTTP/1.0 body goes
    as is, and only closing the connection ends it."""
    return request.version == "HTTP/1.1"


def send(request: HTTPServerRequest, data: bytes) -> Optional[asyncio.Future]:
    """Write ``data`` as the next piece of the response, which must have
    started (its headers flushed) with no write in flight. None when the
    socket took all of it, nearly always; else the future of the rest,
    queued on Tornado's stream: the one write in flight, which nothing may
    overtake. ``StreamClosedError`` when the connection is closed or reset."""
    stream = request.connection.stream
    if stream is None or stream.closed():
        raise StreamClosedError()
    piece = b"%x\r\n%b\r\n" % (len(data), data) if chunked(request) else data
    try:
        sent = stream.socket.send(piece)
    except BlockingIOError:
        sent = 0
    except OSError as error:  # reset by the peer
        raise StreamClosedError(real_error=error) from None
    if sent == len(piece):
        return None
    return stream.write(piece[sent:])


def closed(request: HTTPServerRequest) -> bool:
    """True when the connection of ``request`` is closed already: Tornado
    then calls ``on_connection_close`` late (next loop turn) or, when it was
    closed before Tornado watched for it, never."""
    stream = request.connection.stream
    return stream is None or stream.closed()


def close(request: HTTPServerRequest) -> None:
    """Close the connection of ``request`` now, whatever is still unsent."""
    request.connection.close()
