"""The runbook's systemd unit, docs/comet@.service: its ExecStart line is run
as written (but for the paths, ports and Redis of the test), behind
docs/nginx.conf; it serves, counts in its metrics, and stops cleanly on
systemd's signal well within TimeoutStopSec; its LimitNOFILE covers
--max-clients; and systemd itself reads it without a complaint."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time

from tests.client import fetch, free_port
from tests.nginx import Nginx
from tests.server import ROOT, ServerProcess

UNIT = os.path.join(ROOT, "docs", "comet@.service")


def service() -> dict[str, str]:
    """The unit's [Service] settings."""
    with open(UNIT, encoding="utf-8") as f:
        section = f.read().split("[Service]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r"^(\w+)=(.*)$", section, re.M))


def test_the_units_exec_start_serves_behind_nginx_and_stops_within_its_timeout(redis_server):
    settings = service()
    command = shlex.split(settings["ExecStart"])
    assert command[:2] == [os.path.join(settings["WorkingDirectory"], ".venv/bin/python"), "app.py"], command
    assert "--xheaders" in command and any(flag.startswith("--redis=") for flag in command)
    port, metrics = free_port(), free_port()
    here = {"--port": str(port), "--metrics-port": str(metrics), "--redis": redis_server.url}
    flags = [re.sub(r"^(--[\w-]+)=.*$", lambda m: f"{m[1]}={here[m[1]]}", flag) if flag.split("=")[0] in here
             else flag for flag in command[2:]]
    assert "--port=%i" in command and "--metrics-port=1%i" in command  # the instance name is the port
    with ServerProcess(*flags) as app, Nginx(port) as nginx:
        code, _, body = fetch(nginx.port, "/chat/post", "POST", b"message=deployed",
                              {"Content-Type": "application/x-www-form-urlencoded"})
        assert code == 200, body
        assert b"comet_posts_total 1.0" in fetch(metrics, "/metrics")[2]
        app.send_signal(getattr(signal, settings["KillSignal"]))
        stopped = time.monotonic()
        assert app.wait(timeout=float(settings["TimeoutStopSec"])) == 0, app.log()[-2000:]
        assert time.monotonic() - stopped < 5
    # A descriptor per client at the default --max-clients, and the rest.
    assert int(settings["LimitNOFILE"]) >= 10000 + 1000


def test_systemd_reads_the_unit_without_a_complaint(tmp_path):
    """``systemd-analyze verify``: a misspelt key or a bad value is only a
    warning to systemd, which then starts the unit without it, so any line
    it prints fails here. The venv and the folder it names are this
    machine's (verify checks that the command exists)."""
    with open(UNIT, encoding="utf-8") as f:
        unit = f.read()
    settings = service()
    unit = unit.replace(shlex.split(settings["ExecStart"])[0], sys.executable)
    unit = unit.replace(f"WorkingDirectory={settings['WorkingDirectory']}", f"WorkingDirectory={ROOT}")
    (tmp_path / "comet@.service").write_text(unit, encoding="utf-8")
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "comet@8888.service")],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
