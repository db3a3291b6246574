"""The HTML pages and ``/status``. The pages are static templates: all they
show arrives later through the event streams and polls their scripts open."""

from __future__ import annotations

import tornado.web

from comet.clients import Clients
from comet.policies import BoundedEventQueue, StateStream
from handlers.base import BaseHandler, log_exception

# Only the site's own scripts, styles and images; nothing inline, no CDN.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


class PageHandler(BaseHandler):
    """GET /, /chat, /stock: renders ``template``. HEAD answers the same
    without the body: a page asks it of itself to tell a buffering proxy
    (a plain request is answered) from a server that is away (it is not)."""

    def initialize(self, template: str, keepalive: float, poll_timeout: float) -> None:
        self.template = template
        # The page's scripts time their watchdogs by these (<body data-...>).
        self.timers = dict(keepalive=keepalive, poll_timeout=poll_timeout)

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)

    def get(self) -> None:
        self.render(self.template, **self.timers)

    head = get  # Tornado sends no body for HEAD


class StatusHandler(BaseHandler):
    """GET /status: what the server holds right now, as JSON."""

    def initialize(self, history: BoundedEventQueue, prices: StateStream, clients: Clients) -> None:
        self.history = history
        self.prices = prices
        self.clients = clients

    def get(self) -> None:
        self.set_header("Cache-Control", "no-cache")
        counts = self.clients.counts
        self.write({
            "chat": {
                "messages": self.history.count,
                "first": self.history.first,
                "waiting": counts["chat.waiting"],
                "streams": counts["chat.streams"],
            },
            "ticker": {"id": self.prices.id, "price": float(self.prices.data), "streams": counts["ticker.streams"]},
        })


class StaticFiles(tornado.web.StaticFileHandler):
    """Scripts and styles carry ``nosniff`` too: that is where it matters."""

    def log_exception(self, typ, value, tb) -> None:
        log_exception(self, typ, value, tb)

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")


class NotFoundHandler(BaseHandler):
    """Every other path: a plain 404, like the rest of the site's errors."""

    def prepare(self) -> None:
        raise tornado.web.HTTPError(404)
