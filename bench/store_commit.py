"""How long a post's commit takes, and whether it belongs on the event loop.

    .venv/bin/python bench/store_commit.py [--posts N]

For each ``synchronous`` setting of a WAL store (NORMAL, what the app uses;
FULL, an fsync per commit), the time per ``SQLiteHistory.post()`` committed
inline on the event loop, and the same commit handed to a thread
(``run_in_executor``) as aiosqlite would. Also a :memory: history's post for
the floor. Prints one line per variant: median and 99th percentile in µs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from comet.policies import BoundedEventQueue  # noqa: E402
from comet.sqlite_engine import SQLiteHistory  # noqa: E402


async def timed(post, posts: int) -> list[float]:
    times = []
    for number in range(posts):
        start = time.perf_counter()
        await post(f"message {number} " + "x" * 60)
        times.append((time.perf_counter() - start) * 1e6)
    return times


def report(name: str, times: list[float]) -> None:
    times.sort()
    print(f"{name:<28} median {statistics.median(times):8.1f} µs   p99 {times[int(len(times) * 0.99)]:8.1f} µs")


async def main(posts: int) -> None:
    report("memory", await timed(BoundedEventQueue(1000).post, posts))
    for synchronous in ("NORMAL", "FULL"):
        with tempfile.TemporaryDirectory() as folder:
            history = SQLiteHistory(os.path.join(folder, "chat.db"), 1000)
            history.open()
            history.db.execute(f"PRAGMA synchronous={synchronous}")
            report(f"sqlite {synchronous} inline", await timed(history.post, posts))
            loop = asyncio.get_running_loop()
            # A connection a thread may use, as aiosqlite's is.
            history.db.close()
            history.db = sqlite3.connect(history.path, isolation_level=None, check_same_thread=False)
            history.db.execute(f"PRAGMA synchronous={synchronous}")

            async def in_thread(data: str) -> None:
                # The commit alone in a thread (what aiosqlite does), the queue after.
                await loop.run_in_executor(None, commit, history, data)
                history.append(data)

            report(f"sqlite {synchronous} thread", await timed(in_thread, posts))
            history.close()


def commit(history: SQLiteHistory, data: str) -> None:
    number = history.count
    history.db.execute("BEGIN")
    history.db.execute("INSERT INTO messages (number, message) VALUES (?, ?)", (number, data))
    history.db.execute("DELETE FROM messages WHERE number <= ?", (number - history.capacity,))
    history.db.execute("COMMIT")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=3000)
    asyncio.run(main(parser.parse_args().posts))
