"""``redis-server`` (Debian's package; ``make test`` installs it) run by a
test on a free port of 127.0.0.1, in a temporary directory, keeping nothing
on disk. tests/process/conftest.py's ``redis_server`` fixture starts one."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from typing import Optional

from tests.client import HOST, free_port, wait_until

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """``redis-server`` on 127.0.0.1:``port``, keeping nothing on disk, so a
    stop and start (on the same port) brings it back empty."""

    def __init__(self, directory: str) -> None:
        self.port = free_port()
        self.directory = directory
        self.url = f"redis://{HOST}:{self.port}/0"
        self.process: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        self.log = open(os.path.join(self.directory, "redis.log"), "ab")
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
             "--dir", self.directory],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
        )
        assert wait_until(self.answers, timeout=10.0), f"redis-server not answering on port {self.port}"

    def answers(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def pause(self) -> None:
        """Hang it, as a stuck server or a cut network would: connections
        stay open and nothing answers."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.log.close()

    def client(self):
        import redis

        return redis.Redis(host=HOST, port=self.port, decode_responses=True, socket_timeout=5)
