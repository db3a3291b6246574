"""Bad input to the real server gets a clear 4xx, or the connection closed,
and changes nothing: never a 500, never a traceback in its log. Malformed
requests, huge heads and bodies, bodies cut short, text that is not UTF-8,
and ids and numbers that are not what the contract says."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from urllib.parse import quote_from_bytes

import pytest

from tests.client import FALLBACK, Client
from tests.server import ServerProcess

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def raw_exchange(port: int, data: bytes, timeout: float = 3.0) -> tuple[bytes, bool]:
    """Send ``data`` (the peer may cut it short) and read until the server
    closes; returns (what came back, whether the server closed)."""
    with Client(port) as client:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            client.send(data)
        closed = client.closed_by_server(timeout)
        return client.response.received, closed


def test_malformed_request_line_gets_400(tuned):
    with tuned.no_errors():
        received, closed = raw_exchange(tuned.port, b"GARBAGE\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 400 ") and closed


def test_64kb_header_is_refused_without_an_error(tuned):
    request = b"GET /status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n"
    with tuned.no_errors():
        received, closed = raw_exchange(tuned.port, request)
    assert closed
    assert received == b"" or re.match(rb"HTTP/1\.1 4\d\d ", received), received[:200]


def test_10mb_post_gets_413_the_connection_closed_and_nothing_stored(tuned):
    before = tuned.status()["chat"]["messages"]
    size = 10 * 1024 * 1024
    head = (b"POST /chat/post HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n" % size)
    with tuned.no_errors(), Client(tuned.port) as client:
        sent = {}

        def send_everything():  # as an eager client does, while the answer comes back
            try:
                client.send(head)
                client.send(b"message=" + b"a" * (size - 8))
                sent["all"] = True
            except OSError:
                sent["all"] = False

        sender = threading.Thread(target=send_everything, daemon=True)
        started = time.monotonic()
        sender.start()
        response = client.finish(timeout=5)
        assert response.status == 413
        assert client.closed_by_server(timeout=5)  # then the server closes the connection
        sender.join(timeout=5)
        assert time.monotonic() - started < 5
        assert sent == {"all": False}, "the server read all 10 MB instead of closing"
    assert tuned.status()["chat"]["messages"] == before


def test_chunked_post_over_the_body_limit_gets_413(tuned):
    with Client(tuned.port, "/chat/post", method="POST", headers=FORM | {"Transfer-Encoding": "chunked"}) as small:
        small.send(b"a\r\nmessage=ok\r\n0\r\n\r\n")
        assert small.finish().status == 200  # a chunked body under the limit is fine
    before = tuned.status()["chat"]["messages"]
    body = b"message=" + b"a" * (100 * 1024)
    request = (b"POST /chat/post HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    with tuned.no_errors(), Client(tuned.port) as client:
        def send_everything():
            with contextlib.suppress(OSError):
                client.send(request)

        sender = threading.Thread(target=send_everything, daemon=True)
        sender.start()
        with contextlib.suppress(AssertionError):
            client.head(timeout=5)
        sender.join(timeout=5)
        response = client.response
        assert response.status is not None, f"no response, the connection was {'reset' if response.reset else 'closed'}"
        assert response.status == 413, response.received[:200]
    assert tuned.status()["chat"]["messages"] == before


@pytest.mark.parametrize("ending", ["close", "half-close"])
def test_body_shorter_than_content_length_stores_nothing(tuned, ending):
    before = tuned.status()["chat"]["messages"]
    head = (b"POST /chat/post HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 100\r\n\r\nmessage=ab")
    with tuned.no_errors(), Client(tuned.port) as client:
        client.send(head)
        if ending == "close":
            client.close()
        else:
            client.shutdown_write()
            assert client.closed_by_server(timeout=3)
            received = client.response.received
            assert received == b"" or re.match(rb"HTTP/1\.1 4\d\d ", received), received[:200]
    assert tuned.status()["chat"]["messages"] == before


def test_message_that_is_not_utf8_gets_400(tuned):
    before = tuned.status()["chat"]["messages"]
    with tuned.no_errors():
        assert tuned.post(b"\xff\xfe")[0] == 400
        multipart = (b"--XyZ\r\nContent-Disposition: form-data; name=\"message\"\r\n\r\n\xc3\x28\r\n--XyZ--\r\n")
        code, _, _ = tuned.fetch("/chat/post", "POST", multipart, {"Content-Type": "multipart/form-data; boundary=XyZ"})
        assert code == 400
    assert tuned.status()["chat"]["messages"] == before


def replay(server: ServerProcess) -> bytes:
    """The frames an absent id gets on /chat/events: every retained message."""
    since = json.loads(server.fetch(f"/chat/since/{server.status()['chat']['first']}")[2])
    epoch = since["epoch"]
    return b"".join(
        f"id: {epoch}:{since['first'] + i + 1}\ndata: {text}\n\n".encode() for i, text in enumerate(since["messages"])
    )


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "+1", "0x1", "\u00b2"])
def test_last_event_id_that_is_not_a_decimal_integer_counts_as_absent(tuned, value):
    if tuned.status()["chat"]["messages"] == 0:
        tuned.post(b"hi")
    expected = b"retry: 1234\n\n" + replay(tuned)
    with tuned.no_errors():
        for path, headers in (
            ("/chat/events", {"Last-Event-ID": value}),
            ("/chat/events?lastEventId=" + quote_from_bytes(value.encode()), {}),
        ):
            with Client(tuned.port, path, headers=headers) as stream:
                response = stream.wait(lambda r: len(r.body) >= len(expected))
            assert response.status == 200 and response.body == expected  # no reset, the whole history
        with Client(tuned.port, "/ticker", headers={"Last-Event-ID": value}) as ticker:
            response = ticker.wait(lambda r: len(r.events) >= 1, timeout=1)  # at once
        assert response.status == 200


@pytest.mark.parametrize("digits", [30, 5000])
def test_huge_last_event_id_gets_a_reset_then_the_history(tuned, digits):
    """A decimal id far past the end, as from before a restart."""
    if tuned.status()["chat"]["messages"] == 0:
        tuned.post(b"hi")
    first = tuned.status()["chat"]["first"]
    epoch = tuned.fetch("/chat/since/0")[1]["X-Chat-Epoch"]
    expected = b"retry: 1234\n\n" + f"event: reset\nid: {epoch}:{first}\ndata: {first}\n\n".encode() + replay(tuned)
    with tuned.no_errors():
        stream = Client(tuned.port, "/chat/events", headers={"Last-Event-ID": "9" * digits})
        ticker = Client(tuned.port, "/ticker", headers={"Last-Event-ID": "9" * digits})
        try:
            response = stream.head()
            assert response.status == 200, response
            response = stream.wait(lambda r: len(r.body) >= len(expected))
            assert response.body == expected
            response = ticker.wait(lambda r: len(r.events) >= 1, timeout=1)
            assert response.status == 200
        finally:
            stream.close()
            ticker.close()


@pytest.mark.parametrize("digits", [30, 5000])
def test_huge_message_number_is_404_with_the_resync_headers(tuned, digits):
    report = tuned.status()["chat"]
    with tuned.no_errors():
        for path in ("/chat/get/", "/chat/since/"):
            code, headers, _ = tuned.fetch(path + "1" * digits)
            assert code == 404, (path, code)
            assert headers["x-first-message"] == str(report["first"])
            assert headers["x-next-message"] == str(report["messages"])


def test_fallback_poll_with_an_unknown_id_gets_the_reset_at_once(quiet):
    """What the stream would send at once (the reset) ends a fallback poll at
    once, rather than after --poll-timeout (60 s here)."""
    with Client(quiet.port, "/chat/events", headers=FALLBACK | {"Last-Event-ID": "7"}) as poll:
        response = poll.finish(timeout=2)
    assert response.status == 200
    epoch = quiet.fetch("/chat/since/0")[1]["X-Chat-Epoch"]
    assert response.body.startswith(f"retry: 2000\n\nevent: reset\nid: {epoch}:0\ndata: 0\n\n".encode())
