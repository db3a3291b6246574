"""The engines without a server: which one the flags open, an epoch that is
unknown until loaded, and the SQLite store (docs/protocol.md §6): what a
reopened file holds, and each file it must refuse, left byte for byte as it
was."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from app import HERE
from comet.engine import DEFAULT_DB, IN_MEMORY, MemoryEngine, StoreError, open_engine
from comet.policies import EPOCH, Unavailable
from comet.sqlite_engine import APPLICATION_ID, SCHEMA_VERSION, SQLiteEngine, SQLiteHistory


def opened(path: Path, capacity: int = 5) -> SQLiteHistory:
    history = SQLiteHistory(str(path), capacity)
    history.open()
    return history


def post(history: SQLiteHistory, *messages: str) -> list[int]:
    return [asyncio.run(history.post(message)) for message in messages]


def refusal(path: Path) -> str:
    """The line a start on ``path`` stops with; the file is unchanged."""
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(StoreError) as refused:
        opened(path)
    if before is not None:
        assert path.read_bytes() == before, "a refused store was written to"
    message = str(refused.value)
    assert "\n" not in message and str(path) in message, message
    return message


def test_the_default_is_instance_chat_db_beside_app_py_and_memory_and_redis_are_other_engines():
    assert DEFAULT_DB == os.path.join(HERE, "instance", "chat.db")
    assert isinstance(open_engine("", "", 10, 1.0), SQLiteEngine)
    assert open_engine("", "", 10, 1.0).history.path == DEFAULT_DB
    assert type(open_engine("", IN_MEMORY, 10, 1.0)) is MemoryEngine


def test_every_engine_has_what_the_engine_protocol_names():
    engines = [open_engine("", IN_MEMORY, 10, 1.0), open_engine("", "", 10, 1.0),
               open_engine("redis://127.0.0.1:1/0", "", 10, 1.0)]  # nothing is reached yet
    for engine in engines:
        assert {"history", "prices", "start", "stop"} <= set(dir(engine)), engine


def test_an_engine_with_a_store_knows_no_epoch_before_it_has_loaded(tmp_path):
    """A made-up epoch would be served to the first readers, who would be
    told to reset: unknown (None) until the store is read."""
    assert open_engine("redis://127.0.0.1:1/0", "", 10, 1.0).history.epoch is None
    assert open_engine("", str(tmp_path / "chat.db"), 10, 1.0).history.epoch is None
    assert EPOCH.fullmatch(open_engine("", IN_MEMORY, 10, 1.0).history.epoch)  # nothing to load: its own


def test_redis_and_an_explicit_db_together_are_refused():
    with pytest.raises(StoreError, match="--redis and --db=x.db name two stores"):
        open_engine("redis://127.0.0.1:1/0", "x.db", 10, 1.0)


def test_the_epoch_is_unknown_until_the_file_is_read(tmp_path):
    history = SQLiteHistory(str(tmp_path / "chat.db"), 5)
    assert history.epoch is None
    history.open()
    assert EPOCH.fullmatch(history.epoch)
    history.close()


def test_a_reopened_store_holds_the_same_messages_numbers_and_epoch(tmp_path):
    history = opened(tmp_path / "chat.db")
    assert post(history, "zero", "one", "two") == [0, 1, 2]
    epoch = history.epoch
    history.close()
    again = opened(tmp_path / "chat.db")
    assert (again.epoch, again.first, again.count, again.since(0)) == (epoch, 0, 3, ["zero", "one", "two"])
    assert post(again, "three") == [3]
    assert again.owed((epoch, 3))[0] == f"id: {epoch}:4\ndata: three\n\n".encode()
    again.close()


def test_a_store_keeps_history_messages_and_a_smaller_history_later_keeps_fewer(tmp_path):
    history = opened(tmp_path / "chat.db", capacity=3)
    post(history, *[f"m{n}" for n in range(7)])
    history.close()
    rows = sqlite3.connect(tmp_path / "chat.db").execute("SELECT number FROM messages").fetchall()
    assert rows == [(4,), (5,), (6,)]  # the file, too, keeps only --history
    smaller = opened(tmp_path / "chat.db", capacity=2)
    assert (smaller.first, smaller.count, smaller.since(5)) == (5, 7, ["m5", "m6"])
    smaller.close()


def test_a_post_that_cannot_be_committed_is_unavailable_and_not_held(tmp_path):
    history = opened(tmp_path / "chat.db")
    post(history, "kept")
    history.db.execute("PRAGMA query_only = ON")  # every write now fails, as a full disk would
    with pytest.raises(Unavailable):
        post(history, "lost")
    assert (history.count, history.since(0)) == (1, ["kept"])
    history.close()
    with pytest.raises(Unavailable):
        post(history, "after close")


def test_a_post_is_stored_while_a_backup_reads_the_file(tmp_path):
    """The write-ahead log: a reader (sqlite3's .backup, VACUUM INTO, as
    docs/deployment.md says to back up) reads its snapshot while posts go
    on. With a rollback journal the post would wait for the reader, then
    fail: 503."""
    history = opened(tmp_path / "chat.db")
    post(history, "before")
    backup = sqlite3.connect(tmp_path / "chat.db", isolation_level=None)
    backup.execute("BEGIN")
    assert backup.execute("SELECT message FROM messages").fetchall() == [("before",)]  # its snapshot, held
    assert post(history, "during") == [1]
    assert backup.execute("SELECT message FROM messages").fetchall() == [("before",)]
    backup.execute("COMMIT")
    assert backup.execute("SELECT message FROM messages").fetchall() == [("before",), ("during",)]
    backup.close()
    history.close()


def test_a_commit_is_a_write_to_the_log_without_an_fsync(tmp_path):
    """synchronous=NORMAL: no fsync per post, so the commit can run on the
    event loop. Its effect is time alone, which no test here measures, so
    the setting itself is checked."""
    history = opened(tmp_path / "chat.db")
    assert history.db.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    history.close()


def test_a_missing_folder_is_made(tmp_path):
    history = opened(tmp_path / "instance" / "chat.db")
    assert (tmp_path / "instance" / "chat.db").is_file()
    history.close()


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "chat.db"
    path.write_bytes(b"my notes, not a database\n" * 100)
    assert "it is not a SQLite database" in refusal(path)


def test_another_apps_database_is_refused(tmp_path):
    path = tmp_path / "chat.db"
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    other.close()
    assert "not this app's chat store" in refusal(path)


def test_a_store_of_an_unknown_schema_version_is_refused(tmp_path):
    path = tmp_path / "chat.db"
    opened(path).close()
    with sqlite3.connect(path) as newer:
        newer.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    newer.close()
    assert sqlite3.connect(path).execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
    assert f"schema version is {SCHEMA_VERSION + 1}" in refusal(path)


def test_a_place_that_cannot_be_written_is_refused(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    assert "a-file is not a folder" in refusal(tmp_path / "a-file" / "chat.db")
    (tmp_path / "a-folder").mkdir()
    assert "cannot be opened for writing (Is a directory)" in refusal(tmp_path / "a-folder")


def test_a_second_user_of_the_same_file_is_refused_and_pointed_to_redis(tmp_path):
    first = opened(tmp_path / "chat.db")
    post(first, "mine")
    assert "another process is using it (to share one chat between processes, use --redis)" in refusal(
        tmp_path / "chat.db")
    post(first, "still mine")
    first.close()
    opened(tmp_path / "chat.db").close()  # free again once the first has let go


def test_the_engine_loads_at_start_and_lets_go_at_stop(tmp_path):
    async def run() -> None:
        engine = SQLiteEngine(str(tmp_path / "chat.db"), 5, 3600)
        await engine.start()
        await engine.history.post("hello")
        await engine.stop()
        engine = SQLiteEngine(str(tmp_path / "chat.db"), 5, 3600)
        await engine.start()
        assert engine.history.since(0) == ["hello"]
        await engine.stop()

    asyncio.run(run())
