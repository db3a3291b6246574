"""A scenario run in a private network namespace (``unshare --net``), for
what needs kernel settings no test should change on the machine it runs on:
a blackholed peer, a smaller unsent-data limit.

    result = in_private_network(scenario_blackhole, keepalive=0.5)

runs ``scenario_blackhole(keepalive=0.5)`` in a child,
``python -m tests.netns MODULE:FUNCTION ARGUMENTS-JSON``, inside the
namespace, where the server still listens on 127.0.0.1 (the namespace's own
loopback, which ``loopback_up()`` brings up), and returns what the scenario
returned (JSON). Without the privilege for a namespace the test is skipped,
and says why (under CI it fails). A scenario that exits 77 says the same.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
from typing import Callable, Optional

from tests.machine import unable
from tests.server import ROOT

UNABLE = 77  # a scenario's exit code for "this machine cannot run me"; its last stderr line says why


def private_network_command() -> Optional[list[str]]:
    """``unshare --net`` (root), else ``unshare --net --map-root-user`` (an
    unprivileged user namespace), whichever works here; None if neither."""
    if shutil.which("unshare") is None:
        return None
    for command in (["unshare", "--net"], ["unshare", "--net", "--map-root-user"]):
        try:
            done = subprocess.run([*command, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return command
    return None


def in_private_network(scenario: Callable[..., dict], timeout: float = 60.0, **arguments) -> dict:
    """``scenario(**arguments)`` run in a network namespace of its own; its result."""
    command = private_network_command()
    if command is None:
        unable("needs a private network namespace (unshare --net: root, or unprivileged user namespaces)")
    name = f"{scenario.__module__}:{scenario.__name__}"
    child = subprocess.Popen([*command, sys.executable, "-m", "tests.netns", name, json.dumps(arguments)],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)  # its server too is killed on a timeout
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        out, err = child.communicate()
        raise AssertionError(f"{name} ran over {timeout} s\n{err.decode()[-3000:]}") from None
    if child.returncode == UNABLE:
        unable(err.decode().strip().splitlines()[-1])
    assert child.returncode == 0, f"{name} failed\n{err.decode()[-5000:]}"
    return json.loads(out.decode().strip().splitlines()[-1])


def loopback_up() -> None:
    """A new network namespace starts with its loopback down."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh14x", b"lo", 0)
        flags = struct.unpack("16sh14x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sh14x", b"lo", flags | iff_up))


def set_sysctl(name: str, value: str) -> None:
    """A net.* setting of this (private) network namespace."""
    with open("/proc/sys/" + name.replace(".", "/"), "w") as setting:
        setting.write(value)


if __name__ == "__main__":
    module, _, function = sys.argv[1].partition(":")
    scenario = getattr(importlib.import_module(module), function)
    print(json.dumps(scenario(**json.loads(sys.argv[2]))))
