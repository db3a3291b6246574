"""docs/tutorial.md's "What to copy into your app" is enough: exactly the
files of its list, copied into an empty directory beside the tutorial's own
example app (``myapp.py``, with the listed passages pasted where it says),
serve an authenticated event stream from a process of their own. A file the
list forgets, or a passage it does not name, fails here."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import tornado.web

from tests.client import Client
from tests.tutorial import ROOT, TUTORIAL, copy_app, copy_example

TEXT = TUTORIAL.read_text(encoding="utf-8")
SECRET = "a secret for this test only"
CLOCK = re.compile(r"^[0-9]{2}:[0-9]{2}:[0-9]{2}$")
URL_LINE = re.compile(rb"^http://127\.0\.0\.1:(\d+)/\n$")


def scratch_app(directory: Path) -> Path:
    """The listed files, copied, and the example written beside them."""
    return copy_app(directory, TEXT)


@pytest.fixture
def app_process(tmp_path) -> Iterator[tuple[subprocess.Popen, int]]:
    """``python myapp.py 0`` in the scratch directory. -E and -s: no
    PYTHONPATH and no user site, so only the copies can be imported."""
    script = scratch_app(tmp_path)
    process = subprocess.Popen([sys.executable, "-E", "-s", script.name, "0"], cwd=tmp_path,
                               env=dict(os.environ, COOKIE_SECRET=SECRET, PYTHONUNBUFFERED="1"),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([process.stdout], [], [], 10)
        line = process.stdout.readline() if ready else b""
        match = URL_LINE.match(line)
        if not match:
            process.kill()
            _, stderr = process.communicate(timeout=5)
            pytest.fail(f"{script.name} printed {line!r}, not its URL:\n{stderr.decode(errors='replace')}")
        yield process, int(match.group(1))
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=5)


def test_only_the_copies_are_imported(tmp_path):
    scratch_app(tmp_path)
    found = subprocess.run(
        [sys.executable, "-E", "-s", "-c",
         "import comet.policies, comet.clients, handlers.base, handlers.eventsource, handlers.writer, sys;"
         "print('\\n'.join(m.__file__ for n, m in sys.modules.items() if n.split('.')[0] in ('comet', 'handlers')"
         " and getattr(m, '__file__', None)))"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )
    assert found.returncode == 0, found.stderr
    assert all(Path(path).resolve().is_relative_to(tmp_path.resolve()) for path in found.stdout.split()), found.stdout


def test_the_example_listens_and_is_set_up_as_app_py_is():
    """Its listen backlog and the settings the handlers read have app.py's
    values, so the example does not drift from what the tutorial explains."""
    import app  # defines the flags: their defaults are app.py's settings

    example = "\n".join(copy_example(TEXT)[1])
    backlog = re.compile(r"\bbacklog=(\d+)")
    assert backlog.findall(example) == backlog.findall((ROOT / "app.py").read_text(encoding="utf-8"))
    defaults = app.options.group_dict("app")
    for name in ("retry", "retry_jitter", "keepalive", "poll_timeout", "max_backlog"):
        value = re.search(rf"\b{name}=([0-9. *]+)[,)\n]", example)
        assert value, f"the example does not set {name}"
        assert eval(value.group(1), {"__builtins__": {}}) == defaults[name], name


def test_the_copies_serve_a_stream_to_a_signed_in_user_and_shut_down_cleanly(app_process):
    process, port = app_process
    with Client(port, "/clock") as stranger:
        refused = stranger.finish()
    assert refused.status == 403 and b"sign in first" in refused.body, refused

    cookie = tornado.web.create_signed_value(SECRET, "user", "ada").decode("ascii")
    with Client(port, "/clock", headers={"Cookie": f"user={cookie}"}) as reader:
        head = reader.head()
        assert head.status == 200 and head.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert head.headers["X-Accel-Buffering"] == "no" and head.headers["Cache-Control"] == "no-cache"
        first, second = reader.events(2, timeout=4)
        assert CLOCK.match(first["data"]) and CLOCK.match(second["data"]), (first, second)
        assert int(second["id"]) == int(first["id"]) + 1
        assert 2000 <= reader.response.stream.retry <= 4000
        process.send_signal(signal.SIGTERM)
        assert reader.closed_by_server(timeout=5)
        assert reader.response.complete, "the stream was cut off, not ended"
    assert process.wait(timeout=5) == 0
