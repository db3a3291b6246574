"""The chat's history on disk: SQLite, written through, read from memory.

The default engine. The history stays a ``BoundedEventQueue`` in memory, so
``/chat/get``, ``/chat/since`` and ``/chat/events`` never wait on the disk;
``post()`` commits each message to the file before it joins the queue (and
before the poster is answered), and ``start()`` loads the file back: the
same messages under the same numbers and the same epoch, so every cursor and
``Last-Event-ID`` from before a restart stays good.

- Write-ahead log, ``synchronous=NORMAL``: a commit is a write to the log,
  with no fsync, a few tens of microseconds, so it runs inline on the event
  loop. A committed message survives the process being killed at any point
  (the log is in the kernel's hands); a power cut or an OS crash can lose
  the posts committed since the last checkpoint (the log is synced there,
  about every thousand pages), never corrupt the file.
- The file is this app's only if it says so: ``PRAGMA application_id`` marks
  it, ``PRAGMA user_version`` is its schema version (for a later version to
  migrate). Anything else, or a file another process holds, stops the start
  with ``StoreError``, before anything is written: a store is never
  overwritten, emptied or "repaired".
- The price is not kept: the ticker is a random walk that starts again.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sqlite3
from typing import Optional

from comet.engine import MemoryEngine, StoreError
from comet.policies import BoundedEventQueue, Unavailable, new_epoch

log = logging.getLogger(__name__)

APPLICATION_ID = 0x436F6D74  # "Comt": written in the file's header, this app's mark
SCHEMA_VERSION = 1
SCHEMA = [
    "CREATE TABLE chat (epoch TEXT NOT NULL)",  # one row: the name of this history
    "CREATE TABLE messages (number INTEGER PRIMARY KEY, message TEXT NOT NULL)",  # the newest --history
]


class SQLiteHistory(BoundedEventQueue):
    """The history, kept in memory as always and written through to
    ``path``. Its epoch is unknown until ``open()`` has read the file."""

    def __init__(self, path: str, capacity: int) -> None:
        super().__init__(capacity)
        self.epoch = None  # read from the file: never one made up before
        self.path = path
        self.capacity = capacity
        self.db: Optional[sqlite3.Connection] = None
        self._lock: Optional[int] = None

    def refused(self, reason: str) -> StoreError:
        return StoreError(f"cannot use {self.path} as the chat's store: {reason}")

    def open(self) -> None:
        """Take the file (made, with its folder, when missing), check that it
        is this app's, and load it; or raise ``StoreError``, with the file
        left as it was."""
        try:
            self._take()
            self._check()
            self._load()
        except BaseException:
            self.close()
            raise

    def _take(self) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise self.refused(f"{folder} is not a folder")
        try:
            os.makedirs(folder, exist_ok=True)
            self._lock = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise self.refused(f"it cannot be opened for writing ({error.strerror})") from None
        # One process per file: a second one would number messages of its
        # own. flock, not SQLite's locking_mode=EXCLUSIVE, so that a backup
        # (sqlite3's .backup, VACUUM INTO) can still read the file meanwhile.
        # This descriptor stays open while the store is in use: closing any
        # descriptor of the file would drop SQLite's own POSIX locks.
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise self.refused(f"it cannot be locked ({error.strerror})") from None
            raise self.refused("another process is using it (to share one chat between processes, use --redis)") \
                from None
        if not os.access(folder, os.W_OK):
            raise self.refused(f"its folder {folder} cannot be written (SQLite keeps its log beside the file)")

    def _check(self) -> None:
        """This app's store, of the schema version this code knows, or a new
        one (an empty file) made so now."""
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: BEGIN and COMMIT are ours
            application_id, = self.db.execute("PRAGMA application_id").fetchone()
            version, = self.db.execute("PRAGMA user_version").fetchone()
            tables, = self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as error:
            reason = "it is not a SQLite database" if "not a database" in str(error) else f"SQLite cannot read it ({error})"
            raise self.refused(f"{reason}; it is left as it is") from None
        if (application_id, version, tables) != (0, 0, 0):  # not a new, empty file
            if application_id != APPLICATION_ID:
                raise self.refused("it is a SQLite database, but not this app's chat store; it is left as it is")
            if version != SCHEMA_VERSION:
                raise self.refused(f"its schema version is {version}, and this app knows version {SCHEMA_VERSION} "
                                   "only; it is left as it is")
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            if tables == 0:
                self.db.execute("BEGIN IMMEDIATE")
                for statement in SCHEMA:
                    self.db.execute(statement)
                self.db.execute("INSERT INTO chat (epoch) VALUES (?)", (new_epoch(),))
                self.db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self.db.execute("COMMIT")
        except sqlite3.Error as error:
            raise self.refused(f"it cannot be written ({error})") from None

    def _load(self) -> None:
        try:
            row = self.db.execute("SELECT epoch FROM chat").fetchone()
            newest = self.db.execute("SELECT number, message FROM messages ORDER BY number DESC LIMIT ?",
                                     (self.capacity,)).fetchall()
        except sqlite3.Error as error:
            raise self.refused(f"it cannot be read ({error})") from None
        if row is None:
            raise self.refused("it holds no epoch, which this app always writes; it is left as it is")
        newest.reverse()
        first = newest[0][0] if newest else 0
        self.restart_at(first, [message for _, message in newest], epoch=row[0])

    # tutorial: sqlite-post
    async def post(self, data: str) -> int:
        """Commit ``data`` to the file, then hold it and tell the readers:
        the poster is answered only once the message is on disk."""
        number = self.count
        try:
            self.db.execute("BEGIN")
            self.db.execute("INSERT INTO messages (number, message) VALUES (?, ?)", (number, data))
            self.db.execute("DELETE FROM messages WHERE number <= ?", (number - self.capacity,))
            self.db.execute("COMMIT")
        except (sqlite3.Error, AttributeError) as error:  # AttributeError: not open (any more)
            if self.db is not None and self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise Unavailable(f"{self.path} did not take it ({error})") from error
        return self.append(data)
    # end tutorial: sqlite-post

    def close(self) -> None:
        """Let go of the file: SQLite first (it folds its log back into the
        file), the lock last."""
        if self.db is not None:
            self.db.close()
            self.db = None
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


class SQLiteEngine(MemoryEngine):
    """``MemoryEngine``'s ticker, and the history kept in a SQLite file."""

    def __init__(self, path: str, capacity: int, tick_interval: float) -> None:
        super().__init__(capacity, tick_interval)
        self.history = SQLiteHistory(path, capacity)

    async def start(self) -> None:
        self.history.open()
        history = self.history
        log.info("the chat's history is in %s: epoch %s, %d messages kept, the next is number %d", history.path,
                 history.epoch, history.count - history.first, history.count)
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        self.history.close()
