"""Scale-out: several ``python app.py --redis=...`` processes sharing one Redis.

Each test starts its own ``redis-server`` (Debian's package; ``make test``
installs it) on a free port of 127.0.0.1, in a temporary directory and keeping
nothing on disk, then two or three app processes against it, and talks to all
of them over HTTP as a client behind a load balancer would: posts alternating
between processes, a process killed under a reader, the ticker's lease moving
on, Redis stopped and started again.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from typing import Callable, Iterator, Optional

import pytest

from tests.client import Client, chat_number, wait_until
from tests.redis_server import RedisServer
from tests.server import NO_JITTER, ROOT, ServerProcess

# Short timers: a move every 0.2 s, a keep-alive every 0.3 s.
# Dozens of posts from one address, as fast as they go: no post rate.
FAST = ("--tick-interval=0.2", "--keepalive=0.3", "--poll-timeout=10", NO_JITTER, "--post-rate=0")


@pytest.fixture
def start_app(redis_server) -> Iterator[Callable[..., ServerProcess]]:
    """``start_app(*flags)``: one more app process against ``redis_server``."""
    started: list[ServerProcess] = []

    def start(*flags: str) -> ServerProcess:
        server = ServerProcess(f"--redis={redis_server.url}", *FAST, *flags)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


# --- talking to the processes --------------------------------------------------------------


def post_ok(server: ServerProcess, message: str) -> int:
    status, _, text = server.post(message)
    assert status == 200, (status, text)
    return json.loads(text)["id"]


def get_json(server: ServerProcess, path: str) -> dict:
    status, _, text = server.fetch(path, timeout=10)
    assert status == 200, (path, status, text)
    return json.loads(text)


def history(server: ServerProcess, first: int = 0) -> dict:
    """What /chat/since/first says, less the epoch (``epoch()`` has it)."""
    since = get_json(server, f"/chat/since/{first}")
    del since["epoch"]
    return since


def epoch(server: ServerProcess) -> str:
    return get_json(server, "/chat/since/0")["epoch"]


def ticker_state(server: ServerProcess) -> tuple[int, float]:
    ticker = get_json(server, "/status")["ticker"]
    return ticker["id"], ticker["price"]


def event_stream(server: ServerProcess, path: str, last_event_id: Optional[object] = None) -> Client:
    """An open event stream, its head read."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    stream = Client(server.port, path, headers=headers)
    response = stream.head(timeout=5)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return stream


def received(stream: Client, count: int, timeout: float = 10.0) -> list[tuple[int, str]]:
    """The next ``count`` events of ``stream``, as (the number in its id, data)."""
    return [(chat_number(event["id"]), event["data"]) for event in stream.events(count, timeout)]


def numbered(messages: list[str], first: int = 0) -> list[tuple[int, str]]:
    """What /chat/events sends for ``messages`` numbered from ``first``."""
    return [(first + i + 1, message) for i, message in enumerate(messages)]


# --- the chat ------------------------------------------------------------------------------


def test_posts_alternating_between_processes_arrive_in_order_everywhere(start_app):
    servers = [start_app() for _ in range(3)]
    streams = [event_stream(server, "/chat/events") for server in servers]
    # A long poll held on the first process, for a message posted on the last.
    held = Client(servers[0].port, "/chat/get/0")

    expected = [f"message {i}" for i in range(12)]
    for number, message in enumerate(expected):
        server = servers[(number + 2) % 3]  # the last, the first, the second, ...
        assert post_ok(server, message) == number
        # On the process that took the post, the message is there at once.
        status, _, body = server.fetch(f"/chat/get/{number}", timeout=10)
        assert (status, body.decode()) == (200, message)

    answer = held.finish(timeout=10)
    held.close()
    assert (answer.status, answer.body.decode()) == (200, expected[0])
    for server in servers:
        assert wait_until(lambda: history(server)["next"] == 12, timeout=5.0), "not every message reached every process"
        assert history(server) == {"first": 0, "next": 12, "messages": expected}
    for stream in streams:
        assert received(stream, 12) == numbered(expected)
        stream.close()


def test_simultaneous_posts_on_three_processes_get_dense_numbers_in_one_order(start_app, redis_server):
    servers = [start_app() for _ in range(3)]
    streams = [event_stream(server, "/chat/events") for server in servers]
    given: dict[str, int] = {}
    start = threading.Barrier(9)

    def poster(server: ServerProcess, name: str) -> None:
        start.wait(timeout=10)
        numbers = [post_ok(server, f"{name} #{i}") for i in range(10)]
        assert numbers == sorted(numbers)  # one poster's messages keep their order
        given.update({f"{name} #{i}": number for i, number in enumerate(numbers)})

    threads = [threading.Thread(target=poster, args=(servers[i % 3], f"poster {i}")) for i in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(given) == 90
    assert sorted(given.values()) == list(range(90))  # no gap, no number given twice

    in_order = sorted(given, key=given.get)
    for server in servers:
        assert wait_until(lambda: history(server)["next"] == 90, timeout=5.0), "not all 90 messages reached every process"
        assert history(server)["messages"] == in_order
    for stream in streams:
        assert received(stream, 90) == numbered(in_order)
        stream.close()
    store = redis_server.client()
    assert store.get("comet:chat:next") == "90"
    assert store.lrange("comet:chat:messages", 0, -1) == in_order


def test_a_joining_or_restarted_process_serves_the_history_and_resumes_last_event_id(start_app):
    first = start_app("--history=5")
    messages = [f"early {i}" for i in range(8)]
    for message in messages:
        post_ok(first, message)

    joining = start_app("--history=5")
    assert history(joining, 3) == {"first": 3, "next": 8, "messages": messages[3:]}
    status, headers, _ = joining.fetch("/chat/since/0", timeout=10)
    assert (status, headers["X-First-Message"], headers["X-Next-Message"]) == (410, "3", "8")

    stream = event_stream(joining, "/chat/events", last_event_id=5)
    assert received(stream, 3) == numbered(messages[5:], first=5)
    assert post_ok(first, "late") == 8
    assert received(stream, 1) == [(9, "late")]
    stream.close()

    assert first.stop(signal.SIGTERM) == 0
    restarted = start_app("--history=5")
    assert history(restarted, 4) == {"first": 4, "next": 9, "messages": messages[4:] + ["late"]}
    stream = event_stream(restarted, "/chat/events", last_event_id=7)
    assert received(stream, 2) == numbered([messages[7], "late"], first=7)
    stream.close()


def test_a_reader_whose_process_is_killed_resumes_on_another_and_loses_nothing(start_app):
    doomed, survivor = start_app(), start_app()
    stream = event_stream(doomed, "/chat/events")
    for i in range(3):
        post_ok(survivor, f"before {i}")
    before = received(stream, 3)
    assert before == numbered([f"before {i}" for i in range(3)])

    assert doomed.stop(signal.SIGKILL) == -signal.SIGKILL
    assert stream.block(timeout=5) == []  # the stream ended with the process
    stream.close()
    for i in range(3):
        post_ok(survivor, f"while away {i}")

    last_event_id = before[-1][0]
    stream = event_stream(survivor, "/chat/events", last_event_id=last_event_id)
    assert received(stream, 3) == numbered([f"while away {i}" for i in range(3)], first=3)
    stream.close()


def test_every_process_serves_one_epoch_and_its_ids_carry_it(start_app, redis_server):
    a, b = start_app(), start_app()
    assert epoch(a) == epoch(b) == redis_server.client().get("comet:chat:epoch")
    stream = event_stream(b, "/chat/events")
    post_ok(a, "hello")
    event, = stream.events(1, timeout=10)
    assert event["id"] == f"{epoch(a)}:1"
    stream.close()
    # A cursor of another epoch is refused on every process.
    for server in (a, b):
        status, headers, _ = server.fetch("/chat/get/1?epoch=another", timeout=10)
        assert (status, headers["X-Chat-Epoch"]) == (410, epoch(a))


def test_a_history_no_one_holds_any_more_starts_a_new_epoch(start_app, redis_server):
    """Redis lost the chat while no process held a copy: it is gone, and the
    new history must not be mistaken for it."""
    first = start_app()
    post_ok(first, "old")
    old_epoch = epoch(first)
    assert first.stop(signal.SIGTERM) == 0
    redis_server.stop()
    redis_server.start()  # empty: it keeps nothing on disk

    second = start_app()
    new_epoch = epoch(second)
    assert new_epoch != old_epoch
    assert redis_server.client().get("comet:chat:epoch") == new_epoch
    post_ok(second, "new")
    # A reader from the old history gets a reset, then the new history.
    stream = event_stream(second, "/chat/events", last_event_id=f"{old_epoch}:1")
    reset, message = stream.events(2, timeout=10)
    assert (reset["event"], reset["id"], reset["data"]) == ("reset", f"{new_epoch}:0", "0")
    assert (message["id"], message["data"]) == (f"{new_epoch}:1", "new")
    stream.close()


def test_nothing_but_the_redis_flag_loads_redis_py():
    script = "import sys, app; app.make_app(); print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "False", out.stderr


# --- the ticker ----------------------------------------------------------------------------


def lease_holder(redis_server: RedisServer) -> Optional[int]:
    """The pid of the process that moves the price (its token is host:pid:nonce)."""
    token = redis_server.client().get("comet:ticker:lease")
    return int(token.split(":")[1]) if token else None


def held_by(redis_server: RedisServer, servers: dict) -> Optional[int]:
    pid = lease_holder(redis_server)
    return pid if pid in servers else None


def test_every_process_serves_the_same_k_and_price(start_app, redis_server):
    servers = [start_app(), start_app()]
    pids = {server.pid for server in servers}
    assert wait_until(lambda: lease_holder(redis_server) in pids, timeout=5.0), "neither of them took the lease"
    streams = [event_stream(server, "/ticker") for server in servers]
    seen = [dict(received(stream, 8)) for stream in streams]
    for stream in streams:
        stream.close()
    for moves in seen:
        ids = [int(k) for k in moves]
        assert ids == sorted(set(ids))
    common = seen[0].keys() & seen[1].keys()
    assert len(common) >= 3
    assert {k: seen[0][k] for k in common} == {k: seen[1][k] for k in common}


def test_the_ticker_lease_fails_over_and_k_keeps_increasing(start_app, redis_server):
    servers = {server.pid: server for server in (start_app(), start_app(), start_app())}
    first_holder = wait_until(lambda: lease_holder(redis_server), timeout=5.0)
    assert first_holder, "no process took the lease"
    holder = servers.pop(first_holder)
    k_before, _ = ticker_state(holder)

    # Killed, it cannot hand the lease over: another takes it when it runs out.
    assert holder.stop(signal.SIGKILL) == -signal.SIGKILL
    next_holder = wait_until(lambda: held_by(redis_server, servers), timeout=15.0)
    assert next_holder, "no other process took the lease"
    successor = servers.pop(next_holder)
    stream = event_stream(successor, "/ticker")
    moves = [int(k) for k, _ in received(stream, 3)]
    stream.close()
    assert k_before < moves[0] < moves[1] < moves[2]

    # Stopped cleanly, it gives the lease up on its way out.
    assert successor.stop(signal.SIGTERM) == 0
    assert lease_holder(redis_server) in (None, *servers)
    last, = servers.values()
    k_after, _ = ticker_state(last)
    assert k_after >= moves[2]
    assert wait_until(lambda: ticker_state(last)[0] > k_after, timeout=10.0), "the last process did not move the price"


# --- Redis away -----------------------------------------------------------------------------


def test_while_redis_is_down_posts_get_503_streams_stay_open_and_all_resumes_after(start_app, redis_server):
    a, b = start_app(), start_app()
    assert post_ok(a, "before") == 0
    stream = event_stream(b, "/chat/events")
    assert received(stream, 1) == [(1, "before")]
    k_before, _ = ticker_state(a)

    redis_server.stop()
    for server in (a, b):
        status, _, text = server.post("lost", timeout=10)
        assert status == 503
        assert "unavailable" in text.decode() and "Redis" in text.decode()
    kept_epoch = epoch(b)
    # The stream stays open on keep-alives, and the process serves what it has.
    assert stream.block(timeout=5) == [": keep-alive"]
    assert stream.block(timeout=5) == [": keep-alive"]
    assert history(b)["messages"] == ["before"]

    # Back, but empty: the processes refill it and numbering goes on.
    redis_server.start()
    assert wait_until(lambda: a.post("after", timeout=10)[0] == 200, timeout=10.0), "no post succeeded again"
    assert received(stream, 1) == [(2, "after")]
    stream.close()
    for server in (a, b):
        assert wait_until(lambda: history(server)["next"] == 2, timeout=5.0)
        assert history(server)["messages"] == ["before", "after"]
    assert redis_server.client().lrange("comet:chat:messages", 0, -1) == ["before", "after"]
    # Refilled, not lost: the same history, so the same epoch (no reader is reset).
    assert {epoch(a), epoch(b), redis_server.client().get("comet:chat:epoch")} == {kept_epoch}
    assert wait_until(lambda: ticker_state(b)[0] > k_before + 1, timeout=10.0), "the price did not move again"
    for server in (a, b):
        assert server.stop(signal.SIGTERM) == 0, server.log()[-3000:]


def test_a_post_held_up_by_a_hung_redis_gets_503_and_is_never_stored_late(start_app, redis_server):
    a, b = start_app(), start_app()
    stream = event_stream(b, "/chat/events")
    assert stream.block(timeout=5) == ["retry: 2000"]
    redis_server.pause()
    try:
        status, _, text = a.post("held up", timeout=10)
        assert status == 503 and "unavailable" in text.decode()
        assert stream.block(timeout=5) == [": keep-alive"]
    finally:
        redis_server.resume()
    # Whether Redis ever runs the held-up post depends on the way: here redis-py
    # drops the connection at its timeout and the post never runs; a network
    # that delivers it late is the next test's.
    assert post_ok(a, "after") == 0
    assert received(stream, 1) == [(1, "after")]
    stream.close()
    assert redis_server.client().lrange("comet:chat:messages", 0, -1) == ["after"]
    assert history(b)["messages"] == ["after"]


def test_a_post_that_reaches_redis_past_its_deadline_is_refused_there_and_not_stored(redis_server, monkeypatch):
    """What a network that heals delivers late: the post's script runs
    after its poster was told 503. Redis compares the deadline with its own
    clock and stores nothing, so the message does not turn up later."""
    import asyncio

    from comet import redis_engine
    from comet.policies import Unavailable
    from comet.walk import RandomWalk

    monkeypatch.setattr(redis_engine, "POST_SECONDS", -1.0)  # every deadline a second past when it is sent

    async def post_late() -> None:
        engine = redis_engine.RedisEngine(redis_server.url, 10, RandomWalk(), 3600)
        await engine.start()
        try:
            with pytest.raises(Unavailable, match="answered too slowly"):
                await engine.history.post("late")
            assert engine.history.count == 0
        finally:
            await engine.stop()

    asyncio.run(post_late())
    assert redis_server.client().lrange("comet:chat:messages", 0, -1) == []
