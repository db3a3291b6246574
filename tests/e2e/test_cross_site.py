"""A post from another site's page, in Chromium: refused with 403 and nothing
stored (docs/protocol.md section 1), while the site's own page still posts.

The other site is a page served from ``http://localhost:PORT2``: another
origin, and another site, than the app on ``http://127.0.0.1:PORT``. It
posts to the chat the two ways a page can without asking anyone: a form it
submits by itself (a navigation), and a ``no-cors`` fetch (no preflight).
"""

from __future__ import annotations

import html
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from tests.e2e.browser import history, open_chat, open_window, send, text, wait_for_messages, wait_until


class OtherSite(ThreadingHTTPServer):
    """Serves one page, ``page``, at every path, on 127.0.0.1 (reached as localhost)."""

    daemon_threads = True

    def __init__(self, page: str) -> None:
        self.page = page.encode("utf-8")
        super().__init__(("127.0.0.1", 0), OtherSitePage)
        self.url = f"http://localhost:{self.server_address[1]}/"


class OtherSitePage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.server.page)))
        self.end_headers()
        self.wfile.write(self.server.page)

    def log_message(self, *args) -> None:
        pass  # quiet


@pytest.fixture
def other_site(server) -> Iterator[OtherSite]:
    """An attacker's page: a form to the chat that submits itself, and a
    button that posts with a no-cors fetch."""
    post_url = html.escape(f"{server.url}chat/post")
    site = OtherSite(f"""<!doctype html>
<title>another site</title>
<form id="forged" method="post" action="{post_url}">
  <input name="message" value="forged by a form">
</form>
<script>
  window.fetched = null;
  function forgeByFetch() {{
    fetch("{post_url}", {{method: "POST", mode: "no-cors",
                          body: new URLSearchParams({{message: "forged by fetch"}})}})
      .then(() => {{ window.fetched = "sent"; }}, (error) => {{ window.fetched = String(error); }});
  }}
  if (location.hash === "#form") document.getElementById("forged").submit();
</script>""")
    thread = threading.Thread(target=site.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.shutdown()
        site.server_close()
        thread.join(timeout=5)


REFUSED = re.compile(r"403 POST /chat/post \([0-9.]+\) [0-9.]+ms")  # the access log's line


def refusals(server) -> int:
    return len(REFUSED.findall(server.log()))


def test_a_form_another_site_submits_is_403_and_stores_nothing(browser, server, other_site):
    kept, refused = history(server.url), refusals(server)

    open_window(browser, other_site.url + "#form")

    # The form navigated the window to the chat's answer: the refusal, as text.
    wait_until(lambda d: d.current_url == f"{server.url}chat/post", "the forged form was not submitted",
               driver=browser)
    body = text(browser, "body")
    assert body.startswith("403 Forbidden"), body
    assert "Traceback" not in body
    assert refusals(server) == refused + 1
    assert history(server.url) == kept


def test_a_no_cors_fetch_from_another_site_is_403_and_stores_nothing(browser, server, other_site):
    kept, refused = history(server.url), refusals(server)

    open_window(browser, other_site.url)
    browser.execute_script("forgeByFetch()")

    # The answer is opaque to the page; the server's log says it came, and was refused.
    wait_until(lambda d: d.execute_script("return window.fetched"), "the forged fetch did not finish",
               driver=browser)
    wait_until(lambda _: refusals(server) == refused + 1, "the server did not refuse the forged fetch")
    assert history(server.url) == kept


def test_the_sites_own_page_still_posts(browser, server, other_site):
    window = open_chat(browser, server.url, "eventsource", new_window=False)

    send(browser, window, "posted by the chat page itself")

    wait_for_messages(browser, window, "posted by the chat page itself")
    assert history(server.url)[-1] == "posted by the chat page itself"
