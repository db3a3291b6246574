"""What handlers/past_tornado.py relies on, checked against the installed
Tornado: these fail when Tornado changes under it.

- Tornado frames a streamed response (no Content-Length) as ``chunked()``
  says: in chunks for HTTP/1.1, as is for HTTP/1.0;
- a piece ``send()`` writes after Tornado's own flush continues that body in
  the same framing, for both versions;
- the undocumented attributes are there: a request's ``connection.stream``
  is an ``IOStream`` whose ``socket`` is the socket, and the connection has
  ``close()``.

A handler of this file's own does the writing, so only Tornado and
past_tornado are under test here; tests/app/test_http10.py checks the
event streams themselves.
"""

from __future__ import annotations

import json
import socket

import pytest
import tornado.web
from tornado.iostream import IOStream

from handlers import past_tornado
from tests.client import AsyncClient


class TwoPieces(tornado.web.RequestHandler):
    """GET: one piece through Tornado's write() and flush(), then one
    through past_tornado.send() (or Tornado again, with ?via=tornado)."""

    async def get(self) -> None:
        self.set_header("X-Chunked-Predicted", str(past_tornado.chunked(self.request)))
        self.write(b"first piece\n")
        await self.flush()
        if self.get_query_argument("via", "") == "tornado":
            self.write(b"second piece\n")
            await self.flush()
        else:
            rest = past_tornado.send(self.request, b"second piece\n")
            assert rest is None, "a small piece on an idle loopback socket goes in one send()"


class Attributes(tornado.web.RequestHandler):
    """GET: what past_tornado reaches for, as types."""

    def get(self) -> None:
        stream = self.request.connection.stream
        self.write({
            "stream is an IOStream": isinstance(stream, IOStream),
            "stream.socket is a socket": isinstance(getattr(stream, "socket", None), socket.socket),
            "connection has close()": callable(getattr(self.request.connection, "close", None)),
            "closed() is False while it runs": past_tornado.closed(self.request) is False,
        })


class HangUp(tornado.web.RequestHandler):
    """GET: past_tornado.close() mid-response; closed() then says so."""

    async def get(self) -> None:
        self.write(b"before\n")
        await self.flush()
        past_tornado.close(self.request)
        assert past_tornado.closed(self.request)


@pytest.fixture
def app():
    return tornado.web.Application([(r"/two-pieces", TwoPieces), (r"/attributes", Attributes), (r"/hang-up", HangUp)])


async def answer(port: int, path: str, version: str):
    client = await AsyncClient.open(port, path, headers={"Connection": "close"}, version=version)
    try:
        assert await client.closed_by_server(), "the response must end"
        return client.response
    finally:
        await client.close()


@pytest.mark.parametrize("via", ["past_tornado", "tornado"])
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
