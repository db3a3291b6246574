"""Behind nginx: docs/nginx.conf, run by Debian's nginx in front of app.py.

The article's warning about web servers, checked for real: a proxy buffers
what the app sends unless told not to. One app process (``python app.py``)
serves several nginx instances, each made from docs/nginx.conf, on its own
free port of 127.0.0.1 with its files in a temporary directory:

- ``proxy``: the file as shipped. Events pass one by one, pages are
  compressed, long polls are held as long as the app holds them.
- ``short_timeout``: ``proxy_read_timeout`` below ``--poll-timeout``. A
  held long poll ends in nginx's 504 instead of the app's answer.
- ``variant``: the file plus a setting that makes nginx buffer a stream for
  real, once with the app's ``X-Accel-Buffering: no`` obeyed and once with
  ``proxy_ignore_headers X-Accel-Buffering;``. Obeyed, events pass one by
  one; ignored, none arrive. Two such settings are checked: nginx's own
  default ``proxy_http_version 1.0`` (the app then ends the body by closing
  the connection, so nginx fills a buffer before passing anything on), and
  ``gzip_types text/event-stream`` (the compressor waits for a buffer's
  worth). With the shipped ``proxy_http_version 1.1``, nginx 1.22 passes
  each chunk of a chunked body on at once even while buffering, so ignoring
  the header alone changes nothing there: see docs/deployment.md.

The file is only rewritten where its header comment says (``nginx_conf`` in
tests/nginx.py asserts that each rewrite matches exactly once), so what
passes here is what a reader copies. Every socket read has a deadline; nginx and the app
are always stopped afterwards.

There is no skip: without nginx these tests fail and say how to install it
(``make test`` does, through scripts/system-deps.sh).
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import time
from typing import Iterator, Optional
from urllib.parse import urlencode

import pytest

from tests.client import FALLBACK, Client, Crowd, fetch, wait_until
from tests.nginx import CONF, NGINX, Nginx
from tests.server import NO_JITTER, ServerProcess

TICK = 0.25  # seconds between prices
POLL_TIMEOUT = 2.0  # seconds a long poll is held
APP_FLAGS = (f"--tick-interval={TICK}", f"--poll-timeout={POLL_TIMEOUT}", "--keepalive=1", NO_JITTER)
CLOSE = {"Connection": "close"}
GZIP = {"Accept-Encoding": "gzip"}

# A proxy that does not hear the app: nginx buffers the stream like a page,
# in buffers of one memory page (4 or 8 KiB, far more than one event).
IGNORE_HEADER = ("proxy_ignore_headers X-Accel-Buffering;", "proxy_buffering on;")

# Settings under which a buffering nginx holds a stream back; each is added
# to `location /`.
BUFFERING_SETTINGS = {
    # nginx's default when a config does not say: HTTP/1.0 to the app, which
    # then ends the body by closing the connection instead of chunking it.
    "http-1.0": ("proxy_http_version 1.0;",),
    # What the shipped config warns against.
    "gzip-streams": ("gzip_types text/event-stream;",),
}


def request(port: int, path: str, headers: Optional[dict] = None) -> Client:
    """One GET on its own connection; ``arrivals`` records when each event came."""
    return Client(port, path, headers=CLOSE | (headers or {}))


def read_all(clients: list[Client], seconds: float) -> None:
    """Read whatever arrives on any of ``clients`` for ``seconds``, then close them."""
    with Crowd() as crowd:
        for client in clients:
            crowd.add(client)
        crowd.pump(seconds)


def arrived(client: Client) -> list[int]:
    """The ids of the events the client got, in order."""
    return [int(event["id"]) for _, event in client.arrivals]


def elapsed(client: Client) -> float:
    return time.monotonic() - client.started


# --- fixtures -------------------------------------------------------------


@pytest.fixture(scope="module")
def app() -> Iterator[ServerProcess]:
    assert os.access(NGINX, os.X_OK), (
        "these tests run Debian's nginx: install it with `sudo apt-get install nginx` "
        "(or `make system-deps`, which `make test` runs)"
    )
    with ServerProcess(*APP_FLAGS) as server:
        yield server
        server.stop(signal.SIGTERM)


@pytest.fixture(scope="module")
def proxy(app: ServerProcess) -> Iterator[Nginx]:
    nginx = Nginx(app.port)
    yield nginx
    nginx.close()


@pytest.fixture(scope="module", params=sorted(BUFFERING_SETTINGS))
def variant(request, app: ServerProcess) -> Iterator[tuple]:
    """(name, nginx obeying the header, nginx ignoring it), with one of
    BUFFERING_SETTINGS added to both."""
    lines = BUFFERING_SETTINGS[request.param]
    obeying = Nginx(app.port, location=lines)
    try:
        ignoring = Nginx(app.port, location=lines + IGNORE_HEADER)
    except BaseException:
        obeying.close()
        raise
    yield request.param, obeying, ignoring
    ignoring.close()
    obeying.close()


@pytest.fixture(scope="module")
def short_timeout(app: ServerProcess) -> Iterator[Nginx]:
    nginx = Nginx(app.port, location=(f"proxy_read_timeout {POLL_TIMEOUT / 2:g}s;",))
    yield nginx
    nginx.close()


# --- the config itself ------------------------------------------------------


def test_config_outlasts_the_apps_timers():
    """proxy_read_timeout is above the app's default --poll-timeout and
    --keepalive, and gzip_types names no stream type."""
    import app as application  # the flags and their defaults

    with open(CONF, encoding="utf-8") as f:
        live = "\n".join(line.split("#")[0] for line in f)
    (timeout,) = re.findall(r"^\s*proxy_read_timeout (\d+)s;", live, re.M)
    options = application.options
    assert int(timeout) > 1.5 * max(options.poll_timeout, options.keepalive)
    (types,) = re.findall(r"^\s*gzip_types ([^;]*);", live, re.M)
    assert "text/event-stream" not in types.split() and "text/plain" not in types.split()
    assert re.search(r"^\s*proxy_http_version 1\.1;", live, re.M)
    assert re.search(r'^\s*proxy_set_header Connection "";', live, re.M)
    assert not re.search(r"proxy_buffering|proxy_ignore_headers", live), "streams rely on X-Accel-Buffering alone"


# --- (a) events pass one by one ---------------------------------------------


def test_ticker_events_pass_one_by_one(app, proxy):
    stream = request(proxy.port, "/ticker", GZIP)
    read_all([stream], 8 * TICK + 0.1)
    response = stream.response
    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert "content-encoding" not in response.headers, response.headers
    # The header is for the proxy: nginx obeys it and does not pass it on.
    assert "x-accel-buffering" not in response.headers

    times = [t for t, _ in stream.arrivals]
    ids = arrived(stream)
    assert len(ids) >= 6, stream.arrivals
    assert ids == list(range(ids[0], ids[0] + len(ids))), "the ticker skipped or repeated a price"
    assert response.body.startswith(b"retry: 2000\n\n")
    # The first price comes at once, every later one a tick after the one
    # before it, not in a burst: after the first move, each gap is about TICK.
    assert times[0] < 0.5
    gaps = [b - a for a, b in zip(times[1:], times[2:])]
    assert min(gaps) > 0.4 * TICK, gaps
    assert 0.7 * TICK < statistics.median(gaps) < 1.5 * TICK, gaps


def test_pages_are_compressed_streams_are_not(proxy):
    with request(proxy.port, "/chat", GZIP) as page:
        response = page.head(timeout=5)
    assert response.status == 200
    assert response.headers.get("content-encoding") == "gzip"
    assert "text/html" in response.headers["content-type"]


def test_a_closed_stream_is_forgotten_through_the_proxy(app, proxy):
    """The browser goes away: nginx drops its connection to the app, and
    the app forgets the reader, with no event having to be sent first."""
    before = app.status()["chat"]["streams"]
    with request(proxy.port, "/chat/events?lastEventId=0") as stream:
        stream.head(timeout=5)
        assert wait_until(lambda: app.status()["chat"]["streams"] == before + 1)
    assert wait_until(lambda: app.status()["chat"]["streams"] == before), app.status()


def test_keep_alive_comments_pass_through(app, proxy):
    count = app.status()["chat"]["messages"]
    stream = request(proxy.port, "/chat/events", {"Last-Event-ID": str(count)})
    read_all([stream], 2.5)  # --keepalive=1
    assert stream.response.body.count(b": keep-alive\n\n") >= 2, stream.response


# --- (b) long polls survive --poll-timeout ----------------------------------


def test_long_polls_are_held_until_the_poll_timeout(app, proxy):
    count = app.status()["chat"]["messages"]
    get = request(proxy.port, f"/chat/get/{count}")
    batch = request(proxy.port, "/chat/events", FALLBACK | {"Last-Event-ID": str(count)})
    try:
        for poll in (get, batch):
            poll.finish(timeout=POLL_TIMEOUT + 3)
            assert POLL_TIMEOUT - 0.3 < elapsed(poll) < POLL_TIMEOUT + 2
    finally:
        get.close()
        batch.close()
    assert get.response.status == 204, get.response
    assert batch.response.status == 200, batch.response
    assert batch.response.body == b"retry: 2000\n\n: keep-alive\n\n"


def test_a_held_poll_gets_the_message_posted_meanwhile(app, proxy):
    count = app.status()["chat"]["messages"]
    message = f"through nginx {time.time()} ✓"
    with request(proxy.port, f"/chat/get/{count}") as poll:
        assert wait_until(lambda: app.status()["chat"]["waiting"] >= 1), "the poll never reached the app"
        assert poll.silent(0.3), "answered before anything was posted"
        posted = fetch(proxy.port, "/chat/post", "POST", urlencode({"message": message}).encode(),
                       {"Content-Type": "application/x-www-form-urlencoded"})
        assert posted[0] == 200 and json.loads(posted[2]) == {"id": count}
        response = poll.finish(timeout=2)
    assert response.status == 200
    assert response.body.decode("utf-8") == message
    assert elapsed(poll) < POLL_TIMEOUT


def test_polls_woken_together_are_answered_and_asked_again_through_the_proxy(app, proxy):
    """A page's poll loop behind nginx, twenty at once: each post answers all
    of them (one answer formatted for all and sent past Tornado's finish(),
    handlers/fast_writer.py) over nginx's kept-alive connections to the app
    (``keepalive 16``), and each asks again on its own kept connection."""
    count = app.status()["chat"]["messages"]
    logged_before = len(proxy.log())
    clients = [Client(proxy.port) for _ in range(20)]
    try:
        for round_number in range(3):
            for client in clients:
                client.request("GET", f"/chat/get/{count + round_number}")
            assert wait_until(lambda: app.status()["chat"]["waiting"] >= len(clients)), "the polls never got held"
            message = f"round {round_number} ✓"
            posted = fetch(proxy.port, "/chat/post", "POST", urlencode({"message": message}).encode(),
                           {"Content-Type": "application/x-www-form-urlencoded"})
            assert posted[0] == 200 and json.loads(posted[2]) == {"id": count + round_number}
            for client in clients:
                response = client.finish(timeout=3)
                assert (response.status, response.body.decode("utf-8")) == (200, message), response
                assert response.headers["Content-Type"] == "text/plain; charset=UTF-8"
                assert response.headers["Cache-Control"] == "no-cache"
    finally:
        for client in clients:
            client.close()
    assert not proxy.log()[logged_before:].strip(), proxy.log()[logged_before:]


def test_the_ticker_fallback_gets_its_batch(app, proxy):
    with request(proxy.port, "/ticker", FALLBACK) as poll:
        response = poll.finish(timeout=2)
    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    (held,) = arrived(poll)
    # Holding the current id: held until the next move, then that one.
    with request(proxy.port, "/ticker", FALLBACK | {"Last-Event-ID": str(held)}) as poll:
        poll.finish(timeout=2)
    assert arrived(poll) == [held + 1]


def test_a_read_timeout_below_the_poll_timeout_breaks_long_polls(app, short_timeout):
    """The contrast: with proxy_read_timeout under --poll-timeout, nginx
    gives up on the held poll and answers 504 itself."""
    count = app.status()["chat"]["messages"]
    with request(short_timeout.port, f"/chat/get/{count}") as poll:
        response = poll.finish(timeout=POLL_TIMEOUT + 3)
    assert response.status == 504
    assert elapsed(poll) < POLL_TIMEOUT


# --- (c) what breaks without X-Accel-Buffering -------------------------------


def test_without_the_header_the_stream_is_held_back(app, proxy, variant):
    """Four readers of /ticker at once, for the same 1.5 s: straight from the
    app, through the shipped config, and through a buffering variant of it
    that obeys ``X-Accel-Buffering: no`` or ignores it. All but the last see
    every price as it comes; the last sees none of them (or far fewer): they
    wait in nginx's buffer or compressor."""
    name, obeying, ignoring = variant
    window = 6 * TICK
    readers = [request(server.port, "/ticker", GZIP) for server in (app, proxy, obeying, ignoring)]
    read_all(readers, window)
    direct, shipped, obeyed, ignored = counts = [len(r.arrivals) for r in readers]
    print(
        f"\n{name}: events in {window} s: direct {direct}, shipped config {shipped}, "
        f"header obeyed {obeyed}, header ignored {ignored} "
        f"(status line {readers[3].response.status or 'not'} received)"
    )
    assert readers[0].response.headers.get("x-accel-buffering") == "no"
    assert direct >= 5, counts
    assert shipped >= direct - 1, counts
    assert obeyed >= direct - 1, counts
    assert ignored <= direct // 4, counts


def test_proxy_buffering_off_by_path_needs_no_header(app):
    """The config's commented alternative, uncommented: with the same two
    buffering settings for the whole server and the app's header ignored,
    `proxy_buffering off` on the streams' paths still passes each event."""
    lines = IGNORE_HEADER + BUFFERING_SETTINGS["http-1.0"]
    with Nginx(app.port, server=lines, by_path=True) as nginx:
        with open(nginx.conf, encoding="utf-8") as f:
            assert re.search(r"^\s*location ~ .*\{\n\s*proxy_pass http://comet;\n\s*proxy_buffering off;", f.read(), re.M)
        readers = [request(app.port, "/ticker"), request(nginx.port, "/ticker")]
        read_all(readers, 6 * TICK)
    direct, by_path = counts = [len(r.arrivals) for r in readers]
    assert direct >= 5, counts
    assert by_path >= direct - 1, counts


def test_without_the_header_the_fallback_still_works(app, variant):
    """A long poll is one small, complete response: buffering only holds it
    until its end, which is when the app has answered anyway."""
    _name, _obeying, ignoring = variant
    with request(ignoring.port, "/ticker", FALLBACK) as poll:
        response = poll.finish(timeout=2)
    assert response.status == 200
    assert len(poll.arrivals) == 1
