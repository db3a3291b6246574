"""A held /chat/get woken by a post, as a browser holds it: HTTP/1.1 and
kept alive. Under either writer a client sees the same: the same bytes as a
message answered at once (the fast writer formats them once for every
waiter and sends them past Tornado, handlers/fast_writer.py), dated when
sent, the connection ready for the next poll, every waiter the same answer,
one access-log line per answer, and HTTP/1.0 or ``Connection: close``
framed by Tornado.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time

import pytest

from tests.client import AsyncClient, head_lines, wait_until_async


async def held(app, http_port, path: str, waiting: int = 1, **kwargs) -> AsyncClient:
    client = await AsyncClient.open(http_port, path, **kwargs)
    assert await wait_until_async(lambda: app.clients.counts["chat.waiting"] == waiting)
    return client


@pytest.mark.gen_test
async def test_a_woken_answer_is_the_answer_at_once_but_for_the_date(http_server, http_port, app):
    waiter = await held(app, http_port, "/chat/get/0")
    app.history.append("caf\u00e9")
    woken = await waiter.finish(timeout=2)
    at_once = await AsyncClient.open(http_port, "/chat/get/0")
    try:
        assert head_lines(woken) == head_lines(await at_once.finish(timeout=2))
        assert woken.body == at_once.response.body == "caf\u00e9".encode("utf-8")
        assert woken.headers["X-Chat-Epoch"] == "E" and woken.headers["Cache-Control"] == "no-cache"
        assert await waiter.silent(0.1), "nothing after the answer"
    finally:
        await waiter.close()
        await at_once.close()


@pytest.mark.settings(poll_timeout=5.0)
@pytest.mark.gen_test
async def test_a_woken_answer_is_dated_when_it_is_sent(http_server, http_port, app):
    """Tornado dates an answer when its request came in; a poll held for a
    while is dated when its message was posted."""
    waiter = await held(app, http_port, "/chat/get/0")
    try:
        await asyncio.sleep(1.2)
        posted = time.time()
        app.history.append("late")
        response = await waiter.finish(timeout=2)
        assert (response.status, response.body) == (200, b"late")
        assert email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp() >= int(posted)
    finally:
        await waiter.close()


@pytest.mark.gen_test
async def test_a_connection_holds_poll_after_poll(http_server, http_port, app):
    client = await held(app, http_port, "/chat/get/0")
    try:
        for number, text in enumerate(["one", "two", "three"]):
            if number:
                await client.request("GET", f"/chat/get/{number}")
                assert await wait_until_async(lambda: app.clients.counts["chat.waiting"] == 1)
            app.history.append(text)
            response = await client.finish(timeout=2)
            assert (response.status, response.body) == (200, text.encode())
            assert response.received.endswith(b"\r\n\r\n" + text.encode())
        await client.request("GET", "/chat/get/1")  # at once, through Tornado, on the same connection
        assert (await client.finish(timeout=2)).body == b"two"
    finally:
        await client.close()


@pytest.mark.gen_test
async def test_every_waiter_gets_the_same_bytes(http_server, http_port, app):
    waiters = [await held(app, http_port, "/chat/get/0", waiting=count) for count in range(1, 11)]
    try:
        app.history.append("all of you")
        answers = [await waiter.finish(timeout=2) for waiter in waiters]
        assert len({answer.received for answer in answers}) <= 2, "one answer (two if a second passed)"
        assert {answer.body for answer in answers} == {b"all of you"}
        assert app.clients.counts["chat.waiting"] == 0
        if app.writer.name == "fast":  # formatted once for all of them, under the message's name
            assert app.writer.shared_key[0] == (app.history.epoch, 0)
    finally:
        for waiter in waiters:
            await waiter.close()


@pytest.mark.parametrize("version, headers, connection", [
    ("HTTP/1.0", {"Connection": "keep-alive"}, "Keep-Alive"),
    ("HTTP/1.0", {}, None),
    ("HTTP/1.1", {"Connection": "close"}, "close"),
])
@pytest.mark.gen_test
async def test_other_wires_are_answered_by_tornado(http_server, http_port, app, version, headers, connection):
    waiter = await held(app, http_port, "/chat/get/0", version=version, headers=headers)
    try:
        app.history.append("plain")
        response = await waiter.finish(timeout=2)
        assert (response.status, response.body) == (200, b"plain")
        assert response.headers["Content-Length"] == "5" and response.headers.get("Connection") == connection
        assert await waiter.closed_by_server(timeout=0.3) == (connection != "Keep-Alive")
    finally:
        await waiter.close()


@pytest.mark.gen_test
async def test_each_woken_poll_is_one_line_of_the_access_log(http_server, http_port, app, caplog):
    """At DEBUG (``--logging=debug``), as every answered poll is."""
    with caplog.at_level(logging.DEBUG, logger="tornado.access"):
        waiters = [await held(app, http_port, "/chat/get/0", waiting=count) for count in (1, 2, 3)]
        try:
            app.history.append("logged")
            for waiter in waiters:
                assert (await waiter.finish(timeout=2)).body == b"logged"
        finally:
            for waiter in waiters:
                await waiter.close()
    lines = [record.getMessage() for record in caplog.records if record.name == "tornado.access"]
    assert [line.split(" (")[0] for line in lines] == ["200 GET /chat/get/0"] * 3, lines
    assert all(record.levelno == logging.DEBUG for record in caplog.records if record.name == "tornado.access")
