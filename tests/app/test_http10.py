"""Event streams over HTTP/1.0 and HTTP/1.1, byte by byte (docs/protocol.md
section 2): what nginx sends an upstream by default, and ``curl --http1.0``.

An HTTP/1.0 client gets the stream unchunked: every line of the body is an
event-stream line (no chunk sizes written into it), and the body ends when
the connection closes. An HTTP/1.1 client gets it chunked, one event to a
chunk. Both for /ticker and /chat/events, streamed and through the long-poll
fallback, and for a reader whose socket is full, whose writes the server
finishes later through Tornado's stream.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Iterator

import pytest

from tests.client import FALLBACK, AsyncClient, Response, assert_event_stream_lines, largest_send_buffer, wait_until_async

RETRY = b"retry: 2000\n\n"
PATHS = ["/ticker", "/chat/events"]


def assert_unframed(response: Response) -> None:
    """A streamed HTTP/1.0 response: no length, no chunks; the end is the close."""
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert "Transfer-Encoding" not in response.headers and "Content-Length" not in response.headers, response.headers
    assert not response.chunked


@pytest.fixture
def get(http_server, http_port) -> Iterator[Callable[..., Awaitable[AsyncClient]]]:
    """``await get(path, version, headers, stalled=False)``: a raw GET in that
    HTTP version, no Connection header (HTTP/1.0 closes after one answer)."""
    clients: list[AsyncClient] = []

    async def open_get(path: str, version: str, headers: dict = {}, stalled: bool = False) -> AsyncClient:
        client = await AsyncClient.open(http_port, path, headers=headers, version=version, stalled=stalled)
        clients.append(client)
        return client

    yield open_get
    for client in clients:
        client.abort()


def publish(app, path: str, count: int, first: int = 0) -> list[str]:
    """``count`` events on the stream of ``path``, the ``first``-th on; their data."""
    published = []
    for n in range(first, first + count):
        if path == "/ticker":
            published.append(f"{101 + n / 100:.2f}")
            app.prices.update(published[-1])
        else:
            published.append(f"message {n}\nwith a second line")
            app.history.append(published[-1])
    return published


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.gen_test
async def test_an_http_1_0_stream_is_event_stream_lines_ended_by_the_close(get, app, path):
    stream = await get(path, "HTTP/1.0")
    assert_unframed(await stream.head())
    await stream.until(RETRY)
    for n in range(3):
        # One at a time: a price published while the last is still being
        # written replaces it (a state stream owes only the newest).
        data = publish(app, path, 1, first=n)[0]
        await stream.wait(lambda response: response.events and response.events[-1]["data"] == data)

    await app.clients.release_all(timeout=1.0)  # as at shutdown: every stream ends

    assert await stream.closed_by_server(), "an HTTP/1.0 stream ends only by closing"
    response = stream.response
    assert response.complete and not response.reset
    assert response.body.startswith(RETRY)
    assert_event_stream_lines(response.body)
    assert [event["data"] for event in response.events][-3:] == (
        ["101.00", "101.01", "101.02"] if path == "/ticker"
        else [f"message {n}\nwith a second line" for n in range(3)])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.gen_test
async def test_an_http_1_1_stream_stays_chunked_one_event_to_a_chunk(get, app, path):
    stream = await get(path, "HTTP/1.1", {"Connection": "close"})
    response = await stream.head()
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert await stream.chunk() == RETRY  # written through Tornado
    if path == "/ticker":
        await stream.chunk()  # the current price, owed at once
    publish(app, path, 2)
    first, second = await stream.chunk(), await stream.chunk()  # written straight to the socket
    assert_event_stream_lines(first + second)
    assert first.count(b"\n\n") == second.count(b"\n\n") == 1, (first, second)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.gen_test
async def test_the_fallback_over_http_1_0_answers_one_batch_and_closes(get, app, path):
    publish(app, path, 2)
    headers = FALLBACK | ({"Last-Event-ID": "1"} if path == "/ticker" else {})
    poll = await get(path, "HTTP/1.0", headers)
    response = await poll.finish()
    assert response.status == 200 and "Transfer-Encoding" not in response.headers
    assert response.body.startswith(RETRY) and response.events, response
    assert_event_stream_lines(response.body)
    assert await poll.closed_by_server(), "HTTP/1.0 without keep-alive: one answer per connection"


@pytest.mark.gen_test
async def test_the_fallback_over_http_1_0_that_times_out_is_retry_and_keep_alive(get, app):
    poll = await get("/chat/events", "HTTP/1.0", FALLBACK)
    response = await poll.finish(timeout=3)  # --poll-timeout is 1 s here
    assert response.body == RETRY + b": keep-alive\n\n"
    assert await poll.closed_by_server()


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
@pytest.mark.settings(max_backlog=1 << 30, keepalive=60)
@pytest.mark.gen_test(timeout=20)
async def test_writes_the_socket_does_not_take_whole_are_finished_in_the_same_framing(get, app, version, monkeypatch):
    """Twice the largest kernel send buffer of chat messages, to a reader
    that reads nothing: a send() is cut short, its rest waits in Tornado's
    stream (the one write in flight), and every byte then goes out framed as
    the start was, in order."""
    partial = []
    send = app.writer.send

    def watched(handler, data):
        rest = send(handler, data)
        partial.append(rest is not None)
        return rest

    monkeypatch.setattr(app.writer, "send", watched)
    stream = await get("/chat/events", version, stalled=True)
    assert await wait_until_async(lambda: app.clients.counts["chat.streams"] == 1)
    size = 256 * 1024
    texts = [f"{n:03d}" + "x" * (size - 3) for n in range(2 * largest_send_buffer() // size + 2)]
    for text in texts:
        app.history.append(text)
        await asyncio.sleep(0)
    assert await wait_until_async(lambda: any(partial)), "every send() was taken whole"

    await stream.resume()
    response = await stream.head()
    assert response.chunked == (version == "HTTP/1.1")
    events = await stream.events(len(texts), timeout=15)
    assert [event["data"] for event in events] == texts
    assert response.body.startswith(RETRY)
    assert_event_stream_lines(response.body)
    assert await stream.silent(0.1)
