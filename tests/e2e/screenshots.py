"""The pictures in docs/, taken from the real pages in headless Chromium.

    make screenshots        (python -m tests.e2e.screenshots)

Starts the server on a free port, puts two messages in the chat (one from
each window, over each transport), lets the ticker fill its chart, and saves
docs/index.png, docs/chat.png (the long-polling window) and docs/stock.png,
each page whole, with "On the wire" open: the chat's shows a poll held to
the end of --poll-timeout (204) before the messages came. Not part of `make test`.
"""

from __future__ import annotations

import base64
import os
import signal

from tests.e2e.browser import (
    chromium, open_chat, open_wire, send, successive_prices, wait_for_messages, wait_for_wire, watch_prices,
    wire_lines,
)
from tests.server import ROOT, ServerProcess

DOCS = os.path.join(ROOT, "docs")
CONVERSATION = (
    "Is the ticker moving for you too?",
    "Yes! And this window is on long polling: ?transport=longpoll.",
)
PRICES_ON_THE_CHART = 60  # the whole width of the chart


def main() -> None:
    os.makedirs(DOCS, exist_ok=True)
    # Polls held 2 s at most, so the chat's panel shows a 204 and a re-ask.
    with ServerProcess("--tick-interval=0.1", "--poll-timeout=2") as server, chromium() as driver:
        driver.get(server.url)
        save(driver, "index.png")

        asking = open_chat(driver, server.url, "eventsource", new_window=False)
        answering = open_chat(driver, server.url, "longpoll")
        open_wire(driver)
        wait_for_wire(driver, lambda lines: any(line.startswith("← 204") for line in lines), "no poll held to its end")
        send(driver, asking, CONVERSATION[0])
        wait_for_messages(driver, answering, CONVERSATION[0])
        send(driver, answering, CONVERSATION[1])
        wait_for_messages(driver, asking, *CONVERSATION)
        driver.switch_to.window(answering)
        wait_for_messages(driver, answering, *CONVERSATION)
        driver.switch_to.window(asking)
        driver.close()
        driver.switch_to.window(answering)
        save(driver, "chat.png")

        driver.get(f"{server.url}stock")
        open_wire(driver)
        watch_prices(driver)
        successive_prices(driver, count=PRICES_ON_THE_CHART)
        assert wire_lines(driver), "On the wire shows nothing on /stock"
        save(driver, "stock.png")

        server.stop(signal.SIGTERM)


def save(driver, name: str) -> None:
    """The whole page, not just the window, as docs/NAME."""
    path = os.path.join(DOCS, name)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    with open(path, "wb") as picture:
        picture.write(base64.b64decode(shot["data"]))
    print(os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main()
