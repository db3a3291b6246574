"""A server restarted on the same port: the pages notice it went away and
reconnect by themselves; the chat takes up where it was when its store kept
the history (the default), and says its history started again when it did
not (``--db=:memory:``)."""

from __future__ import annotations

from tests.e2e.browser import (
    MESSAGES,
    assert_prices,
    open_chat,
    open_window,
    send,
    successive_prices,
    text,
    texts,
    wait_for_messages,
    wait_for_status,
    wait_until,
    watch_prices,
)


def test_stock_reconnects_after_a_restart(browser, restartable_server):
    server = restartable_server
    browser.get(f"{server.url}stock?transport=eventsource")
    windows = [browser.current_window_handle, open_window(browser, f"{server.url}stock?transport=longpoll")]
    for window in windows:
        browser.switch_to.window(window)
        watch_prices(browser)
        successive_prices(browser)

    server.stop()
    for window in windows:
        wait_for_status(browser, window, "connecting", "while the server is down")
        watch_prices(browser)  # from here on, only prices of the new server
    server.start()

    for window in windows:
        wait_for_status(browser, window, "connected", "after the restart")
        assert_prices(successive_prices(browser))
        assert text(browser, "#status") == "connected"


def test_chat_keeps_its_history_across_a_restart_with_no_reset(browser, restartable_server):
    """The default store keeps the messages and the epoch: each page takes
    up where it was, shows every message once, and says nothing of a reset."""
    server = restartable_server
    a = open_chat(browser, server.url, "eventsource", new_window=False)
    b = open_chat(browser, server.url, "longpoll")
    send(browser, a, "before the restart")
    for window in (a, b):
        wait_for_messages(browser, window, "before the restart")

    server.stop()
    for window in (a, b):
        wait_for_status(browser, window, "connecting", "while the server is down")
    server.start()
    for window in (a, b):
        wait_for_status(browser, window, "connected", "after the restart")

    send(browser, b, "after the restart")
    for window in (a, b):
        assert wait_for_messages(browser, window, "after the restart") == ["before the restart", "after the restart"]
        assert texts(browser, "#notices .notice") == []


def test_chat_in_memory_receives_after_a_restart_and_says_it_restarted(browser, restartable_memory_server):
    server = restartable_memory_server
    a = open_chat(browser, server.url, "eventsource", new_window=False)
    b = open_chat(browser, server.url, "longpoll")
    send(browser, a, "before the restart")
    for window in (a, b):
        wait_for_messages(browser, window, "before the restart")

    server.stop()
    server.start()

    # Each page finds its cursor belongs to another history (an EventSource
    # gets a `reset` event, a long poll a 410 for its ?epoch=): the list
    # starts again, and a notice outside the list says why.
    for window in (a, b):
        browser.switch_to.window(window)
        wait_until(lambda d: texts(d, "#notices .notice"), "no reset notice after the restart", driver=browser)
        assert texts(browser, MESSAGES) == []

    send(browser, b, "after the restart")
    for window in (a, b):
        assert wait_for_messages(browser, window, "after the restart") == ["after the restart"]
        [notice] = texts(browser, "#notices .notice")
        assert "restarted" in notice
        assert text(browser, "#status") == "connected"
