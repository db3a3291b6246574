"""/stock in Chromium: prices arrive over either transport, and the page says
which transport it uses and whether it is connected."""

from __future__ import annotations

import pytest

from tests.e2e.browser import assert_prices, successive_prices, text, wait_until, watch_prices

# How the page reached /ticker: one `fetch` entry per finished long poll. A
# native EventSource request never finishes, so it leaves no `fetch` entry.
TICKER_FETCHES = """
return performance.getEntriesByType('resource')
  .filter((entry) => new URL(entry.name).pathname === '/ticker' && entry.initiatorType === 'fetch')
  .length;
"""


@pytest.mark.parametrize("transport", ["eventsource", "longpoll"])
def test_prices_flow(browser, server, transport):
    browser.get(f"{server.url}stock?transport={transport}")
    watch_prices(browser)

    assert_prices(successive_prices(browser))
    assert text(browser, "#transport") == transport
    assert text(browser, "#status") == "connected"
    fetches = browser.execute_script(TICKER_FETCHES)
    if transport == "longpoll":
        assert fetches >= 3, "the long-poll page should ask /ticker once per price"
    else:
        assert fetches == 0, "the EventSource page should not poll /ticker with fetch"


def test_default_transport_is_eventsource(browser, server):
    browser.get(f"{server.url}stock")
    watch_prices(browser)

    assert_prices(successive_prices(browser))
    assert text(browser, "#transport") == "eventsource"
    assert text(browser, "#status") == "connected"
    assert browser.execute_script(TICKER_FETCHES) == 0


def test_without_eventsource_falls_back_to_longpoll(browser, server):
    # Runs before any script of every page this tab loads from now on.
    script = browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.EventSource;"})
    try:
        browser.get(f"{server.url}stock")
        assert browser.execute_script("return typeof window.EventSource") == "undefined"
        watch_prices(browser)

        assert_prices(successive_prices(browser))
        assert text(browser, "#transport") == "longpoll"
        assert text(browser, "#status") == "connected"
        assert browser.execute_script(TICKER_FETCHES) >= 3
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})


GLOBALS = "return Object.getOwnPropertyNames(window);"


@pytest.mark.parametrize("page", ["stock", "chat"])
def test_only_the_polyfill_defines_globals(browser, server, page):
    # The pages are ES modules: what they define stays in them. The polyfill
    # is a classic script, as polyfills are, with the contract's globals
    # (and its parser, which tests/js loads by name). The home page, which
    # has no script, shows what the window has anyway (the driver's own too,
    # which its first script leaves behind).
    browser.get(server.url)
    assert text(browser, "h1")
    plain = set(browser.execute_script(GLOBALS))
    browser.get(f"{server.url}{page}")
    wait_until(lambda d: text(d, "#status") == "connected", f"/{page} did not connect", driver=browser)
    assert sorted(set(browser.execute_script(GLOBALS)) - plain) == sorted(
        ["LongPollEventSource", "openEventSource", "parseEventStream", "isEventStream"]
    )
