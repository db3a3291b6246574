""""On the wire" in Chromium: what a reader sees of the mechanism. A held
long poll answered the moment a message is posted; ids counting up, and
after a restart the reconnect that carries the last one; a follower tab
showing the leader's records as relayed; and a closed panel that costs the
page no DOM work."""

from __future__ import annotations

import re

import pytest

from tests.e2e.browser import (
    history, open_chat, open_window, open_wire, send, successive_prices, wait_for_status, wait_for_wire,
    wait_until, watch_prices, wire_lines,
)
from tests.e2e.tabs_helpers import leader_of, open_tab

HELD = re.compile(r"^→ GET /chat/get/(\d+)")
EVENT_ID = re.compile(r"^id: (\d+) data: ")


def held_cursor(lines: list[str]) -> tuple[int] | None:
    """(N,) when the newest line is a GET /chat/get/N not answered yet."""
    match = HELD.match(lines[0]) if lines else None
    return (int(match[1]),) if match else None


def test_a_held_poll_ends_200_when_a_message_is_posted(browser, server):
    window = open_chat(browser, server.url, "longpoll", new_window=False)
    open_wire(browser)
    [cursor] = wait_for_wire(browser, held_cursor, "no held GET /chat/get/N on top")

    send(browser, window, "answers the held poll")

    assert history(server.url)[cursor] == "answers the held poll"
    answered = re.compile(rf"^← 200 /chat/get/{cursor} · held \d+(\.\d)? m?s$")
    wait_for_wire(browser, lambda lines: any(answered.match(line) for line in lines),
                  f"no 200 for the held GET /chat/get/{cursor}")
    # The message came with it, and the next request is held in its turn.
    lines = wire_lines(browser)
    assert any(line.endswith("data: answers the held poll") for line in lines), lines
    assert held_cursor(lines) == (cursor + 1,), lines


def event_ids(lines: list[str]) -> list[int]:
    """The ids of the events among ``lines`` (newest first), oldest first."""
    return [int(match[1]) for match in map(EVENT_ID.match, reversed(lines)) if match]


@pytest.mark.parametrize("transport", ["eventsource", "longpoll"])
def test_ids_count_up_and_a_restart_resumes_from_the_last(browser, restartable_server, transport):
    server = restartable_server
    browser.get(f"{server.url}stock?transport={transport}&share=off")
    open_wire(browser)
    ids = wait_for_wire(browser, lambda lines: len(event_ids(lines)) >= 3 and event_ids(lines), "no three events")
    assert ids == sorted(ids) and len(set(ids)) == len(ids), f"the ids do not count up: {ids}"

    server.stop()
    wait_for_status(browser, browser.current_window_handle, "connecting", "while the server is down")
    last = event_ids(wire_lines(browser))[-1]
    server.start()

    wait_for_wire(browser, lambda lines: resumed_after_an_error(lines, last), f"no reconnect from id {last} after an error")
    wait_for_status(browser, browser.current_window_handle, "connected", "after the restart")


def resumed_after_an_error(lines: list[str], last: int) -> str | None:
    """The newest line that resumes from id ``last`` (a request with that
    Last-Event-ID, or the native stream's own reconnect) and is not older
    than an error: a reconnect, not the request that the restart failed."""
    resume = re.compile(rf"(Last-Event-ID: |from id ){last}$")
    for i, line in enumerate(lines):
        if resume.search(line) and any(older.startswith("✕") for older in lines[i:]):
            return line
    return None


def test_a_follower_shows_the_leaders_records_as_relayed(browser, server):
    tabs = [open_tab(browser, f"{server.url}stock", first=True), open_tab(browser, f"{server.url}stock")]
    leader = leader_of(browser, tabs)
    follower = next(tab for tab in tabs if tab != leader)
    browser.switch_to.window(follower)
    open_wire(browser)
    wait_for_wire(browser, lambda lines: sum(line.startswith("relayed") and "id: " in line for line in lines) >= 2,
                  "the follower shows no relayed events")
    assert all(line.startswith("relayed") for line in wire_lines(browser)[:2])


# Every node added inside #wire, and every element the page holds.
WATCH_WIRE = """
window.__wireAdded = 0;
new MutationObserver((records) => {
  for (const record of records) window.__wireAdded += record.addedNodes.length;
}).observe(document.getElementById('wire'), { childList: true, subtree: true, characterData: true });
"""


@pytest.mark.parametrize("transport", ["eventsource", "longpoll"])
def test_the_closed_panel_adds_no_dom_nodes_per_event(browser, server, transport):
    browser.get(f"{server.url}stock?transport={transport}&share=off")
    wait_for_status(browser, browser.current_window_handle, "connected", "on load")
    browser.execute_script(WATCH_WIRE)
    elements = browser.execute_script("return document.getElementsByTagName('*').length")
    watch_prices(browser)

    successive_prices(browser, count=5)

    assert browser.execute_script("return window.__wireAdded") == 0
    assert browser.execute_script("return document.getElementsByTagName('*').length") == elements
    # What it kept meanwhile is there when it opens.
    open_wire(browser)
    assert len(event_ids(wire_lines(browser))) >= 4
