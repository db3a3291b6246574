"""Every page, over either transport, as axe-core sees it in Chromium: no
violation of any kind, with the "On the wire" panel closed and open. And the
changes a screen reader must announce are in polite live regions."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.e2e.browser import axe_violations, wait_until


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
        browser.find_element(By.CSS_SELECTOR, "#wire summary").click()
        wait_until(lambda d: d.execute_script("return document.getElementById('wire').open"),
                   "On the wire did not open", driver=browser)
        assert axe_violations(browser) == []


# What assistive technology gets for an element: Chromium's accessibility tree.
def live(driver, selector: str) -> str | None:
    node_id = driver.execute_cdp_cmd("DOM.querySelector", {
        "nodeId": driver.execute_cdp_cmd("DOM.getDocument", {})["root"]["nodeId"], "selector": selector,
    })["nodeId"]
    nodes = driver.execute_cdp_cmd("Accessibility.getPartialAXTree", {"nodeId": node_id, "fetchRelatives": False})
    properties = {p["name"]: p["value"].get("value") for p in nodes["nodes"][0].get("properties", [])}
    return properties.get("live")


@pytest.mark.parametrize("path, selectors", [("chat", ["#status"]), ("stock", ["#status", "#price"])])
def test_status_and_price_are_announced_politely(browser, server, path, selectors):
    browser.get(f"{server.url}{path}")
    wait_until(connected, f"/{path} did not connect", driver=browser)
    for selector in selectors:
        assert live(browser, selector) == "polite", f"{selector} is not a polite live region"
