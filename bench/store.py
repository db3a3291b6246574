"""The chat's store: SQLite (the default) against ``--db=:memory:``, in one run.

    bench/.venv/bin/python bench/store.py [--rounds 3] [--duration 5] [--n 10000]

Two figures, each measured on both stores, alternating, ``--rounds`` times
(a fresh server process each time, pinned to ``--server-cpu``; this process
to ``--client-cpu``):

- **posts per second**: 50 posters, each on its own keep-alive connection,
  post as fast as they are answered for ``--duration`` s, while 1,000
  ``/chat/events`` readers take every message. Each reader must have every
  message at the end, or the round is an error.
- **POST → last answer** at N held long polls: ``loadgen.py``'s chat
  scenario (the same figure as docs/bench.md's), N = ``--n``.

Writes docs/bench-store.md and docs/bench-store.json (``--out``). The goals
(from the design): SQLite's post rate at least 75 % of memory's, and its
fan-out within noise of memory's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from loadgen import raise_open_file_limit, request, reset_on_close, status  # noqa: E402

HOST = "127.0.0.1"
POSTERS = 50
READERS = 1000
SERVER_FLAGS = ["--port=0", "--tick-interval=3600", "--max-clients=20000", "--poll-timeout=120",
                "--keepalive=60", "--retry-jitter=0"]
OPTIONAL_FLAGS = ["--max-clients-per-address=0", "--post-rate=0"]  # passed when app.py has them


def has_flag(flag: str) -> bool:
    done = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    return f"--{flag.split('=')[0].lstrip('-')}" in done.stdout + done.stderr


class Server:
    """``app.py`` with ``--db=db``, pinned; ``url``, ``port`` and ``pid``."""

    def __init__(self, db: str, cpu: Optional[int], extra: list[str]) -> None:
        taskset = shutil.which("taskset")
        command = [sys.executable, "app.py", *SERVER_FLAGS, *extra, f"--db={db}"]
        if cpu is not None and taskset:
            command = [taskset, "-c", str(cpu), *command]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        stdin=subprocess.DEVNULL)
        line = self.process.stdout.readline().decode().strip()
        if not line.startswith("http://"):
            self.process.kill()
            raise RuntimeError(f"app.py --db={db} printed {line!r}")
        self.url = line + "/" if not line.endswith("/") else line
        self.port = int(line.rstrip("/").rpartition(":")[2])
        self.pid = self.process.pid  # taskset execs the server: the same pid

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process.stdout.close()


class Reader(asyncio.Protocol):
    """A /chat/events reader that counts the events it is given."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.events = 0
        self.transport: Optional[asyncio.Transport] = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(b"GET /chat/events HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (HOST.encode(), self.port))

    def data_received(self, data: bytes) -> None:
        self.events += data.count(b"\ndata: ")


async def poster(port: int, index: int, until: float) -> int:
    """Posts on one keep-alive connection until ``until``; how many got 200."""
    reader, writer = await asyncio.open_connection(HOST, port)
    done = 0
    try:
        while time.monotonic() < until:
            body = b"message=poster+%d+post+%d" % (index, done)
            writer.write(b"POST /chat/post HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/x-www-form-urlencoded"
                         b"\r\nContent-Length: %d\r\n\r\n%s" % (HOST.encode(), port, len(body), body))
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            if b" 200 " not in head.split(b"\r\n")[0] + b" ":
                raise RuntimeError(f"a post answered {head.splitlines()[0]!r}")
            done += 1
    finally:
        writer.close()
    return done


async def post_rate(port: int, duration: float) -> dict:
    loop = asyncio.get_running_loop()
    readers = []
    for _ in range(READERS):
        _, reader = await loop.create_connection(lambda: Reader(port), HOST, port)
        readers.append(reader)
    deadline = time.monotonic() + 30
    while (await status(HOST, port))["chat"]["streams"] < READERS:
        if time.monotonic() > deadline:
            raise RuntimeError("the readers did not all connect")
        await asyncio.sleep(0.05)
    started = time.monotonic()
    counts = await asyncio.gather(*(poster(port, i, started + duration) for i in range(POSTERS)))
    elapsed = time.monotonic() - started
    total = sum(counts)
    deadline = time.monotonic() + 30
    while min(reader.events for reader in readers) < total and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    short = sum(1 for reader in readers if reader.events < total)
    for reader in readers:
        reset_on_close(reader.transport)
    result = {"posts": total, "seconds": elapsed, "posts_per_second": total / elapsed}
    if short:
        result["error"] = f"{short} readers short of the {total} messages"
    return result


def fan_out(server: Server, n: int, client_cpu: Optional[int]) -> dict:
    command = [sys.executable, str(BENCH / "loadgen.py"), "--scenario", "chat", "--n", str(n), "--rounds", "5",
               "--url", server.url, "--pid", str(server.pid)]
    taskset = shutil.which("taskset")
    if client_cpu is not None and taskset:
        command = [taskset, "-c", str(client_cpu), *command]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return {"error": done.stderr[-500:]}
    return json.loads(done.stdout)


def measure(args) -> dict:
    extra = [flag for flag in OPTIONAL_FLAGS if has_flag(flag)]
    results: list[dict] = []
    for round_number in range(args.rounds):
        for store in ("sqlite", "memory"):
            with tempfile.TemporaryDirectory(prefix="comet-bench-store-") as folder:
                db = os.path.join(folder, "chat.db") if store == "sqlite" else ":memory:"
                server = Server(db, args.server_cpu, extra)
                try:
                    posts = asyncio.run(post_rate(server.port, args.duration))
                finally:
                    server.stop()
                server = Server(db, args.server_cpu, extra)
                try:
                    chat = fan_out(server, args.n, args.client_cpu)
                finally:
                    server.stop()
            row = {"round": round_number, "store": store, "posts": posts,
                   "post_to_last_ms": chat.get("post_to_last_median_ms"), "chat_error": chat.get("error")}
            print(json.dumps(row), flush=True)
            results.append(row)
    return {"settings": vars(args) | {"out": str(args.out), "posters": POSTERS, "readers": READERS,
                                        "flags": SERVER_FLAGS + extra},
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                     text=True).stdout.strip(),
            "cpus": os.cpu_count(), "results": results}


def markdown(report: dict) -> str:
    settings = report["settings"]
    by_store = {store: [r for r in report["results"] if r["store"] == store] for store in ("sqlite", "memory")}

    def median(store: str, pick) -> Optional[float]:
        values = [pick(r) for r in by_store[store] if pick(r) is not None]
        return statistics.median(values) if values else None

    rate = {s: median(s, lambda r: None if "error" in r["posts"] else r["posts"]["posts_per_second"]) for s in by_store}
    last = {s: median(s, lambda r: r["post_to_last_ms"]) for s in by_store}

    def ratio(a, b) -> str:
        return f"{a / b:.2f}" if a and b else "n/a"

    lines = [
        "# The chat's store: SQLite against memory",
        "",
        f"Made by `bench/store.py` (commit {report['commit']}, {report['cpus']} CPUs, the server pinned to CPU "
        f"{settings['server_cpu']}, the clients to CPU {settings['client_cpu']}); the median of "
        f"{settings['rounds']} rounds, SQLite and memory alternating, a fresh process for each figure.",
        "",
        "| figure | SQLite (`--db=PATH`) | memory (`--db=:memory:`) | SQLite ÷ memory |",
        "| --- | ---: | ---: | ---: |",
        f"| posts per second, {settings['posters']} posters, {settings['readers']} `/chat/events` readers "
        f"| {rate['sqlite']:.0f} | {rate['memory']:.0f} | {ratio(rate['sqlite'], rate['memory'])} |"
        if rate["sqlite"] and rate["memory"] else "| posts per second | n/a | n/a | n/a |",
        f"| POST → last answer, N = {settings['n']} held polls (ms) "
        f"| {last['sqlite']:.0f} | {last['memory']:.0f} | {ratio(last['sqlite'], last['memory'])} |"
        if last["sqlite"] and last["memory"] else "| POST → last answer | n/a | n/a | n/a |",
        "",
        "Goals: SQLite's post rate at least 0.75 of memory's; its fan-out within noise of memory's.",
        "",
        "Every round:",
        "",
        "| round | store | posts/s | POST → last answer (ms) |",
        "| ---: | --- | ---: | ---: |",
    ]
    for r in report["results"]:
        posts = r["posts"]
        shown = posts.get("error") or f"{posts['posts_per_second']:.0f}"
        fan = r["chat_error"] or (f"{r['post_to_last_ms']:.0f}" if r["post_to_last_ms"] is not None else "n/a")
        lines.append(f"| {r['round']} | {r['store']} | {shown} | {fan} |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of posting per round")
    parser.add_argument("--n", type=int, default=10000, help="held polls for POST -> last answer")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    raise_open_file_limit()
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {args.client_cpu})
    report = measure(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench-store.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "bench-store.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
