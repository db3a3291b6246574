"""Fixtures of the browser tests: the real server, and a real Chromium.

Each test module gets one server (``python app.py`` on a free port of
127.0.0.1) and one browser, because starting them is the slow part. A test
gets the module's browser through ``browser``, which leaves it with a single
blank window afterwards, so no page of one test is still polling during the
next. ``restartable_server`` is a server of the test's own, which it may stop
and start again on the same port and store (``restartable_memory_server``:
one whose history a restart loses); ``spawn(*flags)`` starts servers of the
test's own with more flags (a test may pause them with SIGSTOP: they are
killed afterwards, paused or not). ``scripted`` is the module's scripted
server, for the browser client against answers the real server never gives.

There is no skip here: when Chromium or chromium-driver is missing, every
browser test fails and says what to install.
"""

from __future__ import annotations

import signal
from typing import Callable, Iterator

import pytest
from selenium import webdriver

from tests.e2e.browser import chromium, close_extra_windows
from tests.e2e.scripted import ScriptedServer
from tests.server import ServerProcess

# A price every 0.2 s, so three arrive quickly; reconnection after 0.5 s.
SERVER_FLAGS = ("--tick-interval=0.2", "--retry=500", "--poll-timeout=5", "--keepalive=5")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(*SERVER_FLAGS) as server:
        yield server
        server.stop(signal.SIGTERM)


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedServer]:
    """The scripted server (tests/e2e/scripted.py), for tests of the
    browser client against answers the real server never gives."""
    with ScriptedServer() as server:
        yield server


@pytest.fixture(scope="module")
def driver() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


@pytest.fixture
def browser(driver: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    """The module's browser, back to one blank window after the test."""
    yield driver
    close_extra_windows(driver)


class RestartableServer:
    """The server under test, which a test may stop and start again on the
    same port: a new process with a new ticker, and the history (and its
    epoch) its store kept; none with ``--db=:memory:``."""

    def __init__(self, *flags: str) -> None:
        self.process = ServerProcess(*SERVER_FLAGS, *flags)
        self.url = self.process.url

    def stop(self) -> None:
        assert self.process.stop(signal.SIGTERM) == 0, self.process.log()

    def start(self) -> None:
        self.process = self.process.again()
        assert self.process.url == self.url

    def close(self) -> None:
        self.process.close()


@pytest.fixture
def restartable_server() -> Iterator[RestartableServer]:
    server = RestartableServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def restartable_memory_server() -> Iterator[RestartableServer]:
    """``restartable_server`` with ``--db=:memory:``: a restart loses the history."""
    server = RestartableServer("--db=:memory:")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., ServerProcess]]:
    """``spawn("--max-clients=1")``: a server with SERVER_FLAGS and these."""
    started: list[ServerProcess] = []

    def start(*flags: str) -> ServerProcess:
        started.append(ServerProcess(*SERVER_FLAGS, *flags))
        return started[-1]

    yield start
    for process in started:
        process.close()
