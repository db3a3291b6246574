"""A process whose copy of the chat lags behind Redis, on purpose.

With ``--redis`` each process keeps a mirror of the chat, fed by Redis's
pub/sub. Behind a load balancer a reader can learn of message N from one
process and ask the next one, whose mirror has not heard it yet, for N+1.
That process must read Redis again before it calls the reader's id wrong.

Here the lag is made, not waited for: the app under test (``app`` below) is
served in-process and its engine is never started, so its mirror hears
nothing by itself; it reads Redis once at the start (``catch_up()``) and
again only when a reader is ahead of it. The posts come from a second
engine on the same Redis, as another process's would.
"""

from __future__ import annotations

import pytest

from app import Config, make_app
from comet.engine import open_engine
from handlers.eventsource import KEEP_ALIVE
from tests.conftest import FAST


@pytest.fixture
def app(redis_server):
    config = Config.from_options(**(FAST | dict(db="", redis=redis_server.url, poll_timeout=0.3, retry=1000)))
    return make_app(config)


@pytest.fixture
def other(redis_server, io_loop):
    """Another process's copy of the chat on the same Redis: its posts
    reach Redis, and nothing tells the app's mirror."""
    engine = open_engine(redis_server.url, "", 10, 1.0)
    yield engine.history
    io_loop.run_sync(engine.redis.aclose)


async def lagging(app, other, posts: int) -> None:
    """The app's mirror as it was before ``posts`` more messages went in."""
    await other.catch_up()  # names the history's epoch in Redis
    await app.history.catch_up()
    for number in range(posts):
        await other.post(f"message {number}")
    assert (app.history.count, app.history.epoch) == (0, other.epoch)


@pytest.mark.gen_test(timeout=10)
async def test_since_past_the_mirror_reads_redis_again_and_answers(app, other, http_client, base_url):
    await lagging(app, other, 1)
    response = await http_client.fetch(f"{base_url}/chat/since/1", raise_error=False)
    assert response.code == 200, response.body
    assert response.body == b'{"epoch": "%s", "first": 0, "next": 1, "messages": []}' % other.epoch.encode()


@pytest.mark.gen_test(timeout=10)
async def test_a_poll_for_the_next_message_of_redis_is_held_not_refused(app, other, http_client, base_url):
    await lagging(app, other, 2)
    response = await http_client.fetch(f"{base_url}/chat/get/2", raise_error=False)
    assert response.code == 204, (response.code, response.headers.get("X-Next-Message"))  # held, then timed out
    assert app.history.count == 2


@pytest.mark.gen_test(timeout=10)
async def test_an_event_id_past_the_mirror_resumes_with_nothing_owed(app, other, http_client, base_url):
    await lagging(app, other, 3)
    response = await http_client.fetch(
        f"{base_url}/chat/events", raise_error=False,
        headers={"Last-Event-ID": f"{other.epoch}:3", "X-SSE-Simulation": "long-polling"})
    assert response.code == 200
    # Nothing owed: no reset to the start of the history, only a keep-alive.
    assert response.body == b"retry: 1000\n\n" + KEEP_ALIVE
