"""``--max-clients-per-address`` and ``--xheaders`` on the real server, and
behind docs/nginx.conf.

One address holding its cap of streams and polls gets a clean 503 with
Retry-After for the next one; its other requests (posts, pages, /status, a
poll answered at once) are answered as before, and other addresses are not
affected. Behind a proxy every client comes from the proxy's address unless
``--xheaders`` lets the app read the client's own from ``X-Real-IP``, which
docs/nginx.conf sets. Clients here come from 127.0.0.1 and 127.0.0.2 (both
loopback on Linux), so the two addresses are real peers, not headers.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Iterator

import pytest

from tests.client import Client, fetch, wait_until
from tests.nginx import NGINX, Nginx
from tests.server import QUIET, ServerProcess

CAP = 3
FLAGS = (f"--max-clients-per-address={CAP}", *QUIET)
ELSEWHERE = "127.0.0.2"


def hold_cap(port: int, source: str = "127.0.0.1", headers: dict = {}) -> list[Client]:
    """CAP held requests from ``source``: a chat stream, a ticker stream, and
    a poll for the next message."""
    following = json.loads(fetch(port, "/status")[2])["chat"]["messages"]
    paths = ("/chat/events", "/ticker", f"/chat/get/{following}")
    held = [Client(port, path, headers=headers, source=source) for path in paths]
    for client in held[:2]:
        assert client.until(b"retry: ").status == 200
    return held


def assert_clean_503(code: int, headers, body: bytes) -> None:
    """Come back later, in plain text: what a page's backoff reads."""
    assert (code, headers.get("Retry-After"), headers.get("Content-Type")) == (503, "5", "text/plain; charset=UTF-8"), body
    assert body.startswith(b"503 Service Unavailable: ") and b"holds" in body, body


def close_all(clients: list[Client]) -> None:
    for client in clients:
        client.close()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(*FLAGS) as server:
        yield server


@pytest.fixture(scope="module")
def behind_proxy() -> Iterator[tuple[ServerProcess, Nginx]]:
    """The app with --xheaders, behind docs/nginx.conf as shipped."""
    assert os.access(NGINX, os.X_OK), "install nginx: `make system-deps`"
    with ServerProcess("--xheaders", *FLAGS) as app, Nginx(app.port) as nginx:
        yield app, nginx
        app.stop(signal.SIGTERM)


def test_one_address_past_its_cap_gets_503_and_nothing_else_changes(server):
    port = server.port
    held = hold_cap(port)
    try:
        server.wait_for_counts((1, 1, 1), timeout=5)
        # Whatever it asks to be held for, the next one from that address is turned away...
        for path in ("/ticker", "/chat/events", "/chat/get/0"):
            assert_clean_503(*fetch(port, path, timeout=3))
        # ...while what is answered at once is answered, from the same address.
        assert server.fetch("/chat")[0] == server.fetch("/chat/since/0")[0] == server.fetch("/status")[0] == 200
        # Another address is let in.
        with Client(port, "/ticker", source=ELSEWHERE) as other:
            assert other.until(b"retry: ").status == 200
        # A post reaches the held poll, which answers and leaves: a place is free again.
        assert server.post("for the poll")[0] == 200
        assert held[2].finish().status == 200
        server.wait_for_counts((0, 1, 1), timeout=2)
        with Client(port, "/chat/get/1") as again:
            server.wait_for_counts((1, 1, 1), timeout=2)
            assert_clean_503(*fetch(port, "/ticker", timeout=3))
            assert again.silent(0.2)  # held, not refused
    finally:
        close_all(held)


def test_without_xheaders_a_forwarded_address_is_not_believed(server):
    held = hold_cap(server.port, headers={"X-Real-IP": "10.0.0.1"})
    try:
        server.wait_for_counts((1, 1, 1), timeout=5)
        # The header names another client, but the peer is 127.0.0.1, which is full.
        assert_clean_503(*fetch(server.port, "/ticker", headers={"X-Real-IP": "10.0.0.2"}, timeout=3))
    finally:
        close_all(held)


def test_a_cap_of_zero_turns_the_cap_off():
    with ServerProcess("--max-clients-per-address=0", *QUIET) as server:
        held = hold_cap(server.port) + hold_cap(server.port)
        try:
            server.wait_for_counts((2, 2, 2), timeout=5)
        finally:
            close_all(held)


def test_behind_nginx_with_xheaders_each_client_has_its_own_cap(behind_proxy):
    app, nginx = behind_proxy
    held = hold_cap(nginx.port)
    try:
        app.wait_for_counts((1, 1, 1), timeout=5)
        assert_clean_503(*fetch(nginx.port, "/ticker", timeout=5))
        # Another client of the same nginx is its own address to the app.
        with Client(nginx.port, "/ticker", source=ELSEWHERE) as other:
            assert other.until(b"retry: ").status == 200
            app.wait_for_counts((1, 1, 2), timeout=2)
        # And the app's access log names the client, not nginx.
        with Client(nginx.port, "/chat/get/abc", source=ELSEWHERE) as wrong:
            assert wrong.finish().status == 404
        # (Logged once the answer is out: the line may follow the answer by a moment.)
        line = f"404 GET /chat/get/abc ({ELSEWHERE})"
        assert wait_until(lambda: line in app.log(), timeout=5), app.log()[-2000:]
        # A client cannot claim another address through nginx: it sets X-Real-IP itself.
        assert_clean_503(*fetch(nginx.port, "/ticker", headers={"X-Real-IP": "10.9.9.9"}, timeout=5))
    finally:
        close_all(held)


def test_behind_nginx_without_xheaders_every_client_is_the_proxy():
    """Why docs/deployment.md says to turn --xheaders on behind a proxy."""
    with ServerProcess(*FLAGS) as app, Nginx(app.port) as nginx:
        held = hold_cap(nginx.port)
        try:
            app.wait_for_counts((1, 1, 1), timeout=5)
            # Another client, but to the app it is nginx again, whose address is full.
            with Client(nginx.port, "/ticker", source=ELSEWHERE) as other:
                refused = other.finish(timeout=5)
            assert refused.status == 503 and b"127.0.0.1 holds" in refused.body, refused
        finally:
            close_all(held)
