"""comet/metrics.py without a server: the registry is the app's own, a
publish is timed once whatever the number of readers, and the counts are
read from the shared objects at each scrape."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY, generate_latest

from comet.clients import Clients
from comet.metrics import Metrics
from comet.policies import BoundedEventQueue, StateStream
from comet.ratelimit import PostRate


def metrics() -> Metrics:
    return Metrics(Clients(), BoundedEventQueue(10), StateStream("100.00"), PostRate(5, 20))


def sample(m: Metrics, name: str, **labels) -> float:
    return m.registry.get_sample_value(name, labels)


def test_two_apps_count_apart_and_never_in_the_global_registry():
    a, b = metrics(), metrics()
    a.streams["chat"].append("hello")
    assert sample(a, "comet_publish_seconds_count") == 1 and sample(b, "comet_publish_seconds_count") == 0
    assert b"comet_" not in generate_latest(REGISTRY)


def test_a_publish_to_many_readers_is_timed_once_and_counted_per_reader():
    m = metrics()
    prices = m.streams["ticker"]
    for _ in range(1000):
        prices.subscribe(lambda: None)  # each a distinct reader

    async def publish() -> None:
        prices.update("101.00")
        await asyncio.sleep(0)  # the timing callback runs after the woken readers'

    asyncio.run(publish())
    assert sample(m, "comet_publish_seconds_count") == 1
    assert sample(m, "comet_events_sent_total", stream="ticker") == 1000


class Held:
    def end(self, why: str) -> None:
        pass


def test_each_kind_of_held_request_is_counted_under_its_own_label():
    """Distinct counts per kind, as the handlers name them (/status shows
    the same figures): with one of each, two swapped labels would pass."""
    m = metrics()
    for kind, count in (("ticker.streams", 1), ("chat.streams", 2), ("chat.waiting", 3)):
        for _ in range(count):
            m.clients.admit(Held(), kind)
    assert [sample(m, "comet_clients", kind=kind) for kind in ("ticker", "chat_events", "chat_poll")] == [1, 2, 3]
