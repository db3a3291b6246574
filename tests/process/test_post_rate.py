"""``--post-rate`` and ``--post-burst`` on the real server (docs/protocol.md
sections 1 and 7): past its burst an address gets 429 with Retry-After and
nothing is stored; with ``--xheaders`` the address is the one the proxy
names; and 100,000 addresses passing by leave the server's memory where
it was, because idle buckets are forgotten."""

from __future__ import annotations

import itertools
import json
import re
import socket

from tests.client import HOST, fetch, free_port, request_bytes
from tests.machine import rss_bytes
from tests.server import QUIET, ServerProcess

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def post(server: ServerProcess, address: str, text: str) -> tuple[int, dict, bytes]:
    code, headers, body = server.fetch("/chat/post", "POST", b"message=" + text.encode(), FORM | {"X-Real-IP": address})
    return code, headers, body


def test_each_address_named_by_the_proxy_has_its_own_bucket():
    with ServerProcess("--xheaders", "--post-rate=0.5", "--post-burst=2", *QUIET) as server:
        assert [post(server, "10.1.1.1", text)[0] for text in ("a", "b")] == [200, 200]
        code, headers, body = post(server, "10.1.1.1", "c")
        assert (code, headers["Retry-After"], headers["Content-Type"]) == (429, "2", "text/plain; charset=UTF-8")
        assert body == b"429 Too Many Requests: more than 0.5 posts a second from one address; try again in 2 s\n"
        assert post(server, "10.1.1.2", "d")[0] == 200  # another client behind the same proxy
        assert json.loads(server.fetch("/chat/since/0")[2])["messages"] == ["a", "b", "d"]  # "c" was not stored


def test_without_xheaders_the_header_names_no_one():
    with ServerProcess("--post-rate=0.5", "--post-burst=2", *QUIET) as server:
        assert [post(server, f"10.1.1.{n}", "x")[0] for n in range(3)] == [200, 200, 429]


def post_as(port: int, addresses: range, connections: int = 4, pipelined: int = 500) -> int:
    """POST one message from each address in turn (``X-Real-IP``), a few
    hundred requests at a time on each of ``connections`` keep-alive
    connections; how many were answered 200."""
    ok = 0
    socks = [socket.create_connection((HOST, port), timeout=30) for _ in range(connections)]
    try:
        numbers = iter(addresses)
        while True:
            sent = []
            for sock in socks:
                batch = list(itertools.islice(numbers, pipelined))
                sock.sendall(b"".join(
                    request_bytes("POST", "/chat/post", FORM | {"X-Real-IP": f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"},
                                  b"message=x", host=f"{HOST}:{port}") for n in batch))
                sent.append((sock, len(batch)))
            for sock, count in sent:
                ok += answered(sock, count).count(200)
            if not any(count for _, count in sent):
                return ok
    finally:
        for sock in socks:
            sock.close()


def answered(sock: socket.socket, count: int) -> list[int]:
    """The statuses of the next ``count`` responses on ``sock`` (each with a
    Content-Length, as every answer to a post has)."""
    statuses, received, start = [], b"", 0
    while len(statuses) < count:
        end = received.find(b"\r\n\r\n", start)
        if end >= 0:
            length = int(re.search(rb"\r\nContent-Length: (\d+)", received[start:end]).group(1))
            if len(received) >= end + 4 + length:
                statuses.append(int(received[start + 9:start + 12]))
                start = end + 4 + length
                continue
        chunk = sock.recv(1 << 16)
        assert chunk, f"the server closed a connection after {len(statuses)} of {count} answers"
        received, start = received[start:] + chunk, 0
    return statuses


def tracked(metrics_port: int) -> int:
    body = fetch(metrics_port, "/metrics")[2].decode()
    return int(float(next(line.split()[1] for line in body.splitlines()
                          if line.startswith("comet_post_rate_addresses "))))


def test_100000_addresses_leave_a_bounded_number_of_buckets_and_no_memory_behind():
    """A bucket is full again 0.1 s after its last post here (5 posts at 50 a
    second), and forgotten then: the server tracks the addresses of the
    last tenth of a second, a few hundred, not every address it ever saw."""
    metrics = free_port()
    with ServerProcess("--xheaders", "--post-rate=50", "--post-burst=5", f"--metrics-port={metrics}",
                       "--logging=warning", *QUIET) as server:
        assert post_as(server.port, range(0, 10_000)) == 10_000
        rss_warm, most = rss_bytes(server.pid), tracked(metrics)
        for start in range(10_000, 100_000, 10_000):
            assert post_as(server.port, range(start, start + 10_000)) == 10_000
            most = max(most, tracked(metrics))
        growth = rss_bytes(server.pid) - rss_warm
        print(f"\n100,000 addresses: at most {most} tracked at a sample, RSS +{growth / 2**20:.1f} MiB after the first 10,000")
        assert most < 5_000, most
        assert growth < 8 * 2**20, growth  # 90,000 kept buckets would be ~25 MiB
