"""Fixtures of the tests on a live ``python app.py`` (tests/server.py).

Two servers are shared by the tests of one module: ``tuned`` runs with short
timers and small limits, ``quiet`` with timers so long that nothing is ever
published while a test watches it (no test posts to it either). Tests that
stop a server, or need other flags, start their own. (``redis_server``, a
Redis of the test's own, is in tests/conftest.py.)
"""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.server import NO_JITTER, QUIET, ServerProcess

TUNED = ("--retry=1234", "--tick-interval=0.1", "--poll-timeout=0.5", "--history=2",
         "--max-message=5", "--keepalive=0.3", NO_JITTER)


@pytest.fixture(scope="module")
def tuned() -> Iterator[ServerProcess]:
    with ServerProcess(*TUNED) as server:
        yield server


@pytest.fixture(scope="module")
def quiet() -> Iterator[ServerProcess]:
    with ServerProcess(*QUIET) as server:
        yield server
