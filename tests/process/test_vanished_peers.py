"""Clients that go away are forgotten (as /status shows), however they go:
closed, reset, half-closed, closed right behind their request, gone without
a packet (found out by the next keep-alive write, answered with a RST), or
gone for good (found out when TCP gives up retransmitting)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time

from tests.client import FALLBACK, Client, wait_until
from tests.machine import open_fds, settled_fds, unable
from tests.netns import UNABLE, in_private_network, loopback_up, set_sysctl
from tests.server import EVERY_HELD_KIND, NO_JITTER, ServerProcess

TCP_REPAIR = 19  # linux/tcp.h; not in Python's socket module


def open_every_kind(port: int, n: int) -> list[Client]:
    """n of each request the server holds, in groups of one of each."""
    return [Client(port, path, headers=headers) for _ in range(n) for path, headers in EVERY_HELD_KIND]


# --- closed, reset, half-closed ----------------------------------------------------


def test_closed_and_reset_clients_are_forgotten_within_a_second(quiet):
    quiet.wait_for_counts((0, 0, 0), timeout=2)
    n = 20
    clients = open_every_kind(quiet.port, n)
    try:
        before, _ = quiet.wait_for_counts((n, 2 * n, 2 * n), timeout=10)
        half = len(clients) // 2  # whole groups of five: n/2 of each kind
        for client in clients[:half]:
            client.close()
        _, elapsed = quiet.wait_for_counts((n // 2, n, n), timeout=1.0)
        for client in clients[half:]:
            client.abort()
        after, elapsed_reset = quiet.wait_for_counts((0, 0, 0), timeout=1.0)
    finally:
        for client in clients:
            client.close()
    assert elapsed <= 1.0 and elapsed_reset <= 1.0
    # Nothing was published meanwhile: the clients were not found out by a write.
    assert after["ticker"]["id"] == before["ticker"]["id"] == 1
    assert after["chat"]["messages"] == before["chat"]["messages"] == 0


def test_half_closed_clients_are_forgotten_within_a_second(quiet):
    quiet.wait_for_counts((0, 0, 0), timeout=2)
    clients = open_every_kind(quiet.port, 2)
    try:
        quiet.wait_for_counts((2, 4, 4), timeout=5)
        for client in clients:
            client.shutdown_write()
        _, elapsed = quiet.wait_for_counts((0, 0, 0), timeout=1.0)
    finally:
        for client in clients:
            client.close()
    assert elapsed <= 1.0


def test_clients_that_close_right_behind_their_request_are_forgotten():
    """A FIN or a RST right behind the request: every such client is
    forgotten, and nothing is logged. Found by bench/soak.py. On Tornado
    6.6.1 on_connection_close comes for each of them, so this passes without
    the hold's own check of ``writer.closed()`` too; that check is tested
    in-process, with a connection Tornado never reports closed
    (tests/app/test_eventsource.py,
    test_client_gone_before_tornado_listens_is_forgotten_at_once)."""
    with ServerProcess("--tick-interval=0.05", "--poll-timeout=60", "--keepalive=60") as server:
        for round_ in range(10):
            clients = []
            for _ in range(30):
                for path, headers in (("/ticker", {}), ("/chat/events", {}), ("/ticker", FALLBACK), ("/chat/get/0", {})):
                    clients.append(Client(server.port, path, headers=headers))
            for number, client in enumerate(clients):
                if number % 2:
                    client.abort()
                else:
                    client.shutdown_write()  # the FIN right behind the request
            for client in clients:
                client.close()
        server.wait_for_counts((0, 0, 0), timeout=1.5)
        log = server.log()
    assert "Traceback" not in log and "Exception in callback" not in log, log[-2000:]


# --- gone without a FIN ----------------------------------------------------------------


def silently_gone(client: Client) -> None:
    """Close a socket without a FIN or a RST, as a peer that vanished
    (TCP_REPAIR: the kernel drops the connection without a word). The
    server's next write is then answered with a RST, as from a host that
    rebooted or a NAT that forgot the connection."""
    client.sock.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
    client.close()


def test_client_gone_without_a_fin_is_found_out_by_the_next_keep_alive():
    probe = socket.socket()
    try:
        probe.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
    except OSError as error:
        unable(f"TCP_REPAIR needs CAP_NET_ADMIN: {error}")
    finally:
        probe.close()
    keepalive = 1.0
    with ServerProcess("--tick-interval=3600", "--poll-timeout=60", f"--keepalive={keepalive}", NO_JITTER) as server:
        fds_before = settled_fds(server.pid)
        ticker = Client(server.port, "/ticker", headers={"Last-Event-ID": "1"})
        chat = Client(server.port, "/chat/events")
        for stream in (ticker, chat):
            stream.until(b"retry: 2000\n\n")
        server.wait_for_counts((0, 1, 1), timeout=2)
        for stream in (ticker, chat):
            silently_gone(stream)
        gone = time.monotonic()
        # Nothing reached the server: it still counts both...
        assert server.counts() == (0, 1, 1)
        # ...until its keep-alive comment is answered with a RST.
        server.wait_for_counts((0, 0, 0), timeout=keepalive + 3)
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
        sys.exit(UNABLE)
    flags = ("--tick-interval=3600", f"--keepalive={keepalive}", f"--poll-timeout={poll_timeout}")
    with ServerProcess(*flags) as server:
        fds_before = settled_fds(server.pid)
        vanishing = [
            Client(server.port, "/ticker", headers={"Last-Event-ID": "1"}, stalled=True, source="127.0.0.2"),
            Client(server.port, "/chat/events", headers=FALLBACK, stalled=True, source="127.0.0.2"),
            Client(server.port, "/chat/get/0", stalled=True, source="127.0.0.2"),
        ]
        try:
            assert wait_until(lambda: server.counts() == (1, 1, 1), 5)
            subprocess.run(["ip", "route", "add", "blackhole", "127.0.0.2/32", "table", "local"], check=True)
            gone = time.monotonic()
            forgotten: dict = {}
            names = ("chat.waiting", "chat.streams", "ticker.streams")
            while len(forgotten) < 3 and time.monotonic() - gone < 30:
                for name, count in zip(names, server.counts()):
                    if count == 0 and name not in forgotten:
                        forgotten[name] = time.monotonic() - gone
                time.sleep(0.05)
            wait_until(lambda: open_fds(server.pid) <= fds_before, 20, 0.1)
            fds_after, fds_took = open_fds(server.pid), time.monotonic() - gone
            # The server is fine: a new client is served.
            with Client(server.port, "/ticker") as fresh:
                fresh.until(b"data: ")
        finally:
            for client in vanishing:
                client.close()
    return dict(forgotten=forgotten, fds_before=fds_before, fds_after=fds_after, fds_took=fds_took)


def tcp_give_up_time(retries: int, rto_min: float = 0.2) -> float:
    """How long Linux retransmits before ETIMEDOUT, for tcp_retries2=retries
    on a link whose RTO is the minimum (loopback)."""
    return sum(min(rto_min * 2 ** n, 120.0) for n in range(retries + 1))


def test_clients_that_vanish_without_a_packet_are_forgotten_when_tcp_gives_up():
    keepalive, poll_timeout, retries = 0.5, 1.0, 2
    result = in_private_network(scenario_blackhole, keepalive=keepalive, poll_timeout=poll_timeout,
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
