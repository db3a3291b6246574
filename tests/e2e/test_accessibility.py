"""Every page, over either transport, as axe-core sees it in Chromium: no
violation of any kind, with the "On the wire" panel closed and open. And the
changes a screen reader must announce are in polite live regions."""

from __future__ import annotations

import pytest

from tests.e2e.browser import axe_violations, open_wire, wait_until


def connected(driver) -> bool:
    return driver.execute_script("return document.getElementById('status').textContent") == "connected"


@pytest.mark.parametrize("path", ["", "chat", "stock"])
@pytest.mark.parametrize("transport", ["eventsource", "longpoll"])
def test_axe_finds_no_violation(browser, server, path, transport):
    browser.get(f"{server.url}{path}?transport={transport}")
    if path:
        wait_until(connected, f"/{path} over {transport} did not connect", driver=browser)
    assert axe_violations(browser) == []

    if path:
        open_wire(browser)
        assert axe_violations(browser) == []


# What assistive technology gets for an element: its node in Chromium's
# accessibility tree, as (role, live).
def announced(driver, selector: str) -> tuple[str, str | None]:
    root = driver.execute_cdp_cmd("DOM.getDocument", {})["root"]["nodeId"]
    node_id = driver.execute_cdp_cmd("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    node = driver.execute_cdp_cmd("Accessibility.getPartialAXTree", {"nodeId": node_id, "fetchRelatives": False})["nodes"][0]
    properties = {p["name"]: p["value"].get("value") for p in node.get("properties", [])}
    return node["role"]["value"], properties.get("live")


@pytest.mark.parametrize("path", ["chat", "stock"])
def test_changes_are_announced_politely(browser, server, path):
    browser.get(f"{server.url}{path}")
    wait_until(connected, f"/{path} did not connect", driver=browser)
    assert announced(browser, "#status")[1] == "polite", "#status is not a polite live region"
    if path == "stock":
        assert announced(browser, "#price")[1] == "polite", "#price is not a polite live region"
    else:
        assert announced(browser, "#messages") == ("log", "polite"), "#messages is not a polite log"
