"""The epoch across a real restart of ``python app.py --db=:memory:``
(docs/protocol.md §1, §2): a history kept in memory alone is lost with its
process, so the restarted server's history has a new epoch, and a cursor
from before the restart is told so, even when its number fits the new
history. This is the hole the epoch closes: a reader holding ``1`` waited
for message 1 of the new server and never saw its message 0. (A restart on
a store keeps the epoch: tests/process/test_store.py.)"""

from __future__ import annotations

import json
import signal

from tests.client import FALLBACK, Client, fetch
from tests.server import ServerProcess


def post(port: int, message: str) -> int:
    status, _, body = fetch(port, "/chat/post", "POST", f"message={message}".encode(),
                            {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, body
    return json.loads(body)["id"]


def test_a_restart_in_memory_starts_a_new_epoch_and_old_cursors_are_reset():
    with ServerProcess("--retry-jitter=0", "--db=:memory:") as before:
        post(before.port, "before")
        status, headers, body = fetch(before.port, "/chat/since/0")
        old_epoch = headers["X-Chat-Epoch"]
        assert json.loads(body)["epoch"] == old_epoch
        assert before.stop(signal.SIGTERM) == 0

    with ServerProcess("--retry-jitter=0", "--db=:memory:", f"--port={before.port}") as after:
        post(after.port, "the first message after the restart")
        _, headers, _ = fetch(after.port, "/chat/since/0")
        new_epoch = headers["X-Chat-Epoch"]
        assert new_epoch != old_epoch

        # The long-poll loop's cursor from before: 410, with where the new history is.
        status, headers, _ = fetch(after.port, f"/chat/get/1?epoch={old_epoch}")
        assert (status, headers["X-First-Message"], headers["X-Next-Message"]) == (410, "0", "1")
        # Without the epoch, the same number is a valid "wait for the next one" (the hole).
        with Client(after.port, "/chat/get/1") as held:
            assert held.silent(0.3)

        # The event stream's id from before: a reset, then message 0 of the new history.
        with Client(after.port, "/chat/events", headers=FALLBACK | {"Last-Event-ID": f"{old_epoch}:1"}) as stream:
            response = stream.finish()
        assert response.body == (
            f"retry: 2000\n\nevent: reset\nid: {new_epoch}:0\ndata: 0\n\n"
            f"id: {new_epoch}:1\ndata: the first message after the restart\n\n"
        ).encode()
        assert after.stop(signal.SIGTERM) == 0
