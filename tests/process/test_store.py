"""The chat's store across real restarts of ``python app.py`` (docs/protocol.md
§6): the SQLite file ServerProcess gives each server, passed again to the
next process by ``again()``. A restart keeps the messages, their numbers and
the epoch, so every cursor from before stays good; a SIGKILL loses nothing
answered; and a file that is not this app's store stops the start with one
line, and is left as it was."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client import FALLBACK, Client
from tests.server import NO_JITTER, ROOT, ServerProcess

# Dozens of posts from one address, as fast as they go: no post rate.
FLAGS = ("--tick-interval=3600", "--keepalive=60", "--poll-timeout=60", NO_JITTER, "--post-rate=0")


def post(server: ServerProcess, message: str) -> int:
    status, _, body = server.post(message)
    assert status == 200, (status, body)
    return json.loads(body)["id"]


def since(server: ServerProcess, number: int = 0) -> dict:
    status, _, body = server.fetch(f"/chat/since/{number}")
    assert status == 200, (status, body)
    return json.loads(body)


def test_a_restart_keeps_the_messages_their_numbers_and_the_epoch():
    with ServerProcess(*FLAGS) as before:
        assert [post(before, f"m{n}") for n in range(3)] == [0, 1, 2]
        kept = since(before)
        assert before.stop(signal.SIGTERM) == 0
        with before.again() as after:
            assert since(after) == kept
            assert post(after, "after") == 3
            assert since(after, 3) == {"epoch": kept["epoch"], "first": 0, "next": 4, "messages": ["after"]}


def test_a_poll_held_with_the_old_epoch_is_held_again_and_answered():
    with ServerProcess(*FLAGS) as before:
        post(before, "m0")
        epoch = since(before)["epoch"]
        with Client(before.port, f"/chat/get/1?epoch={epoch}") as held:
            assert held.silent(0.3)
            assert before.stop(signal.SIGTERM) == 0
            assert held.finish().status == 204  # the shutdown's answer: ask again
        with before.again() as after, Client(after.port, f"/chat/get/1?epoch={epoch}") as held:
            assert held.silent(0.3), held.response  # held, not refused with a 410
            assert post(after, "m1") == 1
            answer = held.finish()
            assert (answer.status, answer.headers["X-Chat-Epoch"], answer.body) == (200, epoch, b"m1")


@pytest.mark.parametrize("transport", ["eventsource", "fallback"])
def test_a_last_event_id_from_before_resumes_with_no_reset(transport):
    headers = FALLBACK if transport == "fallback" else {}
    with ServerProcess(*FLAGS) as before:
        post(before, "m0")
        post(before, "m1")
        with Client(before.port, "/chat/events", headers=headers) as stream:
            last_event_id = stream.events(2)[-1]["id"]
        epoch = since(before)["epoch"]
        assert last_event_id == f"{epoch}:2"
        assert before.stop(signal.SIGTERM) == 0
        with before.again() as after:
            with Client(after.port, "/chat/events", headers=headers | {"Last-Event-ID": last_event_id}) as stream:
                if transport == "eventsource":
                    assert stream.block() == ["retry: 2000"]
                assert stream.silent(0.3)  # nothing owed: no reset, nothing again
                post(after, "m2")
                if transport == "fallback":
                    stream.finish()
                else:
                    stream.events(1)
                assert stream.response.body == f"retry: 2000\n\nid: {epoch}:3\ndata: m2\n\n".encode()


def test_sigkill_right_after_a_200_loses_nothing():
    with ServerProcess(*FLAGS) as before:
        answered = [post(before, f"m{n}") for n in range(50)]
        assert before.stop(signal.SIGKILL) == -signal.SIGKILL  # no shutdown, no checkpoint
        with before.again() as after:
            kept = since(after)
            assert (kept["first"], kept["next"]) == (0, 50)
            assert kept["messages"] == [f"m{n}" for n in answered]
            assert post(after, "after") == 50


def test_history_holds_across_restarts():
    with ServerProcess(*FLAGS, "--history=3") as first:
        for n in range(5):
            post(first, f"m{n}")
        assert first.stop(signal.SIGTERM) == 0
        with first.again() as second:
            assert {k: v for k, v in since(second, 2).items() if k != "epoch"} == \
                {"first": 2, "next": 5, "messages": ["m2", "m3", "m4"]}
            status, headers, _ = second.fetch("/chat/get/1")
            assert (status, headers["X-First-Message"], headers["X-Next-Message"]) == (410, "2", "5")
            assert second.stop(signal.SIGTERM) == 0
            with second.again("--history=2") as third:  # fewer kept from now on
                assert since(third, 3)["messages"] == ["m3", "m4"]
                assert third.fetch("/chat/get/2")[0] == 410


def test_a_missing_folder_is_made(tmp_path):
    path = tmp_path / "instance" / "chat.db"
    with ServerProcess(*FLAGS, f"--db={path}") as server:
        post(server, "hello")
        assert path.is_file()


def test_db_memory_keeps_nothing_on_disk():
    with ServerProcess(*FLAGS, "--db=:memory:") as server:
        post(server, "gone at exit")
        assert server.store is None
        assert not list(Path(ROOT).glob(":memory:*"))
        assert server.stop(signal.SIGTERM) == 0


# --- stores refused --------------------------------------------------------------------------


def refused(*flags: str) -> str:
    """The one line a start with ``flags`` stops with (exit status 1, no URL, no traceback)."""
    done = subprocess.run([sys.executable, "app.py", "--port=0", *FLAGS, *flags], cwd=ROOT,
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    stderr = done.stderr.decode()
    assert (done.returncode, done.stdout) == (1, b""), (done.returncode, done.stdout, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("app.py: "), stderr
    return lines[0]


def refused_store(path: Path) -> str:
    """``refused`` for ``--db=path``, checking that the file is unchanged."""
    before = path.read_bytes() if path.is_file() else None
    line = refused(f"--db={path}")
    assert str(path) in line, line
    if before is not None:
        assert path.read_bytes() == before, "a refused store was written to"
    return line


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "chat.db"
    path.write_text("notes I keep\n" * 200)
    assert refused_store(path).endswith("it is not a SQLite database; it is left as it is")


def test_another_apps_database_is_refused(tmp_path):
    path = tmp_path / "chat.db"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    other.execute("INSERT INTO invoices VALUES (1, 9.5)")
    other.commit()
    other.close()
    assert "it is a SQLite database, but not this app's chat store" in refused_store(path)


def test_a_store_of_an_unknown_schema_version_is_refused(tmp_path):
    with ServerProcess(*FLAGS) as server:
        post(server, "written by version 1")
        assert server.stop(signal.SIGTERM) == 0
        path = Path(server.db)
        newer = sqlite3.connect(path)
        newer.execute("PRAGMA user_version = 2")  # what a later version would write
        newer.close()
        assert "its schema version is 2, and this app knows version 1 only" in refused_store(path)


def test_a_place_that_cannot_be_written_is_refused(tmp_path):
    (tmp_path / "a-file").write_text("a file where the folder should be")
    assert refused_store(tmp_path / "a-file" / "chat.db").endswith(f"{tmp_path / 'a-file'} is not a folder")
    assert "it cannot be opened for writing (Is a directory)" in refused_store(tmp_path)


def test_a_second_process_on_the_same_file_is_refused_and_pointed_to_redis():
    with ServerProcess(*FLAGS) as first:
        post(first, "mine")
        line = refused_store(Path(first.db))
        assert line.endswith("another process is using it (to share one chat between processes, use --redis)")
        assert post(first, "still mine") == 1  # the first goes on untouched


def test_redis_and_an_explicit_db_together_are_refused(tmp_path):
    line = refused("--redis=redis://127.0.0.1:1/0", f"--db={tmp_path / 'chat.db'}")
    assert "--redis and --db=" in line and "give one of them" in line
    assert not (tmp_path / "chat.db").exists()
