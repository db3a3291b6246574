"""/chat in Chromium: two windows talk to each other over either transport,
messages stay in order, and a message is only ever text."""

from __future__ import annotations

import pytest

from tests.e2e.browser import MESSAGES, history, open_chat, send, texts, wait_for_messages


@pytest.mark.parametrize(
    "transport_a, transport_b",
    [("eventsource", "eventsource"), ("longpoll", "longpoll"), ("eventsource", "longpoll")],
)
def test_two_windows_talk_both_ways(browser, server, transport_a, transport_b):
    a = open_chat(browser, server.url, transport_a, new_window=False)
    b = open_chat(browser, server.url, transport_b)
    tag = f"{transport_a}/{transport_b}"

    send(browser, a, f"{tag}: hello from A")
    for window in (b, a):
        wait_for_messages(browser, window, f"{tag}: hello from A")

    replies = [f"{tag}: reply {n} from B" for n in (1, 2, 3)]
    for reply in replies:
        send(browser, b, reply)
    for window in (a, b):
        wait_for_messages(browser, window, f"{tag}: hello from A", *replies)

    # Oldest first, each message once: both windows show the server's history.
    kept = history(server.url)
    for window in (a, b):
        browser.switch_to.window(window)
        assert texts(browser, MESSAGES) == kept


def test_enter_sends(browser, server):
    window = open_chat(browser, server.url, "eventsource", new_window=False)

    send(browser, window, "sent with Enter", enter=True)

    wait_for_messages(browser, window, "sent with Enter")
    assert history(server.url)[-1] == "sent with Enter"


XSS = "<img src=x onerror=window.__xss=1>"


def test_message_is_text_never_html(browser, server):
    a = open_chat(browser, server.url, "eventsource", new_window=False)
    b = open_chat(browser, server.url, "longpoll")

    send(browser, a, XSS)

    for window in (a, b):
        wait_for_messages(browser, window, XSS)
        assert browser.execute_script("return document.querySelectorAll('#messages img').length") == 0
        assert browser.execute_script("return typeof window.__xss") == "undefined"
