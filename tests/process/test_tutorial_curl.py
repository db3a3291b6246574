"""Every ``curl`` session of docs/tutorial.md, run in the tutorial's order
against a live ``python app.py`` with the flags of ``make run``, must print
what the tutorial shows (the conventions are in tests/tutorial.py: ``...``
for lines left out, ``<epoch>``, ``<price>`` and the like for values that
differ, a held request that must stay unanswered until the post after it).
So must Appendix B's commands, which run the example app from a folder of
the copies alone."""

from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time

from tests.client import wait_until
from tests.server import ServerProcess
from tests.tutorial import (COPY_PORT, HELD_FOR, TUTORIAL, TUTORIAL_ADDRESS, Command, copy_app, copy_run,
                            curl_sessions, match_output)

CURL = shutil.which("curl") or "/usr/bin/curl"
BOUND = 10  # seconds: the --max-time given to a command that has none of its own
TEXT = TUTORIAL.read_text(encoding="utf-8")
COMMANDS, PROBLEMS = curl_sessions(TEXT)
# curl must reach 127.0.0.1 itself, whatever proxy this machine is set up for.
ENV = {name: value for name, value in os.environ.items() if "proxy" not in name.lower()}


def own_bound(command: Command) -> bool:
    return "--max-time" in shlex.split(command.text) or "-m" in shlex.split(command.text)


def argv(command: Command, port: int) -> list[str]:
    """The command as run: the test server's address, no ~/.curlrc (-q), and
    a --max-time unless it has its own."""
    words = [word.replace(TUTORIAL_ADDRESS, f"127.0.0.1:{port}") for word in shlex.split(command.text)]
    assert words[0] == "curl", command.text
    return [CURL, "-q", *([] if own_bound(command) else ["--max-time", str(BOUND)]), *words[1:]]


def waiting_polls(server: ServerProcess) -> int:
    """Held long polls (/chat/get), as /status counts them: what a held command is."""
    return server.status()["chat"]["waiting"]


def where(command: Command) -> str:
    return f"docs/tutorial.md:{command.line}: $ {command.text}"


def check_exit(command: Command, code: int, stderr: bytes) -> None:
    # 28 is curl's "operation timed out": what a --max-time of the tutorial's own ends with.
    allowed = {0, 28} if own_bound(command) else {0}
    assert code in allowed, f"{where(command)}\nexited {code}: {stderr.decode(errors='replace')}"


def start_held(command: Command, server: ServerProcess) -> subprocess.Popen:
    """Start a command the tutorial says the server holds, and check that it
    does: /status counts one more held poll, and curl prints nothing."""
    before = waiting_polls(server)
    process = subprocess.Popen(argv(command, server.port), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    assert wait_until(lambda: waiting_polls(server) == before + 1, timeout=5), f"{where(command)}\nnever held"
    ready, _, _ = select.select([process.stdout], [], [], HELD_FOR)
    assert not ready and process.poll() is None, (
        f"{where(command)}\nanswered within {HELD_FOR} s: the tutorial says it is held")
    return process


def check_answer(command: Command, process: subprocess.Popen, bound: dict[str, str]) -> None:
    """The held command, its answer due now, prints what its answer block shows."""
    start = time.monotonic()
    stdout, stderr = process.communicate(timeout=BOUND + 5)
    check_exit(command, process.returncode, stderr)
    assert time.monotonic() - start < 3, f"{where(command)}\nanswered late"
    problem = match_output(command.answer, stdout.decode("utf-8").splitlines(), bound)
    assert problem is None, f"{where(command)} (its answer, docs/tutorial.md:{command.answer_line})\n{problem}"


def test_every_curl_in_the_tutorial_shows_what_the_text_says():
    assert not PROBLEMS, "\n".join(PROBLEMS)  # (tests/unit/test_tutorial.py says more)
    assert os.path.exists(CURL), "curl is missing: scripts/system-deps.sh (make test) installs it"
    bound: dict[str, str] = {}  # the <epoch> of this server, once seen
    held: list[tuple[Command, subprocess.Popen]] = []
    with ServerProcess() as server:
        try:
            for index, command in enumerate(COMMANDS):
                if command.held:
                    held.append((command, start_held(command, server)))
                    continue
                result = subprocess.run(argv(command, server.port), capture_output=True, env=ENV, timeout=BOUND + 5)
                check_exit(command, result.returncode, result.stderr)
                problem = match_output(command.expected, result.stdout.decode("utf-8").splitlines(), bound)
                assert problem is None, f"{where(command)}\n{problem}"
                # A held command's answer is due once the commands before its answer block have run.
                following = COMMANDS[index + 1].line if index + 1 < len(COMMANDS) else None
                for waiting, process in list(held):
                    if following is None or following > waiting.answer_line:
                        held.remove((waiting, process))
                        check_answer(waiting, process, bound)
            assert not held, "a held command was never answered"
        finally:
            for _, process in held:
                process.kill()
                process.wait(timeout=5)
        assert "Traceback" not in server.log(), server.log()[-3000:]


# --- Appendix B: the example app, run as the text says ---------------------------------------

ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
URL_LINE = re.compile(r"^http://127\.0\.0\.1:(\d+)/$")


def in_bash(command: Command, remembered: list[str], port: int) -> str:
    """The command as bash runs it: after the assignments before it, at the
    app's port, curl without ~/.curlrc and with a --max-time of its own."""
    text = command.text.replace(f"127.0.0.1:{COPY_PORT}", f"127.0.0.1:{port}")
    if text.startswith("curl "):
        text = f"{shlex.quote(CURL)} -q {'' if own_bound(command) else f'--max-time {BOUND} '}{text[5:]}"
    return "\n".join([*remembered, text])


def test_appendix_b_runs_the_example_app_from_the_text(tmp_path):
    commands = copy_run(TEXT)
    script = copy_app(tmp_path, TEXT)
    starts = [c for c in commands if re.search(rf"\bpython {re.escape(script.name)} {COPY_PORT}$", c.text)]
    assert len(starts) == 1, f"Appendix B must start {script.name} on port {COPY_PORT} once: {commands}"
    # The copies only: no PYTHONPATH; `python` is the tests' Python, with Tornado.
    env = {name: value for name, value in ENV.items() if name != "PYTHONPATH"}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    bound: dict[str, str] = {}
    remembered: list[str] = []
    app = None
    port = COPY_PORT
    try:
        for command in commands:
            if command is starts[0]:
                assert app is None
                text = re.sub(rf"\b{COPY_PORT}$", "0", command.text)  # a free port, not the text's
                app = subprocess.Popen(["bash", "-c", text], cwd=tmp_path, env=env, start_new_session=True,
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                ready, _, _ = select.select([app.stdout], [], [], 10)
                line = app.stdout.readline().decode().rstrip("\n") if ready else ""
                found = URL_LINE.match(line)
                assert found, f"{where(command)}\nprinted {line!r}, not its URL"
                port = int(found.group(1))
                shown = line.replace(f":{port}/", f":{COPY_PORT}/")
                problem = match_output(command.expected, [shown], bound)
                assert problem is None, f"{where(command)}\n{problem}"
                continue
            result = subprocess.run(["bash", "-c", in_bash(command, remembered, port)], cwd=tmp_path, env=env,
                                    capture_output=True, timeout=BOUND + 5)
            check_exit(command, result.returncode, result.stderr)
            problem = match_output(command.expected, result.stdout.decode("utf-8").splitlines(), bound)
            assert problem is None, f"{where(command)}\n{problem}"
            if ASSIGNMENT.match(command.text):
                remembered.append(command.text)
        assert app is not None and remembered, "Appendix B never made its cookie"
    finally:
        if app is not None:
            if app.poll() is None:
                os.killpg(app.pid, signal.SIGTERM)
            _, stderr = app.communicate(timeout=10)
            assert b"Traceback" not in stderr, stderr.decode(errors="replace")
