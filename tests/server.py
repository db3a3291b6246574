"""Run the real server, ``python app.py``, as a child process.

    with ServerProcess("--tick-interval=0.1") as server:
        urllib.request.urlopen(server.url + "status")
        assert server.stop(signal.SIGTERM) == 0

The server starts on ``--port=0`` (a free port) unless a ``--port=N`` flag is
given, and the URL it prints on its first stdout line is where it is reached.
Its chat's store is a SQLite file of its own in a temporary folder (``db``),
unless ``--db`` or ``--redis`` is given: tests never share the checkout's
instance/chat.db, which a second process could not open anyway. ``again()``
starts the next process on the same port and store, as a restart does.
Its stderr (the access log, and any traceback) goes to a temporary file that
``log()`` reads back. Leaving the ``with`` block, or ``close()``, kills the
process if it is still alive. ``fetch``, ``post``, ``status`` and
``wait_for_counts`` are the plain requests tests make of it, through the one
raw client (tests/client.py).
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import contextlib
import json
import time
from typing import Iterator, Optional, Union
from urllib.parse import quote_from_bytes

from tornado.httputil import HTTPHeaders

from tests.client import FALLBACK, Headers, fetch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
URL_LINE = re.compile(rb"^http://127\.0\.0\.1:(\d+)/\r?\n$")
# Every retry: field exactly --retry (the default adds up to 2 s at random),
# so that tests can say which bytes a stream starts with.
NO_JITTER = "--retry-jitter=0"
# Timers so long that nothing is published while a test watches.
QUIET = ("--tick-interval=3600", "--poll-timeout=60", "--keepalive=60", NO_JITTER)
# One of each request the server holds, on a QUIET server (no message yet, ticker id 1).
EVERY_HELD_KIND = [("/chat/events", {}), ("/chat/events", FALLBACK), ("/ticker", {}),
                   ("/ticker", FALLBACK | {"Last-Event-ID": "1"}), ("/chat/get/0", {})]


def held_counts(report: dict) -> tuple[int, int, int]:
    """(held /chat/get polls, chat streams, ticker streams) of a /status report."""
    return report["chat"]["waiting"], report["chat"]["streams"], report["ticker"]["streams"]


class ServerProcess:
    """``python app.py --port=0 *flags``, started at once; see the module doc.

    Attributes: ``url`` (``"http://127.0.0.1:PORT/"``), ``port``, ``pid``,
    ``line`` (the exact first stdout line, bytes) and ``returncode`` (None
    while it runs).
    """

    def __init__(self, *flags: str, start_timeout: float = 10.0,
                 store: Optional[tempfile.TemporaryDirectory] = None) -> None:
        port_flags = () if any(f.startswith("--port=") for f in flags) else ("--port=0",)
        # COMET_TEST_WRITER=plain runs every live server with --writer=plain.
        writer = os.environ.get("COMET_TEST_WRITER")
        if writer and not any(f.startswith("--writer=") for f in flags):
            port_flags += (f"--writer={writer}",)
        self.store = store  # the temporary folder of the store, removed by close()
        self.db: Optional[str] = next((f.partition("=")[2] for f in flags if f.startswith("--db=")), None)
        db_flags: tuple[str, ...] = ()
        if self.db is None and not any(f.startswith("--redis=") for f in flags):
            self.store = tempfile.TemporaryDirectory(prefix="comet-store-")
            self.db = os.path.join(self.store.name, "chat.db")
            db_flags = (f"--db={self.db}",)
        self.flags = (*flags, *db_flags)
        self.args = [sys.executable, "app.py", *port_flags, *self.flags]
        self._log = tempfile.TemporaryFile()
        self._final_log: Optional[str] = None
        self.process = subprocess.Popen(
            self.args,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.pid = self.process.pid
        try:
            self.line = self._first_line(start_timeout)
            match = URL_LINE.match(self.line)
            if not match:
                raise RuntimeError(f"unexpected first line {self.line!r} from {self.args}\n{self.log()}")
        except BaseException:
            self.close()
            raise
        self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}/"

    def _first_line(self, timeout: float) -> bytes:
        """Read stdout up to the first newline, for at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no URL on stdout within {timeout} s from {self.args}\n{self.log()}")
            # poll(), not select(): a test holding thousands of sockets has
            # descriptors past select()'s 1024.
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if poller.poll(remaining * 1000):
                byte = os.read(fd, 1)
                if not byte:
                    self.process.wait(timeout=5)
                    raise RuntimeError(
                        f"{self.args} exited with {self.process.returncode} before printing its URL\n{self.log()}"
                    )
                line += byte
        return line

    @property
    def returncode(self) -> Optional[int]:
        return self.process.poll()

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = 5.0) -> Optional[int]:
        """The exit code, or None if still running after ``timeout`` s."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        """Send ``sig`` and wait up to ``timeout`` s for the exit code. A server
        still running then is killed, so the code is ``-SIGKILL`` (-9)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.wait(timeout)
        if code is None:
            self.process.kill()
            code = self.process.wait(timeout=5)
        return code

    def again(self, *flags: str, start_timeout: float = 10.0) -> "ServerProcess":
        """The next process after this one, which must have stopped: the same
        flags, port and store (a restart), and ``flags`` after them."""
        assert self.returncode is not None, "stop() this one first"
        store, self.store = self.store, None  # the new process removes it
        self.close()
        return ServerProcess(*self.flags, f"--port={self.port}", *flags, start_timeout=start_timeout, store=store)

    # --- plain requests ---------------------------------------------------------------

    def fetch(self, path: str, method: str = "GET", body: bytes = b"", headers: Headers = (),
              timeout: float = 5.0) -> tuple[int, HTTPHeaders, bytes]:
        """(status, headers, body) of one request, answered in full."""
        return fetch(self.port, path, method, body, headers, timeout)

    def post(self, message: Union[bytes, str], timeout: float = 5.0) -> tuple[int, HTTPHeaders, bytes]:
        """POST /chat/post with ``message`` form-encoded."""
        raw = message.encode("utf-8") if isinstance(message, str) else message
        return self.fetch("/chat/post", "POST", b"message=" + quote_from_bytes(raw).encode("ascii"),
                          {"Content-Type": "application/x-www-form-urlencoded"}, timeout)

    def status(self) -> dict:
        code, headers, body = self.fetch("/status")
        assert code == 200 and headers["Content-Type"].startswith("application/json"), (code, body)
        return json.loads(body)

    def counts(self) -> tuple[int, int, int]:
        return held_counts(self.status())

    def held(self) -> int:
        return sum(self.counts())

    def wait_for_counts(self, expected: tuple[int, int, int], timeout: float) -> tuple[dict, float]:
        """Poll /status (bounded) until ``counts()`` is ``expected``; the
        last report and the seconds it took."""
        start = time.monotonic()
        for _ in range(1000):
            report = self.status()
            elapsed = time.monotonic() - start
            found = held_counts(report)
            if found == expected or elapsed > timeout:
                break
            time.sleep(0.01)
        assert found == expected, f"/status says {found}, wanted {expected} within {timeout} s"
        return report, elapsed

    @contextlib.contextmanager
    def no_errors(self) -> Iterator[None]:
        """The block causes no 500 and no traceback in the log, and the
        server still answers afterwards."""
        before = len(self.log())
        yield
        assert self.status()  # answered, and every earlier request is logged by now
        new = self.log()[before:]
        assert "Traceback" not in new and " 500 " not in new, new[-3000:]

    def log(self) -> str:
        """Everything the server wrote to stderr so far (still readable
        after ``close()``)."""
        if self._final_log is not None:
            return self._final_log
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def close(self) -> None:
        """Kill the server if it still runs, and release its pipes."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        if self.process.stdout:
            self.process.stdout.close()
        if self._final_log is None:
            self._final_log = self.log()
            self._log.close()
        if self.store is not None:
            self.store.cleanup()
            self.store = None

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ServerProcess pid={self.pid} {' '.join(self.args[1:])}>"
