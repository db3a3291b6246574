"""``?heartbeat=1`` and the jittered ``retry:`` (docs/protocol.md §2), byte by
byte: a heartbeat is an event a script can see, with no id, right after
``retry:`` and in place of the keep-alive comment; every response draws its
own ``retry:`` from ``[--retry, --retry + --retry-jitter]``."""

from __future__ import annotations

import re

import pytest

from tests.client import FALLBACK, AsyncClient

HEARTBEAT = b"event: heartbeat\ndata:\n\n"
KEEP_ALIVE = b": keep-alive\n\n"
RETRY = b"retry: 2000\n\n"


async def stream_start(port: int, path: str, size: int, headers=()) -> bytes:
    client = await AsyncClient.open(port, path, headers=headers)
    try:
        head = await client.head()
        assert head.status == 200 and head.chunked
        return await client.take(size)
    finally:
        await client.close()


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/ticker?heartbeat=1", "/chat/events?heartbeat=1"])
async def test_a_heartbeat_follows_retry_at_once(app, http_server, http_port, path):
    app.history.append("hello")
    start = await stream_start(http_port, path, len(RETRY + HEARTBEAT))
    assert start == RETRY + HEARTBEAT


@pytest.mark.gen_test
async def test_the_events_after_a_heartbeat_are_the_same_as_without_one(app, http_server, http_port):
    app.history.append("hello")
    frame = f"id: {app.history.epoch}:1\ndata: hello\n\n".encode()
    plain = await stream_start(http_port, "/chat/events", len(RETRY + frame))
    beating = await stream_start(http_port, "/chat/events?heartbeat=1", len(RETRY + HEARTBEAT + frame))
    assert plain == RETRY + frame
    assert beating == RETRY + HEARTBEAT + frame


@pytest.mark.gen_test(timeout=10)
@pytest.mark.settings(keepalive=0.3)
@pytest.mark.parametrize("query, idle", [("?heartbeat=1", HEARTBEAT), ("", KEEP_ALIVE), ("?heartbeat=0", KEEP_ALIVE),
                                         ("?heartbeat=yes", KEEP_ALIVE), ("?heartbeat=%ff", KEEP_ALIVE)])
async def test_an_idle_stream_sends_a_heartbeat_only_when_asked_for_one(app, http_server, http_port, query, idle):
    """Any other value of the parameter means no heartbeats, never an error."""
    client = await AsyncClient.open(http_port, f"/chat/events{query}", headers={"Last-Event-ID": "0"})
    head = RETRY + (HEARTBEAT if idle is HEARTBEAT else b"")
    assert await client.take(len(head)) == head
    assert await client.take(len(idle) * 2, timeout=2.0) == idle * 2
    await client.close()


@pytest.mark.gen_test(timeout=10)
@pytest.mark.settings(keepalive=0.3)
async def test_a_heartbeat_moves_no_cursor(app, http_server, http_port):
    """After heartbeats, the next event is the one the reader is owed, and
    the event-stream parser still holds the last real id."""
    app.history.append("first")
    client = await AsyncClient.open(http_port, "/chat/events?heartbeat=1")
    await client.take(len(RETRY + HEARTBEAT))
    await client.take(len(f"id: {app.history.epoch}:1\ndata: first\n\n") + len(HEARTBEAT), timeout=2.0)
    app.history.append("second")
    await client.until(b"data: second\n\n", timeout=2.0)
    types = [event["event"] for event in client.response.events]
    assert types[:2] == ["heartbeat", "message"] and "heartbeat" in types[2:-1]
    assert client.response.events[-1]["id"] == f"{app.history.epoch}:2"
    heartbeat_ids = [event["id"] for event in client.response.events[2:-1]]
    assert heartbeat_ids == [f"{app.history.epoch}:1"] * len(heartbeat_ids)  # the id persists, untouched
    await client.close()


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/ticker?heartbeat=1", "/chat/events?heartbeat=1"])
async def test_the_fallback_ignores_the_parameter(app, http_server, http_port, path):
    app.history.append("hello")
    client = await AsyncClient.open(http_port, path, headers=FALLBACK)
    response = await client.finish()
    assert HEARTBEAT not in response.body and b"heartbeat" not in response.body
    assert response.body.startswith(RETRY + b"id: ")
    await client.close()


RETRY_LINE = re.compile(rb"^retry: (\d+)\n\n")


async def retry_values(port: int, path: str, count: int, headers=()) -> list[int]:
    values = []
    for _ in range(count):
        client = await AsyncClient.open(port, path, headers=headers)
        start = await client.take(len(b"retry: 0000\n\n"))
        values.append(int(RETRY_LINE.match(start).group(1)))
        await client.close()
    return values


@pytest.mark.gen_test(timeout=20)
@pytest.mark.settings(retry=1000, retry_jitter=1000)
async def test_each_stream_draws_its_retry_over_the_whole_range(app, http_server, http_port):
    values = await retry_values(http_port, "/ticker", 60)
    assert all(1000 <= value <= 2000 for value in values), values
    # 60 uniform draws: each quarter of the range is hit (a miss is < 1e-7 likely).
    quarters = {min((value - 1000) * 4 // 1000, 3) for value in values}
    assert quarters == {0, 1, 2, 3}, values


@pytest.mark.gen_test(timeout=20)
@pytest.mark.settings(retry=1000, retry_jitter=1000, poll_timeout=0.05)
async def test_the_fallbacks_timeout_answer_is_jittered_too(app, http_server, http_port):
    values = await retry_values(http_port, "/ticker", 30, headers=FALLBACK | {"Last-Event-ID": str(app.prices.id)})
    assert all(1000 <= value <= 2000 for value in values) and len(set(values)) > 10, values


@pytest.mark.gen_test
@pytest.mark.settings(retry=1500, retry_jitter=0)
async def test_no_jitter_sends_exactly_the_retry_flag(app, http_server, http_port):
    assert set(await retry_values(http_port, "/chat/events", 10)) == {1500}
