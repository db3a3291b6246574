"""What a test needs from the machine it runs on, read from Linux itself:
a process's memory and descriptors (/proc), the open-file limit, and
``unable()``, how a test says the machine cannot give it what it needs."""

from __future__ import annotations

import contextlib
import os
import resource
import time
from typing import Iterator

import pytest


def unable(reason: str) -> None:
    """Skip a test this machine cannot run (no root, no network namespace);
    under CI, where it must run, fail instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"under CI this test must run: {reason}")
    pytest.skip(reason)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as report:
        for line in report:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fds(pid: int, timeout: float = 3.0) -> int:
    """The descriptor count once it stops changing (a connection just
    closed by the client may still be on its way out)."""
    deadline = time.monotonic() + timeout
    last = open_fds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = open_fds(pid)
        if now == last:
            return now
        last = now
    return last


@contextlib.contextmanager
def open_file_limit(soft: int) -> Iterator[None]:
    """This process's soft RLIMIT_NOFILE set to ``soft`` (capped at the hard
    limit) for the block; children started in it inherit it."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, before[1]), before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def need_open_files(count: int) -> None:
    """Lift this process's soft limit so it can hold ``count`` sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count and hard >= count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    elif hard < count:
        unable(f"this test holds {count} sockets; the open-file limit here is {hard}")
