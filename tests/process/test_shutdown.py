"""SIGINT and SIGTERM end every open response cleanly: streams with their
last chunk, held polls with their timeout answer and ``Connection: close``
(so they ask again on a new connection), and the process exits 0 within 3 s,
with five clients and with 2000."""

from __future__ import annotations

import signal
import time

import pytest

from tests.client import FALLBACK, Client, Crowd
from tests.machine import need_open_files
from tests.server import QUIET, ServerProcess


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_ends_every_stream_and_poll_cleanly_and_exits_0(sig):
    with ServerProcess(*QUIET) as server:
        ticker = Client(server.port, "/ticker")
        chat = Client(server.port, "/chat/events")
        get = Client(server.port, "/chat/get/0")
        chat_poll = Client(server.port, "/chat/events", headers=FALLBACK)
        ticker_poll = Client(server.port, "/ticker", headers=FALLBACK | {"Last-Event-ID": "1"})
        clients = (ticker, chat, get, chat_poll, ticker_poll)
        try:
            ticker.until(b"data: ")
            chat.until(b"retry: 2000\n\n")
            server.wait_for_counts((1, 2, 2), timeout=5)

            server.send_signal(sig)
            started = time.monotonic()
            code = server.wait(timeout=10)
            elapsed = time.monotonic() - started
            assert code == 0, server.log()[-3000:]
            assert elapsed < 3, elapsed

            for client in clients:
                assert client.closed_by_server(timeout=3), client
                assert not client.response.reset, client
        finally:
            for client in clients:
                client.close()
        for stream in (ticker, chat):
            assert stream.response.received.endswith(b"\r\n0\r\n\r\n"), stream.response.received[-100:]
            assert stream.response.complete
        assert ticker.response.body == b"retry: 2000\n\nid: 1\ndata: 100.00\n\n"
        assert chat.response.body == b"retry: 2000\n\n"
        assert get.response.status == 204 and get.response.complete
        for poll in (chat_poll, ticker_poll):
            assert poll.response.status == 200 and poll.response.complete
            assert poll.response.body == b"retry: 2000\n\n: keep-alive\n\n"
        # Released polls ask again at once: on a new connection, not this one.
        for poll in (get, chat_poll, ticker_poll):
            assert poll.response.headers.get("connection") == "close", poll.response.headers
        assert "Traceback" not in server.log()


def test_sigterm_with_1000_streams_and_1000_polls_ends_every_response_and_exits_0_within_3s():
    need_open_files(2000 + 200)
    requests = [("/ticker", {}), ("/chat/events", {})] * 500
    requests += [("/chat/get/0", {}), ("/chat/get/0", {}), ("/chat/events", FALLBACK),
                 ("/ticker", FALLBACK | {"Last-Event-ID": "1"})] * 250
    with ServerProcess(*QUIET) as server:
        with Crowd() as crowd:
            crowd.open_paced(server.port, requests, server.held)
            server.wait_for_counts((500, 750, 750), timeout=5)
            crowd.pump(0.2)

            server.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            code = server.wait(timeout=10)
            took = time.monotonic() - signalled
            crowd.pump(5, until=lambda: all(client.response.closed for client in crowd.members))
            clients = list(zip(requests, crowd.members))
        log = server.log()
    print(f"\nSIGTERM with {len(requests)} clients: exit {code} after {took:.2f} s")
    assert code == 0, log[-3000:]
    assert took < 3, took
    for (path, headers), client in clients:
        response = client.response
        assert response.closed and not response.reset, (path, response.received[-200:])
        assert response.complete, (path, headers, response.received[-200:])
        if path == "/chat/get/0" or headers:  # a poll: it asks again, on a new connection
            assert response.headers.get("connection") == "close", response.headers
        if path == "/chat/get/0":
            assert response.status == 204
        elif headers:
            assert (response.status, response.body) == (200, b"retry: 2000\n\n: keep-alive\n\n")
        else:
            assert response.status == 200 and response.received.endswith(b"\r\n0\r\n\r\n"), response.received[-100:]
    assert "Traceback" not in log
