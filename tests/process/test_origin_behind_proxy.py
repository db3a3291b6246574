"""The cross-site rule for posts behind a proxy (docs/protocol.md section 1,
docs/deployment.md). The rule reads request headers only, so the address the
app listens on (``--address=0.0.0.0`` or not) does not enter into it.

Over plain HTTP to a host that is not this machine, browsers send no
``Sec-Fetch-Site`` (they send it to secure origins only), so the rule falls
back to comparing ``Origin`` with ``Host``. docs/nginx.conf passes the
browser's ``Host`` on (``Host $http_host``), and the site's own page posts.
A proxy that rewrites ``Host`` to the app's own name makes that page's posts
look cross-site, unless the browser sends ``Sec-Fetch-Site``. The requests
here are what a browser sends, written by hand: the headers are the point.
"""

from __future__ import annotations

import os
import signal
from typing import Iterator

import pytest

from tests.client import fetch
from tests.nginx import NGINX, Nginx
from tests.server import QUIET, ServerProcess

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def app() -> Iterator[ServerProcess]:
    assert os.access(NGINX, os.X_OK), "install nginx: `make system-deps`"
    with ServerProcess(*QUIET) as app:
        yield app
        app.stop(signal.SIGTERM)


def page_post(port: int, site: str, origin: str = "", headers: dict = {}) -> int:
    """A post to ``site`` (``http://host:port``, what the browser was told)
    from a page of ``origin`` (the site's own by default), as a browser sends it."""
    status, _, body = fetch(port, "/chat/post", "POST", b"message=hi",
                            FORM | {"Host": site.split("://", 1)[1], "Origin": origin or site} | headers)
    assert b"Traceback" not in body
    return status


def test_the_shipped_config_passes_the_browsers_host_so_the_page_posts(app):
    with Nginx(app.port) as nginx:
        site = f"http://chat.example:{nginx.port}"  # a name nginx is reached by, not 127.0.0.1
        assert page_post(nginx.port, site) == 200
        assert page_post(nginx.port, site, origin="http://elsewhere.example") == 403


def test_a_proxy_that_rewrites_host_refuses_the_pages_own_posts_without_sec_fetch_site(app):
    # proxy_set_header in a location replaces every inherited one: Host becomes the upstream's name.
    with Nginx(app.port, location=("proxy_set_header Host $proxy_host;",)) as nginx:
        site = f"http://chat.example:{nginx.port}"
        assert page_post(nginx.port, site) == 403
        # A browser that sends Sec-Fetch-Site (over HTTPS, or to localhost) still posts.
        assert page_post(nginx.port, site, headers={"Sec-Fetch-Site": "same-origin"}) == 200


def test_straight_to_the_app_the_page_posts_by_whatever_name_it_was_reached(app):
    # Without a proxy the browser's Host is the name and port it reached the app by.
    assert page_post(app.port, f"http://127.0.0.1:{app.port}") == 200
    assert page_post(app.port, f"http://192.0.2.7:{app.port}") == 200  # Host and Origin agree
