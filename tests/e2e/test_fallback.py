"""The fallback is used when it is needed, and only then.

- Behind a buffering front end (docs/nginx.conf plus
  ``proxy_ignore_headers X-Accel-Buffering;`` and ``gzip_types
  text/event-stream;``: nginx compresses the stream and holds it back, even
  its headers) a page without ``?transport=`` finds the stream buffered twice
  and switches to long polling by itself; ``?transport=eventsource`` keeps
  trying EventSource and shows `connecting`.
- A stream that falls silent (the app paused with SIGSTOP for longer than
  two keep-alive periods) is closed and reopened by its id once the app
  resumes, with nothing lost or repeated, and without switching: a paused
  server does not answer the page's probe either, so it is no proxy.
- Without a buffering proxy, the pages never switch.

The app runs with ``--keepalive=2`` here: the page waits 2 s for a first
heartbeat and calls a stream silent after 5 s.
"""

from __future__ import annotations

import signal
import time

import pytest
from selenium.webdriver.common.by import By

from tests.e2e.browser import (
    MESSAGES,
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

KEEPALIVE = 2.0  # seconds
SWITCH_WITHIN = 20.0  # seconds from opening the page to long polling
BUFFERING = ("proxy_ignore_headers X-Accel-Buffering;", "gzip_types text/event-stream;")
FALLBACK_KEY = "return sessionStorage.getItem('comet.fallback:' + arguments[0]);"


@pytest.fixture
def app(spawn):
    return spawn(f"--keepalive={KEEPALIVE}")


@pytest.fixture
def buffering(app):
    """The app behind an nginx that buffers (and compresses) its streams."""
    with Nginx(app.port, location=BUFFERING) as nginx:
        yield f"http://127.0.0.1:{nginx.port}/"


def wait_for_transport(driver, transport: str, why: str, timeout: float) -> None:
    wait_until(lambda d: text(d, "#transport") == transport, f"#transport is not {transport!r} {why}", timeout, driver)


def test_stock_behind_a_buffering_proxy_switches_to_long_polling(browser, buffering):
    opened = time.monotonic()
    window = open_page(browser, f"{buffering}stock")
    assert text(browser, "#transport") == "eventsource"
    watch_states(browser)

    wait_for_transport(browser, "longpoll", "behind the buffering proxy", opened + SWITCH_WITHIN - time.monotonic())
    watch_prices(browser)
    assert_prices(successive_prices(browser))
    assert text(browser, "#status") == "connected"
    assert "long polling" in text(browser, "#connection-notice")

    # For the rest of the session: a reload starts on the fallback and says why.
    assert browser.execute_script(FALLBACK_KEY, "/ticker") == "longpoll"
    browser.refresh()
    assert text(browser, "#transport") == "longpoll"
    wait_for_status(browser, window, "connected", "after a reload in the same session")
    assert "earlier in this session" in text(browser, "#connection-notice")

    # A later visit (this tab closed, a new one opened: a new session)
    # tries EventSource again.
    browser.close()
    browser.switch_to.window(browser.window_handles[0])
    open_page(browser, f"{buffering}stock")
    assert browser.execute_script(FALLBACK_KEY, "/ticker") is None
    assert text(browser, "#transport") == "eventsource"


def test_chat_behind_a_buffering_proxy_switches_and_a_post_shows_once(browser, buffering, app):
    opened = time.monotonic()
    window = open_page(browser, f"{buffering}chat")

    wait_for_transport(browser, "longpoll", "behind the buffering proxy", opened + SWITCH_WITHIN - time.monotonic())
    wait_for_status(browser, window, "connected", "on the fallback")
    field = browser.find_element(By.ID, "message")
    field.send_keys("through the fallback")
    browser.find_element(By.ID, "send").click()
    wait_until(lambda _: field.get_property("value") == "", "the post was not accepted", driver=browser)

    assert wait_for_messages(browser, window, "through the fallback") == ["through the fallback"]
    assert app.status()["chat"]["messages"] == 1


def test_a_page_pinned_to_eventsource_keeps_trying_it_and_shows_connecting(browser, buffering, app):
    window = open_page(browser, f"{buffering}stock?transport=eventsource")
    watch_states(browser)

    # Three attempts held back, each given up: long enough to have switched.
    wait_until(
        lambda _: app.log().count("HEAD /stock") >= 3,
        "the page did not find the stream buffered three times",
        timeout=SWITCH_WITHIN,
    )
    browser.switch_to.window(window)
    assert text(browser, "#transport") == "eventsource"
    assert text(browser, "#status") == "connecting"
    assert set(states(browser, "status")) <= {"connecting"}
    assert set(states(browser, "transport")) <= {"eventsource"}
    assert browser.execute_script(FALLBACK_KEY, "/ticker") is None


# Counts in window.__probed the page's probes ("does the server answer a
# plain request?", a HEAD of the page) that have come back or timed out.
COUNT_PROBES = """
const fetchAsIs = window.fetch;
window.__probed = 0;
window.fetch = (resource, init = {}) => {
  const answer = fetchAsIs(resource, init);
  if (init.method === 'HEAD') answer.finally(() => { window.__probed += 1; }).catch(() => {});
  return answer;
};
"""


def probed(driver, window: str) -> int:
    driver.switch_to.window(window)
    return driver.execute_script("return window.__probed;")


def test_a_silent_stream_is_reopened_by_its_id_after_a_pause(browser, app):
    assert app.post("before the pause")[0] == 200
    stock = open_page(browser, f"{app.url}stock", COUNT_PROBES)
    watch_prices(browser)
    successive_prices(browser)
    chat = open_page(browser, f"{app.url}chat", COUNT_PROBES)
    wait_for_messages(browser, chat, "before the pause")
    for window in (stock, chat):
        wait_for_status(browser, window, "connected", "before the pause")
        watch_states(browser)

    app.send_signal(signal.SIGSTOP)
    try:
        paused = time.monotonic()
        for window in (stock, chat):
            # Silent for more than two keep-alive periods: 5 s, plus slack.
            wait_for_status(browser, window, "connecting", "while the app is paused", timeout=4 * KEEPALIVE + 2)
        assert time.monotonic() - paused > 2 * KEEPALIVE
        # Its reopened stream showed nothing in time, twice, and neither did
        # the probes: a page that took that for buffering would switch now.
        wait_until(lambda _: min(probed(browser, w) for w in (stock, chat)) >= 2, "the pages did not probe twice",
                   timeout=30)
        # Posted while paused: the app takes it when it resumes.
        browser.switch_to.window(chat)
        browser.find_element(By.ID, "message").send_keys("during the pause")
        browser.find_element(By.ID, "send").click()
    finally:
        app.send_signal(signal.SIGCONT)

    for window in (stock, chat):
        wait_for_status(browser, window, "connected", "after the app resumed", timeout=20)
    field = browser.find_element(By.ID, "message")
    wait_until(lambda _: field.get_property("value") == "", "the post from the pause was not accepted", driver=browser)
    assert app.post("after the pause")[0] == 200
    assert wait_for_messages(browser, chat, "after the pause") == ["before the pause", "during the pause", "after the pause"]
    assert texts(browser, "#notices .notice") == []

    browser.switch_to.window(stock)
    watch_prices(browser)
    assert_prices(successive_prices(browser))
    for window in (stock, chat):
        browser.switch_to.window(window)
        assert text(browser, "#transport") == "eventsource", "a paused server is not a buffering proxy"
        assert states(browser, "transport") == []


@pytest.mark.parametrize("proxied", [False, True], ids=["direct", "nginx"])
def test_without_a_buffering_proxy_the_pages_never_switch(browser, app, proxied):
    if proxied:
        nginx = Nginx(app.port)
        url = f"http://127.0.0.1:{nginx.port}/"
    else:
        nginx, url = None, app.url
    try:
        windows = [open_page(browser, f"{url}stock"), open_page(browser, f"{url}chat")]
        for window in windows:
            wait_for_status(browser, window, "connected", "at first")
            watch_states(browser)

        # Nothing should happen, so there is nothing to wait for: four
        # keep-alive periods, in which the idle chat stream lives on heartbeats.
        time.sleep(4 * KEEPALIVE)

        for window in windows:
            browser.switch_to.window(window)
            assert text(browser, "#transport") == "eventsource"
            assert states(browser, "transport") == []
            assert states(browser, "status") == [], "the stream was reopened"
            assert text(browser, "#connection-notice") == ""
        assert texts(browser, MESSAGES) == []
    finally:
        if nginx is not None:
            nginx.close()
