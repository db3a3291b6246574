"""HTTP/2, the other way out of the six-connection limit: docs/nginx.conf's
TLS lines in front of the same app, and a dozen ``?share=off`` tabs, each
holding a connection of its own, all live.

The certificate is a throwaway one made with openssl for this test, and this
test's own Chromium accepts it by its public key
(``--ignore-certificate-errors-spki-list``), so no other certificate error is
ignored, and no other browser trusts it.
"""

from __future__ import annotations

import tempfile
from typing import Iterator

import pytest

from tests.e2e.browser import chromium, history, send
from tests.e2e.tabs_helpers import (
    all_list,
    held,
    in_each,
    open_site,
    prices_move,
    roles,
    throwaway_certificate,
)
from tests.nginx import Nginx


@pytest.fixture
def site_over_http2(server) -> Iterator[tuple[str, object]]:
    """(the site's https:// URL through nginx, a browser that trusts it)."""
    with tempfile.TemporaryDirectory(prefix="comet-cert-") as tmp:
        certificate, key, spki = throwaway_certificate(tmp)
        with Nginx(server.port, tls=(certificate, key)) as nginx:
            with chromium(f"--ignore-certificate-errors-spki-list={spki}") as driver:
                yield f"https://127.0.0.1:{nginx.tls_port}/", driver


def test_twelve_unshared_tabs_over_http2_are_all_live(server, site_over_http2):
    site, driver = site_over_http2
    stock, chat = open_site(driver, site, 12, "share=off")  # each loads and connects within 5 s

    protocols = in_each(driver, stock + chat, lambda d: d.execute_script(
        "return performance.getEntriesByType('navigation')[0].nextHopProtocol"))  # fmt: skip
    assert set(protocols) == {"h2"}
    # Nothing shared: every tab holds its own stream, all over one connection.
    assert set(roles(driver, stock + chat)) == {"alone"}
    assert held(server.url) == (6, 6)
    prices_move(driver, stock)
    send(driver, chat[-1], "over HTTP/2, past six tabs")
    all_list(driver, chat, history(server.url))
    assert history(server.url)[-1] == "over HTTP/2, past six tabs"
