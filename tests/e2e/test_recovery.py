"""Pages never give up: behind docs/nginx.conf the app stops for five seconds
and starts again on the same port, a page is refused at --max-clients, a
post gets no answer. Each page shows `connecting` meanwhile (never
`closed`), comes back by itself, and the chat loses and repeats nothing,
across the restart too (the epoch).

While the app is away nginx answers 502, which a native EventSource and
LongPollEventSource treat as final: only the page helper's backoff brings
them back. The pages here run with their random source at the middle
(STEADY_RANDOM), so each backoff wait is half its window and the recovery
time is known; the jitter itself is tested in tests/js/recovery.test.mjs.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.e2e.browser import (
    MESSAGES,
    STEADY_RANDOM,
    assert_prices,
    open_page,
    states,
    successive_prices,
    text,
    texts,
    wait_for_messages,
    wait_for_status,
    wait_until,
    watch_prices,
    watch_states,
)
from tests.nginx import Nginx
from tests.server import ServerProcess

OUTAGE = 5.0  # seconds the app is away
RECOVERY = 20.0  # seconds a page may take to be live again once the app is back

MODES = [("stock", "eventsource"), ("stock", "longpoll"), ("chat", "eventsource"), ("chat", "longpoll")]


def test_every_page_recovers_from_an_outage_behind_nginx(browser, restartable_server):
    server = restartable_server
    with Nginx(server.process.port) as nginx:
        url = f"http://127.0.0.1:{nginx.port}/"
        assert server.process.post("before the restart")[0] == 200
        windows = {mode: open_page(browser, f"{url}{mode[0]}?transport={mode[1]}", STEADY_RANDOM) for mode in MODES}
        for (page, transport), window in windows.items():
            wait_for_status(browser, window, "connected", f"on /{page} over {transport}")
            if page == "chat":
                assert wait_for_messages(browser, window, "before the restart") == ["before the restart"]
            else:
                watch_prices(browser)
                successive_prices(browser)
            watch_states(browser)

        stopped = time.monotonic()
        server.stop()
        for (page, transport), window in windows.items():
            wait_for_status(browser, window, "connecting", f"on /{page} over {transport} while the app is away")
        time.sleep(max(0.0, stopped + OUTAGE - time.monotonic()))  # the outage itself
        server.start()
        restarted = time.monotonic()
        # Message 0 of the new history, while the pages still hold cursor 1
        # of the old one: without the epoch /chat/get/1 would wait past it.
        assert server.process.post("after the restart")[0] == 200

        for (page, transport), window in windows.items():
            why = f"on /{page} over {transport} {RECOVERY} s after the restart"
            wait_for_status(browser, window, "connected", why, timeout=restarted + RECOVERY - time.monotonic())
            if page == "chat":
                wait_for_messages(browser, window, "after the restart")
                assert texts(browser, "#notices .notice"), "no notice that the history restarted"
            else:
                watch_prices(browser)
                assert_prices(successive_prices(browser))
        for (page, transport), window in windows.items():
            browser.switch_to.window(window)
            if page == "chat":
                # Exactly once, and nothing of the old history.
                assert texts(browser, MESSAGES) == ["after the restart"], f"/chat over {transport}"
            shown = states(browser, "status")
            assert "closed" not in shown, f"/{page} over {transport} showed {shown}"
            assert set(states(browser, "transport")) <= {transport}


def refused_then_live(browser, server: ServerProcess, page: str, transport: str) -> None:
    """With the one slot of --max-clients=1 taken by another page, /PAGE
    over TRANSPORT is refused (503 with Retry-After), shows `connecting`,
    and is live once the other page leaves."""
    holder = open_page(browser, f"{server.url}stock?transport=eventsource&share=off")
    wait_for_status(browser, holder, "connected", "on the page holding the one slot")

    refused = open_page(browser, f"{server.url}{page}?transport={transport}&share=off", STEADY_RANDOM)
    watch_states(browser)
    wait_until(lambda _: server.log().count(" 503 ") >= 2, "the second page was not refused twice")
    assert text(browser, "#status") == "connecting"
    assert server.status()["ticker"]["streams"] == 1

    browser.switch_to.window(holder)
    browser.close()
    wait_for_status(browser, refused, "connected", "once the slot was free", timeout=20)
    if page == "stock":
        watch_prices(browser)
        assert_prices(successive_prices(browser))
    assert "closed" not in states(browser, "status")


@pytest.mark.parametrize("page, transport", [("stock", "eventsource"), ("stock", "longpoll"), ("chat", "eventsource")])
def test_a_page_refused_at_max_clients_goes_live_once_a_slot_frees(browser, spawn, page, transport):
    refused_then_live(browser, spawn("--max-clients=1"), page, transport)


POST_TIMEOUT = 1.5  # seconds, set on the form in place of the page's 10


def test_a_post_without_an_answer_is_given_up_and_the_text_stays(browser, spawn):
    server = spawn()
    window = open_page(browser, f"{server.url}chat?share=off")
    wait_for_status(browser, window, "connected", "before the post")
    browser.execute_script("document.getElementById('post-form').dataset.timeout = arguments[0];",
                           str(int(POST_TIMEOUT * 1000)))
    field = browser.find_element("id", "message")
    field.send_keys("never answered")

    server.send_signal(signal.SIGSTOP)
    try:
        sent = time.monotonic()
        browser.find_element("id", "send").click()
        error = wait_until(lambda d: text(d, "#error"), "the page never said the post failed", driver=browser)
        waited = time.monotonic() - sent
    finally:
        server.send_signal(signal.SIGCONT)

    assert "did not answer within 1.5 s" in error
    assert "still in the box" in error
    assert POST_TIMEOUT - 0.1 <= waited < POST_TIMEOUT + 3
    assert field.get_property("value") == "never answered"
    assert browser.find_element("id", "send").is_enabled()
