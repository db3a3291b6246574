"""A page hidden for good (``pagehide``) closes its stream or poll at once, so
the server forgets the tab; restored from the back/forward cache
(``pageshow`` with ``persisted``), it opens them again.

The browser fires these events itself when it navigates; here the test
fires them on a page that stays open, so the server's counts show what the
page's own handlers did, not what the browser did to a page it unloaded.
"""

from __future__ import annotations

import pytest

from tests.e2e.browser import get_json, text, wait_until

FIRE = "window.dispatchEvent(new PageTransitionEvent(arguments[0], {persisted: true}));"

PAGES = [
    ("chat", "eventsource", ("chat", "streams")),
    ("chat", "longpoll", ("chat", "waiting")),
    ("stock", "eventsource", ("ticker", "streams")),
    ("stock", "longpoll", ("ticker", "streams")),
]


def held(server, counter: tuple[str, str]) -> int:
    part, name = counter
    return get_json(f"{server.url}status")[part][name]


@pytest.mark.parametrize("page, transport, counter", PAGES, ids=[f"{p}-{t}" for p, t, _ in PAGES])
def test_pagehide_closes_and_pageshow_from_the_cache_reopens(browser, server, page, transport, counter):
    browser.get(f"{server.url}{page}?transport={transport}")
    wait_until(lambda _: text(browser, "#status") == "connected", "the page never connected")
    # (A ticker poll is briefly not held between two batches: wait for a moment it is.)
    wait_until(lambda _: held(server, counter) == 1, "/status never counted the page")

    browser.execute_script(FIRE, "pagehide")
    assert text(browser, "#status") == "closed"
    wait_until(lambda _: held(server, counter) == 0, "the server still holds a request of the hidden page", timeout=2)

    browser.execute_script(FIRE, "pageshow")
    wait_until(lambda _: text(browser, "#status") == "connected", "the restored page never reconnected")
    wait_until(lambda _: held(server, counter) == 1, "the restored page opened nothing on the server")
