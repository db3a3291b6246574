"""The pictures in docs/, taken from the real pages in headless Chromium.

    make screenshots        (python -m tests.e2e.screenshots)

Starts the server on a free port, puts two messages in the chat (one from
each window, over each transport), lets the ticker fill its chart, and saves
docs/index.png, docs/chat.png and docs/stock.png. Not part of `make test`.
"""

from __future__ import annotations

import os
import signal

from tests.e2e.browser import chromium, open_chat, send, successive_prices, wait_for_messages, watch_prices
from tests.server import ROOT, ServerProcess

DOCS = os.path.join(ROOT, "docs")
CONVERSATION = (
    "Is the ticker moving for you too?",
    "Yes! And this window is on long polling: ?transport=longpoll.",
)
PRICES_ON_THE_CHART = 60  # the whole width of the chart


def main() -> None:
    os.makedirs(DOCS, exist_ok=True)
    with ServerProcess("--tick-interval=0.1") as server, chromium() as driver:
        driver.get(server.url)
        save(driver, "index.png")

        asking = open_chat(driver, server.url, "eventsource", new_window=False)
        answering = open_chat(driver, server.url, "longpoll")
        send(driver, asking, CONVERSATION[0])
        wait_for_messages(driver, answering, CONVERSATION[0])
        send(driver, answering, CONVERSATION[1])
        wait_for_messages(driver, asking, *CONVERSATION)
        driver.switch_to.window(answering)
        driver.close()
        driver.switch_to.window(asking)
        save(driver, "chat.png")

        driver.get(f"{server.url}stock")
        watch_prices(driver)
        successive_prices(driver, count=PRICES_ON_THE_CHART)
        save(driver, "stock.png")

        server.stop(signal.SIGTERM)


def save(driver, name: str) -> None:
    path = os.path.join(DOCS, name)
    if not driver.save_screenshot(path):
        raise RuntimeError(f"Chromium did not save {path}")
    print(os.path.relpath(path, ROOT))


if __name__ == "__main__":
    main()
