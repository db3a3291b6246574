"""Hostile and unlucky clients against the real server, ``python app.py``.

What ``test_process.py`` already shows (a handful of clients closing,
resetting or half-closing; bad input; SIGTERM with five clients) is not
repeated here. This module adds what only shows at scale or with the
network misbehaving:

- ``--max-clients``: the next client gets a clean 503, the held ones notice
  nothing, and one leaving lets a new one in; the open-file limit is lifted
  so the cap, not the OS, is what turns clients away.
- Slow readers: ``/chat/events`` readers that stop reading are dropped, and
  resume by their id without losing a message; ``/ticker`` readers that stop
  reading cost no memory and get the newest price when they read again.
- A backlog longer than one write (64 KiB) is replayed whole at once.
- File descriptors: 10000 connects and disconnects of every kind leave the
  server with the descriptors it started with, and ``/status`` at zero;
  disconnects racing publishes cause no error.
- Peers that vanish without a FIN: found out by the next keep-alive write
  (a host that answers with a RST), or when TCP gives up (a host gone).
- SIGTERM with 2000 clients: every response ends cleanly, exit 0 in 3 s.
- Error pages, ``--debug``, ``--gzip``, content types and the CSP.

Some of it needs kernel settings no test should change on the machine it
runs on (a blackholed peer, a smaller unsent-data limit). Those scenarios run
in a private network namespace of their own (``unshare --net``), where the
server still listens on 127.0.0.1 (that namespace's own loopback); without
the privilege for one they are skipped, and say why.

Every wait is bounded. Thousands of sockets are read by one selector
(``Crowd``), not a thread each.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Callable, Iterator, Optional
from urllib.parse import quote_from_bytes

import pytest

from tests.server import ROOT, ServerProcess
from tests.test_process import (
    FALLBACK,
    QUIET,
    Client,
    counts,
    events,
    fetch,
    post,
    price_events,
    status,
    wait_for_counts,
)

HOST = "127.0.0.1"
TCP_REPAIR = 19  # linux/tcp.h; not in Python's socket module
LINGER_RESET = struct.pack("ii", 1, 0)
FRAME_ID = re.compile(rb"^id: (\d+)$", re.M)


def unable(reason: str) -> None:
    """Skip a test this machine cannot run (no root, no network namespace);
    under CI, where it must run, fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"under CI this test must run: {reason}")
    pytest.skip(reason)


# --- the server process, from /proc ---------------------------------------------------


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as report:
        for line in report:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fds(pid: int, timeout: float = 3.0) -> int:
    """The server's descriptor count once it stops changing (a connection
    just closed by the client may still be on its way out)."""
    deadline = time.monotonic() + timeout
    last = open_fds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = open_fds(pid)
        if now == last:
            return now
        last = now
    return last


def held_total(server: ServerProcess) -> int:
    return sum(counts(status(server)))


@contextlib.contextmanager
def open_file_limit(soft: int) -> Iterator[None]:
    """This process's soft RLIMIT_NOFILE set to ``soft`` (capped at the hard
    limit) for the block; children started in it inherit it."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, before[1]), before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def need_open_files(count: int) -> None:
    """Lift this process's soft limit so it can hold ``count`` sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count and hard >= count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    elif hard < count:
        unable(f"this test holds {count} sockets; the open-file limit here is {hard}")


# --- many clients at once -------------------------------------------------------------


class Crowd:
    """Many raw requests (``test_process.Client``), read by one selector.

    ``open_paced`` opens them a hundred at a time, each batch once /status
    counts the one before: the server listens with a backlog of 128, and a
    SYN that finds the accept queue full waits a second for its retry.
    """

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.selector = selectors.DefaultSelector()
        self.members: list[Client] = []

    def open(self, path: str, headers=()) -> Client:
        client = Client(self.server.port, path, list(headers))
        client.sock.setblocking(False)
        self.selector.register(client.sock, selectors.EVENT_READ, client)
        self.members.append(client)
        return client

    def open_paced(self, requests: list[tuple[str, tuple]], batch: int = 100, timeout: float = 10.0) -> None:
        """Open every (path, headers), all of them held: /status counts each."""
        base = held_total(self.server)
        for start in range(0, len(requests), batch):
            for path, headers in requests[start:start + batch]:
                self.open(path, headers)
            expected = base + min(start + batch, len(requests))
            deadline = time.monotonic() + timeout
            while (held := held_total(self.server)) != expected:
                assert time.monotonic() < deadline, f"/status holds {held}, wanted {expected}"
                self.pump(0.01)

    def pump(self, seconds: float, until: Callable[[], bool] = lambda: False) -> bool:
        """Read whatever arrives for ``seconds`` or until ``until()``."""
        deadline = time.monotonic() + seconds
        while not until():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return until()
            for key, _ in self.selector.select(min(remaining, 0.05)):
                self.read(key.data)
        return True

    def read(self, client: Client) -> None:
        try:
            chunk = client.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except ConnectionResetError:
            client.reset, chunk = True, b""
        if chunk:
            client.data += chunk
        else:
            client.eof = True
            self.selector.unregister(client.sock)

    def drain(self, client: Client) -> None:
        """Take what has arrived, so a close() sends a FIN, not a RST."""
        while not client.eof:
            before = len(client.data)
            self.read(client)
            if len(client.data) == before:
                return

    def close(self) -> None:
        for client in self.members:
            if not client.eof:
                with contextlib.suppress(KeyError, ValueError):
                    self.selector.unregister(client.sock)
            client.sock.close()
        self.members.clear()
        self.selector.close()


# --- a private network namespace, for what needs the kernel's help ------------------------


def private_network_command() -> Optional[list[str]]:
    """``unshare --net`` (root), else ``unshare --net --map-root-user`` (an
    unprivileged user namespace), whichever works here; None if neither."""
    if shutil.which("unshare") is None:
        return None
    for command in (["unshare", "--net"], ["unshare", "--net", "--map-root-user"]):
        try:
            done = subprocess.run([*command, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return command
    return None


PRIVATE_NETWORK = private_network_command()


def in_private_network(scenario: str, **arguments) -> dict:
    """Run ``scenario(**arguments)`` of this module in a network namespace of
    its own (a child ``python -m tests.test_robustness``); its JSON result."""
    if PRIVATE_NETWORK is None:
        unable("needs a private network namespace (unshare --net: root, or unprivileged user namespaces)")
    command = [*PRIVATE_NETWORK, sys.executable, "-m", "tests.test_robustness", scenario, json.dumps(arguments)]
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)  # its server too is killed on a timeout
    try:
        out, err = child.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        out, err = child.communicate()
        raise AssertionError(f"{scenario} ran over 60 s\n{err.decode()[-3000:]}") from None
    if child.returncode == 77:
        unable(err.decode().strip().splitlines()[-1])
    assert child.returncode == 0, f"{scenario} failed\n{err.decode()[-5000:]}"
    return json.loads(out.decode().strip().splitlines()[-1])


def loopback_up() -> None:
    """A new network namespace starts with its loopback down."""
    import fcntl

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh14x", b"lo", 0)
        flags = struct.unpack("16sh14x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sh14x", b"lo", flags | iff_up))


def set_sysctl(name: str, value: str) -> None:
    """A net.* setting of this (private) network namespace."""
    with open("/proc/sys/" + name.replace(".", "/"), "w") as setting:
        setting.write(value)


def stalled_socket(port: int, path: str, headers=(), source: str = HOST) -> socket.socket:
    """A GET from a client that will not read: its receive buffer as small
    as the kernel allows, so the server's writes soon have nowhere to go."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect((HOST, port))
    lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}", *(f"{n}: {v}" for n, v in headers)]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    return sock


def wait_for(condition: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return condition()
        time.sleep(step)
    return True


# --- --max-clients -------------------------------------------------------------------------


def answer(port: int, path: str, headers=()) -> tuple[int, dict, bytes]:
    """(status, headers, body) of a GET that must be answered in full at
    once: a stream let in by mistake fails the test instead of hanging it."""
    client = Client(port, path, list(headers))
    try:
        response = client.complete(timeout=3)
    finally:
        client.close()
    return response.status, response.headers, response.body


def assert_clean_503(code: int, headers: dict, body: bytes) -> None:
    assert code == 503, (code, body)
    assert headers.get("retry-after", "").isdigit() and int(headers["retry-after"]) > 0, headers
    assert headers["content-type"] == "text/plain; charset=UTF-8"
    assert headers["x-content-type-options"] == "nosniff"
    assert body.startswith(b"503 ") and b"Traceback" not in body and b"<" not in body, body


def test_max_clients_turns_the_next_client_away_and_the_held_ones_notice_nothing():
    with ServerProcess("--max-clients=5", "--tick-interval=0.2", "--poll-timeout=60", "--keepalive=60") as server:
        port = server.port
        chat = [Client(port, "/chat/events"), Client(port, "/chat/events")]
        ticker = Client(port, "/ticker")
        polls = [Client(port, "/chat/get/0"), Client(port, "/chat/get/0")]
        held = [*chat, ticker, *polls]
        try:
            wait_for_counts(server, (2, 2, 1), timeout=5)
            for stream in chat:
                stream.until(b"retry: 2000\n\n")
            seen = int(price_events(ticker.wait(lambda r: price_events(r.body)).body)[-1]["id"])

            # The sixth is turned away, whatever it asks to be held for.
            for path, headers in [("/ticker", ()), ("/chat/events", ()), ("/chat/get/0", ()),
                                  ("/ticker", (FALLBACK,)), ("/chat/events", (FALLBACK,))]:
                assert_clean_503(*answer(port, path, headers))
            # What is answered at once is still answered.
            assert fetch(port, "/chat/since/0")[0] == fetch(port, "/")[0] == 200

            # Those held never noticed: the ticker kept moving, nothing ended.
            ticker.wait(lambda r: int(price_events(r.body)[-1]["id"]) >= seen + 2, timeout=3)

            # One leaves; a new one is let in in its place, and only one.
            chat.pop().close()
            wait_for_counts(server, (2, 1, 1), timeout=2)
            chat.append(Client(port, "/chat/events"))
            held.append(chat[-1])
            assert chat[-1].until(b"retry: 2000\n\n").status == 200
            wait_for_counts(server, (2, 2, 1), timeout=2)
            assert_clean_503(*answer(port, "/ticker"))

            # A message reaches every stream and held poll that was let in.
            assert post(port, b"still here")[0] == 200
            for stream in chat:
                assert stream.until(b"id: 1\ndata: still here\n\n").status == 200
            for poll in polls:
                response = poll.complete()
                assert (response.status, response.body) == (200, b"still here")
            for client in (chat[0], ticker):
                assert not client.eof and client.response.status == 200
        finally:
            for client in held:
                client.close()


def test_open_file_limit_is_lifted_so_more_clients_fit_than_the_limit_it_was_started_with():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low, clients = 256, 400
    if hard < 2 * clients:
        unable(f"the hard open-file limit here ({hard}) leaves nothing to lift")
    with open_file_limit(low):
        server = ServerProcess(*QUIET)
    with server:
        with open(f"/proc/{server.pid}/limits") as limits:
            line = next(line for line in limits if line.startswith("Max open files"))
        assert line.split()[3:5] == [str(hard), str(hard)], line
        crowd = Crowd(server)
        try:
            crowd.open_paced([("/ticker", ())] * clients)
            assert status(server)["ticker"]["streams"] == clients > low
        finally:
            crowd.close()


# --- slow readers ----------------------------------------------------------------------------


def post_many(port: int, texts: list[str], connections: int = 2) -> None:
    """POST every text, over a few keep-alive connections at once."""
    failures: list = []

    def poster(part: list[str]) -> None:
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
        try:
            for text in part:
                conn.request("POST", "/chat/post", b"message=" + quote_from_bytes(text.encode()).encode(),
                             {"Content-Type": "application/x-www-form-urlencoded"})
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(response.status)
                    return
        except OSError as error:
            failures.append(error)
        finally:
            conn.close()

    threads = [threading.Thread(target=poster, args=(texts[k::connections],)) for k in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures and not any(t.is_alive() for t in threads), failures


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything a stalled socket still gets, up to the server's close."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    data, deadline = bytearray(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            break
        except ConnectionResetError:
            raise AssertionError("the server reset the connection instead of ending it") from None
        if not chunk:
            return bytes(data)
        data += chunk
    raise AssertionError(f"the server did not close within {timeout} s ({len(data)} bytes read)")


def dechunk(data: bytes) -> tuple[bytes, bool]:
    """The body of a chunked response cut anywhere, and whether it ended."""
    body, pos = bytearray(), data.index(b"\r\n\r\n") + 4
    while (line_end := data.find(b"\r\n", pos)) >= 0:
        size = int(data[pos:line_end].split(b";")[0], 16)
        if size == 0:
            return bytes(body), True
        body += data[line_end + 2:line_end + 2 + size]
        if len(data) < line_end + 2 + size + 2:
            break
        pos = line_end + 2 + size + 2
    return bytes(body), False


def test_stalled_chat_readers_are_dropped_then_resume_by_their_id_losing_nothing():
    """Ten /chat/events readers stop reading while 2000 messages of 2 KB are
    posted. Each is owed 4 MB; the kernel's send buffer takes a part, and
    once another --max-backlog (256 KiB) is owed the server hangs up. The
    server holds each message once, for everyone; it never buffers a copy
    per reader, and RSS shows it."""
    readers, messages, size = 10, 2000, 2048
    texts = [f"{n:05d} " + "x" * (size - 6) for n in range(messages)]
    flags = (f"--history={messages}", f"--max-message={size}", "--tick-interval=3600", "--keepalive=60")
    with ServerProcess(*flags) as server:
        stalled = [stalled_socket(server.port, "/chat/events") for _ in range(readers)]
        try:
            wait_for_counts(server, (0, readers, 0), timeout=5)
            rss_before = rss_bytes(server.pid)
            post_many(server.port, texts)
            report, _ = wait_for_counts(server, (0, 0, 0), timeout=5)  # every reader was dropped
            grown = rss_bytes(server.pid) - rss_before
            assert report["chat"]["messages"] == messages
            frames = sum(len(f"id: {n + 1}\ndata: {t}\n\n") for n, t in enumerate(texts))
            kept = frames + sum(map(len, texts))  # each message is kept as text and as a frame
            owed = readers * frames
            # The history itself, both as text and as frames, plus a little;
            # not the 20 MB the readers were owed.
            assert grown < kept + (4 << 20), f"RSS grew {grown >> 10} KiB; the history holds {kept >> 10} KiB"

            history = json.loads(fetch(server.port, "/chat/since/0")[2])["messages"]
            assert sorted(history) == texts  # each stored once, in the order the two posters got in
            for sock in stalled:
                # What it got before the cut, then the rest by its id.
                body, ended = dechunk(read_until_closed(sock))
                assert not ended, "a dropped reader's response is cut, not ended"
                complete = body[:body.rindex(b"\n\n") + 2]
                got = events(complete)
                assert got[0] == {"retry": "2000"}
                last_id = int(got[-1]["id"])
                assert [e["data"] for e in got[1:]] == history[:last_id], "the part before the cut is in order"
                assert last_id < messages, "it was dropped before it had everything"

                resumed = Client(server.port, "/chat/events", [("Last-Event-ID", str(last_id))])
                try:
                    rest = resumed.wait(lambda r: r.body.count(b"\n\n") >= 1 + messages - last_id, timeout=10)
                finally:
                    resumed.close()
                got_rest = events(rest.body)
                assert "event" not in got_rest[1], "nothing it needs has aged out: no reset"
                assert [e["data"] for e in got_rest[1:]] == history[last_id:]
                assert [int(e["id"]) for e in got_rest[1:]] == list(range(last_id + 1, messages + 1))
        finally:
            for sock in stalled:
                sock.close()
    print(f"\nchat: {readers} stalled readers owed {owed >> 20} MiB; RSS grew {grown >> 10} KiB "
          f"(history {kept >> 10} KiB)")


def scenario_ticker_stall(readers: int, moves: int, seconds: float) -> dict:
    """In a private namespace: net.ipv4.tcp_notsent_lowat caps the unsent
    bytes the kernel takes per socket, as a server setting TCP_NOTSENT_LOWAT
    would; else the kernel itself buffers up to 4 MB of old prices per
    reader, and the policy's coalescing is never reached in a test's time."""
    loopback_up()
    set_sysctl("net.ipv4.tcp_notsent_lowat", "16384")
    with ServerProcess("--tick-interval=0.001", "--keepalive=60") as server:
        stalled = [stalled_socket(server.port, "/ticker") for _ in range(readers)]
        try:
            assert wait_for(lambda: status(server)["ticker"]["streams"] == readers, 5)
            start = status(server)["ticker"]["id"]
            # About 700 prices fill a stalled reader's buffers; then measure.
            assert wait_for(lambda: status(server)["ticker"]["id"] >= start + 700, seconds, 0.05)
            rss_before, id_before = rss_bytes(server.pid), status(server)["ticker"]["id"]
            wait_for(lambda: status(server)["ticker"]["id"] >= id_before + moves, seconds, 0.05)
            report = status(server)
            rss_after, id_after = rss_bytes(server.pid), report["ticker"]["id"]
            # Now one of them reads again, until it has a price as new as that.
            sock = stalled[0]
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            data, ids, deadline = b"", [], time.monotonic() + 5
            while time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    data += sock.recv(1 << 16)
                except socket.timeout:
                    break
                ids = [int(i) for i in FRAME_ID.findall(data)]
                if ids and ids[-1] >= id_after:
                    break
        finally:
            for sock in stalled:
                sock.close()
    return dict(readers=readers, rss_before=rss_before, rss_after=rss_after, id_before=id_before,
                id_after=id_after, streams=report["ticker"]["streams"], ids=ids,
                body_bytes=len(data))


def test_stalled_ticker_readers_cost_no_memory_and_then_get_the_newest_price():
    result = in_private_network("scenario_ticker_stall", readers=40, moves=2000, seconds=8)
    ids, id_after = result["ids"], result["id_after"]
    moved = id_after - result["id_before"]
    frame = len(b"id: 1234\ndata: 100.00\n\n")
    grown = result["rss_after"] - result["rss_before"]
    print(f"\nticker: {result['readers']} stalled readers, {moved} moves; RSS grew {grown >> 10} KiB "
          f"(a queue would hold {result['readers'] * moved * frame >> 10} KiB)")
    assert moved >= 1000, f"only {moved} moves: the machine is too busy to say anything"
    assert result["streams"] == result["readers"], "a ticker reader is never dropped for falling behind"
    assert grown < (1 << 20), f"RSS grew {grown >> 10} KiB while readers were stalled"
    # The reader got what was in flight, then jumped to the newest price.
    assert ids == sorted(set(ids)), "ids only go up"
    caught_up = next(i for i, k in enumerate(ids) if k >= id_after)
    assert caught_up > 0 and ids[caught_up - 1] < id_after <= ids[caught_up]
    skipped = ids[caught_up] - ids[0] - caught_up
    assert skipped > caught_up, f"got {caught_up} old prices and skipped only {skipped}: a queue, not a state"


# --- descriptors and counts after thousands of disconnects -------------------------------------


def every_kind(n: int) -> list[tuple[str, tuple]]:
    """n each of: /chat/events streams and fallback polls, /ticker streams
    and fallback polls, held /chat/get polls (the quiet server: no message,
    ticker id 1), interleaved."""
    kinds = [("/chat/events", ()), ("/chat/events", (FALLBACK,)), ("/ticker", ()),
             ("/ticker", (FALLBACK, ("Last-Event-ID", "1"))), ("/chat/get/0", ())]
    return kinds * n


def test_20_rounds_of_500_connects_and_disconnects_leak_no_descriptor():
    rounds, per_round = 20, 500
    need_open_files(per_round + 200)
    with ServerProcess(*QUIET) as server:
        fds_before = settled_fds(server.pid)
        slowest = 0.0
        for round_number in range(rounds):
            crowd = Crowd(server)
            try:
                crowd.open_paced(every_kind(per_round // 5))
                crowd.pump(0.05)
                half_closed = []
                for index, client in enumerate(crowd.members):
                    way = (index + round_number) % 3
                    if way == 0:  # a clean close: FIN
                        crowd.drain(client)
                        client.sock.close()
                    elif way == 1:  # an abrupt reset: RST
                        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                        client.sock.close()
                    else:  # half-closed: FIN, and still listening
                        client.sock.shutdown(socket.SHUT_WR)
                        half_closed.append(client)
                    client.eof = True
                    with contextlib.suppress(KeyError, ValueError):
                        crowd.selector.unregister(client.sock)
                _, took = wait_for_counts(server, (0, 0, 0), timeout=5)
                slowest = max(slowest, took)
                for client in half_closed:
                    client.sock.close()
            finally:
                crowd.close()
        fds_after = settled_fds(server.pid)
        report = status(server)
        log = server.log()
    print(f"\nfds: {fds_before} before, {fds_after} after {rounds * per_round} clients; "
          f"slowest round forgotten in {slowest:.2f} s")
    assert counts(report) == (0, 0, 0)
    assert abs(fds_after - fds_before) <= 2, (fds_before, fds_after)
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]


def test_clients_leaving_while_events_are_published_cause_no_error_and_no_leak():
    """Disconnects racing publishes: prices every 2 ms and chat posts while
    hundreds of streams close and reset at once. A stream whose socket
    closed a moment ago must not be written to, nor break the publish
    for the readers after it (or the POST that published)."""
    with ServerProcess("--tick-interval=0.002", "--keepalive=60", "--poll-timeout=60") as server:
        fds_before = settled_fds(server.pid)
        posting = threading.Event()
        answers: list = []

        def poster() -> None:
            conn = http.client.HTTPConnection(HOST, server.port, timeout=10)
            try:
                while not posting.is_set():
                    conn.request("POST", "/chat/post", b"message=tick", {"Content-Type": "application/x-www-form-urlencoded"})
                    response = conn.getresponse()
                    response.read()
                    answers.append(response.status)
            finally:
                conn.close()

        threads = [threading.Thread(target=poster) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            for round_number in range(6):
                crowd = Crowd(server)
                try:
                    crowd.open_paced([("/ticker", ()), ("/chat/events", ())] * 150)
                    crowd.pump(0.1)
                    for index, client in enumerate(crowd.members):
                        if (index + round_number) % 2:
                            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                        else:
                            crowd.drain(client)
                finally:
                    crowd.close()
                wait_for_counts(server, (0, 0, 0), timeout=3)
        finally:
            posting.set()
            for thread in threads:
                thread.join(timeout=10)
        fds_after = settled_fds(server.pid)
        log = server.log()
    assert answers and set(answers) == {200}, sorted(set(answers))
    assert "Traceback" not in log, log[log.index("Traceback") - 300:][:3000]
    assert abs(fds_after - fds_before) <= 2, (fds_before, fds_after)


def test_a_backlog_longer_than_one_write_is_replayed_whole_without_waiting_for_new_events():
    """A reader that connects or resumes behind by more than one write's
    worth (64 KiB) gets all of it at once, not one write per later event."""
    messages = 300
    texts = [f"{n:04d} " + "y" * 1019 for n in range(messages)]  # 300 KiB in all
    with ServerProcess(f"--history={messages}", *QUIET) as server:
        post_many(server.port, texts, connections=1)
        for path, headers, first in [("/chat/events", [], 0), ("/chat/events", [("Last-Event-ID", "37")], 37),
                                     ("/chat/events", [FALLBACK], 0)]:
            reader = Client(server.port, path, headers)
            try:
                with contextlib.suppress(AssertionError):
                    reader.wait(lambda r: r.body.count(b"\n\n") >= 1 + messages - first, timeout=5)
            finally:
                reader.close()
            got = [e["data"] for e in events(reader.response.body) if "data" in e]
            assert got == texts[first:], f"{path} {headers}: {len(got)} of {messages - first} messages replayed"


# --- peers that vanish without a FIN ------------------------------------------------------------


def silently_gone(sock: socket.socket) -> None:
    """Close a socket without a FIN or a RST, as a peer that vanished
    (TCP_REPAIR: the kernel drops the connection without a word). The
    server's next write is then answered with a RST, as from a host that
    rebooted or a NAT that forgot the connection."""
    sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
    sock.close()


def test_client_gone_without_a_fin_is_found_out_by_the_next_keep_alive():
    probe = socket.socket()
    try:
        probe.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
    except OSError as error:
        unable(f"TCP_REPAIR needs CAP_NET_ADMIN: {error}")
    finally:
        probe.close()
    keepalive = 1.0
    with ServerProcess("--tick-interval=3600", "--poll-timeout=60", f"--keepalive={keepalive}") as server:
        fds_before = settled_fds(server.pid)
        ticker = Client(server.port, "/ticker", [("Last-Event-ID", "1")])
        chat = Client(server.port, "/chat/events")
        for stream in (ticker, chat):
            stream.until(b"retry: 2000\n\n")
        wait_for_counts(server, (0, 1, 1), timeout=2)
        for stream in (ticker, chat):
            silently_gone(stream.sock)
        gone = time.monotonic()
        # Nothing reached the server: it still counts both...
        assert counts(status(server)) == (0, 1, 1)
        # ...until its keep-alive comment is answered with a RST.
        wait_for_counts(server, (0, 0, 0), timeout=keepalive + 3)
        took = time.monotonic() - gone
        assert settled_fds(server.pid) == fds_before
    print(f"\nvanished (RST on write): forgotten {took:.2f} s after it went, keep-alive every {keepalive} s")


def scenario_blackhole(keepalive: float, poll_timeout: float, retries: int) -> dict:
    """In a private namespace: clients on 127.0.0.2 connect to the server on
    127.0.0.1, then every packet to 127.0.0.2 is dropped (a blackhole route):
    no FIN, no RST, ever, as when a laptop's Wi-Fi goes. The server learns
    only when TCP gives up retransmitting its writes: after
    net.ipv4.tcp_retries2 retries: 15 by default (some 15 minutes), 2 here
    (under 2 s on loopback)."""
    loopback_up()
    set_sysctl("net.ipv4.tcp_retries2", str(retries))
    if shutil.which("ip") is None:
        print("needs iproute2's ip for the blackhole route", file=sys.stderr)
        sys.exit(77)
    flags = ("--tick-interval=3600", f"--keepalive={keepalive}", f"--poll-timeout={poll_timeout}")
    with ServerProcess(*flags) as server:
        fds_before = settled_fds(server.pid)
        vanishing = [
            stalled_socket(server.port, "/ticker", [("Last-Event-ID", "1")], source="127.0.0.2"),
            stalled_socket(server.port, "/chat/events", [FALLBACK], source="127.0.0.2"),
            stalled_socket(server.port, "/chat/get/0", source="127.0.0.2"),
        ]
        try:
            assert wait_for(lambda: counts(status(server)) == (1, 1, 1), 5)
            subprocess.run(["ip", "route", "add", "blackhole", "127.0.0.2/32", "table", "local"], check=True)
            gone = time.monotonic()
            forgotten: dict = {}
            names = ("chat.waiting", "chat.streams", "ticker.streams")
            while len(forgotten) < 3 and time.monotonic() - gone < 30:
                for name, count in zip(names, counts(status(server))):
                    if count == 0 and name not in forgotten:
                        forgotten[name] = time.monotonic() - gone
                time.sleep(0.05)
            wait_for(lambda: open_fds(server.pid) <= fds_before, 20, 0.1)
            fds_after, fds_took = open_fds(server.pid), time.monotonic() - gone
            # The server is fine: a new client is served.
            fresh = Client(server.port, "/ticker")
            fresh.until(b"data: ")
            fresh.close()
        finally:
            for sock in vanishing:
                sock.close()
    return dict(forgotten=forgotten, fds_before=fds_before, fds_after=fds_after, fds_took=fds_took)


def tcp_give_up_time(retries: int, rto_min: float = 0.2) -> float:
    """How long Linux retransmits before ETIMEDOUT, for tcp_retries2=retries
    on a link whose RTO is the minimum (loopback)."""
    return sum(min(rto_min * 2 ** n, 120.0) for n in range(retries + 1))


def test_clients_that_vanish_without_a_packet_are_forgotten_when_tcp_gives_up():
    keepalive, poll_timeout, retries = 0.5, 1.0, 2
    result = in_private_network("scenario_blackhole", keepalive=keepalive, poll_timeout=poll_timeout,
                                retries=retries)
    forgotten = result["forgotten"]
    print(f"\nvanished (blackholed): forgotten after {forgotten} s; fds back after {result['fds_took']:.1f} s")
    give_up = tcp_give_up_time(retries)
    # A stream: at its next keep-alive write, once TCP gives up on it.
    assert forgotten.get("ticker.streams", 99) < keepalive + give_up + 3
    # A held poll: at its --poll-timeout, whose answer goes nowhere.
    assert forgotten.get("chat.waiting", 99) < poll_timeout + 2
    assert forgotten.get("chat.streams", 99) < poll_timeout + 2
    # And then the descriptors are closed too.
    assert result["fds_after"] <= result["fds_before"], result


# --- SIGTERM with thousands of clients --------------------------------------------------------


def test_sigterm_with_1000_streams_and_1000_polls_ends_every_response_and_exits_0_within_3s():
    need_open_files(2000 + 200)
    requests = [("/ticker", ()), ("/chat/events", ())] * 500
    requests += [("/chat/get/0", ()), ("/chat/get/0", ()), ("/chat/events", (FALLBACK,)),
                 ("/ticker", (FALLBACK, ("Last-Event-ID", "1")))] * 250
    with ServerProcess(*QUIET) as server:
        crowd = Crowd(server)
        try:
            crowd.open_paced(requests)
            wait_for_counts(server, (500, 750, 750), timeout=5)
            crowd.pump(0.2)

            server.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            code = server.wait(timeout=10)
            took = time.monotonic() - signalled
            crowd.pump(5, until=lambda: all(client.eof for client in crowd.members))
            clients = list(zip(requests, crowd.members))
        finally:
            crowd.close()
        log = server.log()
    print(f"\nSIGTERM with {len(requests)} clients: exit {code} after {took:.2f} s")
    assert code == 0, log[-3000:]
    assert took < 3, took
    for (path, headers), client in clients:
        assert client.eof and not client.reset, (path, client.data[-200:])
        response = client.response
        assert response is not None and response.complete, (path, headers, client.data[-200:])
        if path == "/chat/get/0" or headers:  # a poll: it asks again, on a new connection
            assert response.headers.get("connection") == "close", response.headers
        if path == "/chat/get/0":
            assert response.status == 204
        elif headers:
            assert (response.status, response.body) == (200, b"retry: 2000\n\n: keep-alive\n\n")
        else:
            assert response.status == 200 and client.data.endswith(b"\r\n0\r\n\r\n"), client.data[-100:]
    assert "Traceback" not in log


# --- errors, debug, compression, content types --------------------------------------------------


def test_every_error_is_plain_text_without_a_traceback():
    flags = ("--history=1", "--max-message=5", "--max-body=1024", "--max-clients=1", *QUIET)
    with ServerProcess(*flags) as server:
        port = server.port
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        for text in (b"one", b"two"):
            assert post(port, text)[0] == 200
        held = Client(port, "/chat/get/2")
        try:
            wait_for_counts(server, (1, 0, 0), timeout=2)
            answers = {
                "400 empty message": fetch(port, "/chat/post", "POST", b"message=", form),
                "404 path": fetch(port, "/no/such/page"),
                "404 message": fetch(port, "/chat/get/99"),
                "405": fetch(port, "/chat/post", "PUT", b"message=a", form),
                "410": fetch(port, "/chat/get/0"),
                "413 message": fetch(port, "/chat/post", "POST", b"message=toolong", form),
                "413 body": fetch(port, "/chat/post", "POST", b"message=" + b"a" * 2000, form),
                "503": answer(port, "/ticker"),
            }
        finally:
            held.close()
        log = server.log()
    for name, (code, headers, body) in answers.items():
        assert code == int(name[:3]), (name, code, body)
        assert headers["content-type"] == "text/plain; charset=UTF-8", (name, headers)
        assert headers["x-content-type-options"] == "nosniff", name
        assert body.startswith(name[:4].encode()), (name, body)
        assert b"Traceback" not in body and b"<" not in body, (name, body)
    assert "Traceback" not in log


def test_debug_mode_serves_everything_and_still_exits_cleanly():
    with ServerProcess("--debug", *QUIET) as server:
        code, headers, body = fetch(server.port, "/no/such/page")
        assert code == 404 and headers["x-content-type-options"] == "nosniff"
        assert fetch(server.port, "/chat")[0] == 200
        assert post(server.port, b"hi")[0] == 200
        stream = Client(server.port, "/chat/events")
        try:
            assert stream.until(b"id: 1\ndata: hi\n\n").status == 200
        finally:
            stream.close()
        assert server.stop(signal.SIGTERM) == 0, server.log()[-3000:]


def test_message_text_is_never_served_as_something_a_browser_would_render():
    script = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    with ServerProcess(*QUIET) as server:
        assert post(server.port, script.encode())[0] == 200
        code, headers, body = fetch(server.port, "/chat/get/0")
        assert (code, body.decode()) == (200, script)
        assert headers["content-type"] == "text/plain; charset=UTF-8"
        assert headers["x-content-type-options"] == "nosniff"
        code, headers, body = fetch(server.port, "/chat/since/0")
        assert code == 200 and json.loads(body)["messages"] == [script]
        assert headers["content-type"].startswith("application/json")
        assert headers["x-content-type-options"] == "nosniff"
        stream = Client(server.port, "/chat/events")
        try:
            response = stream.until(script.encode())
        finally:
            stream.close()
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["x-content-type-options"] == "nosniff"


def csp_directives(policy: str) -> dict[str, list[str]]:
    directives = {}
    for part in filter(str.strip, policy.split(";")):
        name, *sources = part.split()
        directives[name.lower()] = sources
    return directives


def test_pages_allow_only_their_own_scripts_and_styles():
    with ServerProcess(*QUIET) as server:
        for path in ("/", "/chat", "/stock"):
            code, headers, _ = fetch(server.port, path)
            assert code == 200 and headers["x-content-type-options"] == "nosniff"
            policy = csp_directives(headers["content-security-policy"])
            for kind in ("script-src", "style-src"):
                assert policy.get(kind, policy.get("default-src")) == ["'self'"], (path, kind, policy)
            assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
            for name, sources in policy.items():
                for source in sources:
                    assert source in ("'self'", "'none'") or (name == "img-src" and source == "data:"), (
                        path, name, source)


def test_gzip_flag_compresses_pages_but_streams_and_polls_go_out_event_by_event():
    accept = ("Accept-Encoding", "gzip")
    with ServerProcess("--gzip", *QUIET) as server:
        code, headers, body = fetch(server.port, "/chat", headers=dict([accept]))
        assert code == 200 and headers.get("content-encoding") == "gzip"
        assert b"</html>" in gzip.decompress(body)
        stream = Client(server.port, "/chat/events", [accept])
        poll = Client(server.port, "/chat/events", [accept, FALLBACK, ("Last-Event-ID", "0")])
        try:
            assert "content-encoding" not in stream.until(b"retry: 2000\n\n").headers
            wait_for_counts(server, (0, 2, 0), timeout=2)
            for number, text in enumerate(("one", "two", "three")):
                post(server.port, text.encode() * 300)
                frame = f"id: {number + 1}\ndata: {text * 300}\n\n".encode()
                # Each event arrives alone, as its own chunk, before the next is posted.
                response = stream.until(frame)
                assert response.raw.endswith(b"%x\r\n%s\r\n" % (len(frame), frame))
            response = poll.complete()
            assert "content-encoding" not in response.headers
            assert response.body == b"retry: 2000\n\nid: 1\ndata: " + b"one" * 300 + b"\n\n"
        finally:
            stream.close()
            poll.close()


# --- python -m tests.test_robustness SCENARIO ARGUMENTS: in a private network namespace -----------

if __name__ == "__main__":
    scenario, arguments = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(globals()[scenario](**arguments)))
