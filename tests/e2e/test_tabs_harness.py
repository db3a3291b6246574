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
from tests.e2e.tabs_helpers import Harness, in_each, leader_of, open_tabs, roles, shown


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    with Harness() as harness:
        yield harness


def all_show(driver, handles, expected: list[str], timeout: float = 1.0) -> None:
    """Waits until every tab has shown exactly ``expected``, in order."""

    def done(_):
        return all(seen == expected for seen in in_each(driver, handles, shown))

    wait_until(done, f"the tabs do not all show {expected}: {in_each(driver, handles, shown)}", timeout)


def test_tabs_share_one_stream_and_hand_it_over(browser, harness):
    tabs = open_tabs(browser, [harness.page] * 4)
    leader = leader_of(browser, tabs)
    wait_until(lambda _: in_each(browser, tabs, lambda d: text(d, "#status")) == ["connected"] * 4, "not all connected")
    assert harness.streams == 1

    expected = []
    for round in range(3):
        expected += [f"r{round}-a", f"r{round}-b"]
        for data in expected[-2:]:
            harness.publish(data)
        all_show(browser, tabs, expected)

        # The leader leaves; one posted while nobody holds the stream.
        opened = len(harness.opened)
        browser.switch_to.window(leader)
        browser.close()
        left = time.monotonic()
        tabs.remove(leader)
        expected.append(f"r{round}-during")
        harness.publish(expected[-1])
        leader = leader_of(browser, tabs, timeout=1.0)
        wait_until(lambda _: len(harness.opened) > opened, "no tab took the stream over", timeout=1.0)
        assert harness.opened[-1][0] - left < 1.0
        all_show(browser, tabs, expected)
        assert harness.streams == 1
