"""The stock ticker of "Easy Comet: Server-Sent Events".

The engine's timer moves the price (``comet.walk.RandomWalk``) and publishes
it on a ``StateStream``; ``/ticker`` streams that state to every reader. Only
the newest price is ever owed, so a reader that falls behind skips ahead.
"""

from __future__ import annotations

from handlers.eventsource import EventSourceHandler


class TickerHandler(EventSourceHandler):
    """GET /ticker: the price as a state stream (the article's
    ``new EventSource('/ticker')``); waits for the next move when the reader
    already holds the current id."""
