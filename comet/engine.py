"""Where the chat's history and the ticker's price live: the engine.

Every engine is an ``Engine``: it has ``history`` (a ``BoundedEventQueue``),
``prices`` (a ``StateStream``), ``start()``, which loads what its store holds
and sets the price moving, and ``stop()``. The handlers only ever see
``history`` and ``prices``, so the engine behind them changes without
touching a handler:

- ``comet.sqlite_engine.SQLiteEngine``, the default (``--db``): the
  history and its epoch are written through to a SQLite file, so a restart
  keeps them; the price lives in this process;
- ``MemoryEngine`` (``--db=:memory:``): both live in this process alone, and
  a timer moves the price;
- ``comet.redis_engine.RedisEngine`` (``--redis``): several processes share
  them through Redis.
"""

from __future__ import annotations

import os
from typing import Optional, Protocol

from tornado.ioloop import PeriodicCallback

from comet.policies import BoundedEventQueue, StateStream
from comet.walk import RandomWalk

# Beside app.py, in a folder git ignores, as Flask's tutorial keeps its database.
DEFAULT_DB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "instance", "chat.db")
IN_MEMORY = ":memory:"  # --db=:memory:, SQLite's own name for "no file"


class StoreError(Exception):
    """The store cannot be used: the process must not start. The message is
    the one line the console shows: the store's path or URL and why."""


class Engine(Protocol):
    """What ``make_app`` hands to the handlers and ``main()`` starts and stops."""

    history: BoundedEventQueue
    prices: StateStream

    async def start(self) -> None:
        """Hold what the store holds (the history, its epoch, the price) and
        set the price moving. The server listens only once this returns, so
        no request ever sees a history that is not loaded yet. Raises
        ``StoreError`` when the store cannot be used."""

    async def stop(self) -> None:
        """Stop moving the price and let go of the store."""


class MemoryEngine:
    """The chat and the ticker of one process: nothing to load, and a new
    history (a new epoch) at each start. ``SQLiteEngine`` adds the file."""

    def __init__(self, capacity: int, tick_interval: float, walk: Optional[RandomWalk] = None) -> None:
        self.walk = walk or RandomWalk()
        self.history = BoundedEventQueue(capacity)
        self.prices = StateStream(self.walk.formatted())
        self.tick_interval = tick_interval
        self._timer: Optional[PeriodicCallback] = None

    # tutorial: price-timer
    async def start(self) -> None:
        """Move the price every ``tick_interval`` seconds."""
        self._timer = PeriodicCallback(self.tick, self.tick_interval * 1000)
        self._timer.start()

    def tick(self) -> None:
        self.prices.update(self.walk.step())
    # end tutorial: price-timer

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()


def open_engine(redis: str, db: str, history: int, tick_interval: float) -> Engine:
    """The engine the flags ask for: ``redis`` is ``--redis`` (a URL, or ""
    for none), ``db`` is ``--db`` ("" for the default file, ``:memory:`` for
    none). Nothing is opened yet: ``start()`` does that. redis-py is
    imported only when it is asked for."""
    if redis and db:
        raise StoreError(f"--redis and --db={db} name two stores for one chat: give one of them")
    if redis:
        from comet.redis_engine import RedisEngine

        return RedisEngine(redis, history, RandomWalk(), tick_interval)
    if db == IN_MEMORY:
        return MemoryEngine(history, tick_interval)
    from comet.sqlite_engine import SQLiteEngine

    return SQLiteEngine(db or DEFAULT_DB, history, tick_interval)
