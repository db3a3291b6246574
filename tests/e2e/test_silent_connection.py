"""Long polling through a connection that goes silent without closing (a
laptop waking from sleep, a phone changing networks, a NAT that forgot the
mapping), made by a proxy of the test's own (tests/e2e/silent.py) that
swallows one request and then forwards nothing on its connection, for ever.

A held poll is answered within the server's --poll-timeout; the pages give
up one unanswered past that plus a margin, show `connecting`, and ask again
by the same id on another connection. Without that watch, the pages would
wait on the silent connection for as long as the test runs.
"""

from __future__ import annotations

import time

import pytest
from selenium.webdriver.common.by import By

from tests.e2e.browser import (
    MESSAGES,
    open_page,
    states,
    text,
    texts,
    wait_for_messages,
    wait_for_status,
    wait_until,
    watch_prices,
    watch_states,
)
from tests.e2e.silent import SilentProxy
from tests.e2e.tabs_helpers import post

HOLD = 5.0  # seconds: the server's --poll-timeout (tests/e2e/conftest.py)
MARGIN = 5.0  # seconds the page adds for the network (static/js/page.js)
RETRY = 2.5  # the longest wait to ask again: the ticker's retry: (500 ms + up to 2 s), the chat's first backoff (1 s)
SLACK = 3.0  # the next request's round trip and this test's polling, on a busy machine
RECOVERED = HOLD + MARGIN + RETRY + SLACK  # seconds from the silenced request to the page live again


@pytest.fixture
def silent(spawn):
    with SilentProxy(spawn().port) as proxy:
        yield proxy


def silenced_at(proxy: SilentProxy, prefix: str) -> float:
    """When the proxy silenced the request starting with ``prefix``."""
    wait_until(lambda _: any(line.startswith(prefix) for _, line in proxy.silenced), f"no {prefix!r} was silenced")
    return next(at for at, line in proxy.silenced if line.startswith(prefix))


def test_held_polls_on_a_silent_connection_are_given_up_and_asked_again(browser, silent):
    app = f"http://127.0.0.1:{silent.upstream}/"
    chat = open_page(browser, f"{silent.url}chat?transport=longpoll&share=off")
    wait_for_status(browser, chat, "connected", "through the proxy")
    post(app, "before")
    wait_for_messages(browser, chat, "before")
    watch_states(browser)
    stock = open_page(browser, f"{silent.url}stock?transport=longpoll&share=off")
    wait_for_status(browser, stock, "connected", "through the proxy")
    watch_states(browser)
    watch_prices(browser)

    # The next poll of each page goes down a connection that falls silent:
    # the chat's after "during 1" answers the one it holds now.
    silent.silence_next(b"GET /chat/get/", b"GET /ticker")
    post(app, "during 1")
    chat_silenced = silenced_at(silent, "GET /chat/get/")
    stock_silenced = silenced_at(silent, "GET /ticker")
    post(app, "during 2")
    post(app, "during 3")

    browser.switch_to.window(stock)
    prices_before = len(browser.execute_script("return window.__prices"))
    wait_until(lambda d: len(d.execute_script("return window.__prices")) >= prices_before + 2,
               "the stock page did not move again", stock_silenced + RECOVERED - time.monotonic(), browser)  # fmt: skip
    assert "connecting" in states(browser, "status"), "the stock page showed connected while it waited in vain"
    assert text(browser, "#status") == "connected"

    browser.switch_to.window(chat)
    wait_until(lambda d: texts(d, MESSAGES)[-1:] == ["during 3"], "the chat did not show the messages",
               chat_silenced + RECOVERED - time.monotonic(), browser)  # fmt: skip
    assert texts(browser, MESSAGES) == ["before", "during 1", "during 2", "during 3"]
    assert "connecting" in states(browser, "status"), "the chat showed connected while it waited in vain"
    wait_for_status(browser, chat, "connected", "after asking again")
    for window in (chat, stock):
        browser.switch_to.window(window)
        assert "closed" not in states(browser, "status")


POST_TIMEOUT = 10.0  # seconds the chat gives a post (static/js/chat.js)


def test_a_post_on_a_silent_connection_is_given_up_and_sent_again_once(browser, silent):
    chat = open_page(browser, f"{silent.url}chat?share=off")
    wait_for_status(browser, chat, "connected", "through the proxy")
    silent.silence_next(b"POST /chat/post")
    field = browser.find_element(By.ID, "message")
    field.send_keys("into the silence")

    browser.find_element(By.ID, "send").click()
    error = wait_until(lambda d: text(d, "#error"), "the page never said the post failed",
                       POST_TIMEOUT + SLACK, browser)  # fmt: skip
    assert "did not answer within 10 s" in error and "still in the box" in error
    assert field.get_property("value") == "into the silence"
    assert silent.silenced[0][1].startswith("POST /chat/post")

    # Sent again, it goes on another connection; the swallowed one never
    # reached the app, so the message shows once.
    browser.find_element(By.ID, "send").click()
    wait_for_messages(browser, chat, "into the silence")
    assert texts(browser, MESSAGES) == ["into the silence"]
    assert text(browser, "#error") == ""
