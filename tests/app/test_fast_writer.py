"""What handlers/fast_writer.py relies on, checked against the installed
Tornado: these fail when Tornado changes under it.

- Tornado frames a streamed response (no Content-Length) as ``chunked()``
  says: in chunks for HTTP/1.1, as is for HTTP/1.0;
- a piece ``send()`` writes after Tornado's own flush continues that body in
  the same framing, for both versions;
- the undocumented attributes are there: a request's ``connection.stream``
  is an ``IOStream`` whose ``socket`` is the socket, and ``FastWriter.missing()``
  finds every name it checks at start, and says which when one is hidden;
- ``whole_response()`` is, but for the date, what ``finish()`` sends, and
  after ``answer()`` sent it the connection reads the client's next request,
  also when the socket took only part of it (its tail with ``TCP_NODELAY``
  on); ``can_answer()`` leaves HTTP/1.0 and a client that asked to close to
  Tornado, which says so in a ``Connection`` header; an answer to a peer
  gone ends quietly; an answer is logged as ``finish()``'s is.

A handler of this file's own does the writing, so only Tornado and
fast_writer are under test here; tests/app/test_http10.py checks the
event streams themselves.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import weakref

import pytest
import tornado.web
from tornado.http1connection import HTTP1Connection
from tornado.iostream import IOStream

from handlers import fast_writer
from handlers.fast_writer import FastWriter
from handlers.writer import choose_writer
from tests.client import AsyncClient, head_lines, largest_send_buffer, wait_until_async


class TwoPieces(tornado.web.RequestHandler):
    """GET: one piece through Tornado's write() and flush(), then one
    through FastWriter.send() (or Tornado again, with ?via=tornado)."""

    async def get(self) -> None:
        self.set_header("X-Chunked-Predicted", str(fast_writer.chunked(self.request)))
        self.write(b"first piece\n")
        await self.flush()
        if self.get_query_argument("via", "") == "tornado":
            self.write(b"second piece\n")
            await self.flush()
        else:
            rest = FastWriter().send(self, b"second piece\n")
            assert rest is None, "a small piece on an idle loopback socket goes in one send()"


class Attributes(tornado.web.RequestHandler):
    """GET: what fast_writer reaches for, as types."""

    def get(self) -> None:
        stream = self.request.connection.stream
        self.write({
            "stream is an IOStream": isinstance(stream, IOStream),
            "stream.socket is a socket": isinstance(getattr(stream, "socket", None), socket.socket),
            "closed() is False while it runs": FastWriter().closed(self) is False,
            # what answer() reads and sets
            "connection._disconnect_on_finish": isinstance(self.request.connection._disconnect_on_finish, bool),
            "connection._write_finished": self.request.connection._write_finished is False,
            "connection._finish_future": not self.request.connection._finish_future.done(),
            "connection._clear_callbacks()": callable(self.request.connection._clear_callbacks),
            "connection._finish_request()": callable(self.request.connection._finish_request),
            "handler._headers": self._headers["Content-Type"] == "text/html; charset=UTF-8",
            "handler._finished": self._finished is False,
            "handler._break_cycles()": callable(self._break_cycles),
        })


class Whole(tornado.web.RequestHandler):
    """GET: a body of ``?size=`` bytes, by fast_writer.answer() where
    can_answer() allows (or by finish(), with ?via=tornado). The application's
    ``answered`` list records how; ``?after=S`` answers S seconds late, and
    ``?anyway=1`` by answer() even where can_answer() says no (a peer gone)."""

    def compute_etag(self) -> None:
        return None  # whole_response() is for answers without one

    async def get(self) -> None:
        self.set_header("Content-Type", "text/plain")
        body = b"w" * int(self.get_query_argument("size", "5"))
        await asyncio.sleep(float(self.get_query_argument("after", "0")))
        self.application.handlers_seen.append(weakref.ref(self))
        self.application.sockets.append(self.request.connection.stream.socket)
        if self.get_query_argument("via", "") != "tornado" and (
                fast_writer.can_answer(self) or self.get_query_argument("anyway", "")):
            self.application.answered.append("fast_writer")
            fast_writer.answer(self, fast_writer.whole_response(self, body))
        else:
            self.application.answered.append("tornado")
            self.finish(body)

    def on_finish(self) -> None:
        self.application.answered.append("on_finish")

    def on_connection_close(self) -> None:
        self.application.answered.append("on_connection_close")


class HangUp(tornado.web.RequestHandler):
    """GET: FastWriter.close() mid-response; closed() then says so."""

    async def get(self) -> None:
        self.write(b"before\n")
        await self.flush()
        FastWriter().close(self)
        assert FastWriter().closed(self)


@pytest.fixture
def app():
    app = tornado.web.Application([(r"/two-pieces", TwoPieces), (r"/attributes", Attributes), (r"/hang-up", HangUp),
                                   (r"/whole", Whole)])
    app.answered, app.handlers_seen, app.sockets = [], [], []
    return app


async def answer(port: int, path: str, version: str):
    client = await AsyncClient.open(port, path, headers={"Connection": "close"}, version=version)
    try:
        assert await client.closed_by_server(), "the response must end"
        return client.response
    finally:
        await client.close()


@pytest.mark.parametrize("via", ["fast_writer", "tornado"])
@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
@pytest.mark.gen_test
async def test_tornado_frames_a_stream_as_chunked_says_and_send_continues_it(http_server, http_port, version, via):
    response = await answer(http_port, f"/two-pieces?via={via}", version)
    assert response.status == 200 and response.complete and not response.reset
    predicted = response.headers["X-Chunked-Predicted"] == "True"
    assert predicted == (version == "HTTP/1.1")
    # What Tornado did is what chunked() said it would do.
    assert response.chunked == predicted, response.headers
    assert "Content-Length" not in response.headers
    assert response.body == b"first piece\nsecond piece\n"
    if predicted:
        assert response.chunks == [b"first piece\n", b"second piece\n", b""]


@pytest.mark.gen_test
async def test_the_undocumented_attributes_are_there(http_client, http_server, http_port):
    response = await http_client.fetch(f"http://127.0.0.1:{http_port}/attributes")
    found = json.loads(response.body)
    assert found and all(found.values()), found


@pytest.mark.gen_test
async def test_close_hangs_up_at_once(http_server, http_port):
    client = await AsyncClient.open(http_port, "/hang-up", version="HTTP/1.1")
    try:
        assert await client.closed_by_server(timeout=2)
        assert client.response.body == b"before\n" and not client.response.complete
    finally:
        await client.close()


@pytest.mark.gen_test
async def test_whole_response_is_what_finish_sends_but_for_the_date(http_server, http_port, app):
    sent = {}
    for via in ("fast_writer", "tornado"):
        client = await AsyncClient.open(http_port, f"/whole?via={via}")
        try:
            response = await client.finish()
            await client.silent(0.1)  # nothing after it: no second response
            sent[via] = response
        finally:
            await client.close()
    assert app.answered == ["fast_writer", "on_finish", "tornado", "on_finish"]
    mine, tornados = sent["fast_writer"], sent["tornado"]
    assert head_lines(mine) == head_lines(tornados)
    assert head_lines(mine)[0] == b"HTTP/1.1 200 OK" and mine.headers["Content-Length"] == "5"
    assert mine.received.endswith(b"\r\n\r\nwwwww") and mine.body == tornados.body == b"wwwww"
    assert mine.headers["Date"].endswith(" GMT")


@pytest.mark.gen_test
async def test_after_answer_the_connection_reads_the_next_request(http_server, http_port, app):
    client = await AsyncClient.open(http_port, "/whole?size=3")
    try:
        for size in (3, 4, 5):
            if size > 3:
                await client.request("GET", f"/whole?size={size}")
            response = await client.finish(timeout=2)
            assert response.status == 200 and response.body == b"w" * size
            assert await client.silent(0.05), "one answer, then nothing until the next request"
        assert app.answered == ["fast_writer", "on_finish"] * 3
    finally:
        await client.close()


def nodelay(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


@pytest.mark.gen_test(timeout=20)
async def test_an_answer_the_socket_cannot_take_at_once_is_finished_by_tornados_stream(http_server, http_port, app):
    """The tail goes with TCP_NODELAY on, as finish() sends it, so that its
    last segment does not wait for the client's ACK; off again after."""
    size = 2 * largest_send_buffer()
    client = await AsyncClient.open(http_port, f"/whole?size={size}", stalled=True)
    try:
        assert await wait_until_async(lambda: "on_finish" in app.answered)
        assert nodelay(app.sockets[0]), "the unsent tail waits on Nagle"
        await client.resume()
        response = await client.finish(timeout=10)
        assert response.body == b"w" * size and response.received.endswith(b"w" * 100)
        assert app.answered == ["fast_writer", "on_finish"]
        assert await wait_until_async(lambda: not nodelay(app.sockets[0])), "Nagle back on for the next request"
        await client.request("GET", "/whole?size=2")  # the connection is still kept
        assert (await client.finish(timeout=2)).body == b"ww"
    finally:
        await client.close()


@pytest.mark.gen_test(timeout=20)
async def test_a_finished_handler_is_not_told_of_the_close_while_its_answer_is_sent(http_server, http_port, app):
    client = await AsyncClient.open(http_port, f"/whole?size={2 * largest_send_buffer()}", stalled=True)
    assert await wait_until_async(lambda: "on_finish" in app.answered)
    client.abort()  # with most of the answer unsent
    await asyncio.sleep(0.2)
    assert app.answered == ["fast_writer", "on_finish"]


@pytest.mark.parametrize("version, headers, connection", [
    ("HTTP/1.0", {}, None),
    ("HTTP/1.0", {"Connection": "keep-alive"}, "Keep-Alive"),
    ("HTTP/1.1", {"Connection": "close"}, "close"),
])
@pytest.mark.gen_test
async def test_can_answer_leaves_http10_and_connection_close_to_tornado(http_server, http_port, app,
                                                                       version, headers, connection):
    client = await AsyncClient.open(http_port, "/whole", version=version, headers=headers)
    try:
        response = await client.finish(timeout=2)
        assert app.answered == ["tornado", "on_finish"]
        assert response.body == b"wwwww" and response.headers["Content-Length"] == "5"
        assert response.headers.get("Connection") == connection
        assert await client.closed_by_server(timeout=0.3) == (connection != "Keep-Alive")
    finally:
        await client.close()


@pytest.mark.gen_test
async def test_an_answer_to_a_peer_gone_ends_quietly(http_server, http_port, app, caplog):
    client = await AsyncClient.open(http_port, "/whole?after=0.3&anyway=1")
    await asyncio.sleep(0.05)
    client.abort()  # a RST while the handler waits
    with caplog.at_level(logging.WARNING):
        assert await wait_until_async(lambda: "on_finish" in app.answered, timeout=3)
        await asyncio.sleep(0.05)
    assert app.answered == ["on_connection_close", "fast_writer", "on_finish"]
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING], caplog.text


@pytest.mark.parametrize("via", ["fast_writer", "tornado"])
@pytest.mark.gen_test
async def test_an_answered_handler_is_freed_without_the_garbage_collector(http_server, http_port, app, via):
    """Tornado's finish() breaks the handler's reference cycles so that it is
    freed at once, not at the next collection; answer() does too."""
    gc.disable()
    try:
        client = await AsyncClient.open(http_port, f"/whole?via={via}")
        await client.finish(timeout=2)
        await client.request("GET", f"/whole?via={via}")  # the first request is over on the server's side
        await client.finish(timeout=2)
        await client.close()
        assert app.handlers_seen[0]() is None, gc.get_referrers(app.handlers_seen[0]())
    finally:
        gc.enable()


@pytest.mark.gen_test
async def test_an_answer_is_logged_as_finish_logs_it(http_server, http_port, app, caplog):
    for via in ("fast_writer", "tornado"):
        client = await AsyncClient.open(http_port, f"/whole?via={via}")
        try:
            with caplog.at_level(logging.INFO, logger="tornado.access"):
                await client.finish(timeout=2)
                await client.request("GET", f"/whole?size=4&via={via}")  # the first is over server-side
                await client.finish(timeout=2)
        finally:
            await client.close()
    lines = [record.getMessage() for record in caplog.records if record.name == "tornado.access"]
    assert [line.split(" (")[0] for line in lines] == [
        "200 GET /whole?via=fast_writer", "200 GET /whole?size=4&via=fast_writer",
        "200 GET /whole?via=tornado", "200 GET /whole?size=4&via=tornado"], lines


def test_every_private_name_is_found_here(io_loop):
    assert FastWriter.missing() == []
    writer, fallback = choose_writer("fast")
    assert writer.name == "fast" and fallback is None


@pytest.mark.parametrize("owner, name, shown", [
    (tornado.web.RequestHandler, "_break_cycles", "RequestHandler._break_cycles()"),
    (HTTP1Connection, "_finish_request", "HTTP1Connection._finish_request()"),
    (HTTP1Connection, "_clear_callbacks", "HTTP1Connection._clear_callbacks"),  # its constructor calls it
])
def test_a_hidden_private_name_makes_the_fast_writer_fall_back_and_say_which(io_loop, monkeypatch,
                                                                             owner, name, shown):
    monkeypatch.delattr(owner, name)
    assert FastWriter.missing() == [shown]
    writer, fallback = choose_writer("fast")
    assert writer.name == "plain"
    assert fallback == f"--writer=fast: this Tornado lacks {shown}; serving with --writer=plain"
    assert "\n" not in fallback


def test_the_plain_writer_is_chosen_without_a_word(io_loop, monkeypatch):
    monkeypatch.delattr(tornado.web.RequestHandler, "_break_cycles")
    writer, fallback = choose_writer("plain")
    assert writer.name == "plain" and fallback is None
