"""What the server has done, for Prometheus: counts, refusals, publish times.

``/status`` says what is held right now; dashboards and alerts want rates
and latencies over time, which Prometheus computes from counters it scrapes.
Every figure here is either a count the shared objects keep anyway (the
held clients by kind, the events each policy handed out, the refusals at
``--max-clients``) and read only when Prometheus asks, or a count made once
per request or once per publish: nothing is added per reader to the loop
that hands an event to ten thousand of them.

The registry is this object's own, not ``prometheus_client``'s global one,
so two apps in one process (the tests) never share a count. Label values
are fixed words, never anything a client sent. ``handlers/metrics.py``
serves the registry on its own port.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from comet.clients import Clients
from comet.policies import BoundedEventQueue, StateStream
from comet.ratelimit import PostRate

# The answers that refuse a request, by status, and the reason each is counted as.
REFUSALS = {400: "malformed", 403: "cross_site", 413: "too_long", 429: "rate"}
# The two 503s, counted where they are decided (comet/clients.py).
HELD_REFUSALS = ("max_clients", "per_address")
# /status's kinds of held request, as the metric's label values.
KINDS = {"ticker.streams": "ticker", "chat.streams": "chat_events", "chat.waiting": "chat_poll"}
# From a post or a price to the last of its writes: well under a millisecond
# for a few readers, tens of milliseconds for ten thousand.
PUBLISH_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """The app's metrics, in ``registry``. ``count()`` is told of every
    answered request; the policies tell ``publish_seconds`` how long each
    publish took; the rest is read from ``clients``, the policies and
    ``post_rate`` at each scrape."""

    def __init__(self, clients: Clients, history: BoundedEventQueue, prices: StateStream,
                 post_rate: PostRate) -> None:
        self.clients = clients
        self.streams = {"ticker": prices, "chat": history}
        self.post_rate = post_rate
        self.posts = 0
        self.refused: Counter[str] = Counter()
        self.registry = CollectorRegistry(auto_describe=True)
        self.publish_seconds = Histogram(
            "comet_publish_seconds", "Time from a publish (a post, a price) to its last write handed to the kernel",
            buckets=PUBLISH_BUCKETS, registry=self.registry,
        )
        self.registry.register(self)
        for policy in self.streams.values():
            policy.on_notified = self.published

    def count(self, handler) -> None:
        """One answered request (the application's ``log_request``): a
        stored post, or a refusal by its status."""
        status = handler.get_status()
        reason = REFUSALS.get(status)
        if reason is not None:
            self.refused[reason] += 1
        elif status == 200 and handler.request.method == "POST":  # /chat/post is the only POST
            self.posts += 1

    def published(self, started: float) -> None:
        """A policy has handed a change to its readers, starting at
        ``started``: the streams wrote theirs already, the woken polls write
        theirs in the callbacks the wake-up queued, so the publish is timed
        from the callback queued after them."""
        try:
            asyncio.get_running_loop().call_soon(self._observe, started)
        except RuntimeError:  # published outside the loop (a script filling a history): nothing is woken
            self._observe(started)

    def _observe(self, started: float) -> None:
        self.publish_seconds.observe(time.perf_counter() - started)

    def collect(self) -> Iterator[Metric]:
        """The counts as they stand (``prometheus_client`` calls this at each scrape)."""
        clients = GaugeMetricFamily("comet_clients", "Requests held now: streams and polls", labels=["kind"])
        for kind, label in KINDS.items():
            clients.add_metric([label], self.clients.counts[kind])
        yield clients
        sent = CounterMetricFamily("comet_events_sent", "Events handed to readers as they were published",
                                   labels=["stream"])
        for stream, policy in self.streams.items():
            sent.add_metric([stream], policy.handed)
        yield sent
        yield CounterMetricFamily("comet_posts", "Chat messages stored", value=self.posts)
        refused = CounterMetricFamily("comet_refused", "Requests refused, by reason", labels=["reason"])
        for reason in (*HELD_REFUSALS, *REFUSALS.values()):
            refused.add_metric([reason], self.clients.refused[reason] + self.refused[reason])
        yield refused
        yield CounterMetricFamily("comet_slow_readers_dropped", "Streams closed for falling too far behind",
                                  value=self.clients.slow_readers_dropped)
        yield GaugeMetricFamily("comet_post_rate_addresses", "Addresses whose post rate is being tracked",
                                value=len(self.post_rate.buckets))

