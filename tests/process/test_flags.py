"""The real server, ``python app.py``, as a user runs it: the port, the
address, the URL line, ``--help``, and each flag of docs/protocol.md section
5 taking effect end to end, with the ticker's ids and prices agreeing with
/status. Everything here talks to a child process over 127.0.0.1."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

from tests.client import FALLBACK, PRICE, Client, free_port
from tests.server import QUIET, ROOT, ServerProcess

# --- running: the port, the address, the URL line, --help ---------------------------


def test_port_zero_picks_a_free_port_prints_the_url_and_serves_there(tuned):
    assert tuned.port > 0
    assert tuned.line == f"http://127.0.0.1:{tuned.port}/\n".encode()
    code, headers, body = tuned.fetch("/")
    assert code == 200 and headers["content-type"].startswith("text/html")
    assert b"/chat" in body and b"/stock" in body
    assert tuned.status()["ticker"]["id"] >= 1


def test_fixed_port_and_address_are_honoured_and_the_port_is_reusable_at_once():
    port = free_port()
    with ServerProcess(f"--port={port}", "--address=127.0.0.1", *QUIET) as first:
        assert first.line == f"http://127.0.0.1:{port}/\n".encode()
        assert first.fetch("/status")[0] == 200
        stream = Client(port, "/ticker")  # a client still connected when it stops
        stream.until(b"data: ")
        assert first.stop(signal.SIGTERM) == 0
        assert first.process.stdout.read() == b"", "only the URL line goes to stdout"
        stream.close()
    # Restarting on the same port right away works (no "address in use").
    with ServerProcess(f"--port={port}", *QUIET) as second:
        assert second.url == f"http://127.0.0.1:{port}/"
        assert second.fetch("/status")[0] == 200


def test_help_lists_every_flag_of_the_contract():
    done = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, timeout=20)
    assert done.returncode == 0
    text = (done.stdout + done.stderr).decode()
    for flag in ("--port", "--address", "--debug", "--poll-timeout", "--history", "--max-message",
                 "--retry", "--keepalive", "--tick-interval"):
        assert re.search(rf"^\s+{flag}\b", text, re.M), f"{flag} missing from --help"


# --- every flag takes effect ---------------------------------------------------------


def test_retry_flag_starts_every_stream_and_fallback_poll(tuned):
    ticker = Client(tuned.port, "/ticker")
    chat = Client(tuned.port, "/chat/events")
    poll = Client(tuned.port, "/ticker", headers=FALLBACK)
    try:
        for client in (ticker, chat, poll):
            response = client.wait(lambda r: len(r.body) >= 13)
            assert response.status == 200
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert response.body.startswith(b"retry: 1234\n\n")
        assert poll.finish().body.startswith(b"retry: 1234\n\nid: ")
    finally:
        for client in (ticker, chat, poll):
            client.close()


def test_ticker_ids_count_up_by_one_with_two_decimal_prices_and_agree_with_status(tuned):
    stream = Client(tuned.port, "/ticker")
    try:
        first = stream.wait(lambda r: len(r.events) >= 1)
        started = time.monotonic()
        # --tick-interval=0.1: at least 3 more moves within about a second.
        response = stream.wait(lambda r: len(r.events) >= 4, timeout=1.5)
        assert time.monotonic() - started < 1.5
        report = tuned.status()
        response = stream.wait(lambda r: int(r.events[-1]["id"]) >= report["ticker"]["id"], timeout=2)
    finally:
        stream.close()
    assert first.body.startswith(b"retry: 1234\n\n")
    received = response.events
    ids = [int(event["id"]) for event in received]
    assert ids == list(range(ids[0], ids[0] + len(ids))), ids
    for event in received:
        assert PRICE.match(event["data"]) and float(event["data"]) > 0, event
    same = [event for event in received if int(event["id"]) == report["ticker"]["id"]]
    assert same and float(same[0]["data"]) == report["ticker"]["price"]


def test_status_shows_the_price_the_stream_sends(quiet):
    stream = Client(quiet.port, "/ticker")
    try:
        response = stream.wait(lambda r: len(r.events) >= 1)
    finally:
        stream.close()
    (event,) = response.events
    report = quiet.status()["ticker"]
    assert event["id"] == "1" and report["id"] == 1  # no move yet: the price at start has K=1
    assert PRICE.match(event["data"]) and float(event["data"]) == report["price"] > 0


def test_poll_timeout_flag_ends_held_polls(tuned):
    count = tuned.status()["chat"]["messages"]
    started = time.monotonic()
    code, headers, body = tuned.fetch(f"/chat/get/{count}")
    elapsed = time.monotonic() - started
    assert (code, body) == (204, b"")
    assert headers["cache-control"] == "no-cache"
    assert 0.4 <= elapsed < 3, elapsed

    poll = Client(tuned.port, "/chat/events", headers=FALLBACK | {"Last-Event-ID": str(count)})
    started = time.monotonic()
    try:
        response = poll.finish(timeout=3)
    finally:
        poll.close()
    assert 0.4 <= time.monotonic() - started < 3
    assert response.status == 200
    assert response.body == b"retry: 1234\n\n: keep-alive\n\n"


def test_history_flag_bounds_the_chat(tuned):
    ids = [json.loads(tuned.post(text)[2])["id"] for text in (b"one", b"two", b"six")]
    assert ids == [ids[0], ids[0] + 1, ids[0] + 2]
    code, headers, _ = tuned.fetch(f"/chat/get/{ids[0]}")
    assert code == 410
    assert (headers["x-first-message"], headers["x-next-message"]) == (str(ids[1]), str(ids[2] + 1))
    assert tuned.fetch(f"/chat/get/{ids[1]}")[::2] == (200, b"two")
    assert tuned.status()["chat"]["first"] == ids[1]


def test_max_message_flag_counts_characters(tuned):
    before = tuned.status()["chat"]["messages"]
    code, _, body = tuned.post("héllo".encode())  # 5 characters, 6 bytes
    assert code == 200 and json.loads(body) == {"id": before}
    assert tuned.post("héllo!".encode())[0] == 413
    assert tuned.status()["chat"]["messages"] == before + 1
    assert tuned.fetch(f"/chat/get/{before}")[2] == "héllo".encode()


def test_keepalive_flag_feeds_an_idle_stream(tuned):
    count = tuned.status()["chat"]["messages"]
    stream = Client(tuned.port, "/chat/events", headers={"Last-Event-ID": str(count)})
    try:
        stream.until(b"retry: 1234\n\n")
        started = time.monotonic()
        response = stream.until(b": keep-alive\n\n", timeout=3)
        waited = time.monotonic() - started
        response = stream.wait(lambda r: r.body.count(b": keep-alive\n\n") >= 2, timeout=3)
    finally:
        stream.close()
    assert 0.15 <= waited < 2, waited
    assert response.body.startswith(b"retry: 1234\n\n: keep-alive\n\n: keep-alive\n\n")


def test_gzip_flag_compresses_pages():
    """--gzip reaches the app. What it compresses and what never (streams,
    polls, /chat/get, each event still its own chunk) is shown in process
    by tests/app/test_eventsource.py."""
    with ServerProcess("--gzip", *QUIET) as server:
        code, headers, body = server.fetch("/chat", headers={"Accept-Encoding": "gzip"})
    assert code == 200 and headers.get("content-encoding") == "gzip"
    assert b"</html>" in body  # gunzipped by the client, which fails on anything but gzip


def test_uvloop_flag_serves_the_same_streams_and_polls_and_stops_cleanly():
    """``--uvloop`` changes the event loop under Tornado, nothing a client sees."""
    with ServerProcess("--uvloop", *QUIET, "--tick-interval=0.1") as server:
        with Client(server.port, "/ticker") as stream:
            first, second = stream.events(2, timeout=5)
        assert int(second["id"]) == int(first["id"]) + 1 and PRICE.match(second["data"])
        with Client(server.port, "/chat/get/0") as held:
            assert held.silent(0.2)
            assert server.post(b"on uvloop")[0] == 200
            assert held.finish().body == b"on uvloop"
        assert server.stop(signal.SIGTERM) == 0
