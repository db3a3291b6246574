"""The pages, /status and the site-wide headers (sections 3 and 4 of
docs/protocol.md, as far as they show without a browser)."""

import json
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from tests.client import FALLBACK, wait_until_async

PAGES = ["/", "/chat", "/stock"]


class Page(HTMLParser):
    """What the tests look at in a page: elements by id, links, scripts,
    stylesheets, and anything inline that the CSP would block."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, tuple[str, dict]] = {}
        self.links: list[str] = []
        self.scripts: list[str] = []
        self.script_types: list[str] = []  # of each script in `scripts`: "classic" or "module"
        self.stylesheets: list[str] = []
        self.inline: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.by_id[attrs["id"]] = (tag, attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "script":
            self._in_script = True
            if attrs.get("src"):
                self.scripts.append(attrs["src"])
                self.script_types.append("module" if attrs.get("type") == "module" else "classic")
        if tag == "link" and "stylesheet" in (attrs.get("rel") or "").split():
            self.stylesheets.append(attrs["href"])
        if tag == "style" or "style" in attrs:
            self.inline.append(f"<{tag}> style")
        self.inline += [f"<{tag} {name}>" for name in attrs if name.startswith("on")]

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline.append(f"inline script {data.strip()[:40]!r}")


async def page(http_client, url, path):
    response = await http_client.fetch(url(path))
    assert response.code == 200
    assert response.headers["Content-Type"] == "text/html; charset=UTF-8"
    return Page(response.body.decode("utf-8"))


# Pages ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.gen_test
async def test_page_renders_as_utf8_html(http_client, url, path):
    await page(http_client, url, path)  # 200, text/html; charset=UTF-8


@pytest.mark.gen_test
async def test_index_links_to_both_pages(http_client, url):
    index = await page(http_client, url, "/")
    targets = {urlsplit(link).path for link in index.links}
    assert {"/chat", "/stock"} <= targets


@pytest.mark.gen_test
async def test_stock_page_has_transport_status_and_price(http_client, url):
    stock = await page(http_client, url, "/stock")
    assert {"transport", "status", "price"} <= stock.by_id.keys()


@pytest.mark.gen_test
async def test_chat_page_has_its_element_ids(http_client, url):
    chat = await page(http_client, url, "/chat")
    assert {"transport", "status", "message", "send", "messages"} <= chat.by_id.keys()


@pytest.mark.gen_test
async def test_chat_message_is_a_text_input_and_send_a_button(http_client, url):
    chat = await page(http_client, url, "/chat")
    tag, attrs = chat.by_id["message"]
    assert tag == "input" and attrs.get("type", "text") == "text"
    tag, attrs = chat.by_id["send"]
    assert tag == "button" or (tag == "input" and attrs.get("type") in ("submit", "button"))


@pytest.mark.parametrize("path", ["/chat", "/stock"])
@pytest.mark.gen_test
async def test_page_loads_the_polyfill_then_one_module(http_client, url, path):
    """The polyfill, a classic script that defines LongPollEventSource, runs
    first; then the page's one entry module, which imports what it needs."""
    found = await page(http_client, url, path)
    scripts = [urlsplit(src).path for src in found.scripts]
    assert scripts == ["/static/js/eventsource-fallback.js", f"/static/js{path}.js"]
    assert found.script_types == ["classic", "module"]


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.gen_test
async def test_page_scripts_and_styles_are_served_from_this_site(http_client, url, path):
    found = await page(http_client, url, path)
    for src in found.scripts + found.stylesheets:
        parts = urlsplit(src)
        assert not parts.scheme and not parts.netloc, f"{src} is not on this site"
        response = await http_client.fetch(urljoin(url(path), src), raise_error=False)
        assert response.code == 200, src


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.gen_test
async def test_page_has_nothing_inline_the_csp_would_block(http_client, url, path):
    assert (await page(http_client, url, path)).inline == []


def csp_directives(policy: str) -> dict[str, list[str]]:
    directives = {}
    for part in filter(str.strip, policy.split(";")):
        name, *sources = part.split()
        directives[name.lower()] = sources
    return directives


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.gen_test
async def test_page_csp_allows_only_its_own_scripts_and_styles(http_client, url, path):
    """No 'unsafe-inline', no 'unsafe-eval', no other origin: scripts and
    styles from this site only, no plugins, no <base> redirection."""
    response = await http_client.fetch(url(path))
    policy = csp_directives(response.headers["Content-Security-Policy"])
    for kind in ("script-src", "style-src"):
        assert policy.get(kind, policy.get("default-src")) == ["'self'"], (kind, policy)
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    for name, sources in policy.items():
        for source in sources:
            assert source in ("'self'", "'none'") or (name == "img-src" and source == "data:"), (name, source)


@pytest.mark.gen_test
async def test_fallback_script_is_served(http_client, url):
    """The polyfill and openEventSource (docs/protocol.md §4); choosing a
    transport is page.js's, recovering recovery.js's, both ES modules."""
    polyfill = await http_client.fetch(url("/static/js/eventsource-fallback.js"))
    helpers = await http_client.fetch(url("/static/js/page.js"))
    recovery = await http_client.fetch(url("/static/js/recovery.js"))
    for response in (polyfill, helpers, recovery):
        assert response.code == 200
        assert "javascript" in response.headers["Content-Type"]
    assert b"class LongPollEventSource" in polyfill.body and b"function parseEventStream" in polyfill.body
    assert b"function openEventSource" in polyfill.body and b"function openEventSource" not in helpers.body
    assert b"function chooseTransport" in helpers.body and b"chooseTransport" not in polyfill.body
    assert b"export class KeepOpen" in recovery.body and b"import " not in polyfill.body


# X-Content-Type-Options on every answer --------------------------------------------------


@pytest.mark.parametrize(
    "path",
    PAGES + [
        "/status", "/chat/since/0", "/chat/get/7", "/chat/post", "/no/such/page",
        "/static/js/eventsource-fallback.js", "/static/css/site.css", "/static/missing.js",
    ],
)
@pytest.mark.gen_test
async def test_every_response_carries_nosniff(http_client, url, path):
    response = await http_client.fetch(url(path), raise_error=False)
    assert response.code < 500
    assert response.headers.get("X-Content-Type-Options") == "nosniff"


@pytest.mark.gen_test
async def test_post_answers_carry_nosniff(http_client, url):
    for body in ("message=hi", "message="):  # 200 and 400
        response = await http_client.fetch(url("/chat/post"), method="POST", body=body, raise_error=False)
        assert response.headers.get("X-Content-Type-Options") == "nosniff", response.code


@pytest.mark.parametrize("path", ["/chat/events", "/ticker"])
@pytest.mark.gen_test
async def test_event_streams_carry_nosniff(get, path):
    response = await (await get(path)).head()
    assert response.headers.get("X-Content-Type-Options") == "nosniff"


# /status -------------------------------------------------------------------------------


async def status(http_client, url) -> dict:
    response = await http_client.fetch(url("/status"))
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)


@pytest.mark.gen_test
async def test_status_shape_on_a_fresh_server(http_client, url, app):
    assert await status(http_client, url) == {
        "chat": {"messages": 0, "first": 0, "waiting": 0, "streams": 0},
        "ticker": {"id": 1, "price": float(app.prices.data), "streams": 0},
    }


@pytest.mark.settings(history=3)
@pytest.mark.gen_test
async def test_status_follows_history_and_price(http_client, url, app):
    for number in range(5):
        app.history.append(f"m{number}")
    app.prices.update("101.25")
    app.prices.update("99.50")
    found = await status(http_client, url)
    assert (found["chat"]["messages"], found["chat"]["first"]) == (5, 2)
    assert (found["ticker"]["id"], found["ticker"]["price"]) == (3, 99.5)


@pytest.mark.settings(poll_timeout=30)
@pytest.mark.gen_test
async def test_status_counts_held_clients_live(http_client, url, get, app):
    opened = [await get("/chat/get/0"), await get("/chat/events"), await get("/chat/events", FALLBACK),
              await get("/ticker")]
    assert await wait_until_async(lambda: sum(app.clients.counts.values()) == 4)
    found = await status(http_client, url)
    assert (found["chat"]["waiting"], found["chat"]["streams"], found["ticker"]["streams"]) == (1, 2, 1)
    for client in opened:
        await client.close()
    assert await wait_until_async(lambda: sum(app.clients.counts.values()) == 0)
    found = await status(http_client, url)
    assert (found["chat"]["waiting"], found["chat"]["streams"], found["ticker"]["streams"]) == (0, 0, 0)


@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/", "/chat", "/stock"])
async def test_a_page_answers_head_with_its_headers_and_no_body(http_client, url, path):
    """The pages' watchdog asks HEAD of its own page to tell a buffering
    proxy (answered) from a server that is away (not answered)."""
    page = await http_client.fetch(url(path))
    head = await http_client.fetch(url(path), method="HEAD")
    assert head.code == 200 and head.body == b""
    assert head.headers["Content-Type"] == page.headers["Content-Type"]
    assert head.headers["Content-Security-Policy"] == page.headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/chat", "/stock"])
@pytest.mark.settings(poll_timeout=7.5, keepalive=3.0)
@pytest.mark.gen_test
async def test_page_tells_the_script_the_servers_keepalive_and_longest_hold(http_client, url, path):
    """The watchdog's limits come from --keepalive; a long poll unanswered
    past --poll-timeout (and a margin) is given up."""
    body = (await http_client.fetch(url(path))).body.decode("utf-8")
    assert 'data-keepalive="3.0"' in body and 'data-poll-timeout="7.5"' in body
