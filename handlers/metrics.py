"""``GET /metrics`` for Prometheus, on a listener of its own.

The metrics say how busy the server is and whom it refuses, which is not for
every visitor to read, so they are never served on the site's port:
``app.py --metrics-port=N`` serves them on 127.0.0.1:N alone, for a
Prometheus on the same host (or a tunnel to it).
"""

from __future__ import annotations

import tornado.web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from handlers.pages import NotFoundHandler


class MetricsHandler(tornado.web.RequestHandler):
    """GET /metrics: every metric in ``registry``, in the Prometheus text format."""

    def initialize(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def get(self) -> None:
        # The format the scraper's Accept asks for (OpenMetrics, or the text format).
        encode, content_type = choose_encoder(self.request.headers.get("Accept", ""))
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-cache")
        self.write(encode(self.registry))


def metrics_app(registry: CollectorRegistry) -> tornado.web.Application:
    """The application of the metrics listener: /metrics and a 404 for the rest."""
    return tornado.web.Application([(r"/metrics", MetricsHandler, dict(registry=registry))],
                                   default_handler_class=NotFoundHandler)
