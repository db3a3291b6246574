"""Fixtures shared by every test.

pytest-tornado's ``http_server``, ``http_client`` and ``base_url`` serve the
``app`` fixture below on a free port of 127.0.0.1, once with each writer
(``--writer=plain`` and ``--writer=fast``): both must pass every test. A
test changes the app's flags with ``@pytest.mark.settings(poll_timeout=0.2, ...)``.
"""

import os

import pytest

from app import Config, make_app
from handlers.writer import choose_writer
from tests.redis_server import REDIS_SERVER, RedisServer

CHAT_EPOCH = "E"  # the epoch of the in-process app's chat: its ids are E:1, E:2, …

# Short timers, so waiting tests stay quick; the history in memory (nothing
# loads it: the in-process server starts no engine).
FAST = dict(poll_timeout=1.0, keepalive=5.0, retry=2000, retry_jitter=0, db=":memory:")


WRITERS = ["plain", "fast"]


def pytest_generate_tests(metafunc):
    """Each test served by the ``app`` below, once per writer. (pytest-tornado
    asks for ``app`` at run time, so a parametrized fixture alone would not
    be seen.) A module with an ``app`` of its own is left alone."""
    served = {"app", "http_server"} & set(metafunc.fixturenames)
    if served and not hasattr(metafunc.module, "app") and "writer_name" not in metafunc.fixturenames:
        metafunc.fixturenames.append("writer_name")
        metafunc.parametrize("writer_name", WRITERS)


@pytest.fixture
def writer(request, io_loop):
    """The writer the app is served with; the fast one must not fall back."""
    name = request.getfixturevalue("writer_name")
    writer, fallback = choose_writer(name)
    assert fallback is None and writer.name == name, fallback
    return writer


@pytest.fixture
def app(request, writer):
    marker = request.node.get_closest_marker("settings")
    app = make_app(Config.from_options(**(FAST | (marker.kwargs if marker else {}))), writer)
    app.history.epoch = CHAT_EPOCH  # a fixed name, so a test can spell out the exact frames
    return app


@pytest.fixture
def redis_server(tmp_path):
    """A ``redis-server`` of the test's own (tests/redis_server.py)."""
    # Never a skip: a missing server is an install bug (`make system-deps`).
    assert os.path.exists(REDIS_SERVER), "needs redis-server: run `make system-deps` (Debian's redis-server)"
    server = RedisServer(str(tmp_path))
    yield server
    server.stop()
