"""Scale-out: several ``python app.py --redis=...`` processes sharing one Redis.

Each test starts its own ``redis-server`` (Debian's package; ``make test``
installs it) on a free port of 127.0.0.1, in a temporary directory and keeping
nothing on disk, then two or three app processes against it, and talks to all
of them over HTTP as a client behind a load balancer would: posts alternating
between processes, a process killed under a reader, the ticker's lease moving
on, Redis stopped and started again.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from typing import Callable, Iterator, Optional

import pytest

from handlers.policies import BoundedEventQueue, StateStream
from tests.server import ROOT, ServerProcess

HOST = "127.0.0.1"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
# Short timers: a move every 0.2 s, a keep-alive every 0.3 s.
FAST = ("--tick-interval=0.2", "--keepalive=0.3", "--poll-timeout=10")



def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def eventually(condition: Callable[[], object], timeout: float = 5.0, what: str = "the condition"):
    """Poll ``condition`` until it returns something true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        time.sleep(0.05)


class RedisServer:
    """``redis-server`` on 127.0.0.1:``port``, keeping nothing on disk, so a
    stop and start (on the same port) brings it back empty."""

    def __init__(self, directory: str) -> None:
        self.port = free_port()
        self.directory = directory
        self.url = f"redis://{HOST}:{self.port}/0"
        self.process: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        self.log = open(os.path.join(self.directory, "redis.log"), "ab")
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
             "--dir", self.directory],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
        )
        eventually(self.answers, timeout=10.0, what=f"redis-server answering on port {self.port}")

    def answers(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def pause(self) -> None:
        """Hang it, as a stuck server or a cut network would: connections
        stay open and nothing answers."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.log.close()

    def client(self):
        import redis

        return redis.Redis(host=HOST, port=self.port, decode_responses=True, socket_timeout=5)


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    # Never a skip: a missing server is an install bug (`make system-deps`).
    assert os.path.exists(REDIS_SERVER), "needs redis-server: run `make system-deps` (Debian's redis-server)"
    server = RedisServer(str(tmp_path))
    yield server
    server.stop()


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


# --- a small HTTP client ------------------------------------------------------------------


def request(server: ServerProcess, method: str, path: str, body: Optional[bytes] = None, headers=None):
    """(status, headers, body) of one request."""
    connection = http.client.HTTPConnection(HOST, server.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def post(server: ServerProcess, message: str) -> tuple[int, bytes]:
    body = urllib.parse.urlencode({"message": message}).encode()
    status, _, text = request(server, "POST", "/chat/post", body,
                              {"Content-Type": "application/x-www-form-urlencoded"})
    return status, text


def post_ok(server: ServerProcess, message: str) -> int:
    status, text = post(server, message)
    assert status == 200, (status, text)
    return json.loads(text)["id"]


def get_json(server: ServerProcess, path: str) -> dict:
    status, _, text = request(server, "GET", path)
    assert status == 200, (path, status, text)
    return json.loads(text)


def history(server: ServerProcess, first: int = 0) -> dict:
    return get_json(server, f"/chat/since/{first}")


def ticker_state(server: ServerProcess) -> tuple[int, float]:
    ticker = get_json(server, "/status")["ticker"]
    return ticker["id"], ticker["price"]


class EventStream:
    """One open event stream, read block by block, each read bounded."""

    def __init__(self, server: ServerProcess, path: str, last_event_id: Optional[int] = None,
                 timeout: float = 5.0) -> None:
        self.connection = http.client.HTTPConnection(HOST, server.port, timeout=timeout)
        headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
        self.connection.request("GET", path, headers=headers)
        self.response = self.connection.getresponse()
        assert self.response.status == 200
        assert self.response.headers["Content-Type"].startswith("text/event-stream")

    def block(self) -> list[str]:
        """The lines of the next block (up to a blank line); [] at the end."""
        lines = []
        while True:
            line = self.response.readline()
            if not line:
                return lines
            line = line.decode("utf-8").rstrip("\n")
            if not line:
                if lines:
                    return lines
                continue
            lines.append(line)

    def event(self) -> dict:
        """The next event as {field: value}, skipping `retry:` and comments."""
        while True:
            lines = self.block()
            assert lines, "the stream ended"
            fields: dict = {}
            for line in lines:
                name, _, value = line.partition(": ")
                if name == "data" and "data" in fields:
                    value = fields["data"] + "\n" + value
                fields[name] = value
            if "data" in fields:
                return fields

    def events(self, count: int) -> list[tuple[str, str]]:
        return [(event["id"], event["data"]) for event in (self.event() for _ in range(count))]

    def close(self) -> None:
        self.connection.close()


def numbered(messages: list[str], first: int = 0) -> list[tuple[str, str]]:
    """What /chat/events sends for ``messages`` numbered from ``first``."""
    return [(str(first + i + 1), message) for i, message in enumerate(messages)]


# --- what the mirrors need from the policies ---------------------------------------------


def test_a_history_restarted_further_on_resets_readers_left_in_the_gap():
    history = BoundedEventQueue(3)
    for message in ("a", "b"):
        history.append(message)
    history.restart_at(5, ["x", "y"])
    assert (history.first, history.count, history.since(5)) == (5, 7, ["x", "y"])
    assert history.owed(1) == (b"event: reset\nid: 5\ndata: 5\n\nid: 6\ndata: x\n\nid: 7\ndata: y\n\n", 7)
    assert history.backlog(1) == len(b"id: 6\ndata: x\n\nid: 7\ndata: y\n\n")
    assert history.append("z") == 7


def test_a_state_stream_takes_an_id_given_elsewhere():
    prices = StateStream("100.00")
    prices.publish(42, "101.25")
    assert (prices.id, prices.data) == (42, "101.25")
    assert prices.owed(None) == (b"id: 42\ndata: 101.25\n\n", 42)
    assert prices.owed(42) == (b"", 42)


# --- the chat ------------------------------------------------------------------------------


def test_posts_alternating_between_processes_arrive_in_order_everywhere(start_app):
    servers = [start_app() for _ in range(3)]
    streams = [EventStream(server, "/chat/events") for server in servers]
    # A long poll held on the first process, for a message posted on the last.
    held = http.client.HTTPConnection(HOST, servers[0].port, timeout=10)
    held.request("GET", "/chat/get/0")

    expected = [f"message {i}" for i in range(12)]
    for number, message in enumerate(expected):
        server = servers[(number + 2) % 3]  # the last, the first, the second, ...
        assert post_ok(server, message) == number
        # On the process that took the post, the message is there at once.
        status, _, body = request(server, "GET", f"/chat/get/{number}")
        assert (status, body.decode()) == (200, message)

    answer = held.getresponse()
    assert (answer.status, answer.read().decode()) == (200, expected[0])
    for server in servers:
        eventually(lambda: history(server)["next"] == 12, what="every message reaching every process")
        assert history(server) == {"first": 0, "next": 12, "messages": expected}
    for stream in streams:
        assert stream.events(12) == numbered(expected)
        stream.close()


def test_simultaneous_posts_on_three_processes_get_dense_numbers_in_one_order(start_app, redis_server):
    servers = [start_app() for _ in range(3)]
    streams = [EventStream(server, "/chat/events") for server in servers]
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
        eventually(lambda: history(server)["next"] == 90, what="all 90 messages reaching every process")
        assert history(server)["messages"] == in_order
    for stream in streams:
        assert stream.events(90) == numbered(in_order)
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
    status, headers, _ = request(joining, "GET", "/chat/since/0")
    assert (status, headers["X-First-Message"], headers["X-Next-Message"]) == (410, "3", "8")

    stream = EventStream(joining, "/chat/events", last_event_id=5)
    assert stream.events(3) == numbered(messages[5:], first=5)
    assert post_ok(first, "late") == 8
    assert stream.events(1) == [("9", "late")]
    stream.close()

    assert first.stop(signal.SIGTERM) == 0
    restarted = start_app("--history=5")
    assert history(restarted, 4) == {"first": 4, "next": 9, "messages": messages[4:] + ["late"]}
    stream = EventStream(restarted, "/chat/events", last_event_id=7)
    assert stream.events(2) == numbered([messages[7], "late"], first=7)
    stream.close()


def test_a_reader_whose_process_is_killed_resumes_on_another_and_loses_nothing(start_app):
    doomed, survivor = start_app(), start_app()
    stream = EventStream(doomed, "/chat/events")
    for i in range(3):
        post_ok(survivor, f"before {i}")
    received = stream.events(3)
    assert received == numbered([f"before {i}" for i in range(3)])

    assert doomed.stop(signal.SIGKILL) == -signal.SIGKILL
    assert stream.block() == []  # the stream ended with the process
    stream.close()
    for i in range(3):
        post_ok(survivor, f"while away {i}")

    last_event_id = int(received[-1][0])
    stream = EventStream(survivor, "/chat/events", last_event_id=last_event_id)
    assert stream.events(3) == numbered([f"while away {i}" for i in range(3)], first=3)
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
    eventually(lambda: lease_holder(redis_server) in pids, what="one of them holding the lease")
    streams = [EventStream(server, "/ticker") for server in servers]
    seen = [dict(stream.events(8)) for stream in streams]
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
    holder = servers.pop(eventually(lambda: lease_holder(redis_server), what="a lease holder"))
    k_before, _ = ticker_state(holder)

    # Killed, it cannot hand the lease over: another takes it when it runs out.
    assert holder.stop(signal.SIGKILL) == -signal.SIGKILL
    successor = servers.pop(eventually(lambda: held_by(redis_server, servers), timeout=15.0,
                                       what="another process taking the lease"))
    stream = EventStream(successor, "/ticker", timeout=10.0)
    moves = [int(k) for k, _ in stream.events(3)]
    stream.close()
    assert k_before < moves[0] < moves[1] < moves[2]

    # Stopped cleanly, it gives the lease up on its way out.
    assert successor.stop(signal.SIGTERM) == 0
    assert lease_holder(redis_server) in (None, *servers)
    last, = servers.values()
    k_after, _ = ticker_state(last)
    assert k_after >= moves[2]
    eventually(lambda: ticker_state(last)[0] > k_after, timeout=10.0, what="the last process moving the price")


# --- Redis away -----------------------------------------------------------------------------


def test_while_redis_is_down_posts_get_503_streams_stay_open_and_all_resumes_after(start_app, redis_server):
    a, b = start_app(), start_app()
    assert post_ok(a, "before") == 0
    stream = EventStream(b, "/chat/events")
    assert stream.events(1) == [("1", "before")]
    k_before, _ = ticker_state(a)

    redis_server.stop()
    for server in (a, b):
        status, text = post(server, "lost")
        assert status == 503
        assert "unavailable" in text.decode() and "Redis" in text.decode()
    # The stream stays open on keep-alives, and the process serves what it has.
    assert stream.block() == [": keep-alive"]
    assert stream.block() == [": keep-alive"]
    assert history(b)["messages"] == ["before"]

    # Back, but empty: the processes refill it and numbering goes on.
    redis_server.start()
    assert eventually(lambda: post(a, "after")[0] == 200, timeout=10.0, what="a post succeeding again")
    assert stream.event() == {"id": "2", "data": "after"}
    stream.close()
    for server in (a, b):
        eventually(lambda: history(server)["next"] == 2)
        assert history(server)["messages"] == ["before", "after"]
    assert redis_server.client().lrange("comet:chat:messages", 0, -1) == ["before", "after"]
    eventually(lambda: ticker_state(b)[0] > k_before + 1, timeout=10.0, what="the price moving again")
    for server in (a, b):
        assert server.stop(signal.SIGTERM) == 0, server.log()[-3000:]


def test_a_post_held_up_by_a_hung_redis_gets_503_and_is_never_stored_late(start_app, redis_server):
    a, b = start_app(), start_app()
    stream = EventStream(b, "/chat/events")
    assert stream.block() == ["retry: 2000"]
    redis_server.pause()
    try:
        status, text = post(a, "held up")
        assert status == 503 and "unavailable" in text.decode()
        assert stream.block() == [": keep-alive"]
    finally:
        redis_server.resume()
    # Redis now runs the held-up post too, past its deadline: refused.
    assert post_ok(a, "after") == 0
    assert stream.event() == {"id": "1", "data": "after"}
    stream.close()
    assert redis_server.client().lrange("comet:chat:messages", 0, -1) == ["after"]
    assert history(b)["messages"] == ["after"]
