"""``--max-clients`` on the real server: the next client gets a clean 503,
the held ones notice nothing, and one leaving lets a new one in. The
open-file limit is lifted at start, so the cap, not the OS, is what turns
clients away."""

from __future__ import annotations

import resource

from tests.client import FALLBACK, Client, Crowd, fetch
from tests.machine import open_file_limit, unable
from tests.server import NO_JITTER, QUIET, ServerProcess


def assert_clean_503(code: int, headers, body: bytes) -> None:
    assert code == 503, (code, body)
    assert headers.get("retry-after", "").isdigit() and int(headers["retry-after"]) > 0, headers
    assert headers["content-type"] == "text/plain; charset=UTF-8"
    assert headers["x-content-type-options"] == "nosniff"
    assert body.startswith(b"503 ") and b"Traceback" not in body and b"<" not in body, body


def test_max_clients_turns_the_next_client_away_and_the_held_ones_notice_nothing():
    with ServerProcess("--max-clients=5", "--tick-interval=0.2", "--poll-timeout=60", "--keepalive=60",
                       NO_JITTER) as server:
        port = server.port
        chat = [Client(port, "/chat/events"), Client(port, "/chat/events")]
        ticker = Client(port, "/ticker")
        polls = [Client(port, "/chat/get/0"), Client(port, "/chat/get/0")]
        held = [*chat, ticker, *polls]
        try:
            server.wait_for_counts((2, 2, 1), timeout=5)
            for stream in chat:
                stream.until(b"retry: 2000\n\n")
            seen = int(ticker.wait(lambda r: r.events).events[-1]["id"])

            # The sixth is turned away, whatever it asks to be held for: at
            # once (fetch fails on a stream let in by mistake).
            for path, headers in [("/ticker", {}), ("/chat/events", {}), ("/chat/get/0", {}),
                                  ("/ticker", FALLBACK), ("/chat/events", FALLBACK)]:
                assert_clean_503(*fetch(port, path, headers=headers, timeout=3))
            # What is answered at once is still answered.
            assert server.fetch("/chat/since/0")[0] == server.fetch("/")[0] == 200

            # Those held never noticed: the ticker kept moving, nothing ended.
            ticker.wait(lambda r: int(r.events[-1]["id"]) >= seen + 2, timeout=3)

            # One leaves; a new one is let in in its place, and only one.
            chat.pop().close()
            server.wait_for_counts((2, 1, 1), timeout=2)
            chat.append(Client(port, "/chat/events"))
            held.append(chat[-1])
            assert chat[-1].until(b"retry: 2000\n\n").status == 200
            server.wait_for_counts((2, 2, 1), timeout=2)
            assert_clean_503(*fetch(port, "/ticker", timeout=3))

            # A message reaches every stream and held poll that was let in.
            assert server.post(b"still here")[0] == 200
            for stream in chat:
                assert stream.until(b":1\ndata: still here\n\n").status == 200
            for poll in polls:
                response = poll.finish()
                assert (response.status, response.body) == (200, b"still here")
            for client in (chat[0], ticker):
                assert not client.response.closed and client.response.status == 200
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
        with Crowd() as crowd:
            crowd.open_paced(server.port, [("/ticker", {})] * clients, server.held)
            assert server.status()["ticker"]["streams"] == clients > low
