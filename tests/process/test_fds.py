"""File descriptors and counts after thousands of disconnects: 10000
connects and disconnects of every kind leave the real server with the
descriptors it started with and /status at zero, and disconnects racing
publishes cause no error. Thousands of sockets are read by one selector
(``Crowd``), not a thread each."""

from __future__ import annotations

import socket
import threading

from tests.client import LINGER_RESET, Client, Crowd
from tests.machine import need_open_files, settled_fds
from tests.server import EVERY_HELD_KIND, QUIET, ServerProcess, held_counts


def test_20_rounds_of_500_connects_and_disconnects_leak_no_descriptor():
    rounds, per_round = 20, 500
    need_open_files(per_round + 200)
    with ServerProcess(*QUIET) as server:
        fds_before = settled_fds(server.pid)
        slowest = 0.0
        for round_number in range(rounds):
            with Crowd() as crowd:
                crowd.open_paced(server.port, EVERY_HELD_KIND * (per_round // 5), server.held)
                crowd.pump(0.05)
                half_closed = []
                for index, client in enumerate(crowd.members):
                    way = (index + round_number) % 3
                    if way == 0:  # a clean close: FIN
                        crowd.drain(client)
                        crowd.forget(client)
                        client.close()
                    elif way == 1:  # an abrupt reset: RST
                        crowd.forget(client)
                        client.abort()
                    else:  # half-closed: FIN, and still listening
                        crowd.forget(client)
                        client.shutdown_write()
                        half_closed.append(client)
                _, took = server.wait_for_counts((0, 0, 0), timeout=5)
                slowest = max(slowest, took)
                for client in half_closed:
                    client.close()
        fds_after = settled_fds(server.pid)
        report = server.status()
        log = server.log()
    print(f"\nfds: {fds_before} before, {fds_after} after {rounds * per_round} clients; "
          f"slowest round forgotten in {slowest:.2f} s")
    assert held_counts(report) == (0, 0, 0)
    assert abs(fds_after - fds_before) <= 2, (fds_before, fds_after)
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]


def test_clients_leaving_while_events_are_published_cause_no_error_and_no_leak():
    """Disconnects racing publishes: prices every 2 ms and chat posts while
    hundreds of streams close and reset at once. A stream whose socket
    closed a moment ago must not be written to, nor break the publish
    for the readers after it (or the POST that published)."""
    with ServerProcess("--tick-interval=0.002", "--keepalive=60", "--poll-timeout=60", "--post-rate=0") as server:
        fds_before = settled_fds(server.pid)
        posting = threading.Event()
        answers: list = []

        def poster() -> None:
            with Client(server.port) as client:
                while not posting.is_set():
                    client.request("POST", "/chat/post", {"Content-Type": "application/x-www-form-urlencoded"},
                                   b"message=tick")
                    answers.append(client.finish(timeout=10).status)

        threads = [threading.Thread(target=poster) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            for round_number in range(6):
                with Crowd() as crowd:  # closes them all at once on the way out
                    crowd.open_paced(server.port, [("/ticker", {}), ("/chat/events", {})] * 150, server.held)
                    crowd.pump(0.1)
                    for index, client in enumerate(crowd.members):
                        if (index + round_number) % 2:
                            client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                        else:
                            crowd.drain(client)
                server.wait_for_counts((0, 0, 0), timeout=3)
        finally:
            posting.set()
            for thread in threads:
                thread.join(timeout=10)
        fds_after = settled_fds(server.pid)
        log = server.log()
    assert answers and set(answers) == {200}, sorted(set(answers))
    assert "Traceback" not in log, log[log.index("Traceback") - 300:][:3000]
    assert abs(fds_after - fds_before) <= 2, (fds_before, fds_after)
