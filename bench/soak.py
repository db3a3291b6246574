"""The soak: thousands of clients connecting, reading and vanishing for minutes.

    .venv/bin/python bench/soak.py                      # 3 minutes, 3000 clients
    .venv/bin/python bench/soak.py --minutes=10 --clients=5000
    .venv/bin/python bench/soak.py --url=http://127.0.0.1:8888/ --pid=1234
    .venv/bin/python bench/soak.py --hold=10000         # how many one process holds

Each client slot, again and again for the whole run, picks one of the ways a
browser talks to the server: an EventSource on ``/ticker`` or
``/chat/events``, the long-poll fallback on either (``X-Event-Source-Simulate``),
or the tutorial's ``/chat/get/N`` loop. It reads for a random while, then
goes away: most close cleanly (FIN) or reset (RST); some half-close; some
stop reading first, as a stuck tab does. Every 30 s a wave takes a third of
the clients reading at that moment away at once, and they come back over
the next few seconds. A
poster sends a chat message of random length several times a second.

Every ``--sample`` seconds it records the server's RSS and open descriptors
(from /proc) and its /status. At the end every client leaves, and the last
row says what the server still holds once they are gone: the counts must be
back to 0 and the descriptors back to where they started.

The clients also check what they read: a chat stream's ids go up by one
(or restart after an ``event: reset``), a ticker's only go up, a poll gets
one of the statuses the contract allows. Anything else is counted under
``violations`` and the run exits 1.

``--hold=N`` instead opens N ``/ticker`` streams, a hundred at a time, and
reports what the server holds then (RSS, descriptors, and how long the next
price takes to reach all of them), appending that line to the results file.

The table goes to stdout and to ``bench/soak-results.md``. Only the
standard library; the server is ``app.py`` from this checkout unless
``--url`` names one already running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINGER_RESET = struct.pack("ii", 1, 0)
FALLBACK = "X-Event-Source-Simulate: Long-Polling\r\n"
FRAME_FIELD = re.compile(r"^(id|event): ?(.*)$", re.M)
WAVE_EVERY = 30.0


# --- the server ------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as report:
        for line in report:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def start_server(flags: list[str], log: str) -> tuple[subprocess.Popen, int]:
    """``python app.py --port=0 *flags``, its stderr to ``log``; returns it
    and its port."""
    server = subprocess.Popen([sys.executable, "app.py", "--port=0", *flags], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=open(log, "wb"))
    line = server.stdout.readline().decode()
    match = re.match(r"http://127\.0\.0\.1:(\d+)/", line)
    if not match:
        server.kill()
        raise SystemExit(f"the server printed {line!r}")
    return server, int(match.group(1))


async def exchange(port: int, request: bytes, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """One request on its own connection, answered in full."""
    async def run():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            status, headers = await read_head(reader)
            return status, headers, await read_body(reader, headers)
        finally:
            writer.close()
    return await asyncio.wait_for(run(), timeout)


async def status(port: int) -> dict:
    _, _, body = await exchange(port, b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    return json.loads(body)


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers


async def read_body(reader: asyncio.StreamReader, headers: dict) -> bytes:
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding") == "chunked":
        body = bytearray()
        while chunk := await read_chunk(reader):
            body += chunk
        return bytes(body)
    return b""  # 204


async def read_chunk(reader: asyncio.StreamReader) -> bytes:
    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
    data = await reader.readexactly(size + 2)
    return data[:-2]


# --- the clients -------------------------------------------------------------------


@dataclass
class Tally:
    connects: int = 0
    slow_connects: int = 0  # over 1 s: a SYN that found the accept queue full
    connected: int = 0
    events: int = 0
    polls: int = 0
    left: dict = field(default_factory=lambda: {"fin": 0, "rst": 0, "half": 0, "stuck": 0})
    refused: int = 0  # 503 past --max-clients
    dropped_by_server: int = 0
    errors: dict = field(default_factory=dict)
    violations: list = field(default_factory=list)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def violation(self, text: str) -> None:
        if len(self.violations) < 50:
            self.violations.append(text)


def get(path: str, extra: str = "", keep_alive: bool = False) -> bytes:
    connection = "" if keep_alive else "Connection: close\r\n"
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{connection}{extra}\r\n".encode()


class Waves:
    """Every ``WAVE_EVERY`` seconds ``coming`` is set, and a fresh one takes
    its place; each visit reading at that moment leaves with chance 1/3."""

    def __init__(self) -> None:
        self.coming = asyncio.Event()
        self.count = 0

    async def run(self, until: float) -> None:
        while time.monotonic() + WAVE_EVERY < until:
            await asyncio.sleep(WAVE_EVERY)
            self.count += 1
            self.coming.set()
            self.coming = asyncio.Event()


class Visit:
    """One client's connection, from connect to however it leaves."""

    def __init__(self, port: int, tally: Tally, waves: Waves) -> None:
        self.port, self.tally, self.waves = port, tally, waves
        self.writer: Optional[asyncio.StreamWriter] = None

    async def run(self, kind: str, seconds: float) -> None:
        started = time.monotonic()
        try:
            reader, self.writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 15)
        except (OSError, asyncio.TimeoutError) as error:
            self.tally.error(f"connect: {type(error).__name__}")
            return
        self.tally.connects += 1
        if time.monotonic() - started > 1:
            self.tally.slow_connects += 1
        self.tally.connected += 1
        try:
            reading = asyncio.ensure_future(getattr(self, kind)(reader))
            # Once this client leaves, what its reader raises (a write after
            # its own half-close, a read cut short by its own reset) is ours,
            # not the server's: retrieved here, so it is not reported.
            reading.add_done_callback(lambda task: task.cancelled() or task.exception())
            # Read until the time is up or a wave takes it; then leave.
            deadline = started + seconds
            while (remaining := deadline - time.monotonic()) > 0:
                wave = asyncio.ensure_future(self.waves.coming.wait())
                done, _ = await asyncio.wait({wave, reading}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                wave.cancel()
                if reading in done:
                    reading.result()  # it ended on its own: the server closed, or an error
                    self.tally.dropped_by_server += 1
                    return
                if wave in done and random.random() < 1 / 3:
                    break
            await self.leave(reading)
        except asyncio.IncompleteReadError:
            self.tally.dropped_by_server += 1
        except (OSError, asyncio.TimeoutError, ValueError) as error:
            self.tally.error(f"{kind}: {type(error).__name__}")
        except Refused:
            self.tally.refused += 1
        finally:
            self.tally.connected -= 1
            if self.writer is not None and not self.writer.is_closing():
                self.writer.transport.abort()

    async def leave(self, reading: asyncio.Future) -> None:
        way = random.choices(["fin", "rst", "half", "stuck"], [45, 40, 10, 5])[0]
        self.tally.left[way] += 1
        transport = self.writer.transport
        if way == "stuck":  # stops reading for a while, then is reset
            transport.pause_reading()
            await asyncio.sleep(random.uniform(2, 10))
            way = "rst"
        reading.cancel()
        if way == "fin":
            self.writer.close()
        elif way == "rst":
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            transport.abort()
        else:  # half-closed: no more requests; the server ends it
            if transport.can_write_eof():
                transport.write_eof()
            await asyncio.sleep(1)
            transport.abort()

    async def expect_ok(self, reader) -> dict:
        code, headers = await read_head(reader)
        if code == 503:
            raise Refused()
        if code != 200:
            self.tally.violation(f"stream answered {code}")
            raise ValueError(code)
        return headers

    async def ticker(self, reader) -> None:
        self.writer.write(get("/ticker"))
        await self.expect_ok(reader)
        last = 0
        while chunk := await read_chunk(reader):
            for name, value in FRAME_FIELD.findall(chunk.decode()):
                if name == "id":
                    if int(value) <= last:
                        self.tally.violation(f"ticker id {value} after {last}")
                    last = int(value)
                    self.tally.events += 1

    async def chat(self, reader) -> None:
        self.writer.write(get("/chat/events"))
        await self.expect_ok(reader)
        last, after_reset = None, False
        while chunk := await read_chunk(reader):
            for name, value in FRAME_FIELD.findall(chunk.decode()):
                if name == "event":
                    after_reset = value == "reset"
                elif name == "id":
                    number = int(value.rpartition(":")[2])  # EPOCH:N
                    if after_reset:
                        after_reset = False  # the reset's own id names `first`
                    elif last is not None and number != last + 1:
                        self.tally.violation(f"chat id {value} after {last}")
                    last = number
                    self.tally.events += 1

    async def fallback(self, reader) -> None:
        path = random.choice(["/ticker", "/chat/events"])
        last_id = ""
        while True:
            held = f"Last-Event-ID: {last_id}\r\n" if last_id else ""
            self.writer.write(get(path, FALLBACK + held, keep_alive=True))
            headers = await self.expect_ok(reader)
            body = await read_body(reader, headers)
            self.tally.polls += 1
            ids = [v for n, v in FRAME_FIELD.findall(body.decode()) if n == "id"]
            last_id = ids[-1] if ids else last_id
            if headers.get("connection", "").lower() == "close":
                return

    async def get_loop(self, reader) -> None:
        number = None
        while True:
            if number is None:
                number = (await status(self.port))["chat"]["messages"]
            self.writer.write(get(f"/chat/get/{number}", keep_alive=True))
            code, headers = await read_head(reader)
            await read_body(reader, headers)
            self.tally.polls += 1
            if code == 200:
                number += 1
            elif code in (404, 410):
                number = int(headers["x-next-message"])
            elif code == 503:
                raise Refused()
            elif code != 204:
                self.tally.violation(f"/chat/get answered {code}")
                return
            if headers.get("connection", "").lower() == "close":
                return


class Refused(Exception):
    """503: past --max-clients."""


KINDS = ["ticker", "chat", "fallback", "get_loop"]
WEIGHTS = [40, 25, 15, 20]


async def client_slot(port: int, tally: Tally, waves: Waves, until: float, delay: float) -> None:
    """One client, over and over: a visit, a pause, another visit."""
    await asyncio.sleep(delay)
    while time.monotonic() < until:
        kind = random.choices(KINDS, WEIGHTS)[0]
        seconds = min(random.expovariate(1 / 20), until - time.monotonic())
        await Visit(port, tally, waves).run(kind, max(seconds, 0.1))
        await asyncio.sleep(random.uniform(0.1, 5.0))  # back after a while, as a reloading tab


async def poster(port: int, tally: Tally, until: float, per_second: float) -> None:
    while time.monotonic() < until:
        text = "x" * random.randint(1, 1500)
        body = f"message={text}".encode()
        request = (b"POST /chat/post HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                   b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
        try:
            code, _, _ = await exchange(port, request)
            if code != 200:
                tally.violation(f"post answered {code}")
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as error:
            tally.error(f"post: {type(error).__name__}")
        await asyncio.sleep(random.expovariate(per_second))


# --- samples -----------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    label: str
    clients: int
    status: dict
    rss: Optional[float]
    fds: Optional[int]
    tally: dict

    def row(self) -> str:
        chat, ticker = self.status["chat"], self.status["ticker"]
        rss = f"{self.rss:.1f}" if self.rss is not None else "-"
        fds = str(self.fds) if self.fds is not None else "-"
        return (f"| {self.label or f'{self.t:.0f}'} | {self.clients} | {ticker['streams']} | {chat['streams']} | "
                f"{chat['waiting']} | {chat['messages']} | {rss} | {fds} | {self.tally['connects']} | "
                f"{sum(self.tally['left'].values())} | {self.tally['dropped_by_server']} | {self.tally['refused']} |")


HEADER = ("| t (s) | clients connected | /status ticker.streams | chat.streams | chat.waiting | messages | "
          "RSS (MiB) | open fds | connects | left (fin/rst/half/stuck) | dropped by server | 503 |\n"
          "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


async def sample(port: int, pid: Optional[int], tally: Tally, started: float, label: str = "") -> Sample:
    # Descriptors first: the /status request's own connection is not one.
    rss = rss_mib(pid) if pid else None
    fds = open_fds(pid) if pid else None
    report = await status(port)
    snapshot = {"connects": tally.connects, "left": dict(tally.left), "dropped_by_server": tally.dropped_by_server,
                "refused": tally.refused}
    return Sample(time.monotonic() - started, label, tally.connected, report, rss, fds, snapshot)


async def sampler(port: int, pid: Optional[int], tally: Tally, started: float, until: float, every: float,
                  samples: list) -> None:
    while time.monotonic() + every < until:
        await asyncio.sleep(every)
        samples.append(await sample(port, pid, tally, started))
        print(samples[-1].row(), flush=True)


# --- the runs ------------------------------------------------------------------------


async def soak(port: int, pid: Optional[int], args) -> int:
    tally, waves, samples = Tally(), Waves(), []
    started = time.monotonic()
    until = started + args.minutes * 60
    samples.append(await sample(port, pid, tally, started, "start"))
    print(HEADER)
    print(samples[-1].row(), flush=True)
    ramp = min(20.0, args.minutes * 60 / 4)  # the first visits spread over the first seconds
    tasks = [asyncio.ensure_future(client_slot(port, tally, waves, until, random.uniform(0, ramp)))
             for _ in range(args.clients)]
    tasks.append(asyncio.ensure_future(poster(port, tally, until, args.posts)))
    tasks.append(asyncio.ensure_future(waves.run(until)))
    tasks.append(asyncio.ensure_future(sampler(port, pid, tally, started, until, args.sample, samples)))
    await asyncio.wait(tasks, timeout=args.minutes * 60 + 60)
    for task in tasks:
        task.cancel()
    gone = time.monotonic()
    samples.append(await sample(port, pid, tally, started, "clients gone"))
    # Every client has left: the server must let go of all of them within
    # a second (the contract), descriptors included.
    for _ in range(100):
        await asyncio.sleep(0.1)
        fds_back = not pid or open_fds(pid) <= samples[0].fds  # before /status opens one more
        report = await status(port)
        counted = report["chat"]["streams"] + report["chat"]["waiting"] + report["ticker"]["streams"]
        if not counted and fds_back:
            break
    await asyncio.sleep(0.1)  # the last /status connection closed
    samples.append(await sample(port, pid, tally, started, f"+{time.monotonic() - gone:.1f} s"))
    print(samples[-2].row())
    print(samples[-1].row(), flush=True)
    write_report(args, samples, tally)
    return 1 if tally.violations else 0


def commit() -> str:
    """The checkout's commit, and whether the server's files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "app.py", "handlers"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + (" with local changes" if dirty else "")


def write_report(args, samples: list[Sample], tally: Tally) -> None:
    first, last = samples[0], samples[-1]
    peak_rss = max((s.rss for s in samples if s.rss is not None), default=None)
    peak_clients = max(s.clients for s in samples)
    lines = [
        f"# Soak: {args.clients} clients for {args.minutes:g} minutes",
        "",
        f"`bench/soak.py --clients={args.clients} --minutes={args.minutes:g}` "
        f"on {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}, commit {commit()}; "
        f"server flags: `{' '.join(args.server_flags)}`.",
        "",
        HEADER,
        *(s.row() for s in samples),
        "",
        f"- Visits: {tally.connects} connects ({tally.slow_connects} took over 1 s), "
        f"{tally.events} events read, {tally.polls} poll answers; at most {peak_clients} clients at once.",
        f"- Left: {tally.left}; dropped by the server while reading: {tally.dropped_by_server}; "
        f"503: {tally.refused}.",
        f"- Errors: {tally.errors or 'none'}.",
        f"- Protocol violations: {len(tally.violations)}" + (f": {tally.violations[:5]}" if tally.violations else "."),
    ]
    if not args.url and os.path.exists(args.server_log):
        with open(args.server_log, errors="replace") as log:
            text = log.read()
        errors = len(re.findall(r" 5\d\d (GET|POST) ", text))
        lines.append(f"- Server log: {text.count('Traceback')} tracebacks, {errors} 5xx answers logged.")
    if first.rss is not None:
        lines.append(f"- RSS: {first.rss:.1f} MiB at start, {peak_rss:.1f} MiB at the peak, {last.rss:.1f} MiB "
                     f"after; open fds: {first.fds} at start, {last.fds} after.")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    with open(args.out, "w") as out:
        out.write(text)


async def hold(port: int, pid: Optional[int], args) -> int:
    """Open ``args.hold`` /ticker streams, a hundred at a time, and report."""
    before = await sample(port, pid, Tally(), time.monotonic(), "before")
    writers, readers = [], []
    started = time.monotonic()
    for start in range(0, args.hold, 100):
        for _ in range(min(100, args.hold - start)):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 16)
            writer.write(get("/ticker"))
            readers.append(reader)
            writers.append(writer)
        for _ in range(200):
            if (await status(port))["ticker"]["streams"] >= len(writers):
                break
            await asyncio.sleep(0.05)
    ramp = time.monotonic() - started
    report = await status(port)
    # Let every stream take one more price, and time how long that takes.
    target = report["ticker"]["id"] + 1

    async def next_price(reader) -> float:
        while True:
            line = await reader.readline()
            if line.startswith(b"id: ") and int(line[4:]) >= target:
                return time.monotonic()

    arrivals = await asyncio.wait_for(asyncio.gather(*(next_price(r) for r in readers)), 60)
    spread = max(arrivals) - min(arrivals)
    held = await sample(port, pid, Tally(), started, f"{len(writers)} streams")
    for writer in writers:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        writer.transport.abort()
    await asyncio.sleep(2)
    after = await sample(port, pid, Tally(), started, "after")
    text = (f"- Held {report['ticker']['streams']} /ticker streams in one process (ramp {ramp:.1f} s); "
            f"RSS {before.rss:.1f} → {held.rss:.1f} MiB ({(held.rss - before.rss) * 1024 / len(writers):.1f} KiB "
            f"per stream), open fds {before.fds} → {held.fds}; the next price reached every one of them "
            f"(all within {spread * 1000:.0f} ms, as read by one Python client process); after they left: {after.fds} fds, "
            f"{after.status['ticker']['streams']} streams counted.\n")
    print(text)
    with open(args.out, "a") as out:
        out.write("\n" + text)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=3000)
    parser.add_argument("--posts", type=float, default=5.0, help="chat messages per second")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--url", help="a server already running (default: start app.py)")
    parser.add_argument("--pid", type=int, help="its process id, for RSS and fds (with --url)")
    parser.add_argument("--hold", type=int, help="instead: open this many /ticker streams and report")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "soak-results.md"))
    parser.add_argument("--server-log", default=os.path.join(ROOT, "bench", "results", "soak-server.log"),
                        help="the started server's stderr")
    parser.add_argument("--server-flags", nargs="*",
                        default=["--tick-interval=0.5", "--keepalive=5", "--poll-timeout=10", "--max-clients=20000",
                                 # every soak client is 127.0.0.1: no cap, no post rate per address
                                 "--max-clients-per-address=0", "--post-rate=0"])
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = None
    if args.url:
        port, pid = urlsplit(args.url).port, args.pid
    else:
        os.makedirs(os.path.dirname(args.server_log), exist_ok=True)
        server, port = start_server(args.server_flags, args.server_log)
        pid = server.pid
    try:
        return asyncio.run(hold(port, pid, args) if args.hold else soak(port, pid, args))
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    sys.exit(main())
