"""Server-Sent Events, section 2 of docs/protocol.md, checked byte by byte on
a raw socket: /ticker (a state stream), /chat/events (a bounded event queue)
and the long-poll fallback that serves both one batch per request."""

import asyncio
import re
import time

import pytest

from handlers.base import HoldingHandler
from tests.client import FALLBACK, AsyncClient, Response, largest_send_buffer, wait_until_async

EVENT_STREAM_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
RETRY = b"retry: 2000\n\n"
KEEP_ALIVE = b": keep-alive\n\n"


def chat_frame(number: int, message: str) -> bytes:
    """Message ``number`` on the wire: its id is the app's epoch (E, see
    tests/conftest.py) and the next /chat/get cursor."""
    return f"id: E:{number + 1}\ndata: {message}\n\n".encode("utf-8")


def chat_frames(numbers) -> bytes:
    return b"".join(chat_frame(n, f"m{n}") for n in numbers)


def reset(first: int) -> bytes:
    return f"event: reset\nid: E:{first}\ndata: {first}\n\n".encode()


def price_frame(app) -> bytes:
    return f"id: {app.prices.id}\ndata: {app.prices.data}\n\n".encode()


def fill_history(app, count: int) -> None:
    for number in range(count):
        app.history.append(f"m{number}")


def assert_event_stream_headers(response: Response) -> None:
    assert response.status == 200
    for name, value in EVENT_STREAM_HEADERS.items():
        assert response.headers.get(name) == value, name
    assert "Content-Encoding" not in response.headers


async def long_poll_answer(client: AsyncClient) -> bytes:
    """A fallback poll: one complete response with the stream's headers."""
    response = await client.finish()
    assert_event_stream_headers(response)
    assert "Content-Length" in response.headers, "a poll's answer ends; it is not a stream"
    return response.body


# Headers and the first bytes -------------------------------------------------


@pytest.mark.parametrize("path", ["/chat/events", "/ticker"])
@pytest.mark.gen_test
async def test_stream_answers_event_stream_headers(get, path):
    response = await (await get(path)).head()
    assert_event_stream_headers(response)
    assert response.chunked, "a stream has no length: its events go out as they come"


@pytest.mark.settings(retry=1234)
@pytest.mark.parametrize("path", ["/chat/events", "/ticker"])
@pytest.mark.gen_test
async def test_stream_first_chunk_is_the_retry_field(get, path):
    stream = await get(path)
    assert await stream.chunk() == b"retry: 1234\n\n"


@pytest.mark.settings(keepalive=0.2)
@pytest.mark.parametrize("path, headers", [("/chat/events", {}), ("/ticker", {"Last-Event-ID": "1"})])
@pytest.mark.gen_test
async def test_idle_stream_gets_keep_alive_comments(get, path, headers):
    stream = await get(path, headers)
    assert await stream.chunk() == RETRY
    assert await stream.chunk(timeout=1) == KEEP_ALIVE
    assert await stream.chunk(timeout=1) == KEEP_ALIVE


# /ticker, a state stream -------------------------------------------------------


@pytest.mark.gen_test
async def test_ticker_without_id_sends_the_current_price_at_once(get, app):
    stream = await get("/ticker")
    assert await stream.take(len(RETRY)) == RETRY
    event = await stream.chunk()
    assert event == b"id: 1\ndata: " + app.prices.data.encode() + b"\n\n"
    price = re.fullmatch(rb"id: 1\ndata: (\d+\.\d\d)\n\n", event).group(1)
    assert float(price) > 0


@pytest.mark.parametrize("held_id", ["999", "0", "9" * 30], ids=["other", "zero", "from-before-restart"])
@pytest.mark.gen_test
async def test_ticker_with_a_different_id_sends_the_current_price_at_once(get, app, held_id):
    app.prices.update("123.45")
    stream = await get("/ticker", {"Last-Event-ID": held_id})
    expected = RETRY + b"id: 2\ndata: 123.45\n\n"
    assert await stream.take(len(expected)) == expected


@pytest.mark.gen_test
async def test_ticker_with_the_current_id_waits_for_the_next_move(get, app):
    stream = await get("/ticker", {"Last-Event-ID": "1"})
    assert await stream.chunk() == RETRY
    assert await stream.silent(0.2)
    app.prices.update("101.00")
    assert await stream.chunk() == b"id: 2\ndata: 101.00\n\n"
    app.prices.update("100.99")
    assert await stream.chunk() == b"id: 3\ndata: 100.99\n\n"


@pytest.mark.gen_test
async def test_ticker_reads_the_lastEventId_query_without_header(get, app):
    stream = await get("/ticker?lastEventId=1")
    assert await stream.chunk() == RETRY
    assert await stream.silent(0.2)
    app.prices.update("101.00")
    assert await stream.chunk() == b"id: 2\ndata: 101.00\n\n"


@pytest.mark.gen_test
async def test_last_event_id_header_wins_over_the_query(get, app):
    stream = await get("/ticker?lastEventId=1", {"Last-Event-ID": "5"})
    assert await stream.take(len(RETRY) + len(price_frame(app))) == RETRY + price_frame(app)


# /chat/events, a bounded event queue ---------------------------------------------


@pytest.mark.gen_test
async def test_chat_message_n_goes_out_with_id_n_plus_one(get, app):
    stream = await get("/chat/events")
    assert await stream.chunk() == RETRY
    app.history.append("hello")
    assert await stream.chunk() == chat_frame(0, "hello")
    app.history.append("caf\u00e9")
    assert await stream.chunk() == chat_frame(1, "caf\u00e9")


@pytest.mark.gen_test
async def test_chat_post_reaches_an_open_stream(get, app, http_client, http_port):
    stream = await get("/chat/events")
    assert await stream.chunk() == RETRY
    await http_client.fetch(f"http://127.0.0.1:{http_port}/chat/post", method="POST", body="message=via+post")
    assert await stream.chunk() == chat_frame(0, "via post")


@pytest.mark.settings(history=3)
@pytest.mark.gen_test
async def test_chat_without_id_sends_every_retained_message_then_new_ones(get, app):
    fill_history(app, 5)
    stream = await get("/chat/events")
    expected = RETRY + chat_frames([2, 3, 4])
    assert await stream.take(len(expected)) == expected
    app.history.append("m5")
    assert await stream.chunk() == chat_frame(5, "m5")


@pytest.mark.settings(history=3)
@pytest.mark.parametrize("held_id", [2, 3, 4, 5])
@pytest.mark.gen_test
async def test_chat_with_id_in_range_resumes_from_it(get, app, held_id):
    fill_history(app, 5)
    stream = await get("/chat/events", {"Last-Event-ID": str(held_id)})
    expected = RETRY + chat_frames(range(held_id, 5))
    assert await stream.take(len(expected)) == expected
    app.history.append("m5")
    assert await stream.chunk() == chat_frame(5, "m5")


@pytest.mark.settings(history=3)
@pytest.mark.parametrize(
    "held_id", ["0", "1", "6", "9" * 30, "9" * 5000], ids=["aged-0", "aged-1", "past-count", "huge", "5000-digits"]
)
@pytest.mark.gen_test
async def test_chat_with_id_out_of_range_gets_reset_then_all_retained(get, app, held_id):
    fill_history(app, 5)
    stream = await get("/chat/events", {"Last-Event-ID": held_id})
    expected = RETRY + reset(2) + chat_frames([2, 3, 4])
    assert await stream.take(len(expected)) == expected
    app.history.append("m5")
    assert await stream.chunk() == chat_frame(5, "m5")


@pytest.mark.settings(history=3)
@pytest.mark.parametrize("held_id", ["abc", "-1", "3.0", "+3", "3e0", "0x3", ""])
@pytest.mark.gen_test
async def test_chat_non_decimal_id_counts_as_absent(get, app, held_id):
    fill_history(app, 5)
    stream = await get("/chat/events", {"Last-Event-ID": held_id})
    expected = RETRY + chat_frames([2, 3, 4])  # no reset, nothing skipped
    assert await stream.take(len(expected)) == expected


@pytest.mark.settings(history=3)
@pytest.mark.gen_test
async def test_chat_reads_the_lastEventId_query_without_header(get, app):
    fill_history(app, 5)
    stream = await get("/chat/events?lastEventId=4")
    assert await stream.take(len(RETRY + chat_frames([4]))) == RETRY + chat_frames([4])


@pytest.mark.parametrize("line_break", ["\n", "\r", "\r\n"])
@pytest.mark.gen_test
async def test_chat_multiline_message_goes_out_as_several_data_lines(get, app, line_break):
    app.history.append(line_break.join(["first", "", "third"]))
    stream = await get("/chat/events")
    expected = RETRY + b"id: E:1\ndata: first\ndata: \ndata: third\n\n"
    assert await stream.take(len(expected)) == expected


# The long-poll fallback -------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value",
    [
        ("X-Event-Source-Simulate", "Long-Polling"),
        ("x-event-source-simulate", "long-polling"),
        ("X-EVENT-SOURCE-SIMULATE", "LONG-POLLING"),
        ("X-SSE-Simulation", "long-polling"),
        ("x-sse-simulation", "Long-Polling"),
    ],
)
@pytest.mark.gen_test
async def test_fallback_ticker_answers_one_event_and_ends(get, app, name, value):
    stream = await get("/ticker", {name: value})
    assert await long_poll_answer(stream) == RETRY + price_frame(app)
    assert await stream.closed_by_server()


@pytest.mark.gen_test
async def test_other_simulate_value_gets_a_stream(get):
    response = await (await get("/ticker", {"X-Event-Source-Simulate": "yes"})).head()
    assert response.chunked and "Content-Length" not in response.headers


@pytest.mark.settings(history=3)
@pytest.mark.gen_test
async def test_fallback_chat_answers_every_pending_message(get, app):
    fill_history(app, 5)
    stream = await get("/chat/events", FALLBACK)
    assert await long_poll_answer(stream) == RETRY + chat_frames([2, 3, 4])


@pytest.mark.settings(history=3)
@pytest.mark.gen_test
async def test_fallback_chat_resumes_from_the_id(get, app):
    fill_history(app, 5)
    stream = await get("/chat/events", FALLBACK | {"Last-Event-ID": "3"})
    assert await long_poll_answer(stream) == RETRY + chat_frames([3, 4])


@pytest.mark.settings(history=3)
@pytest.mark.gen_test
async def test_fallback_chat_out_of_range_id_gets_reset_then_all(get, app):
    fill_history(app, 5)
    stream = await get("/chat/events", FALLBACK | {"Last-Event-ID": "1"})
    assert await long_poll_answer(stream) == RETRY + reset(2) + chat_frames([2, 3, 4])


@pytest.mark.settings(poll_timeout=30)
@pytest.mark.gen_test(timeout=3)
async def test_fallback_reset_on_an_empty_chat_is_answered_at_once(get, app):
    # An id from before a restart, and nothing posted since: the reset is
    # the batch; the poll is not held.
    stream = await get("/chat/events", FALLBACK | {"Last-Event-ID": "7"})
    assert await long_poll_answer(stream) == RETRY + reset(0)


@pytest.mark.settings(history=3)
@pytest.mark.gen_test
async def test_fallback_reads_the_lastEventId_query(get, app):
    fill_history(app, 5)
    stream = await get("/chat/events?lastEventId=4", FALLBACK)
    assert await long_poll_answer(stream) == RETRY + chat_frames([4])


@pytest.mark.gen_test
async def test_fallback_chat_poll_is_held_silently_until_a_message(get, app):
    stream = await get("/chat/events", FALLBACK | {"Last-Event-ID": "0"})
    assert await wait_until_async(lambda: app.clients.counts["chat.streams"] == 1)
    assert await stream.silent(0.2), "a held poll writes nothing, not even its headers"
    app.history.append("one")
    app.history.append("two")
    assert await long_poll_answer(stream) == RETRY + chat_frame(0, "one") + chat_frame(1, "two")


@pytest.mark.gen_test
async def test_fallback_ticker_poll_is_held_silently_until_the_next_move(get, app):
    stream = await get("/ticker?lastEventId=1", FALLBACK)
    assert await wait_until_async(lambda: app.clients.counts["ticker.streams"] == 1)
    assert await stream.silent(0.2), "a held poll writes nothing, not even its headers"
    app.prices.update("101.00")
    assert await long_poll_answer(stream) == RETRY + b"id: 2\ndata: 101.00\n\n"


@pytest.mark.settings(poll_timeout=0.3)
@pytest.mark.parametrize("path, held_id", [("/chat/events", "0"), ("/ticker", "1")])
@pytest.mark.gen_test
async def test_fallback_poll_timeout_is_200_with_retry_and_keep_alive_only(get, app, path, held_id):
    stream = await get(path, FALLBACK | {"Last-Event-ID": held_id})
    assert await long_poll_answer(stream) == b"retry: 2000\n\n: keep-alive\n\n"


# Never compressed -----------------------------------------------------------------

GZIP = {"Accept-Encoding": "gzip"}


@pytest.mark.settings(gzip=True)
@pytest.mark.gen_test
async def test_gzip_setting_compresses_pages(get):
    response = await (await get("/", GZIP)).finish()
    assert response.headers.get("Content-Encoding") == "gzip"
    assert b"</html>" in response.body  # gunzipped by the client, which fails on anything but gzip


def publish_message(app, text: str) -> bytes:
    app.history.append(text)
    return chat_frame(app.history.count - 1, text)


def publish_price(app, text: str) -> bytes:
    app.prices.update(text)
    return price_frame(app)


@pytest.mark.settings(gzip=True)
@pytest.mark.parametrize("path, publish", [("/chat/events", publish_message), ("/ticker", publish_price)],
                         ids=["/chat/events", "/ticker"])
@pytest.mark.gen_test
async def test_gzip_setting_never_compresses_streams_and_each_event_goes_out_alone(get, app, path, publish):
    """Events large enough for the compressor to want them still go out
    as they come: each one alone, in a chunk of its own, as written."""
    app.history.append("x" * 4000)
    stream = await get(path, GZIP)
    assert_event_stream_headers(await stream.head())
    assert await stream.chunk() == RETRY
    await stream.chunk()  # what a reader without an id is owed at once
    for text in ("one", "two", "three"):
        frame = publish(app, text * 300)
        assert await stream.chunk() == frame


@pytest.mark.settings(gzip=True)
@pytest.mark.gen_test
async def test_gzip_setting_never_compresses_chat_polls(get, app):
    app.history.append("x" * 4000)
    stream = await get("/chat/events", GZIP | FALLBACK)
    assert await long_poll_answer(stream) == RETRY + chat_frame(0, "x" * 4000)


@pytest.mark.settings(gzip=True)
@pytest.mark.gen_test
async def test_gzip_setting_never_compresses_ticker_polls(get, app):
    app.prices.update("7" * 4000)  # large enough for the compressor to want it
    stream = await get("/ticker", GZIP | FALLBACK)
    assert await long_poll_answer(stream) == RETRY + price_frame(app)


@pytest.mark.settings(gzip=True)
@pytest.mark.gen_test
async def test_gzip_setting_never_compresses_chat_get(get, app):
    app.history.append("y" * 4000)
    response = await (await get("/chat/get/0", GZIP)).finish()
    assert response.status == 200
    assert "Content-Encoding" not in response.headers
    assert response.body == b"y" * 4000


# Clients that go away ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path, headers, kind",
    [
        ("/chat/events", {}, "chat.streams"),
        ("/ticker", {"Last-Event-ID": "1"}, "ticker.streams"),
        ("/chat/events", FALLBACK, "chat.streams"),
        ("/ticker", FALLBACK | {"Last-Event-ID": "1"}, "ticker.streams"),
    ],
    ids=["chat-stream", "ticker-stream", "chat-poll", "ticker-poll"],
)
@pytest.mark.settings(poll_timeout=30, keepalive=30)  # neither timer may be what frees it
@pytest.mark.gen_test
async def test_client_that_goes_away_is_dropped_within_a_second(get, app, path, headers, kind):
    stream = await get(path, headers)
    assert await wait_until_async(lambda: app.clients.counts[kind] == 1)
    await stream.close()
    # No event is published: the server must notice the closed socket itself.
    assert await wait_until_async(lambda: app.clients.counts[kind] == 0, timeout=1.0)
    assert (app.history.count, app.prices.id) == (0, 1)


@pytest.mark.parametrize(
    "path, headers, kind",
    [
        ("/chat/get/0", {}, "chat.waiting"),
        ("/chat/events", {}, "chat.streams"),
        ("/ticker", {"Last-Event-ID": "1"}, "ticker.streams"),
        ("/chat/events", FALLBACK, "chat.streams"),
    ],
    ids=["chat-get", "chat-stream", "ticker-stream", "chat-poll"],
)
@pytest.mark.settings(poll_timeout=30, keepalive=30)  # neither timer may be what frees it
@pytest.mark.gen_test
async def test_client_gone_before_tornado_listens_is_forgotten_at_once(get, app, monkeypatch, path, headers, kind):
    """A client that sends its request and resets at once can be gone
    before Tornado listens for a close, and then no on_connection_close
    comes. Faked here, since Tornado 6.6.1 does call it for a real client of
    that kind: the connection closes as the request arrives, and Tornado
    never tells the handler. The hold must notice by itself (its check of
    ``writer.closed()``), or the request is counted until its timeout."""
    arrived = []
    prepare = HoldingHandler.prepare

    def gone_unreported(handler):
        prepare(handler)
        handler.request.connection.set_close_callback(None)  # nobody will be told
        handler.request.connection.stream.close()
        arrived.append(handler)

    monkeypatch.setattr(HoldingHandler, "prepare", gone_unreported)
    await get(path, headers)
    assert await wait_until_async(lambda: arrived)
    assert await wait_until_async(lambda: app.clients.counts[kind] == 0, timeout=1.0)
    assert not app.clients.holders


@pytest.mark.settings(max_clients_per_address=1, poll_timeout=30)
@pytest.mark.gen_test
async def test_the_cap_per_address_counts_each_address_apart(app, http_server, http_port):
    """Past ``--max-clients-per-address`` an address is refused with a 503;
    a client from another address is let in all the same."""
    clients = [await AsyncClient.open(http_port, "/chat/get/0")]
    try:
        assert await wait_until_async(lambda: len(app.clients.holders) == 1)
        clients.append(await AsyncClient.open(http_port, "/chat/get/0"))
        refused = await clients[-1].finish()
        assert refused.status == 503 and b"127.0.0.1 holds 1" in refused.body, refused
        clients.append(await AsyncClient.open(http_port, "/chat/get/0", source="127.0.0.2"))
        assert await wait_until_async(lambda: len(app.clients.holders) == 2)
        assert app.clients.by_address == {"127.0.0.1": 1, "127.0.0.2": 1}
    finally:
        for client in clients:
            await client.close()


# Slow readers ---------------------------------------------------------------------------


@pytest.mark.settings(max_backlog=64 * 1024)
@pytest.mark.gen_test(timeout=10)
async def test_chat_reader_too_far_behind_is_disconnected(get, app):
    stream = await get("/chat/events", stalled=True)
    assert await wait_until_async(lambda: app.clients.counts["chat.streams"] == 1)
    for _ in range(300):  # at most ~10 MB published
        app.history.append("z" * 32 * 1024)
        await asyncio.sleep(0.001)
        if app.clients.counts["chat.streams"] == 0:
            break
    assert await wait_until_async(lambda: app.clients.counts["chat.streams"] == 0, timeout=1.0)
    await stream.resume()
    assert await stream.closed_by_server(timeout=5), "the server must close a reader it dropped"
    await stream.close()


@pytest.mark.settings(max_backlog=64 << 20, keepalive=0.2)
@pytest.mark.gen_test(timeout=20)
async def test_a_keep_alive_never_overtakes_a_write_in_flight(get, app):
    """The keep-alive falls due while a stuck reader's write is in flight
    and its socket has room again, before Tornado's stream has sent the
    queued tail: the keep-alive must wait for it, or its bytes reach the
    socket ahead of that tail and break the framing."""
    stream = await get("/chat/events", stalled=True)
    assert await wait_until_async(lambda: app.clients.counts["chat.streams"] == 1)
    [handler] = app.clients.holders
    piece = 32 * 1024
    # More than the socket's buffers take, however large the kernel lets them grow.
    texts = [f"{number:04d}" + "z" * piece for number in range(2 * largest_send_buffer() // piece + 8)]
    for text in texts:
        app.history.append(text)
    await asyncio.sleep(0.3)  # stuck for longer than --keepalive
    assert handler.writing
    for _ in range(20):
        # The reader takes a little, and the kernel frees room in the
        # server's socket, too little to wake Tornado's stream; the IOLoop
        # does not run meanwhile, so the stream's tail stays queued.
        stream.drain()
        time.sleep(0.005)
    handler.keepalive.cancel()
    handler.keep_alive()  # the keep-alive timer fires now
    await stream.resume()
    events = await stream.events(len(texts), timeout=10)
    assert [event["id"] for event in events] == [f"E:{number + 1}" for number in range(len(texts))]
    assert [event["data"] for event in events] == texts
    await stream.close()


async def stall_ticker(app, get) -> tuple[AsyncClient, bytes]:
    """A /ticker reader whose socket is full: a state twice the largest
    kernel send buffer cannot be taken in one go, so the server's write stays
    stuck while the price then moves 100 times."""
    stream = await get("/ticker", {"Last-Event-ID": "1"}, stalled=True)
    assert await wait_until_async(lambda: app.clients.counts["ticker.streams"] == 1)
    big = "8" * (2 * largest_send_buffer())
    app.prices.update(big)
    for cents in range(100):
        await asyncio.sleep(0.001)
        app.prices.update(f"{101 + cents / 100:.2f}")
    await asyncio.sleep(0.05)
    return stream, f"id: 2\ndata: {big}\n\n".encode()


@pytest.mark.settings(max_backlog=64 * 1024)
@pytest.mark.gen_test(timeout=10)
async def test_ticker_reader_behind_stays_connected(get, app):
    stream, _ = await stall_ticker(app, get)
    assert app.clients.counts["ticker.streams"] == 1
    await stream.resume()
    await stream.head()
    assert await stream.closed_by_server(timeout=0.5) is False
    await stream.close()


@pytest.mark.settings(max_backlog=64 * 1024)
@pytest.mark.gen_test(timeout=10)
async def test_ticker_reader_behind_gets_only_the_newest_price(get, app):
    stream, big_frame = await stall_ticker(app, get)
    await stream.resume()
    await stream.head()
    assert await stream.take(len(RETRY), timeout=5) == RETRY
    assert await stream.take(len(big_frame), timeout=5) == big_frame
    assert await stream.chunk() == b"id: 102\ndata: 101.99\n\n"
    assert await stream.silent(0.2), "the 99 prices in between are never sent"
    await stream.close()


# Shutdown --------------------------------------------------------------------

@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/chat/events", "/ticker"])
@pytest.mark.parametrize("drain_retry", [pytest.param(ms, marks=pytest.mark.settings(drain_retry=ms)) for ms in (0, 800)])
async def test_a_stream_ended_at_shutdown_is_told_to_come_back_sooner_with_drain_retry(get, app, path, drain_retry):
    client = await get(path)
    await client.until(RETRY)
    await app.clients.release_all(timeout=1.0)
    response = await client.finish()
    retries = [int(ms) for ms in re.findall(rb"retry: (\d+)\n\n", response.body)]
    if drain_retry:  # the last thing before the end
        assert len(retries) == 2 and response.body.endswith(b"retry: %d\n\n" % retries[1]), response.body
        assert 0 <= retries[1] <= drain_retry
    else:
        assert retries == [2000], response.body


@pytest.mark.parametrize(
    "path, headers",
    [("/chat/get/0", {}), ("/chat/events", FALLBACK), ("/ticker", FALLBACK | {"Last-Event-ID": "1"})],
    ids=["chat-get", "chat-poll", "ticker-poll"],
)
@pytest.mark.settings(poll_timeout=30)
@pytest.mark.gen_test
async def test_a_poll_ended_at_shutdown_says_connection_close(app, http_server, http_port, path, headers):
    """A poll on a keep-alive connection, ended at shutdown: its answer says
    ``Connection: close``, so the client (or the proxy) sends its next poll
    down a new connection, to a process that stays, not down this one."""
    client = await AsyncClient.open(http_port, path, headers=headers)
    try:
        assert await wait_until_async(lambda: len(app.clients.holders) == 1)
        await app.clients.release_all(timeout=1.0)
        response = await client.finish()
        assert response.status == (200 if headers else 204)
        assert response.headers.get("Connection") == "close", response.headers
    finally:
        await client.close()


@pytest.mark.gen_test
async def test_release_all_spreads_the_ends_over_its_window(get, app):
    clients = [await get("/ticker") for _ in range(20)]
    for client in clients:
        await client.until(b"data: ")
    loop = asyncio.get_running_loop()
    started = loop.time()
    ended: list[float] = []
    for client in clients:
        client_done = asyncio.ensure_future(client.finish(timeout=5))
        client_done.add_done_callback(lambda _f: ended.append(loop.time() - started))
    await app.clients.release_all(timeout=2.0, spread=0.5)
    await wait_until_async(lambda: len(ended) == 20)
    # Twenty a second over half a second: ten slices, the last ended 0.45 s after the first.
    assert max(ended) - min(ended) >= 0.4, sorted(ended)
