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

The file is only rewritten where its header comment says (``nginx_conf``
below asserts that each rewrite matches exactly once), so what passes here
is what a reader copies. Every socket read has a deadline; nginx and the app
are always stopped afterwards.

There is no skip: without nginx these tests fail and say how to install it
(``make test`` does, through scripts/system-deps.sh).
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from typing import Iterator, Optional

import pytest

from tests.server import ROOT, ServerProcess

CONF = os.path.join(ROOT, "docs", "nginx.conf")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HOST = "127.0.0.1"

TICK = 0.25  # seconds between prices
POLL_TIMEOUT = 2.0  # seconds a long poll is held
APP_FLAGS = (f"--tick-interval={TICK}", f"--poll-timeout={POLL_TIMEOUT}", "--keepalive=1")
FALLBACK = {"X-Event-Source-Simulate": "Long-Polling"}

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


# --- nginx ----------------------------------------------------------------


def nginx_conf(tmp: str, port: int, app_port: int, location: tuple = (), server: tuple = (), by_path: bool = False) -> str:
    """docs/nginx.conf with the documented substitutions. ``location`` lines
    are added at the top of ``location /``, ``server`` lines replace the
    server block's line for the same directive or are added at its top
    (every location inherits them); ``by_path`` uncomments
    the file's `proxy_buffering off` location for the two streams."""
    with open(CONF, encoding="utf-8") as f:
        text = f.read()

    def sub(pattern: str, replacement) -> None:
        nonlocal text
        text, count = re.subn(pattern, replacement, text, flags=re.M)
        assert count == 1, f"docs/nginx.conf: expected one line matching {pattern!r}, found {count}"

    sub(r"^(\s*)listen 8080;$", rf"\g<1>listen {HOST}:{port};")
    sub(r"^(\s*)server 127\.0\.0\.1:8888;", rf"\g<1>server {HOST}:{app_port};")
    sub(r"^pid \S+;$", f"pid {tmp}/nginx.pid;")
    sub(r"^error_log \S+;$", f"error_log {tmp}/error.log;")
    sub(r"^(\s*)access_log \S+;$", rf"\g<1>access_log {tmp}/access.log;")
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        sub(rf"^(\s*){kind}_temp_path \S+;$", rf"\g<1>{kind}_temp_path {tmp}/{kind}_temp;")
    if location:
        sub(r"^(\s*)location / \{$", lambda m: m.group(0) + "".join(f"\n{m.group(1)}    {line}" for line in location))
    for line in server:
        directive = line.split()[0]
        if re.search(rf"^\s*{directive} ", text, re.M):
            sub(rf"^(\s*){directive} [^;]*;", rf"\g<1>{line}")
        else:
            sub(r"^(\s*)server_name \S+;$", rf"\g<0>\n\g<1>{line}")
    if by_path:
        # "# location ~ ... {" through "# }", each line without its "# ".
        sub(
            r"^(\s*)# (location ~ \^/\(ticker\|chat/events\)\$ \{\n(?:\1#     .*\n)+\1)# \}$",
            lambda m: m.group(1) + re.sub(rf"^{m.group(1)}# ", m.group(1), m.group(2), flags=re.M) + "}",
        )
    live = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"/var/|/run/", live), "the test config would still write outside its directory"
    return text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Nginx:
    """Debian's nginx on docs/nginx.conf, in the foreground, one process."""

    def __init__(self, app_port: int, start_timeout: float = 10.0, **changes) -> None:
        self.tmp = tempfile.mkdtemp(prefix="nginx-comet-")
        self.process: Optional[subprocess.Popen] = None
        self._stderr = open(os.path.join(self.tmp, "stderr"), "w+b")
        try:
            # The free port may be taken between the probe and nginx's bind.
            for _attempt in range(3):
                self.port = free_port()
                self.conf = os.path.join(self.tmp, "nginx.conf")
                with open(self.conf, "w", encoding="utf-8") as f:
                    f.write(nginx_conf(self.tmp, self.port, app_port, **changes))
                self.process = subprocess.Popen(
                    [NGINX, "-p", self.tmp, "-c", self.conf, "-g", "daemon off; master_process off;"],
                    stdin=subprocess.DEVNULL,
                    stdout=self._stderr,
                    stderr=self._stderr,
                )
                if self._listening(start_timeout):
                    return
                if "in use" not in self.log():
                    raise RuntimeError(f"nginx did not start:\n{self.log()}")
            raise RuntimeError(f"nginx found no free port:\n{self.log()}")
        except BaseException:
            self.close()
            raise

    def _listening(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return True
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"nginx not listening on {self.port} within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        parts = []
        for name in ("stderr", "error.log"):
            try:
                with open(os.path.join(self.tmp, name), "rb") as f:
                    parts.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "\n".join(parts)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # fast shutdown
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def close(self) -> None:
        self.stop()
        self._stderr.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- HTTP by hand -----------------------------------------------------------


class Exchange:
    """One request on its own connection, its response read as it comes, each
    read bounded; ``arrivals`` records when each event's last byte came."""

    def __init__(self, port: int, path: str, headers: Optional[dict] = None) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=5)
        lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        self.sock.setblocking(False)
        self.started = time.monotonic()
        self.raw = b""  # received, not yet decoded
        self.body = b""  # decoded body
        self.status: Optional[int] = None
        self.headers: dict = {}
        self.ended = False  # the whole response has arrived
        self.closed = False  # the peer closed the connection
        self.arrivals: list = []  # (seconds since the request, event id)
        self._parsed = 0  # bytes of body already split into events
        self._gunzip = None  # a decompressor, for a gzip-encoded body
        self._length = 0  # body bytes received, when not chunked

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, timeout: float) -> bool:
        """One recv, waiting at most ``timeout``. False when nothing came."""
        if self.closed:
            return False
        ready, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if not ready:
            return False
        data = self.sock.recv(1 << 16)
        self.closed = not data
        self.raw += data
        self._decode(time.monotonic() - self.started)
        return True

    def _decode(self, now: float) -> None:
        if self.status is None:
            if b"\r\n\r\n" not in self.raw:
                return
            head, self.raw = self.raw.split(b"\r\n\r\n", 1)
            status_line, *lines = head.decode("latin-1").split("\r\n")
            self.status = int(status_line.split()[1])
            self.headers = {name.lower(): value.strip() for name, _, value in (l.partition(":") for l in lines)}
            if self.headers.get("content-encoding") == "gzip":
                self._gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
        data = b""  # body bytes as sent, before any gzip decoding
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while not self.ended and b"\r\n" in self.raw:
                size_line, rest = self.raw.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                if len(rest) < size + 2:
                    break
                data += rest[:size]
                self.raw = rest[size + 2 :]
                self.ended = size == 0
        else:
            data, self.raw = self.raw, b""
            self._length += len(data)
            length = self.headers.get("content-length")
            self.ended = self.closed or (length is not None and self._length >= int(length))
        self.body += self._gunzip.decompress(data) if self._gunzip else data
        # Events end with a blank line; the app writes "\n" line ends.
        while (end := self.body.find(b"\n\n", self._parsed)) >= 0:
            block, self._parsed = self.body[self._parsed : end], end + 2
            for line in block.split(b"\n"):
                if line.startswith(b"id: "):
                    self.arrivals.append((now, int(line[4:])))

    def head(self, timeout: float = 5.0) -> "Exchange":
        deadline = time.monotonic() + timeout
        while self.status is None and not self.closed:
            if not self.read(deadline - time.monotonic()) and time.monotonic() >= deadline:
                raise AssertionError(f"no response head within {timeout} s")
        assert self.status is not None, f"connection closed before a response: {self.raw!r}"
        return self

    def finish(self, timeout: float = 5.0) -> "Exchange":
        """Read to the end of the response, for at most ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.ended:
            assert not self.closed, f"connection closed mid-response: {self.body!r}"
            if not self.read(deadline - time.monotonic()) and time.monotonic() >= deadline:
                raise AssertionError(f"response not complete within {timeout} s: {self.body!r}")
        return self

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def close(self) -> None:
        self.sock.close()


def read_all(exchanges: list, seconds: float) -> None:
    """Read whatever arrives on any of ``exchanges`` for ``seconds``."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        open_ones = [e for e in exchanges if not e.closed]
        if not open_ones:
            time.sleep(remaining)
            return
        ready, _, _ = select.select(open_ones, [], [], remaining)
        for exchange in ready:
            exchange.read(0)


def fetch(port: int, path: str, data: Optional[dict] = None) -> tuple:
    """(status, headers, body) of a plain request, errors included."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", data=body, timeout=5) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def status(app: ServerProcess) -> dict:
    return json.loads(fetch(app.port, "/status")[2])


def wait_for(condition, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


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
    stream = Exchange(proxy.port, "/ticker", {"Accept-Encoding": "gzip"}).head()
    try:
        assert stream.status == 200
        assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert stream.headers["cache-control"] == "no-cache"
        assert "content-encoding" not in stream.headers, stream.headers
        # The header is for the proxy: nginx obeys it and does not pass it on.
        assert "x-accel-buffering" not in stream.headers
        read_all([stream], 8 * TICK + 0.1)
    finally:
        stream.close()

    times = [t for t, _ in stream.arrivals]
    ids = [k for _, k in stream.arrivals]
    assert len(ids) >= 6, stream.arrivals
    assert ids == list(range(ids[0], ids[0] + len(ids))), "the ticker skipped or repeated a price"
    assert stream.body.startswith(b"retry: 2000\n\n")
    # The first price comes at once, every later one a tick after the one
    # before it, not in a burst: after the first move, each gap is about TICK.
    assert times[0] < 0.5
    gaps = [b - a for a, b in zip(times[1:], times[2:])]
    assert min(gaps) > 0.4 * TICK, gaps
    assert 0.7 * TICK < statistics.median(gaps) < 1.5 * TICK, gaps


def test_pages_are_compressed_streams_are_not(proxy):
    page = Exchange(proxy.port, "/chat", {"Accept-Encoding": "gzip"}).head()
    page.close()
    assert page.status == 200
    assert page.headers.get("content-encoding") == "gzip"
    assert "text/html" in page.headers["content-type"]


def test_a_closed_stream_is_forgotten_through_the_proxy(app, proxy):
    """The browser goes away: nginx drops its connection to the app, and
    the app forgets the reader, with no event having to be sent first."""
    before = status(app)["chat"]["streams"]
    stream = Exchange(proxy.port, "/chat/events?lastEventId=0", {}).head()
    try:
        assert wait_for(lambda: status(app)["chat"]["streams"] == before + 1)
    finally:
        stream.close()
    assert wait_for(lambda: status(app)["chat"]["streams"] == before), status(app)


def test_keep_alive_comments_pass_through(app, proxy):
    count = status(app)["chat"]["messages"]
    stream = Exchange(proxy.port, "/chat/events", {"Last-Event-ID": str(count)}).head()
    try:
        read_all([stream], 2.5)  # --keepalive=1
    finally:
        stream.close()
    assert stream.body.count(b": keep-alive\n\n") >= 2, stream.body


# --- (b) long polls survive --poll-timeout ----------------------------------


def test_long_polls_are_held_until_the_poll_timeout(app, proxy):
    count = status(app)["chat"]["messages"]
    get = Exchange(proxy.port, f"/chat/get/{count}")
    batch = Exchange(proxy.port, "/chat/events", FALLBACK | {"Last-Event-ID": str(count)})
    try:
        for poll in (get, batch):
            poll.finish(timeout=POLL_TIMEOUT + 3)
            assert POLL_TIMEOUT - 0.3 < poll.elapsed() < POLL_TIMEOUT + 2
    finally:
        get.close()
        batch.close()
    assert get.status == 204, (get.status, get.body)
    assert batch.status == 200, (batch.status, batch.body)
    assert batch.body == b"retry: 2000\n\n: keep-alive\n\n"


def test_a_held_poll_gets_the_message_posted_meanwhile(app, proxy):
    count = status(app)["chat"]["messages"]
    message = f"through nginx {time.time()} ✓"
    poll = Exchange(proxy.port, f"/chat/get/{count}")
    try:
        assert wait_for(lambda: status(app)["chat"]["waiting"] >= 1), "the poll never reached the app"
        poll.read(0.3)
        assert poll.status is None, "answered before anything was posted"
        posted = fetch(proxy.port, "/chat/post", {"message": message})
        assert posted[0] == 200 and json.loads(posted[2]) == {"id": count}
        poll.finish(timeout=2)
    finally:
        poll.close()
    assert poll.status == 200
    assert poll.body.decode("utf-8") == message
    assert poll.elapsed() < POLL_TIMEOUT


def test_the_ticker_fallback_gets_its_batch(app, proxy):
    poll = Exchange(proxy.port, "/ticker", FALLBACK).finish(timeout=2)
    poll.close()
    assert poll.status == 200
    assert poll.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert len(poll.arrivals) == 1
    (_, held) = poll.arrivals[0]
    # Holding the current id: held until the next move, then that one.
    poll = Exchange(proxy.port, "/ticker", FALLBACK | {"Last-Event-ID": str(held)}).finish(timeout=2)
    poll.close()
    assert [k for _, k in poll.arrivals] == [held + 1]


def test_a_read_timeout_below_the_poll_timeout_breaks_long_polls(app, short_timeout):
    """The contrast: with proxy_read_timeout under --poll-timeout, nginx
    gives up on the held poll and answers 504 itself."""
    count = status(app)["chat"]["messages"]
    poll = Exchange(short_timeout.port, f"/chat/get/{count}").finish(timeout=POLL_TIMEOUT + 3)
    poll.close()
    assert poll.status == 504
    assert poll.elapsed() < POLL_TIMEOUT


# --- (c) what breaks without X-Accel-Buffering -------------------------------


def test_without_the_header_the_stream_is_held_back(app, proxy, variant):
    """Four readers of /ticker at once, for the same 1.5 s: straight from the
    app, through the shipped config, and through a buffering variant of it
    that obeys ``X-Accel-Buffering: no`` or ignores it. All but the last see
    every price as it comes; the last sees none of them (or far fewer): they
    wait in nginx's buffer or compressor."""
    name, obeying, ignoring = variant
    window = 6 * TICK
    headers = {"Accept-Encoding": "gzip"}
    readers = [Exchange(server.port, "/ticker", headers) for server in (app, proxy, obeying, ignoring)]
    try:
        read_all(readers, window)
    finally:
        for reader in readers:
            reader.close()
    direct, shipped, obeyed, ignored = counts = [len(r.arrivals) for r in readers]
    print(
        f"\n{name}: events in {window} s: direct {direct}, shipped config {shipped}, "
        f"header obeyed {obeyed}, header ignored {ignored} (status line {readers[3].status or 'not'} received)"
    )
    assert readers[0].headers.get("x-accel-buffering") == "no"
    assert direct >= 5, counts
    assert shipped >= direct - 1, counts
    assert obeyed >= direct - 1, counts
    assert ignored <= direct // 4, counts


def test_proxy_buffering_off_by_path_needs_no_header(app):
    """The config's commented alternative, uncommented: with the same two
    buffering settings for the whole server and the app's header ignored,
    `proxy_buffering off` on the streams' paths still passes each event."""
    lines = IGNORE_HEADER + BUFFERING_SETTINGS["http-1.0"]
    nginx = Nginx(app.port, server=lines, by_path=True)
    try:
        with open(nginx.conf, encoding="utf-8") as f:
            assert re.search(r"^\s*location ~ .*\{\n\s*proxy_pass http://comet;\n\s*proxy_buffering off;", f.read(), re.M)
        readers = [Exchange(app.port, "/ticker"), Exchange(nginx.port, "/ticker")]
        try:
            read_all(readers, 6 * TICK)
        finally:
            for reader in readers:
                reader.close()
    finally:
        nginx.close()
    direct, by_path = counts = [len(r.arrivals) for r in readers]
    assert direct >= 5, counts
    assert by_path >= direct - 1, counts


def test_without_the_header_the_fallback_still_works(app, variant):
    """A long poll is one small, complete response: buffering only holds it
    until its end, which is when the app has answered anyway."""
    _name, _obeying, ignoring = variant
    poll = Exchange(ignoring.port, "/ticker", FALLBACK).finish(timeout=2)
    poll.close()
    assert poll.status == 200
    assert len(poll.arrivals) == 1
