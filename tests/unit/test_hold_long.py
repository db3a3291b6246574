"""app.hold_long sets its two TCP options on the listening sockets only;
every connection accepted from them must have them too (Linux copies a
listener's TCP options to what it accepts). If a kernel stops doing so, this
fails, and the options would have to be set per connection again."""

from __future__ import annotations

import socket

import pytest

from app import hold_long


@pytest.mark.parametrize("option, value", [("TCP_NOTSENT_LOWAT", 16 * 1024), ("TCP_USER_TIMEOUT", 30_000)])
def test_an_accepted_connection_has_the_listeners_options(option, value):
    if not hasattr(socket, option):
        pytest.fail(f"socket.{option} is missing: this test, and the option, are for Linux")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        hold_long([listener])
        with socket.create_connection(listener.getsockname(), timeout=5) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, getattr(socket, option)) == value
                assert client.getsockopt(socket.IPPROTO_TCP, getattr(socket, option)) != value
