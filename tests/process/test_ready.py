"""A restarted process answers nothing until it holds its history.

Readers of a restarted server come back the instant its port opens, each
with the ``Last-Event-ID`` it had. If the port opened before the engine had
loaded the history, the first of them would be answered from an empty
history under an epoch of its own: a ``reset``, then every message again.
Here a few hundred readers holding ids of the history's epoch reconnect the
moment the new process accepts a connection, and each must get exactly the
messages after its id: no ``reset``, nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Optional

import pytest

from tests.client import HOST, AsyncClient, fetch, free_port, request_bytes, wait_until
from tests.server import NO_JITTER, ROOT, ServerProcess

READERS = 300
PORT_WAIT = 30.0  # seconds the readers wait for the new process's port
# Nothing moves but what the test posts; no keep-alive comment in the way.
FLAGS = ("--tick-interval=3600", "--keepalive=60", "--poll-timeout=60", NO_JITTER)


class Reconnecting(threading.Thread):
    """``READERS`` event-stream readers, on an asyncio loop of their own,
    that reconnect to ``port`` the instant it accepts a connection: one
    probe tries it every millisecond, then every reader connects and asks
    at once.
    ``cursors[i]`` is reader i's ``Last-Event-ID``. Each reads until the
    event whose data is ``"end"``; ``results[i]`` is what it read, as
    (event type, id, data)."""

    def __init__(self, port: int, cursors: list[str]) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.cursors = cursors
        self.connected = threading.Semaphore(0)
        self.results: list[list[tuple[str, str, str]]] = []
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self.wait_for_port()
            # Connected and asked in one go, before any reader reads, so
            # that every request is in the server's queue within a few
            # milliseconds of the port opening.
            clients = [self.ask(cursor) for cursor in self.cursors]
            self.results = asyncio.run(self.read_all(clients))
        except BaseException as error:  # handed to the test by result()
            self.error = error

    def wait_for_port(self) -> None:
        deadline = time.monotonic() + PORT_WAIT
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=1.0).close()
                return
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, f"port {self.port} did not open within {PORT_WAIT} s"
                time.sleep(0.001)

    def ask(self, cursor: str) -> socket.socket:
        sock = socket.create_connection((HOST, self.port), timeout=5.0)
        sock.sendall(request_bytes("GET", "/chat/events", {"Last-Event-ID": cursor}, host=f"{HOST}:{self.port}"))
        sock.setblocking(False)
        return sock

    async def read_all(self, socks: list[socket.socket]) -> list[list[tuple[str, str, str]]]:
        return await asyncio.gather(*(self.read(AsyncClient(sock, self.port)) for sock in socks))

    async def read(self, client: AsyncClient) -> list[tuple[str, str, str]]:
        try:
            await client.resume()
            head = await client.head(timeout=20)
            assert head.status == 200, head
            self.connected.release()
            events: list[dict] = []
            while not events or events[-1]["data"] != "end":
                events += await client.events(1, timeout=20)
            return [(event["event"], event["id"], event["data"]) for event in events]
        finally:
            await client.close()

    def wait_connected(self, timeout: float) -> int:
        """How many readers have their response head, waiting up to ``timeout`` s for all."""
        deadline = time.monotonic() + timeout
        count = 0
        while count < len(self.cursors) and self.connected.acquire(timeout=max(deadline - time.monotonic(), 0)):
            count += 1
        return count

    def result(self, timeout: float) -> list[list[tuple[str, str, str]]]:
        self.join(timeout)
        assert not self.is_alive(), f"the readers did not finish within {timeout} s"
        if self.error is not None:
            raise self.error
        return self.results


def post(server: ServerProcess, message: str) -> int:
    status, _, body = server.post(message)
    assert status == 200, (status, body)
    return json.loads(body)["id"]


def restart_under_readers(*flags: str) -> None:
    """Six messages, a restart, readers at ids 3 and 6 of the epoch coming
    back at once, then three more messages: each reader gets exactly what
    follows its id."""
    with ServerProcess(*FLAGS, *flags) as before:
        for number in range(6):
            assert post(before, f"m{number}") == number
        epoch = before.fetch("/chat/since/0")[1]["X-Chat-Epoch"]
        assert before.stop(signal.SIGTERM) == 0, before.log()[-2000:]

        cursors = [f"{epoch}:{3 if i % 2 else 6}" for i in range(READERS)]
        readers = Reconnecting(before.port, cursors)
        readers.start()
        with before.again(start_timeout=PORT_WAIT) as after:
            assert readers.wait_connected(timeout=30) == READERS
            for number, message in enumerate(["m6", "m7", "end"], start=6):
                assert post(after, message) == number
            results = readers.result(timeout=60)
            assert after.stop(signal.SIGTERM) == 0, after.log()[-2000:]

    for cursor, events in zip(cursors, results):
        start = int(cursor.rpartition(":")[2])
        expected = [("message", f"{epoch}:{n + 1}", f"m{n}") for n in range(start, 8)]
        expected.append(("message", f"{epoch}:9", "end"))
        assert events == expected, f"the reader at {cursor} got {events}"


def test_readers_of_a_redis_history_are_not_reset_by_a_restart(redis_server):
    restart_under_readers(f"--redis={redis_server.url}")


def test_readers_of_a_sqlite_history_are_not_reset_by_a_restart():
    restart_under_readers()  # ServerProcess's own store, kept for again()


def test_a_process_waits_for_redis_with_its_port_closed_and_says_so(redis_server, tmp_path):
    """Redis not answering at start (hung: it keeps what it holds): the
    process keeps trying without listening, listens once Redis answers, and
    serves the history Redis holds."""
    with ServerProcess(*FLAGS, f"--redis={redis_server.url}") as first:
        assert post(first, "kept") == 0
        epoch = first.fetch("/chat/since/0")[1]["X-Chat-Epoch"]
        assert first.stop(signal.SIGTERM) == 0
    redis_server.pause()
    port = free_port()
    log = tmp_path / "app.log"
    with open(log, "wb") as stderr:
        waiting = subprocess.Popen([sys.executable, "app.py", f"--port={port}", f"--redis={redis_server.url}", *FLAGS],
                                   cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
    try:
        assert wait_until(lambda: "unreachable" in log.read_text(), timeout=10), log.read_text()
        # Past the first wait too, when it says it goes on waiting: still no URL, the port still closed.
        assert wait_until(lambda: "not listening until it does" in log.read_text(), timeout=10), log.read_text()
        assert not select.select([waiting.stdout], [], [], 1.0)[0], waiting.stdout.readline()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, port), timeout=1.0)
        redis_server.resume()
        assert select.select([waiting.stdout], [], [], 20)[0], "no URL line within 20 s of Redis answering"
        line = waiting.stdout.readline()
        assert line == f"http://127.0.0.1:{port}/\n".encode(), (line, log.read_text())
        status, headers, body = fetch(port, "/chat/since/0")
        assert (status, headers["X-Chat-Epoch"], json.loads(body)["messages"]) == (200, epoch, ["kept"])
        waiting.send_signal(signal.SIGTERM)
        assert waiting.wait(timeout=5) == 0
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait(timeout=5)
        waiting.stdout.close()


def test_a_signal_while_waiting_for_redis_exits_0_at_once(redis_server, tmp_path):
    redis_server.stop()
    log = tmp_path / "app.log"
    with open(log, "wb") as stderr:
        waiting = subprocess.Popen([sys.executable, "app.py", "--port=0", f"--redis={redis_server.url}", *FLAGS],
                                   cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
    try:
        assert wait_until(lambda: "unreachable" in log.read_text(), timeout=10), log.read_text()
        waiting.send_signal(signal.SIGINT)
        assert waiting.wait(timeout=5) == 0
        assert waiting.stdout.read() == b""  # never listened, never printed a URL
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait(timeout=5)
        waiting.stdout.close()


def test_adopting_the_history_in_redis_is_logged_as_info_naming_its_epoch(redis_server):
    with ServerProcess(*FLAGS, f"--redis={redis_server.url}") as first:
        for number in range(3):
            post(first, f"m{number}")
        epoch = first.fetch("/chat/since/0")[1]["X-Chat-Epoch"]
        assert first.stop(signal.SIGTERM) == 0
        assert f"a new one begins (epoch {epoch})" in first.log(), first.log()
    with ServerProcess(*FLAGS, f"--redis={redis_server.url}") as second:
        assert second.stop(signal.SIGTERM) == 0
        lines = second.log().splitlines()
    adopted = [line for line in lines if "serving the chat's history in Redis" in line]
    assert len(adopted) == 1 and adopted[0].startswith("[I "), lines
    assert adopted[0].endswith(f"epoch {epoch}, messages 0 to 2"), adopted
    assert not [line for line in lines if line.startswith("[W ")], lines
