"""The chat's epoch at the wire (docs/protocol.md §1, §2): every /chat/get
and /chat/since answer names it, a cursor of another epoch is refused with
410 whatever its number, and /chat/events ids carry it."""

from __future__ import annotations

import json

import pytest
from tornado.httpclient import HTTPClientError

from tests.client import FALLBACK, AsyncClient


async def fetch(http_client, http_port, path: str, **kwargs):
    """The answer, whatever its status."""
    try:
        return await http_client.fetch(f"http://127.0.0.1:{http_port}{path}", **kwargs)
    except HTTPClientError as error:
        return error.response


def fill(app, count: int) -> None:
    for number in range(count):
        app.history.append(f"m{number}")


@pytest.mark.gen_test
@pytest.mark.parametrize("path, status", [
    ("/chat/get/0", 200), ("/chat/get/5", 404), ("/chat/since/0", 200), ("/chat/since/9", 404),
    ("/chat/get/0?epoch=other", 410), ("/chat/since/0?epoch=other", 410),
])
async def test_every_get_and_since_answer_carries_the_epoch(app, http_client, http_port, path, status):
    fill(app, 2)
    response = await fetch(http_client, http_port, path)
    assert response.code == status
    assert response.headers["X-Chat-Epoch"] == app.history.epoch
    assert response.headers["Cache-Control"] == "no-cache"


@pytest.mark.gen_test
@pytest.mark.settings(poll_timeout=0.2)
async def test_a_held_poll_that_times_out_carries_the_epoch_too(app, http_client, http_port):
    response = await fetch(http_client, http_port, "/chat/get/0")
    assert response.code == 204
    assert response.headers["X-Chat-Epoch"] == app.history.epoch


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/chat/get/1", "/chat/get/0", "/chat/get/2", "/chat/since/1"])
async def test_a_cursor_of_another_epoch_is_410_whatever_its_number(app, http_client, http_port, path):
    """``/chat/get/1`` would be a valid "wait for the next one" in this
    history; with the old server's epoch it is a cursor into another."""
    fill(app, 1)
    response = await fetch(http_client, http_port, f"{path}?epoch=before-the-restart")
    assert response.code == 410
    assert response.headers["X-First-Message"] == "0"
    assert response.headers["X-Next-Message"] == "1"
    assert response.headers["X-Chat-Epoch"] == app.history.epoch
    assert b"Traceback" not in response.body


@pytest.mark.gen_test
@pytest.mark.parametrize("garbled", ["%ff%fe", "", "a%00b", "x" * 200, "%E2%9C%93"])
async def test_a_garbled_epoch_is_another_epoch_never_a_400_or_500(app, http_client, http_port, garbled):
    fill(app, 1)
    response = await fetch(http_client, http_port, f"/chat/get/0?epoch={garbled}")
    assert response.code == 410
    assert app.history.count == 1


@pytest.mark.gen_test
async def test_the_current_epoch_is_answered_as_if_none_were_given(app, http_client, http_port):
    fill(app, 2)
    epoch = app.history.epoch
    message = await fetch(http_client, http_port, f"/chat/get/1?epoch={epoch}")
    assert (message.code, message.body) == (200, b"m1")
    since = await fetch(http_client, http_port, f"/chat/since/1?epoch={epoch}")
    assert json.loads(since.body) == {"epoch": epoch, "first": 0, "next": 2, "messages": ["m1"]}


@pytest.mark.gen_test
async def test_the_event_stream_numbers_messages_in_their_epoch(app, http_server, http_port):
    fill(app, 2)
    epoch = app.history.epoch
    client = await AsyncClient.open(http_port, "/chat/events", headers=FALLBACK)
    response = await client.finish()
    assert response.body == f"retry: 2000\n\nid: {epoch}:1\ndata: m0\n\nid: {epoch}:2\ndata: m1\n\n".encode()
    await client.close()


@pytest.mark.gen_test
@pytest.mark.parametrize("last_event_id, owed", [("{epoch}:1", ["m1", "m2"]), ("1", ["m1", "m2"]), ("{epoch}:2", ["m2"])])
async def test_an_id_of_this_epoch_or_a_bare_number_resumes(app, http_server, http_port, last_event_id, owed):
    fill(app, 3)
    last_event_id = last_event_id.format(epoch=app.history.epoch)
    client = await AsyncClient.open(http_port, "/chat/events", headers=FALLBACK | {"Last-Event-ID": last_event_id})
    response = await client.finish()
    assert [event["data"] for event in response.events] == owed
    await client.close()


@pytest.mark.gen_test
async def test_an_id_from_before_a_restart_gets_a_reset_and_every_kept_message(app, http_server, http_port):
    fill(app, 1)
    epoch = app.history.epoch
    client = await AsyncClient.open(http_port, "/chat/events", headers=FALLBACK | {"Last-Event-ID": "old:1"})
    response = await client.finish()
    assert response.body == f"retry: 2000\n\nevent: reset\nid: {epoch}:0\ndata: 0\n\nid: {epoch}:1\ndata: m0\n\n".encode()
    await client.close()
