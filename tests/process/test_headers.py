"""What each answer of the real server says it is: every error page is
plain text without a traceback, ``--debug`` changes none of that, and a
message's text is never served as something a browser would render. (The
pages' CSP, and what --gzip compresses, are checked in process by
tests/app.)"""

from __future__ import annotations

import json
import signal

from tests.client import Client, fetch
from tests.server import QUIET, ServerProcess


def test_every_error_is_plain_text_without_a_traceback():
    flags = ("--history=1", "--max-message=5", "--max-body=1024", "--max-clients=1", *QUIET)
    with ServerProcess(*flags) as server:
        port = server.port
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        for text in (b"one", b"two"):
            assert server.post(text)[0] == 200
        with Client(port, "/chat/get/2"):
            server.wait_for_counts((1, 0, 0), timeout=2)
            answers = {
                "400 empty message": fetch(port, "/chat/post", "POST", b"message=", form),
                "404 path": fetch(port, "/no/such/page"),
                "404 message": fetch(port, "/chat/get/99"),
                "405": fetch(port, "/chat/post", "PUT", b"message=a", form),
                "410": fetch(port, "/chat/get/0"),
                "413 message": fetch(port, "/chat/post", "POST", b"message=toolong", form),
                "413 body": fetch(port, "/chat/post", "POST", b"message=" + b"a" * 2000, form),
                "503": fetch(port, "/ticker", timeout=3),
            }
        log = server.log()
    for name, (code, headers, body) in answers.items():
        assert code == int(name[:3]), (name, code, body)
        assert headers["content-type"] == "text/plain; charset=UTF-8", (name, headers)
        assert headers["x-content-type-options"] == "nosniff", name
        assert body.startswith(name[:4].encode()), (name, body)
        assert b"Traceback" not in body and b"<" not in body, (name, body)
    assert "Traceback" not in log


def test_debug_mode_serves_everything_and_still_exits_cleanly():
    with ServerProcess("--debug", *QUIET) as server:
        code, headers, body = server.fetch("/no/such/page")
        assert code == 404 and headers["x-content-type-options"] == "nosniff"
        assert server.fetch("/chat")[0] == 200
        assert server.post(b"hi")[0] == 200
        with Client(server.port, "/chat/events") as stream:
            assert stream.until(b":1\ndata: hi\n\n").status == 200
        assert server.stop(signal.SIGTERM) == 0, server.log()[-3000:]


def test_message_text_is_never_served_as_something_a_browser_would_render():
    script = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    with ServerProcess(*QUIET) as server:
        assert server.post(script.encode())[0] == 200
        code, headers, body = server.fetch("/chat/get/0")
        assert (code, body.decode()) == (200, script)
        assert headers["content-type"] == "text/plain; charset=UTF-8"
        assert headers["x-content-type-options"] == "nosniff"
        code, headers, body = server.fetch("/chat/since/0")
        assert code == 200 and json.loads(body)["messages"] == [script]
        assert headers["content-type"].startswith("application/json")
        assert headers["x-content-type-options"] == "nosniff"
        with Client(server.port, "/chat/events") as stream:
            response = stream.until(script.encode())
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["x-content-type-options"] == "nosniff"
