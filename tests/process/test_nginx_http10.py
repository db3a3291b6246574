"""The streams through docs/nginx.conf, as shipped (HTTP/1.1 to the app) and
with ``proxy_http_version 1.0;`` (nginx's own default towards an upstream).

Over HTTP/1.0 the app sends a stream unchunked, ended by closing the
connection; nginx, told by ``X-Accel-Buffering: no`` not to buffer, passes
each event on as it comes. Either way the browser's bytes are clean: every
line an event-stream line, no chunk sizes inside the events (before issue
11 the app wrote chunk framing into HTTP/1.0 bodies, and nginx passed the
``14`` lines on as data).
"""

from __future__ import annotations

import os
import signal
import statistics
from typing import Iterator

import pytest

from tests.client import FALLBACK, Client, Crowd, assert_event_stream_lines
from tests.nginx import NGINX, Nginx
from tests.server import ServerProcess

TICK = 0.25  # seconds between prices
CLOSE = {"Connection": "close"}
VERSIONS = {"HTTP/1.1 (shipped)": (), "HTTP/1.0": ("proxy_http_version 1.0;",)}


@pytest.fixture(scope="module")
def app() -> Iterator[ServerProcess]:
    assert os.access(NGINX, os.X_OK), "install nginx: `make system-deps`"
    with ServerProcess(f"--tick-interval={TICK}", "--poll-timeout=2", "--keepalive=1", "--retry-jitter=0") as app:
        yield app
        app.stop(signal.SIGTERM)


@pytest.fixture(scope="module", params=list(VERSIONS))
def proxy(request, app) -> Iterator[Nginx]:
    with Nginx(app.port, location=VERSIONS[request.param]) as nginx:
        yield nginx


def read_for(client: Client, seconds: float) -> None:
    with Crowd() as crowd:
        crowd.add(client)
        crowd.pump(seconds)


def test_ticker_events_pass_one_by_one_and_clean(proxy):
    stream = Client(proxy.port, "/ticker", headers=CLOSE)
    read_for(stream, 8 * TICK + 0.1)
    response = stream.response
    assert response.status == 200 and response.headers["content-type"] == "text/event-stream; charset=utf-8"
    ids = [int(event["id"]) for _, event in stream.arrivals]
    assert len(ids) >= 6 and ids == list(range(ids[0], ids[0] + len(ids))), stream.arrivals
    times = [t for t, _ in stream.arrivals]
    gaps = [b - a for a, b in zip(times[1:], times[2:])]
    assert times[0] < 0.5 and min(gaps) > 0.4 * TICK and 0.7 * TICK < statistics.median(gaps) < 1.5 * TICK, gaps
    assert response.body.startswith(b"retry: 2000\n\n")
    assert_event_stream_lines(response.body[:response.body.rindex(b"\n\n") + 2])


def test_chat_events_and_keep_alives_pass_clean(app, proxy):
    first = app.status()["chat"]["messages"]
    stream = Client(proxy.port, f"/chat/events?lastEventId={first}", headers=CLOSE)
    stream.until(b"retry: 2000\n\n", timeout=5)
    texts = [f"through nginx {n}\nsecond line" for n in range(3)]
    for text in texts:
        assert app.post(text)[0] == 200
    events = stream.events(3, timeout=5)
    assert [event["data"] for event in events] == texts
    stream.until(b": keep-alive\n\n", timeout=3)
    stream.close()
    body = stream.response.body
    assert_event_stream_lines(body[:body.rindex(b"\n\n") + 2])


def test_the_fallback_passes_clean(proxy):
    with Client(proxy.port, "/ticker", headers=CLOSE | FALLBACK) as poll:
        response = poll.finish(timeout=5)
    assert response.status == 200 and len(response.events) == 1
    assert_event_stream_lines(response.body)
