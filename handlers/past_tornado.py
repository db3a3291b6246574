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
- ``answer()``: finish a woken poll with a whole response formatted once
  for all its waiters (``whole_response()``), in one system call. Tornado's
  ``finish()`` formats the same headers again for each of ten thousand
  waiters, and its connection makes two futures and sets ``TCP_NODELAY`` on
  and off again per answer: together about two thirds of what a woken poll
  cost (docs/bench-history.md, issue 15). It takes a handler's headers
  (``_headers``), tells the handler it is finished (``_finished``,
  ``_break_cycles()``) and the connection likewise (``_write_finished``,
  ``_finish_request()`` or, when all is sent, its ``_clear_callbacks()`` and
  ``_finish_future``), and reads the connection's keep-alive decision
  (``_disconnect_on_finish``).

tests/app/test_past_tornado.py fails if Tornado changes under any of them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Optional

import tornado.web
from tornado.httputil import HTTPServerRequest, format_timestamp, responses
from tornado.iostream import IOStream, StreamClosedError


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
    piece = b"%x\r\n%b\r\n" % (len(data), data) if chunked(request) else data
    return _write(request.connection.stream, piece)


def _write(stream: Optional[IOStream], data: bytes) -> Optional[asyncio.Future]:
    """``data`` to the socket of ``stream`` in one ``send()``; what it did not
    take goes on Tornado's stream (its future is returned, else None)."""
    if stream is None or stream.closed():
        raise StreamClosedError()
    try:
        sent = stream.socket.send(data)
    except BlockingIOError:
        sent = 0
    except OSError as error:  # reset by the peer
        raise StreamClosedError(real_error=error) from None
    if sent == len(data):
        return None
    return stream.write(data[sent:])


def closed(request: HTTPServerRequest) -> bool:
    """True when the connection of ``request`` is closed already: Tornado
    then calls ``on_connection_close`` late (next loop turn) or, when it was
    closed before Tornado watched for it, never."""
    stream = request.connection.stream
    return stream is None or stream.closed()


def close(request: HTTPServerRequest) -> None:
    """Close the connection of ``request`` now, whatever is still unsent."""
    request.connection.close()


def can_answer(request: HTTPServerRequest) -> bool:
    """Whether ``answer()`` may finish ``request``: an HTTP/1.1 GET whose
    connection Tornado keeps open afterwards. (For HTTP/1.0, or a client
    that asked to close, Tornado adds a ``Connection`` header and closes:
    those few go through ``finish()``.)"""
    return (request.version == "HTTP/1.1" and request.method == "GET"
            and not request.connection._disconnect_on_finish)


def whole_response(handler: tornado.web.RequestHandler, body: bytes) -> bytes:
    """The HTTP/1.1 response ``finish()`` would send for ``handler``, with
    its status and headers as they stand and ``body``, but dated now (Tornado
    dates a response when its request arrived, which for a held poll can be
    minutes ago). Only for a status with a body, no output transform that
    changes it, and no ETag (``finish()`` would add one and might answer 304
    instead): ``compute_etag()`` must return None."""
    if handler.compute_etag() is not None:
        raise ValueError("whole_response() is for a handler whose compute_etag() returns None")
    status = handler.get_status()
    lines = [b"HTTP/1.1 %d %s" % (status, responses[status].encode("latin1"))]
    for name, value in handler._headers.get_all():
        if name == "Date":
            value = format_timestamp(time.time())
        lines.append(f"{name}: {value}".encode("latin1"))
    lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def answer(handler: tornado.web.RequestHandler, response: bytes) -> None:
    """Finish the request of ``handler`` with ``response``, a whole response
    (``whole_response()``), as ``finish()`` would: logged, ``on_finish()``
    called, the connection ready for the client's next request once the
    bytes are out. Only where ``can_answer()`` says so."""
    connection = handler.request.connection
    connection.set_close_callback(None)
    handler._finished = True  # so that Tornado does not finish() it again
    connection._write_finished = True
    try:
        rest = _write(connection.stream, response)
    except StreamClosedError:
        connection.close()  # the peer is gone: as Tornado does, forget it
    else:
        if rest is None:
            # _finish_request() but for TCP_NODELAY, which finish() turns on
            # for an unsent tail and _finish_request() off again: none here.
            connection._clear_callbacks()
            if not connection._finish_future.done():
                connection._finish_future.set_result(None)  # reads the next request
        else:
            connection.stream.set_nodelay(True)
            rest.add_done_callback(lambda written: written.exception() or connection._finish_request(None))
    handler.application.log_request(handler)
    handler.on_finish()
    handler._break_cycles()
