"""What the tab-sharing tests need besides tests/e2e/browser.py.

- ``Harness``: a tiny server for testing ``static/js/tabs.js`` by itself. Its
  page shares a Connection of its own with tabs.js: an EventSource on
  ``/numbers``, a stream of numbered events that replays from the id it is
  given, so a test can count exactly what every tab shows and how many
  streams the browser holds, without the page's own dedupe in between.
- Tabs: ``open_tabs``, ``leader_of``, ``roles``, ``in_each``; of the site's
  pages: ``open_tab``, ``open_site``, ``held`` (what /status counts),
  ``all_list``, ``prices_move``, ``post``.
- ``throwaway_certificate``: for nginx's HTTP/2, which browsers speak only
  over TLS.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import subprocess
import time
import urllib.parse
import urllib.request
from typing import Callable, Iterator

import tornado.locks
import tornado.web
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from tornado.iostream import StreamClosedError

from tests.e2e import browser
from tests.e2e.browser import MESSAGES, get_json, text, texts, wait_until
from tests.e2e.scripted import EVENT_STREAM, ScriptedServer

# --- A browser of the test's own ------------------------------------------


# --- Tabs ---------------------------------------------------------------


def open_tabs(driver: webdriver.Chrome, urls: list[str], first_in_current: bool = True) -> list[str]:
    """Each URL in a tab of its own, in order (the first in the current
    window's tab unless told otherwise); returns the handles."""
    handles = []
    for i, url in enumerate(urls):
        if i > 0 or not first_in_current:
            driver.switch_to.new_window("tab")
        driver.get(url)
        handles.append(driver.current_window_handle)
    return handles


def in_each(driver: webdriver.Chrome, handles: list[str], read: Callable[[webdriver.Chrome], object]) -> list:
    """``read(driver)`` in each tab, in order."""
    values = []
    for handle in handles:
        driver.switch_to.window(handle)
        values.append(read(driver))
    return values


def roles(driver: webdriver.Chrome, handles: list[str]) -> list[str]:
    return in_each(driver, handles, lambda d: text(d, "#role"))


def leader_of(driver: webdriver.Chrome, handles: list[str], timeout: float = browser.TIMEOUT) -> str:
    """The one tab among ``handles`` whose #role is ``leader``, once every
    other one says ``follower``."""

    def elected():
        shown = roles(driver, handles)
        leaders = [h for h, role in zip(handles, shown) if role == "leader"]
        if len(leaders) == 1 and shown.count("follower") == len(handles) - 1:
            return leaders[0]
        return None

    return waited_for(elected, timeout, lambda: f"no single leader among {len(handles)} tabs: {roles(driver, handles)}")


# --- The site's pages ---------------------------------------------------------

LOAD_S = 5.0  # every tab loads within this, and is live
SHOWN_S = 1.0  # a post shows in every chat tab within this
HANDOVER_S = 1.0  # another tab takes over within this


@contextlib.contextmanager
def page_load_timeout(driver, seconds: float) -> Iterator[None]:
    driver.set_page_load_timeout(seconds)
    try:
        yield
    finally:
        driver.set_page_load_timeout(300)  # Selenium's default


def open_tab(driver, url: str, first: bool = False) -> str:
    """``url`` in a new tab (or, ``first``, the current one), loaded within
    LOAD_S and connected within LOAD_S more; returns its handle."""
    if not first:
        driver.switch_to.new_window("tab")
    with page_load_timeout(driver, LOAD_S):
        driver.get(url)
    wait_until(lambda d: text(d, "#status") == "connected", f"{url} did not connect", LOAD_S, driver)
    return driver.current_window_handle


def open_site(driver, base: str, count: int, query: str) -> tuple[list[str], list[str]]:
    """``count`` tabs, /stock and /chat alternating, each with ``query``;
    returns (stock tabs, chat tabs)."""
    stock, chat = [], []
    for i in range(count):
        page, tabs = ("stock", stock) if i % 2 == 0 else ("chat", chat)
        tabs.append(open_tab(driver, f"{base}{page}?{query}", first=i == 0))
    return stock, chat


def held(base: str) -> tuple[int, int]:
    """(ticker streams and polls, chat streams and held polls) the server counts now."""
    status = get_json(f"{base}status")
    return status["ticker"]["streams"], status["chat"]["streams"] + status["chat"]["waiting"]


def post(base: str, message: str) -> None:
    """POST /chat/post from outside the browser."""
    body = urllib.parse.urlencode({"message": message}).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{base}chat/post", data=body), timeout=5) as response:
        assert response.status in (200, 204), response.status


def all_list(driver, tabs: list[str], expected: list[str], timeout: float = SHOWN_S) -> None:
    """Waits until every chat tab's #messages is exactly ``expected``."""

    def listed() -> list[list[str]]:
        return in_each(driver, tabs, lambda d: texts(d, MESSAGES))

    waited_for(lambda: all(shown == expected for shown in listed()), timeout,
               lambda: f"the chat tabs do not all list {expected}: {listed()}")  # fmt: skip


def prices_move(driver, tabs: list[str]) -> None:
    """Waits until every stock tab has shown a price other than the one it
    shows now."""
    def prices() -> list[str]:
        return in_each(driver, tabs, lambda d: text(d, "#price"))

    before = prices()
    assert all(before), f"a stock tab shows no price: {before}"
    moved = [False] * len(tabs)

    def all_moved() -> bool:
        for i, (now, then) in enumerate(zip(prices(), before)):
            moved[i] = moved[i] or now != then
        return all(moved)

    waited_for(all_moved, LOAD_S, lambda: f"the price did not move in stock tabs {moved} (False: stuck)")


def waited_for(condition: Callable[[], object], timeout: float, describe: Callable[[], str]):
    """``wait_until(condition)``, failing with ``describe()`` as it stands
    when the time is up (a description that reads every tab is made only then)."""
    try:
        return wait_until(lambda _: condition(), "", timeout)
    except TimeoutException:
        raise AssertionError(describe()) from None


def close_tab(driver, handle: str, tabs: list[str]) -> None:
    driver.switch_to.window(handle)
    driver.close()
    tabs.remove(handle)


# --- The harness ------------------------------------------------------------

HARNESS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tabs.js harness</title>
<link rel="icon" href="data:,">
</head><body>
<p>role <b id="role"></b> · status <b id="status"></b> · transport <b id="transport"></b></p>
<ol id="events"></ol>
<script type="module">
import { Connection, listen } from '/static/js/connection.js';
import { shareConnection } from '/static/js/tabs.js';

// What this tab did: the id each open() got, and each event it showed.
window.__opened = [];
window.__shown = [];
const params = new URLSearchParams(location.search);
const show = (id) => (value) => { document.getElementById(id).textContent = value; };

// ?slow=MS: every BroadcastChannel message reaches this tab MS late (in
// order; 100 without a number), so the election's news can overtake the
// channel's.
let channel = (name) => new BroadcastChannel(name);
if (params.has('slow')) {
  const late = Number(params.get('slow')) || 100;
  channel = (name) => {
    const real = new BroadcastChannel(name);
    return {
      postMessage: (message) => real.postMessage(message),
      close: () => real.close(),
      set onmessage(handler) {
        real.onmessage = (event) => setTimeout(() => handler(event), late);
      },
    };
  };
}

// A Connection of the harness's own, on /numbers: no recovery, no dedupe.
class Numbers extends Connection {
  open(lastEventId) {
    window.__opened.push(lastEventId);
    this.say('status', 'connecting');
    this.say('transport', 'eventsource');
    const source = this.source = new EventSource('/numbers?from=' + encodeURIComponent(lastEventId));
    source.onopen = () => this.say('status', 'connected');
    source.onerror = () => this.say('status', 'connecting');
    source.onmessage = (e) => this.say('event', { type: e.type, data: e.data, lastEventId: e.lastEventId });
  }
  close() {
    this.source.close();
  }
}

if (params.get('share') === 'off') show('role')('alone');
const shared = params.get('share') === 'off' ? new Numbers() : shareConnection('harness|eventsource', new Numbers(), { channel });
listen(shared, {
  role: show('role'),
  status: show('status'),
  transport: show('transport'),
  event: (e) => {
    window.__shown.push(e.data);
    const item = document.createElement('li');
    item.textContent = e.data;
    document.getElementById('events').append(item);
  },
});
shared.open('');
addEventListener('pagehide', () => shared.close());
addEventListener('pageshow', (e) => { if (e.persisted) shared.open(''); });
</script></body></html>
"""


class NumbersHandler(tornado.web.RequestHandler):
    """An event stream of the harness's history: event N has ``id: N``. It
    starts after ``Last-Event-ID`` (or ``?from=``; none: from the first),
    then waits for each new one until the client goes away."""

    def initialize(self, harness: "Harness") -> None:
        self.harness = harness
        self.gone = False

    def compute_etag(self) -> None:
        return None

    def on_connection_close(self) -> None:
        self.gone = True
        self.harness.changed.notify_all()

    async def get(self) -> None:
        given = self.request.headers.get("Last-Event-ID") or self.get_query_argument("from", "")
        sent = int(given) if given.isdigit() else 0
        self.set_header("Content-Type", EVENT_STREAM)
        self.set_header("Cache-Control", "no-cache")
        self.harness.streams += 1
        self.harness.opened.append((time.monotonic(), given))
        try:
            while not self.gone:
                history = self.harness.history
                while sent < len(history):
                    sent += 1
                    self.write(f"id: {sent}\ndata: {history[sent - 1]}\n\n")
                await self.flush()
                await self.harness.changed.wait()
        except StreamClosedError:
            pass
        finally:
            self.harness.streams -= 1


class HarnessPage(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.finish(HARNESS_PAGE)


class Harness(ScriptedServer):
    """A ScriptedServer whose app also serves ``/harness`` (the page above)
    and ``/numbers``. ``publish(data)`` appends an event; ``streams`` is how many
    /numbers streams are open now, ``opened`` when each opened and from
    which id."""

    def __init__(self) -> None:
        self.history: list[str] = []
        self.streams = 0
        self.opened: list[tuple[float, str]] = []
        super().__init__()
        self.page = f"{self.url}harness"

    def publish(self, data: str) -> None:
        def append() -> None:
            self.history.append(data)
            self.changed.notify_all()

        self.loop.call_soon_threadsafe(append)

    async def _listen(self) -> None:
        await super()._listen()
        self.changed = tornado.locks.Condition()
        app: tornado.web.Application = self.http_server.request_callback
        app.add_handlers(r".*", [(r"/harness", HarnessPage), (r"/numbers", NumbersHandler, dict(harness=self))])


def shown(driver: webdriver.Chrome) -> list[str]:
    """Every event the harness page in the current tab has shown, in order."""
    return driver.execute_script("return window.__shown")


# --- A throwaway certificate ------------------------------------------------


def throwaway_certificate(directory: str) -> tuple[str, str, str]:
    """A self-signed certificate for 127.0.0.1, made with openssl in
    ``directory``, valid one day: ``(certificate, key, spki)``, where
    ``spki`` is the base64 SHA-256 of its public key, what Chromium's
    ``--ignore-certificate-errors-spki-list`` accepts it by (and nothing else)."""
    certificate = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", certificate, "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    public_key = subprocess.run(
        ["openssl", "pkey", "-in", key, "-pubout", "-outform", "DER"], check=True, capture_output=True, timeout=30
    ).stdout
    return certificate, key, base64.b64encode(hashlib.sha256(public_key).digest()).decode("ascii")
