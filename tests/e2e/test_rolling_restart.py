"""A rolling restart behind docs/nginx.conf, seen from the pages.

Two ``app.py --redis`` processes behind nginx, as docs/deployment.md sets
them up, serve a chat page and a stock page over each transport. The two
processes are restarted one after the other with SIGTERM, each started
again before the next one stops, and a message is posted while each one
drains. A reader of the pages sees nothing of it: every message shows once,
in order, no notice says the history started again or a post failed, no
page gives up, and the prices go on. (tests/process/test_rolling_restart.py
does the same with 2,000 raw streams and times the gaps.)
"""

from __future__ import annotations

import signal
import socket

from tests.client import HOST, fetch, free_port, wait_until
from tests.e2e.browser import (
    STEADY_RANDOM,
    assert_prices,
    open_page,
    states,
    successive_prices,
    text,
    texts,
    wait_for_messages,
    wait_for_status,
    watch_prices,
    watch_states,
)
from tests.e2e.conftest import SERVER_FLAGS
from tests.nginx import Nginx
from tests.server import ServerProcess

# What the runbook gives a process with another beside it: the streams it
# ends at SIGTERM come back within a second, through nginx, to the other.
# The drain is spread over 3 s here, so that posts land while it lasts.
FLAGS = (*SERVER_FLAGS, "--xheaders", "--drain-retry=1000", "--drain=3")
MODES = [("chat", "eventsource"), ("chat", "longpoll"), ("stock", "eventsource"), ("stock", "longpoll")]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def post_through(nginx: Nginx, message: str) -> int:
    return fetch(nginx.port, "/chat/post", "POST", f"message={message}".encode(), FORM)[0]


def refuses(port: int) -> bool:
    """Whether nothing listens on ``port`` (a process that has begun to drain)."""
    try:
        socket.create_connection((HOST, port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


def test_the_pages_see_nothing_of_a_rolling_restart_of_two_processes_behind_nginx(browser, redis_server):
    ports = [free_port(), free_port()]
    servers = [ServerProcess(f"--port={port}", f"--redis={redis_server.url}", *FLAGS) for port in ports]
    try:
        with Nginx(ports[0], second_app_port=ports[1]) as nginx:
            url = f"http://127.0.0.1:{nginx.port}/"
            posted = ["before the restart"]
            assert post_through(nginx, posted[0]) == 200
            windows = {mode: open_page(browser, f"{url}{mode[0]}?transport={mode[1]}", STEADY_RANDOM)
                       for mode in MODES}
            for (page, transport), window in windows.items():
                wait_for_status(browser, window, "connected", f"on /{page} over {transport}")
                if page == "chat":
                    wait_for_messages(browser, window, posted[0])
                watch_states(browser)

            for number, server in enumerate(servers):
                server.send_signal(signal.SIGTERM)
                assert wait_until(lambda: refuses(server.port), timeout=5), "the app still listens after SIGTERM"
                # Two, so that nginx's round robin sends one of them to the
                # process that no longer listens first.
                for which in ("one", "two"):
                    posted.append(f"{which} while process {number + 1} drains")
                    assert post_through(nginx, posted[-1]) == 200
                assert server.returncode is None, "the drain was over before the posts"
                assert server.wait(10) == 0, server.log()[-2000:]
                servers[number] = server.again()
            posted.append("after the restart")
            assert post_through(nginx, posted[-1]) == 200

            for (page, transport), window in windows.items():
                wait_for_status(browser, window, "connected", f"on /{page} over {transport} after the restart")
                if page == "chat":
                    # Every message once, in order, and no reset.
                    assert wait_for_messages(browser, window, posted[-1]) == posted, f"/chat over {transport}"
                    assert texts(browser, "#notices .notice") == [], f"/chat over {transport}"
                    assert text(browser, "#error") == ""
                else:
                    watch_prices(browser)
                    assert_prices(successive_prices(browser))
                shown = states(browser, "status")
                assert "closed" not in shown, f"/{page} over {transport} showed {shown}"
                assert set(states(browser, "transport")) <= {transport}, f"/{page} over {transport}"
    finally:
        for server in servers:
            server.close()
