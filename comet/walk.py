"""The ticker's price: a random walk, as in "Easy Comet: Server-Sent Events"."""

from __future__ import annotations

import math
import random
from typing import Optional


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
