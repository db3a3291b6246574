"""Fixtures shared by every test.

pytest-tornado's ``http_server``, ``http_client`` and ``base_url`` serve the
``app`` fixture below on a free port of 127.0.0.1. A test changes the app's
settings with ``@pytest.mark.settings(poll_timeout=0.2, ...)``.
"""

import pytest

from app import make_app

CHAT_EPOCH = "E"  # the epoch of the in-process app's chat: its ids are E:1, E:2, …

# Short timers, so waiting tests stay quick; the history in memory (nothing
# loads it: the in-process server starts no engine).
FAST = dict(poll_timeout=1.0, keepalive=5.0, retry=2000, retry_jitter=0, db=":memory:")


@pytest.fixture
def app(request):
    marker = request.node.get_closest_marker("settings")
    app = make_app(**(FAST | (marker.kwargs if marker else {})))
    app.history.epoch = CHAT_EPOCH  # a fixed name, so a test can spell out the exact frames
    return app
