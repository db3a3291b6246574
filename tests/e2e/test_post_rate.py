"""/chat in Chromium when the server refuses a post for coming too fast
(429, docs/protocol.md section 7): the typed text stays in the box, the
page says when to try again (Retry-After), and nothing is stored."""

from __future__ import annotations

from selenium.webdriver.common.by import By

from tests.e2e.browser import history, open_chat, send, text, wait_for_messages, wait_until


def test_a_post_refused_for_its_rate_keeps_the_text_and_says_when_to_try_again(browser, spawn):
    # One post, then one every 10 s: the second in a row is refused with Retry-After: 10.
    server = spawn("--post-rate=0.1", "--post-burst=1")
    window = open_chat(browser, server.url, "eventsource", new_window=False)
    send(browser, window, "first")
    wait_for_messages(browser, window, "first")

    field = browser.find_element(By.ID, "message")
    field.send_keys("second, too soon")
    browser.find_element(By.ID, "send").click()

    wait_until(lambda d: "try again" in text(d, "#error"), "the page did not say the post was refused", driver=browser)
    assert text(browser, "#error") == (
        "Too many messages in a row: try again in 10 s. The message is still in the box.")
    assert field.get_property("value") == "second, too soon"
    assert history(server.url) == ["first"]
