"""The stock ticker of "Easy Comet: Server-Sent Events".

A timer moves the price (``RandomWalk``) and publishes it on a
``StateStream``; ``/ticker`` streams that state to every reader. Only the
newest price is ever owed, so a reader that falls behind skips ahead.
"""

from __future__ import annotations

import math
import random
from typing import Optional

from handlers.eventsource import EventSourceHandler


# tutorial: random-walk
class RandomWalk:
    """A price that moves by a small random percentage at each step."""

    def __init__(self, price: float = 100.0, volatility: float = 0.01, seed: Optional[int] = None) -> None:
        self.price = price
        self.volatility = volatility
        self.random = random.Random(seed)

    def step(self) -> str:
        """Move once; the new price with two decimals, never below 0.01."""
        self.price = max(0.01, self.price * math.exp(self.random.gauss(0.0, self.volatility)))
        return self.formatted()

    def formatted(self) -> str:
        return f"{self.price:.2f}"
# end tutorial: random-walk


class TickerHandler(EventSourceHandler):
    """GET /ticker: the price as a state stream (the article's
    ``new EventSource('/ticker')``); waits for the next move when the reader
    already holds the current id."""
