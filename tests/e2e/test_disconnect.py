"""A browser that goes away is forgotten by the server at once: no stream or
held poll of it is still counted two seconds later."""

from __future__ import annotations

import time

from tests.e2e.browser import chromium, get_json, open_window, wait_until


def counts(url: str) -> dict[str, int]:
    status = get_json(f"{url}status")
    return {
        "chat.streams": status["chat"]["streams"],
        "chat.waiting": status["chat"]["waiting"],
        "ticker.streams": status["ticker"]["streams"],
    }


def test_closed_browser_is_forgotten_within_two_seconds(server):
    # A browser of its own: this test quits it.
    with chromium() as driver:
        driver.get(f"{server.url}chat?transport=eventsource")
        for page in ("chat?transport=longpoll", "stock?transport=eventsource", "stock?transport=longpoll"):
            open_window(driver, server.url + page)
        # A stream on /chat/events, a poll held on /chat/get/N, a stream on
        # /ticker and (most of the time) a poll held on /ticker.
        held = {"chat.streams": 1, "chat.waiting": 1, "ticker.streams": 2}
        wait_until(
            lambda _: all(counts(server.url)[kind] >= n for kind, n in held.items()),
            "/status never counted every page at once",
        )

        closed = time.monotonic()
        driver.quit()

    wait_until(
        lambda _: not any(counts(server.url).values()),
        "/status still counts the closed browser two seconds after it was closed",
        timeout=max(0.0, closed + 2.0 - time.monotonic()),
    )
