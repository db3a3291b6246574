"""``--writer=fast``: the writer that reaches past Tornado's public API, for speed.

It keeps ``PlainWriter``'s interface (handlers/writer.py) and its bytes, but
for the ``Date``, and does two things faster:

- ``send()``: a later piece of an event stream straight to the socket,
  framed as Tornado frames the response: one system call. Through
  ``write()`` and ``flush()`` each piece costs two futures and two loop
  callbacks, and one price sent to ten thousand readers about three times
  the CPU (docs/bench-history.md).
- ``finish()``: a whole response formatted here, and for answers that are
  the same for many waiters (``same_as``) formatted once, sent in one
  system call. Tornado's ``finish()`` formats the same headers again for
  each of ten thousand woken polls, and its connection makes two futures and
  sets ``TCP_NODELAY`` on and off again per answer: together about two
  thirds of what a woken poll cost (docs/bench-history.md).

What it relies on that Tornado does not document: a request's
``connection.stream.socket``; a handler's ``_headers``, ``_finished`` and
``_break_cycles()``; and its connection's ``_disconnect_on_finish``,
``_write_finished``, ``_finish_future``, ``_clear_callbacks()`` and
``_finish_request()``. ``FastWriter.missing()`` checks each at start, and
``choose_writer()`` serves with the plain writer when one is gone;
tests/app/test_fast_writer.py checks that they still behave as used here.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Hashable, Optional

import tornado.web
from tornado.http1connection import HTTP1Connection
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine, format_timestamp, responses
from tornado.iostream import IOStream, StreamClosedError

from handlers.writer import PlainWriter


def chunked(request: HTTPServerRequest) -> bool:
    """Whether Tornado frames a streamed response to ``request`` (one with no
    Content-Length) in chunks. It does for HTTP/1.1; an HTTP/1.0 body goes
    as is, and only closing the connection ends it."""
    return request.version == "HTTP/1.1"


def write_to_socket(stream: Optional[IOStream], data: bytes) -> Optional[asyncio.Future]:
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


def can_answer(handler: tornado.web.RequestHandler) -> bool:
    """Whether ``answer()`` may finish the request of ``handler``: an HTTP/1.1
    GET whose connection Tornado keeps open afterwards, answered with a body
    (not a 204) and no ETag. The rest (HTTP/1.0, a client that asked to
    close, for which Tornado adds a ``Connection`` header and closes) goes
    through ``finish()``."""
    request = handler.request
    return (request.version == "HTTP/1.1" and request.method == "GET"
            and not request.connection._disconnect_on_finish
            and handler.get_status() == 200 and handler.compute_etag() is None)


def whole_response(handler: tornado.web.RequestHandler, body: bytes) -> bytes:
    """The HTTP/1.1 response ``finish()`` would send for ``handler``, with
    its status and headers as they stand and ``body``, but dated now (Tornado
    dates a response when its request arrived, which for a held poll can be
    minutes ago). Only where ``can_answer()`` says so, and with no output
    transform that changes the body (this app's ``--gzip`` leaves text/plain
    and event streams alone)."""
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
        rest = write_to_socket(connection.stream, response)
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
            # The tail must not wait on Nagle for the client's ACK.
            connection.stream.set_nodelay(True)
            rest.add_done_callback(lambda written: written.exception() or connection._finish_request(None))
    handler.application.log_request(handler)
    handler.on_finish()
    handler._break_cycles()


class FastWriter(PlainWriter):
    """``PlainWriter`` with ``send()`` and ``finish()`` past Tornado, and the
    last answer given with a ``same_as`` kept for the next waiter of it."""

    name = "fast"

    def __init__(self) -> None:
        self.shared_key: tuple = ()
        self.shared_response = b""

    def send(self, handler: tornado.web.RequestHandler, data: bytes) -> Optional[asyncio.Future]:
        """``StreamClosedError`` when the client has gone (Tornado would tell
        the handler a loop turn later)."""
        piece = b"%x\r\n%b\r\n" % (len(data), data) if chunked(handler.request) else data
        return write_to_socket(handler.request.connection.stream, piece)

    def finish(self, handler: tornado.web.RequestHandler, body: Optional[bytes] = None,
               same_as: Optional[Hashable] = None) -> None:
        if body is None or not can_answer(handler):
            handler.finish(body)
            return
        if same_as is None:
            answer(handler, whole_response(handler, body))
            return
        key = (same_as, int(time.time()))  # the Date's second
        if key != self.shared_key:
            self.shared_key, self.shared_response = key, whole_response(handler, body)
        answer(handler, self.shared_response)

    @staticmethod
    def missing() -> list[str]:
        """The names above that this Tornado lacks, or whose values are not
        of the kind used here, tried on a fresh connection over a socket
        pair (call it with the IOLoop running); [] when all are there."""
        ours, peer = socket.socketpair()
        stream = IOStream(ours)
        try:
            try:
                connection = HTTP1Connection(stream, is_client=False)
                request = HTTPServerRequest(start_line=RequestStartLine("GET", "/", "HTTP/1.1"),
                                            headers=HTTPHeaders(Host="127.0.0.1"), connection=connection)
                handler = tornado.web.RequestHandler(tornado.web.Application(), request)
            except AttributeError as error:  # a name its own constructors use is gone
                return [f"{type(error.obj).__name__}.{error.name}"]
            expected = {
                "IOStream.socket": lambda: isinstance(stream.socket, socket.socket),
                "HTTP1Connection._disconnect_on_finish": lambda: connection._disconnect_on_finish is False,
                "HTTP1Connection._write_finished": lambda: connection._write_finished is False,
                "HTTP1Connection._finish_future": lambda: (isinstance(connection._finish_future, asyncio.Future)
                                                           and not connection._finish_future.done()),
                "HTTP1Connection._clear_callbacks()": lambda: callable(connection._clear_callbacks),
                "HTTP1Connection._finish_request()": lambda: callable(connection._finish_request),
                "RequestHandler._headers": lambda: isinstance(handler._headers, HTTPHeaders)
                                                   and "Content-Type" in handler._headers,
                "RequestHandler._finished": lambda: handler._finished is False,
                "RequestHandler._break_cycles()": lambda: callable(handler._break_cycles),
            }
            missing = []
            for name, holds in expected.items():
                try:
                    if not holds():
                        missing.append(name)
                except AttributeError:
                    missing.append(name)
            return missing
        finally:
            stream.close()
            peer.close()
