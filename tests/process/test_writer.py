"""``--writer`` on a live server (docs/protocol.md section 5): the fast
writer falls back to the plain one, saying so in one line on stderr, when
the installed Tornado lacks a name it relies on; the plain writer is chosen
without a word; both answer a woken poll alike but for the Date; any other
value is refused at start. A ``sitecustomize`` run before app.py makes
the installed Tornado one that renamed ``RequestHandler._break_cycles()``,
as a release may: the method gets another name, and so does Tornado's own
call to it in ``finish()``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.client import Client, head_lines, wait_until
from tests.server import QUIET, ROOT, ServerProcess

FALLBACK_LINE = ("--writer=fast: this Tornado lacks RequestHandler._break_cycles(); "
                 "serving with --writer=plain")

RENAMED_BREAK_CYCLES = """
import tornado.web
handler = tornado.web.RequestHandler
handler._release_cycles = handler._break_cycles
del handler._break_cycles
names = tuple("_release_cycles" if name == "_break_cycles" else name for name in handler.finish.__code__.co_names)
handler.finish.__code__ = handler.finish.__code__.replace(co_names=names)
"""


@pytest.fixture
def tornado_that_renamed_break_cycles(tmp_path, monkeypatch) -> Path:
    (tmp_path / "sitecustomize.py").write_text(RENAMED_BREAK_CYCLES, encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return tmp_path


def woken_poll(server: ServerProcess, text: str):
    """A /chat/get held, then answered by a post of ``text``: its response,
    and then the same message asked again on the same connection."""
    number = server.status()["chat"]["messages"]
    with Client(server.port, f"/chat/get/{number}") as poll:
        assert wait_until(lambda: server.counts()[0] == 1), "the poll is not held"
        assert server.post(text)[0] == 200
        woken = poll.finish()
        poll.request("GET", f"/chat/get/{number}")  # kept alive: asked again, answered at once
        again = poll.finish()
    return woken, again


def test_a_missing_private_name_is_one_line_and_the_server_serves_as_plain(tornado_that_renamed_break_cycles,
                                                                           monkeypatch):
    monkeypatch.delenv("COMET_TEST_WRITER", raising=False)  # a default start
    with ServerProcess(*QUIET, "--logging=none") as server:
        assert server.line == f"http://127.0.0.1:{server.port}/\n".encode(), "the URL stays the first stdout line"
        with server.no_errors():
            woken, again = woken_poll(server, "still served")
        assert (woken.status, woken.body) == (200, b"still served") and head_lines(woken) == head_lines(again)
        assert server.stop() == 0
    assert server.log().splitlines() == [FALLBACK_LINE]


@pytest.mark.parametrize("flag", ["--writer=plain", "--writer=fast"])
def test_with_everything_there_nothing_is_said_about_the_writer(flag):
    with ServerProcess(*QUIET, "--logging=none", flag) as server:
        woken, again = woken_poll(server, "said nothing")
        assert (woken.status, woken.body) == (200, b"said nothing")
        assert server.stop() == 0
    assert server.log() == ""


def test_the_plain_writer_is_chosen_without_a_word_even_where_fast_could_not_run(tornado_that_renamed_break_cycles):
    with ServerProcess(*QUIET, "--logging=none", "--writer=plain") as server:
        assert woken_poll(server, "plain")[0].body == b"plain"
        assert server.stop() == 0
    assert server.log() == ""


def test_both_writers_answer_a_woken_poll_with_the_same_bytes_but_the_date():
    answers = {}
    for writer in ("plain", "fast"):
        with ServerProcess(*QUIET, f"--writer={writer}") as server:
            answers[writer] = woken_poll(server, "the same")[0]
    assert head_lines(answers["plain"])[1:] != [] and answers["plain"].body == answers["fast"].body == b"the same"
    assert [line for line in head_lines(answers["plain"]) if not line.startswith(b"X-Chat-Epoch")] == \
        [line for line in head_lines(answers["fast"]) if not line.startswith(b"X-Chat-Epoch")]


def test_another_writer_is_refused_at_start_in_one_line():
    done = subprocess.run([sys.executable, "app.py", "--port=0", "--writer=turbo"], cwd=ROOT,
                          capture_output=True, timeout=20)
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode().splitlines() == ["--writer=turbo: choose plain or fast"]
