"""static/js/tabs.js by itself, on a page of its own (tests/e2e/tabs_helpers.py):
one connection for many tabs, every event once in every tab across hand-overs,
both elections (Web Locks, and the localStorage lease where there are none).

The harness page draws exactly what tabs.js hands it, with no dedupe of its
own, so a duplicate or a gap here is one tabs.js made.
"""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from tests.e2e.browser import text, wait_until
from tests.e2e.tabs_helpers import HANDOVER_S, Harness, in_each, leader_of, open_tabs, roles, shown, waited_for


@pytest.fixture
def harness() -> Iterator[Harness]:
    """A harness of the test's own: a history that starts empty."""
    with Harness() as harness:
        yield harness


def all_show(driver, handles, expected: list[str], timeout: float = 1.0) -> None:
    """Waits until every tab has shown exactly ``expected``, in order."""
    waited_for(lambda: all(seen == expected for seen in in_each(driver, handles, shown)), timeout,
               lambda: f"the tabs do not all show {expected}: {in_each(driver, handles, shown)}")  # fmt: skip


def test_tabs_share_one_stream_and_hand_it_over(browser, harness):
    tabs = open_tabs(browser, [harness.page] * 4)
    leader = leader_of(browser, tabs)
    wait_until(lambda _: in_each(browser, tabs, lambda d: text(d, "#status")) == ["connected"] * 4, "not all connected")
    assert harness.streams == 1

    expected = []
    for turn in range(3):
        expected += [f"r{turn}-a", f"r{turn}-b"]
        for data in expected[-2:]:
            harness.publish(data)
        all_show(browser, tabs, expected)

        # The leader leaves; one posted while nobody holds the stream.
        opened = len(harness.opened)
        browser.switch_to.window(leader)
        browser.close()
        left = time.monotonic()
        tabs.remove(leader)
        expected.append(f"r{turn}-during")
        harness.publish(expected[-1])
        leader = leader_of(browser, tabs, timeout=HANDOVER_S)
        wait_until(lambda _: len(harness.opened) > opened, "no tab took the stream over", timeout=HANDOVER_S)
        assert harness.opened[-1][0] - left < HANDOVER_S
        all_show(browser, tabs, expected)
        assert harness.streams == 1


def test_a_frozen_leader_hands_over_and_misses_nothing(browser, harness):
    # Chrome does not freeze a tab holding a Web Lock others wait for (its
    # own freezing policy votes against it), but DevTools, chrome://discards
    # and mobile Chrome do; the leader then lets go on `freeze`.
    tabs = open_tabs(browser, [harness.page] * 3)
    leader = leader_of(browser, tabs)
    browser.switch_to.window(leader)
    browser.execute_cdp_cmd("Page.setWebLifecycleState", {"state": "frozen"})
    others = [tab for tab in tabs if tab != leader]
    leader_of(browser, others, timeout=HANDOVER_S)
    wait_until(lambda _: harness.streams == 1, "the frozen leader's stream is still open", timeout=HANDOVER_S)

    expected = ["while the leader is frozen"]
    harness.publish(expected[0])
    all_show(browser, others, expected)
    browser.switch_to.window(leader)
    browser.execute_cdp_cmd("Page.setWebLifecycleState", {"state": "active"})
    leader_of(browser, tabs)  # one leader, the two others and the resumed one follow
    assert roles(browser, [leader]) == ["follower"]
    all_show(browser, tabs, expected)
    assert harness.streams == 1


@pytest.mark.parametrize("late_ms", [100, 400, 1000])
def test_a_new_leader_resumes_after_the_old_ones_last_relay(browser, harness, late_ms):
    # The lock can reach the next tab before the old leader's last relays
    # do (the lock and the channel are separate roads); here the channel is
    # made slow so that it always does. At 100 ms the new leader hears the
    # old one's 'bye' and resumes after its last relay. Past the 250 ms
    # tabs.js waits for a 'bye' it resumes before it, the stream replays
    # that event, and every tab must skip it by its id: at 400 ms when the
    # old tab closes quickly, at 1000 ms however long it takes to close.
    tabs = open_tabs(browser, [f"{harness.page}?slow={late_ms}"] * 3)
    leader = leader_of(browser, tabs)
    expected = []
    for turn in range(2):
        expected.append(f"the last before hand-over {turn}")
        harness.publish(expected[-1])
        browser.switch_to.window(leader)
        wait_until(lambda d: shown(d)[-1:] == expected[-1:], "the leader did not get it", driver=browser)
        opened = len(harness.opened)
        browser.close()  # with the relay still on its way
        tabs.remove(leader)
        leader = leader_of(browser, tabs, timeout=HANDOVER_S)
        wait_until(lambda _: len(harness.opened) > opened, "no tab took the stream over", timeout=HANDOVER_S)
        all_show(browser, tabs, expected, timeout=1.0 + 3 * late_ms / 1000)
        assert harness.streams == 1
    # A replay relayed after the late relay comes before this one: a tab
    # that showed it twice lists it twice above this.
    expected.append("after the hand-overs")
    harness.publish(expected[-1])
    all_show(browser, tabs, expected, timeout=1.0 + 3 * late_ms / 1000)
