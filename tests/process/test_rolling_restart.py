"""A rolling restart behind docs/nginx.conf drops nobody (docs/deployment.md).

nginx in front of two ``app.py --redis`` processes, as the runbook sets them
up: the upstream's second server uncommented, ``max_fails=0`` and
``proxy_next_upstream``. While STREAMS ticker streams and two chat clients
(an EventSource on /chat/events, and the page's long-poll loop of
/chat/since and /chat/get/N) are open through nginx and a poster posts
through it, the two processes are restarted one after the other with
SIGTERM, each started again before the next one stops:

- no client sees an error (no 502, no reset connection), every post is
  answered 200, and every stream is served again;
- both chat clients show every message once, in order, with no reset.

Then, from the same run, the old way: the second process is stopped for
good and the only one left is restarted, so nginx has nowhere to send the
clients meanwhile (502s, and the pages' backoff). The test prints the
longest time any client was without a stream, for both, as the runbook
quotes them.

The clients behave as the site's pages do: a stream that ends is opened
again after its ``retry:`` with ``Last-Event-ID``; after an error the next
try waits a "full jitter" backoff (static/js/page.js). STREAMS is what this
two-core machine carries reliably next to nginx, two apps and Redis while
everything reconnects at once; the issue's figure is 2,000.
"""

from __future__ import annotations

import json
import random
import selectors
import signal
import threading
import time
from typing import Callable, Optional
from urllib.parse import quote

from tests.client import Client, fetch, free_port
from tests.machine import need_open_files
from tests.nginx import Nginx
from tests.server import ServerProcess

STREAMS = 2000
# --tick-interval=0.5: a served-again stream has a price within half a second.
FLAGS = ("--xheaders", "--tick-interval=0.5", "--poll-timeout=10", "--keepalive=5")
# What the runbook adds for a process with another beside it: its streams,
# ended at SIGTERM, come back within a second, not after their retry: (2-4 s).
BESIDE_ANOTHER = ("--drain-retry=1000",)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
OPEN, WAITING = "open", "waiting"


class Backoff:
    """The pages' wait after a failure: uniform in [0, min(30, 2^n)) s."""

    def __init__(self) -> None:
        self.failures = 0

    def next(self) -> float:
        span = min(30.0, 2.0 ** self.failures)
        self.failures += 1
        return random.random() * span


def read_on(member, selector: selectors.BaseSelector) -> bool:
    """Read what has come for ``member`` (a Reader or a Poller); once its
    response has ended, close it and return True."""
    client = member.client
    while client.read(0):
        pass
    if not (client.response.complete or client.response.closed):
        return False
    selector.unregister(client.sock)
    client.close()
    member.client = None
    return True


class Reader:
    """One EventSource through nginx. ``gaps``: (lost, back, retry) for each
    time it was without a stream, and the ``retry:`` it was told to wait
    first; ``errors``: (when, what) for every answer that
    was not a stream (a 502, a reset)."""

    def __init__(self, port: int, path: str) -> None:
        self.port, self.path = port, path
        self.last_event_id: Optional[str] = None
        self.retry = 2.0
        self.client: Optional[Client] = None
        self.taken = 0  # events of the current response already recorded
        self.events: list[tuple[float, dict]] = []
        self.gaps: list[tuple[float, float, float]] = []  # (lost, back, the retry: it waited)
        self.errors: list[tuple[float, str]] = []
        self.lost: Optional[float] = None  # when it lost its stream; None while it has one
        self.backoff = Backoff()
        self.due = 0.0

    def connect(self, selector: selectors.BaseSelector, now: float) -> None:
        headers = {} if self.last_event_id is None else {"Last-Event-ID": self.last_event_id}
        self.client = Client(self.port, self.path, headers=headers)
        self.client.sock.setblocking(False)
        self.taken = 0
        selector.register(self.client.sock, selectors.EVENT_READ, self)

    def readable(self, selector: selectors.BaseSelector, now: float) -> None:
        response = self.client.response
        ended = read_on(self, selector)
        if response.status == 200 and self.lost is not None:
            self.gaps.append((self.lost, now, self.retry))
            self.lost = None
            self.backoff.failures = 0
        for event in response.events[self.taken:]:
            self.events.append((now, event))
            self.last_event_id = event["id"]
        self.taken = len(response.events)
        if response.stream.retry is not None:
            self.retry = response.stream.retry / 1000
        if not ended:
            return
        if self.lost is None:
            self.lost = now
        if response.status == 200 and not response.reset:
            self.due = now + self.retry  # the end of a stream: back after retry:
        else:
            self.errors.append((now, f"{response.status} reset={response.reset}"))
            self.due = now + self.backoff.next()


class Poller:
    """The chat page's long-poll loop through nginx: GET /chat/get/N?epoch=E,
    N+1 after each message, the same N after a 204, a backoff after an error."""

    def __init__(self, port: int, epoch: str, number: int) -> None:
        self.port, self.epoch, self.number = port, epoch, number
        self.client: Optional[Client] = None
        self.messages: list[str] = []
        self.errors: list[tuple[float, str]] = []
        self.backoff = Backoff()
        self.due = 0.0

    def connect(self, selector: selectors.BaseSelector, now: float) -> None:
        self.client = Client(self.port, f"/chat/get/{self.number}?epoch={self.epoch}")
        self.client.sock.setblocking(False)
        selector.register(self.client.sock, selectors.EVENT_READ, self)

    def readable(self, selector: selectors.BaseSelector, now: float) -> None:
        response = self.client.response
        if not read_on(self, selector):
            return
        if response.complete and response.status == 200:
            self.messages.append(response.body.decode("utf-8"))
            self.number += 1
            self.backoff.failures = 0
        elif response.complete and response.status == 204:
            self.backoff.failures = 0
        else:  # 404 or 410 would be a reset: the test fails on any error here
            self.errors.append((now, f"{response.status} reset={response.reset}"))
            self.due = now + self.backoff.next()


class Swarm:
    """Every reader and poller, read by one selector; each reconnects when due."""

    def __init__(self, members: list) -> None:
        self.selector = selectors.DefaultSelector()
        self.members = members

    def pump(self, seconds: float, until: Callable[[], bool] = lambda: False) -> bool:
        deadline = time.monotonic() + seconds
        while not until():
            now = time.monotonic()
            if now >= deadline:
                return until()
            for key, _ in self.selector.select(min(deadline - now, 0.02)):
                key.data.readable(self.selector, time.monotonic())
            now = time.monotonic()
            for member in self.members:
                if member.client is None and member.due <= now:
                    member.connect(self.selector, now)
        return True

    def close(self) -> None:
        for member in self.members:
            if member.client is not None:
                member.client.close()
        self.selector.close()


class Poster(threading.Thread):
    """Posts "message N" through nginx four times a second (under the
    default --post-rate of 5), keeping each answer's status."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.answers: list[tuple[float, str, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        for number in range(10_000):
            if self.stopping.wait(0.25):
                return
            text = f"message {number}"
            try:
                status = fetch(self.port, "/chat/post", "POST", f"message={quote(text)}".encode(), FORM, timeout=10)[0]
            except (OSError, AssertionError):
                status = 0
            self.answers.append((time.monotonic(), text, status))


def start_in_background(*flags: str) -> Callable[[], Optional[ServerProcess]]:
    """Start ``app.py *flags`` in a thread, so the clients go on being read
    while it starts; a function that returns it once it prints its URL."""
    started: list = []
    thread = threading.Thread(target=lambda: started.append(ServerProcess(*flags, start_timeout=20)), daemon=True)
    thread.start()
    return lambda: started[0] if started else None


def restart(swarm: Swarm, servers: dict, port: int, flags: tuple) -> None:
    """SIGTERM the process on ``port``, wait for it to exit (reading the
    clients all the while), and start it again on the same port, with ``flags``."""
    servers[port].send_signal(signal.SIGTERM)
    assert swarm.pump(15, until=lambda: servers[port].returncode is not None), "the app did not exit"
    assert servers[port].returncode == 0, servers[port].log()[-2000:]
    servers[port].close()
    started = start_in_background(f"--port={port}", *flags)
    assert swarm.pump(25, until=lambda: started() is not None), "the app did not start again"
    servers[port] = started()


def served_since(readers: list[Reader], moment: float) -> Callable[[], bool]:
    """Every reader holds a stream and has had a price after ``moment``."""
    return lambda: all(r.lost is None and r.events and r.events[-1][0] > moment for r in readers)


def longest_gap(readers: list[Reader], start: float, end: float) -> tuple[float, float]:
    """The longest time without a stream of a client that lost it between
    ``start`` and ``end``, and the longest beyond the ``retry:`` it was told."""
    gaps = [(back - lost, back - lost - retry) for r in readers for lost, back, retry in r.gaps if start <= lost <= end]
    return max(gap for gap, _ in gaps), max(beyond for _, beyond in gaps)


def errors(readers: list[Reader], start: float, end: float) -> int:
    return sum(start <= when <= end for r in readers for when, _ in r.errors)


def refused(poster: Poster, start: float, end: float) -> int:
    return sum(start <= when <= end and status != 200 for when, _text, status in poster.answers)


def test_a_rolling_restart_of_two_redis_processes_behind_nginx_drops_nobody(redis_server):
    need_open_files(2 * STREAMS + 200)
    flags = (f"--redis={redis_server.url}", *FLAGS)
    ports = [free_port(), free_port()]
    servers = {port: ServerProcess(f"--port={port}", *flags, *BESIDE_ANOTHER) for port in ports}
    nginx = Nginx(ports[0], second_app_port=ports[1])
    poster = Poster(nginx.port)
    try:
        since = json.loads(fetch(nginx.port, "/chat/since/0")[2])
        tickers = [Reader(nginx.port, "/ticker") for _ in range(STREAMS)]
        chat = Reader(nginx.port, "/chat/events")
        poller = Poller(nginx.port, since["epoch"], since["next"])
        swarm = Swarm([*tickers, chat, poller])
        begun = time.monotonic()
        assert swarm.pump(60, until=served_since(tickers, begun)), "not every stream opened"
        poster.start()
        swarm.pump(1.0)

        # The rolling restart: one process, then the other.
        rolling = time.monotonic()
        for port, again in zip(ports, (flags, (*flags, *BESIDE_ANOTHER))):
            # The first will be restarted alone below, as a single process is run.
            restart(swarm, servers, port, again)
            moment = time.monotonic()
            assert swarm.pump(60, until=served_since(tickers, moment)), "not every stream was served again"
        rolled = time.monotonic()

        # The same clients, a single process restarted.
        servers[ports[1]].send_signal(signal.SIGTERM)
        assert swarm.pump(15, until=lambda: servers[ports[1]].returncode is not None)
        moment = time.monotonic()
        assert swarm.pump(60, until=served_since(tickers, moment))
        single = time.monotonic()
        restart(swarm, servers, ports[0], flags)
        moment = time.monotonic()
        assert swarm.pump(90, until=served_since(tickers, moment)), "not every stream was served again"
        ended = time.monotonic()

        poster.stopping.set()
        poster.join(timeout=15)
        posted = [text for _when, text, status in poster.answers if status == 200]
        assert swarm.pump(30, until=lambda: len(poller.messages) >= len(posted)
                          and sum(e["event"] == "message" for _t, e in chat.events) >= len(posted))
    finally:
        poster.stopping.set()
        if "swarm" in locals():
            swarm.close()
        nginx.close()
        for server in servers.values():
            server.close()

    (rolling_gap, rolling_beyond), (single_gap, single_beyond) = (
        longest_gap(tickers, rolling, rolled), longest_gap(tickers, single, ended))
    print(f"\n{STREAMS} streams through nginx, the longest time without a stream (beyond its retry:): "
          f"{rolling_gap:.2f} s ({rolling_beyond:.2f} s) in the rolling restart of two processes, "
          f"{single_gap:.2f} s ({single_beyond:.2f} s) when the only process restarted; errors seen by "
          f"the streams {errors(tickers, rolling, rolled)} and {errors(tickers, single, ended)}, "
          f"posts refused {refused(poster, rolling, rolled)} and {refused(poster, single, ended)}")
    # The rolling restart: nobody saw an error, every post was taken.
    for reader in [*tickers, chat]:
        assert not [e for e in reader.errors if rolling <= e[0] <= rolled], reader.errors
    assert not [e for e in poller.errors if rolling <= e[0] <= rolled], poller.errors
    assert refused(poster, 0, rolled) == 0, [answer for answer in poster.answers if answer[2] != 200]
    # Every message shown once, in order, by both transports, and no reset.
    shown = [e["data"] for _t, e in chat.events]
    assert [e["event"] for _t, e in chat.events] == ["message"] * len(shown)
    assert shown == posted and poller.messages == posted
    assert not [e for e in poller.errors if e[1].startswith(("404", "410"))], poller.errors
