"""How fast one address may post: a token bucket per address.

Without a limit, one script posting in a loop pushes everyone else's messages
out of the bounded history in seconds. Each address gets a bucket of
``burst`` tokens that refills at ``rate`` tokens a second; a post takes one,
and a post that finds the bucket empty is refused and told how long until
the next token (``Retry-After``).

Memory stays bounded however many addresses pass by: a bucket left alone for
``burst / rate`` seconds is full again, exactly as if it had never been made,
so it is forgotten. The buckets are kept in the order they were last used, so
the forgotten ones are always at the front, and each ``take()`` sweeps the
few that have come due: no timer, no scan. ``most`` caps the count even
when more addresses than that post within one refill time.

Nothing here knows about HTTP; ``handlers/chat.py`` asks before storing.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Callable


class PostRate:
    """Token buckets of ``burst`` posts refilled at ``rate`` a second, one
    per address; ``rate`` or ``burst`` 0 lets every post through."""

    def __init__(self, rate: float, burst: int, most: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.on = rate > 0 and burst > 0
        # Idle this long, a bucket is full again: the same as no bucket.
        self.refill_time = burst / rate if self.on else 0.0
        self.most = most
        self.clock = clock
        # address -> (tokens left, when they were counted), least recently used first
        # (an OrderedDict: its oldest entry is found and dropped in O(1))
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    # tutorial: post-rate
    def take(self, address: str) -> float:
        """Take a token for a post from ``address``: 0 when there was one,
        else the seconds until there is (the post is refused)."""
        if not self.on:
            return 0.0
        now = self.clock()
        self.forget_idle(now)
        tokens, then = self.buckets.pop(address, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self.buckets[address] = (tokens, now)  # to the back: most recently used
        return wait
    # end tutorial: post-rate

    def forget_idle(self, now: float) -> None:
        """Forget every bucket idle for a refill time (they are full), and
        the least recently used past ``most``."""
        while self.buckets:
            _tokens, then = next(iter(self.buckets.values()))  # the least recently used
            if now - then < self.refill_time and len(self.buckets) < self.most:
                return
            self.buckets.popitem(last=False)

    def retry_after(self, wait: float) -> int:
        """``wait`` as a ``Retry-After`` value: whole seconds, at least 1."""
        return max(1, math.ceil(wait))
