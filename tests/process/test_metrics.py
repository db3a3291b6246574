"""``--metrics-port`` on the real server (docs/protocol.md section 7): the
Prometheus text on its own loopback listener, never on the site's port, and
each metric moving as clients connect, post, are refused and fall behind.

Every client here names its own address in ``X-Real-IP`` (the server runs
with ``--xheaders``), so the per-address cap and the post rate each see the
client the test means."""

from __future__ import annotations

from typing import Iterator
from urllib.parse import quote_from_bytes

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.client import Client, fetch, free_port, wait_until
from tests.server import NO_JITTER, ServerProcess

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
REASONS = ("max_clients", "per_address", "cross_site", "malformed", "too_long", "rate")


def scrape(port: int) -> dict[tuple, float]:
    """Every sample of GET /metrics, as {(name, (label, value), ...): value}."""
    code, headers, body = fetch(port, "/metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain; version="), (code, headers)
    samples = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            samples[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return samples


def clients(samples: dict, kind: str) -> float:
    return samples[("comet_clients", ("kind", kind))]


def refused(samples: dict, reason: str) -> float:
    return samples[("comet_refused_total", ("reason", reason))]


def sent(samples: dict, stream: str) -> float:
    return samples[("comet_events_sent_total", ("stream", stream))]


def post(port: int, address: str, body: bytes, headers: dict = FORM) -> int:
    return fetch(port, "/chat/post", "POST", body, headers | {"X-Real-IP": address})[0]


@pytest.fixture
def server() -> Iterator[ServerProcess]:
    flags = ("--xheaders", "--max-clients=3", "--max-clients-per-address=1", "--post-rate=0.1",
             "--post-burst=1", "--max-message=5", "--tick-interval=0.1", "--keepalive=60", NO_JITTER)
    with ServerProcess(f"--metrics-port={free_port()}", *flags) as server:
        server.metrics_port = int(next(a for a in server.args if a.startswith("--metrics-port=")).split("=")[1])
        yield server


def listening_addresses(port: int) -> set[str]:
    """The addresses a TCP socket listens on at ``port`` here (/proc/net/tcp
    and tcp6: address:port in hex, state 0A is LISTEN)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                local, state = row.split()[1], row.split()[3]
                address, _, hex_port = local.rpartition(":")
                if state == "0A" and int(hex_port, 16) == port:
                    found.add(address)
    return found


def test_metrics_are_served_on_their_own_loopback_port_only(server):
    assert listening_addresses(server.metrics_port) == {"0100007F"}  # 127.0.0.1, and nowhere else
    assert fetch(server.port, "/metrics")[0] == 404  # never on the site's port
    assert fetch(server.metrics_port, "/status")[0] == 404
    assert fetch(server.metrics_port, "/metrics", "POST", b"x=1", FORM)[0] == 405
    samples = scrape(server.metrics_port)
    for reason in REASONS:  # every reason there from the start, at 0
        assert refused(samples, reason) == 0
    assert samples[("comet_posts_total",)] == 0 and samples[("comet_slow_readers_dropped_total",)] == 0
    assert samples[("comet_publish_seconds_count",)] >= 0
    # Label values are the contract's fixed words, whatever a client sent.
    words = {"kind": {"ticker", "chat_events", "chat_poll"}, "stream": {"ticker", "chat"}, "reason": set(REASONS)}
    for key in samples:
        for label, value in key[1:]:
            assert label == "le" or value in words[label], key


def test_each_metric_moves_as_clients_connect_post_and_are_refused(server):
    port, metrics = server.port, server.metrics_port
    before = scrape(metrics)
    held = []
    try:
        held.append(Client(port, "/ticker", headers={"X-Real-IP": "10.0.0.1"}))
        held[-1].until(b"data: ")
        code, headers, _ = fetch(port, "/chat/events", headers={"X-Real-IP": "10.0.0.1"})
        assert (code, headers["Retry-After"]) == (503, "5")  # 10.0.0.1 holds its one already
        held.append(Client(port, "/chat/events", headers={"X-Real-IP": "10.0.0.2"}))
        held[-1].until(b"retry: ")
        held.append(Client(port, "/chat/get/0", headers={"X-Real-IP": "10.0.0.3"}))
        assert wait_until(lambda: clients(scrape(metrics), "chat_poll") == 1)
        assert fetch(port, "/ticker", headers={"X-Real-IP": "10.0.0.4"})[0] == 503  # three held: the server is full
        samples = scrape(metrics)
        assert [clients(samples, kind) for kind in ("ticker", "chat_events", "chat_poll")] == [1, 1, 1]
        assert refused(samples, "per_address") == 1 and refused(samples, "max_clients") == 1

        assert post(port, "10.0.1.1", b"message=hi") == 200
        assert held[2].finish().body == b"hi"  # the poll, woken
        assert post(port, "10.0.1.1", b"message=again") == 429  # its one token is spent
        assert post(port, "10.0.1.2", b"message=toolong") == 413
        assert post(port, "10.0.1.3", b"") == 400
        assert post(port, "10.0.1.4", b"message=hi", FORM | {"Sec-Fetch-Site": "cross-site"}) == 403
        ticker_sent = sent(scrape(metrics), "ticker")
        assert wait_until(lambda: sent(scrape(metrics), "ticker") >= ticker_sent + 3)  # a price every 0.1 s
    finally:
        for client in held:
            client.close()
    after = scrape(metrics)
    assert after[("comet_posts_total",)] == before[("comet_posts_total",)] + 1
    for reason in ("rate", "too_long", "malformed", "cross_site"):
        assert refused(after, reason) == refused(before, reason) + 1, reason
    assert sent(after, "chat") >= sent(before, "chat") + 2  # the chat stream and the poll
    # Each publish timed once: the post and every price since the start.
    assert after[("comet_publish_seconds_count",)] >= before[("comet_publish_seconds_count",)] + 4
    assert after[("comet_publish_seconds_bucket", ("le", "+Inf"))] == after[("comet_publish_seconds_count",)]
    assert wait_until(lambda: clients(scrape(metrics), "ticker") + clients(scrape(metrics), "chat_events") == 0)


def test_a_reader_dropped_for_falling_behind_is_counted():
    metrics, size = free_port(), 2048
    flags = (f"--metrics-port={metrics}", "--post-rate=0", f"--max-message={size}", "--history=2000",
             "--tick-interval=3600", "--keepalive=60", NO_JITTER)
    with ServerProcess(*flags) as server, Client(server.port, "/chat/events", stalled=True) as reader:
        server.wait_for_counts((0, 1, 0), timeout=5)
        body = b"message=" + quote_from_bytes(b"x" * size).encode()
        with Client(server.port) as poster:
            for _ in range(1000):  # 2 MB owed: far past --max-backlog's 256 KiB and the kernel's buffers
                poster.request("POST", "/chat/post", FORM, body)
                assert poster.finish(timeout=10).status == 200
                if scrape(metrics)[("comet_slow_readers_dropped_total",)] == 1:
                    break
        assert scrape(metrics)[("comet_slow_readers_dropped_total",)] == 1
        reader.resume()  # what the kernel still holds for it comes in at full speed, then the end
        assert reader.closed_by_server(timeout=10)
