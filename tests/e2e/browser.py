"""A real Chromium for the end-to-end tests, and the few things they ask it.

Selenium drives Debian's ``chromium`` through Debian's ``chromium-driver``
(``make system-deps`` installs both). The driver's path is given to Selenium
explicitly, so it never looks for, or downloads, a driver of its own.
``CHROMIUM`` and ``CHROMEDRIVER`` point elsewhere when set.

``tests/e2e/screenshots.py`` uses the same browser, so this is a plain module
rather than fixtures.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import urllib.request
from typing import Callable, Iterator, TypeVar

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.client import PRICE

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")

# Headless, in a container, and quiet: nothing fetched from the internet
# (no component updates, sync or background requests), no QUIC, no GPU.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--window-size=1200,900",
)

# Every wait is for a condition, bounded by this many seconds unless a test
# says otherwise; polled this often.
TIMEOUT = 10.0
POLL = 0.05

T = TypeVar("T")


class BrowserMissing(RuntimeError):
    """Chromium or its driver is not installed where we were told to look."""


@contextlib.contextmanager
def chromium(*extra_flags: str) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh, temporary profile, quit on exit;
    ``extra_flags`` are added to FLAGS (a host-resolver rule, a certificate
    it may accept)."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            raise BrowserMissing(
                f"{path} is missing: run `make system-deps` (Debian package {package}), "
                "or point CHROMIUM / CHROMEDRIVER at an installed one"
            )
    profile = tempfile.mkdtemp(prefix="e2e-chromium-")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS + extra_flags:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        try:
            yield driver
        finally:
            quit_quietly(driver)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def quit_quietly(driver: webdriver.Chrome) -> None:
    """``driver.quit()``, also when a test has already quit it."""
    with contextlib.suppress(WebDriverException, OSError):
        driver.quit()


def wait_until(condition: Callable[[object], T], message: str, timeout: float = TIMEOUT, driver=None) -> T:
    """The first truthy value of ``condition(driver)`` within ``timeout`` s.

    Without a driver it waits on anything else, such as the server's
    ``/status``: ``condition`` then gets ``None``.
    """
    return WebDriverWait(driver, timeout, poll_frequency=POLL).until(condition, message)


def text(driver: webdriver.Chrome, selector: str) -> str:
    """An element's ``textContent``: exactly what the page put there."""
    return driver.execute_script(
        "const element = document.querySelector(arguments[0]);"
        "return element === null ? null : element.textContent;",
        selector,
    )


def texts(driver: webdriver.Chrome, selector: str) -> list[str]:
    """The ``textContent`` of every element ``selector`` matches, in order."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), (e) => e.textContent);", selector
    )


def open_window(driver: webdriver.Chrome, url: str) -> str:
    """Open ``url`` in a new browser window; returns its handle (now current)."""
    return open_page(driver, url)


def open_page(driver: webdriver.Chrome, url: str, *scripts: str) -> str:
    """Open ``url`` in a new window whose documents first run ``scripts``
    (before any script of their own); returns the window's handle. A new
    window also starts with empty sessionStorage."""
    driver.switch_to.new_window("window")
    for source in scripts:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": source})
    driver.get(url)
    return driver.current_window_handle


# For open_page(): the page's random source always at the middle, so the
# backoff waits exactly half of each window (0.5, 1, 2, 4 ... s) and a
# recovery takes a known time. The jitter itself is tested in
# tests/js/recovery.test.mjs.
STEADY_RANDOM = "Math.random = () => 0.5;"


def close_extra_windows(driver: webdriver.Chrome) -> None:
    """Back to one blank window: every page a test opened is gone, and with
    it every stream and poll it held (the pages close them on ``pagehide``)."""
    first, *others = driver.window_handles
    for handle in others:
        driver.switch_to.window(handle)
        driver.close()
    driver.switch_to.window(first)
    driver.get("about:blank")


def get_json(url: str) -> dict:
    """GET ``url`` from the server under test, as JSON."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def wait_for_status(driver, window: str, state: str, why: str, timeout: float = TIMEOUT) -> None:
    """Waits until ``window``'s #status reads ``state``."""
    driver.switch_to.window(window)
    wait_until(lambda d: text(d, "#status") == state, f"#status is not {state!r} {why}", timeout, driver)


# Every text #status, #transport and #role show from now on, in order, as
# [element id, text] pairs in window.__states.
WATCH_STATES = """
window.__states = [];
for (const id of ['status', 'transport', 'role']) {
  const element = document.getElementById(id);
  new MutationObserver(() => window.__states.push([id, element.textContent]))
    .observe(element, { childList: true, characterData: true, subtree: true });
}
"""


def watch_states(driver) -> None:
    """Start recording what #status, #transport and #role show."""
    driver.execute_script(WATCH_STATES)


def states(driver, element_id: str) -> list[str]:
    """What #``element_id`` showed since ``watch_states()``, in order."""
    return [value for id_, value in driver.execute_script("return window.__states") or [] if id_ == element_id]


# --- /stock ------------------------------------------------------------

# Every text #price shows from now on, in order, as the page writes it.
WATCH_PRICES = """
window.__prices = [];
const price = document.getElementById('price');
new MutationObserver(() => window.__prices.push(price.textContent))
  .observe(price, { childList: true, characterData: true, subtree: true });
"""


def watch_prices(driver) -> None:
    """Start recording what #price shows (in ``window.__prices``)."""
    driver.execute_script(WATCH_PRICES)


def successive_prices(driver, count: int = 3) -> list[str]:
    """Waits until #price has shown ``count`` prices, each different from
    the one before it, since ``watch_prices()``; returns them."""

    def changes(driver):
        shown = driver.execute_script("return window.__prices") or []
        successive = [price for i, price in enumerate(shown) if i == 0 or price != shown[i - 1]]
        return successive if len(successive) >= count else None

    return wait_until(changes, f"#price did not show {count} successive different prices", driver=driver)


def assert_prices(prices: list[str]) -> None:
    """Each one a price as the ticker sends it: two decimals, above 0."""
    for price in prices:
        assert PRICE.match(price) and float(price) > 0, f"#price shows {price!r}, not a price"


# --- /chat -------------------------------------------------------------

MESSAGES = "#messages > *"


def open_chat(driver, url: str, transport: str, new_window: bool = True) -> str:
    """/chat?transport=... in a new window (or the current one), connected;
    returns the window's handle."""
    if new_window:
        open_window(driver, f"{url}chat?transport={transport}")
    else:
        driver.get(f"{url}chat?transport={transport}")
    assert text(driver, "#transport") == transport
    wait_until(lambda d: text(d, "#status") == "connected", f"/chat over {transport} did not connect", driver=driver)
    return driver.current_window_handle


def send(driver, window: str, message: str, enter: bool = False) -> None:
    """Type ``message`` in #message and send it with #send (or Enter); waits
    until the page has it accepted, which it shows by emptying the field."""
    driver.switch_to.window(window)
    field = driver.find_element(By.ID, "message")
    field.send_keys(message)
    if enter:
        field.send_keys(Keys.ENTER)
    else:
        driver.find_element(By.ID, "send").click()
    wait_until(lambda d: field.get_property("value") == "", f"{message!r} was not sent", driver=driver)
    assert text(driver, "#error") == ""


def wait_for_messages(driver, window: str, *expected: str) -> list[str]:
    """Waits until the last children of #messages are ``expected``, in order;
    returns every child's text."""
    driver.switch_to.window(window)

    def arrived(driver):
        shown = texts(driver, MESSAGES)
        return shown if shown[-len(expected):] == list(expected) else None

    return wait_until(arrived, f"#messages does not end with {expected!r}", driver=driver)


def history(url: str) -> list[str]:
    """Every message the server has, oldest first (GET /chat/since/FIRST)."""
    first = get_json(f"{url}status")["chat"]["first"]
    return get_json(f"{url}chat/since/{first}")["messages"]


# --- Accessibility -----------------------------------------------------

# axe-core from node_modules (package.json pins it; `make test` installs it
# with `npm ci`), never from a CDN. It is injected with execute_script, so
# the page's Content-Security-Policy (script-src 'self') does not stop it.
AXE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                   "node_modules", "axe-core", "axe.min.js")

RUN_AXE = """
const done = arguments[arguments.length - 1];
axe.run(document, { resultTypes: ['violations'] })
  .then((results) => done(results.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    targets: v.nodes.map((node) => node.target.join(' ')),
  }))))
  .catch((error) => done([{ id: 'axe-error', impact: 'critical', help: String(error), targets: [] }]));
"""


def axe_violations(driver: webdriver.Chrome) -> list[str]:
    """What axe-core finds wrong with the page as it is now, one line each
    (rule, impact, what it asks, where); empty when nothing."""
    if not os.path.exists(AXE):
        raise BrowserMissing(f"{AXE} is missing: run `npm ci` (make test does)")
    with open(AXE, encoding="utf-8") as source:
        driver.execute_script(source.read())
    driver.set_script_timeout(30)
    found = driver.execute_async_script(RUN_AXE)
    return [f"{v['id']} ({v['impact']}): {v['help']} at {', '.join(v['targets'])}" for v in found]


# --- On the wire -------------------------------------------------------

WIRE_LINES = "#wire li"


def open_wire(driver: webdriver.Chrome) -> None:
    """Open the page's "On the wire" panel, as a reader does: a click on its summary."""
    driver.find_element(By.CSS_SELECTOR, "#wire summary").click()
    wait_until(lambda d: d.execute_script("return document.getElementById('wire').open"),
               "On the wire did not open", driver=driver)


def wire_lines(driver: webdriver.Chrome) -> list[str]:
    """What "On the wire" shows, newest first."""
    return texts(driver, WIRE_LINES)


def wait_for_wire(driver: webdriver.Chrome, found: Callable[[list[str]], T], message: str,
                  timeout: float = TIMEOUT) -> T:
    """The first truthy ``found(lines)`` of what the open panel shows, within ``timeout`` s."""
    last: list[list[str]] = [[]]

    def condition(driver):
        last[0] = wire_lines(driver)
        return found(last[0])

    try:
        return wait_until(condition, message, timeout, driver)
    except Exception as error:
        raise AssertionError(f"{message}; On the wire shows: {last[0][:12]}") from error
