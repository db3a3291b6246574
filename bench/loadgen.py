"""The load generator: N readers against one server, timed per event.

Two scenarios, one server process each (``run.py`` starts and pins it):

``ticker``  N EventSource connections on ``/ticker``. Each records, per event
            id, when it received it. The server's own timer makes the events
            (every server ticks at the same ``--tick-interval``); once all N
            are connected, one event is let go by to settle, then ``--events``
            events are measured: the fan-out spread of each (last arrival
            minus first), and the server's CPU time over the window divided
            by the events.
``chat``    N long polls held on ``/chat/get/K``, one ``POST /chat/post``,
            and the time from the POST to each answer; ``--rounds`` times,
            all N held again (``/status`` says so) before each POST.

The ticker can spread its readers over several servers (``--url`` and
``--pid`` repeated, readers assigned round-robin): ``run.py``'s ``redis``
scenario runs two ``app.py --redis`` processes that serve the same event ids,
so each event's arrivals are merged across both, and CPU and RSS are summed
over the processes.

Raw ``asyncio.Protocol`` clients, on uvloop when it is installed, so that the
reader side costs as little as it can: at N = 10000 it still has to take
10000 reads per event, which is why it gets a CPU of its own and reports its
own CPU per event next to the server's.

Prints one JSON object on stdout. Bounded everywhere: every wait has a
deadline, and a run that misses one reports what it got with ``"error"``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import socket
import statistics
import struct
import sys
import time
from typing import Optional
from urllib.parse import urlsplit

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
LINGER_RESET = struct.pack("ii", 1, 0)


# --- the server process, from /proc -----------------------------------------

def cpu_seconds(pid: int) -> float:
    """The CPU time of the whole process (every thread), in seconds: read
    from its CPU clock, to the nanosecond, where Linux lets us name another
    process's clock (``MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)``); else
    utime + stime from /proc, in clock ticks of 10 ms, which at a few
    thousand woken polls is a step of several microseconds per poll."""
    try:
        return time.clock_gettime(((~pid) << 3) | 2)
    except OSError:
        pass
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def total_cpu_seconds(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def total_rss_bytes(pids: list[int]) -> int:
    return sum(rss_bytes(pid) for pid in pids)


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_open_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def percentile(values: list[float], fraction: float) -> Optional[float]:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return ordered[rank - 1]


def setup_path(path: Optional[str]) -> Optional[str]:
    """Where the profile of the connect phase goes: ``x.txt`` -> ``x-setup.txt``."""
    return None if not path else (path[:-4] if path.endswith(".txt") else path) + "-setup.txt"


class Profiler:
    """py-spy on the server for exactly the measured window (``--profile``):
    started when the window opens, stopped with SIGINT (py-spy then writes
    its file) when it closes. Collapsed stacks, one function per frame."""

    native = False  # --profile-native: C frames too (the garbage collector, system calls)

    def __init__(self, pid: int, path: Optional[str], rate: int = 250) -> None:
        self.pid, self.path, self.rate = pid, path, rate
        self.process: Optional[asyncio.subprocess.Process] = None

    async def start(self) -> None:
        if not self.path:
            return
        spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
        self.process = await asyncio.create_subprocess_exec(
            spy if os.path.exists(spy) else "py-spy", "record", "--pid", str(self.pid), "--rate", str(self.rate),
            "--function", "--format", "raw", "--output", self.path, *(["--native"] if self.native else []),
            stdout=asyncio.subprocess.DEVNULL, stderr=open(self.path + ".log", "wb"))
        await asyncio.sleep(0.5)  # attached before the window opens

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            try:
                self.process.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except asyncio.TimeoutError:
            self.process.kill()
            await self.process.wait()
        self.process = None


# --- one-off requests (status, post) -----------------------------------------

async def request(host: str, port: int, method: str, path: str, body: bytes = b"",
                  timeout: float = 10.0) -> tuple[int, bytes, float]:
    """One request on its own connection: (status, body, seconds from the
    request's first byte written to its answer's last byte read)."""
    async def exchange():
        reader, writer = await asyncio.open_connection(host, port)
        try:
            head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
            if body:
                head += f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
            started = time.monotonic()
            writer.write(head.encode() + b"\r\n" + body)
            status_line = await reader.readline()
            headers = {}
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            if "content-length" in headers:
                payload = await reader.readexactly(int(headers["content-length"]))
            else:
                payload = await reader.read()
            return int(status_line.split()[1]), payload, time.monotonic() - started
        finally:
            writer.close()
    return await asyncio.wait_for(exchange(), timeout)


async def status(host: str, port: int) -> dict:
    code, payload, _ = await request(host, port, "GET", "/status", timeout=30.0)
    if code != 200:
        raise RuntimeError(f"/status answered {code}")
    return json.loads(payload)


async def wait_until_ready(host: str, port: int, deadline: float) -> dict:
    """The server answers /status: it is listening and serving."""
    while True:
        try:
            return await status(host, port)
        except (OSError, asyncio.TimeoutError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def reset_on_close(transport: asyncio.BaseTransport) -> None:
    """Close with RST: no TIME_WAIT left behind for the next run's ports."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        except OSError:
            pass
    transport.abort()


# --- the ticker: N event streams -----------------------------------------------

class TickerRun:
    """What every stream saw: arrival times per event id, and, for ids a
    reader skipped (a state stream sends a reader that fell behind only the
    newest), how many readers skipped each."""

    def __init__(self) -> None:
        self.arrivals: dict[int, list[float]] = {}
        self.skips: dict[int, int] = {}
        self.alive = 0
        self.dropped = 0
        self.bad_status: list[str] = []

    def skipped(self, after: int, event_id: int) -> None:
        for missed in range(after + 1, event_id):
            self.skips[missed] = self.skips.get(missed, 0) + 1

    def is_past(self, event_id: int) -> bool:
        """Every live reader has received ``event_id`` or skipped past it."""
        return len(self.arrivals.get(event_id, ())) + self.skips.get(event_id, 0) >= self.alive

    async def wait_past(self, event_id: int, timeout: float) -> None:
        """Checked every few milliseconds rather than on every arrival, to
        keep the per-arrival work (10000 per event) as small as it can be."""
        deadline = time.monotonic() + timeout
        while not self.is_past(event_id):
            if time.monotonic() > deadline:
                raise asyncio.TimeoutError(f"event {event_id} did not reach every reader")
            await asyncio.sleep(0.002)


class EventStream(asyncio.Protocol):
    """One EventSource reader: the request, then event ids as they come.

    The time of an event is when its ``id:`` line arrives; the server writes
    the whole frame at once, so that is when the frame arrives."""

    def __init__(self, run: TickerRun, request_bytes: bytes, connected: asyncio.Future) -> None:
        self.run = run
        self.arrivals = run.arrivals
        self.request_bytes = request_bytes
        self.connected = connected
        self.transport: Optional[asyncio.Transport] = None
        self.head = b""
        self.buffer = b""
        self.in_body = False
        self.last_id = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request_bytes)

    def data_received(self, data: bytes, monotonic=time.monotonic) -> None:
        now = monotonic()
        if not self.in_body:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            status_line = self.head[:self.head.find(b"\r\n")]
            if b" 200 " not in status_line + b" ":
                self.run.bad_status.append(status_line.decode("latin-1"))
                self.transport.close()
                return
            data, self.head, self.in_body = self.head[end + 4:], b"", True
        if self.buffer:
            data, self.buffer = self.buffer + data, b""
        # Whole lines only; chunk-size lines (chunked encoding), data lines,
        # comments and retry never hold "id: ".
        end = data.rfind(b"\n") + 1
        if end < len(data):
            self.buffer = data[end:]
        at = data.find(b"id: ", 0, end)
        while at >= 0:
            stop = data.find(b"\n", at)
            event_id = int(data[at + 4:stop])
            if self.last_id and event_id != self.last_id + 1:
                self.run.skipped(self.last_id, event_id)
            self.last_id = event_id
            arrivals = self.arrivals.get(event_id)
            if arrivals is None:
                arrivals = self.arrivals[event_id] = []
            arrivals.append(now)
            at = data.find(b"id: ", stop, end)
        if self.last_id and not self.connected.done():
            self.connected.set_result(now)

    def connection_lost(self, exc) -> None:
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(f"closed before the first event: {exc}"))
        elif self.run.alive:
            self.run.alive -= 1
            self.run.dropped += 1


async def open_many(count: int, concurrency: int, deadline: float, open_one) -> tuple[list, list[str]]:
    """``open_one(i)`` for i < count, at most ``concurrency`` at a time."""
    semaphore = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def guarded(index: int):
        async with semaphore:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                errors.append("deadline")
                return None
            try:
                return await asyncio.wait_for(open_one(index), remaining)
            except (OSError, ConnectionError, asyncio.TimeoutError) as error:
                errors.append(type(error).__name__ + ": " + str(error))
                return None

    results = await asyncio.gather(*(guarded(i) for i in range(count)))
    return results, errors


async def ticker(args, targets: list[tuple[str, int]]) -> dict:
    """N readers, reader i on ``targets[i % len(targets)]``; arrivals are
    merged per event id, whichever server sent it."""
    loop = asyncio.get_running_loop()
    run = TickerRun()
    profiler = Profiler(args.pid[0], args.profile)
    # The connect phase apart: N new requests, not one event to N.
    setup_profiler = Profiler(args.pid[0], setup_path(args.profile), rate=200)
    result: dict = {"scenario": "ticker", "n": args.n, "servers": len(targets)}
    requests = [(f"GET /ticker HTTP/1.1\r\nHost: {host}:{port}\r\n"
                 "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n").encode()
                for host, port in targets]
    transports = []

    async def open_one(index: int):
        connected = loop.create_future()
        host, port = targets[index % len(targets)]
        request_bytes = requests[index % len(targets)]
        transport, _ = await loop.create_connection(
            lambda: EventStream(run, request_bytes, connected), host, port)
        transports.append(transport)
        await connected
        run.alive += 1
        return transport

    try:
        rss_idle = total_rss_bytes(args.pid)
        await setup_profiler.start()
        cpu_before = total_cpu_seconds(args.pid)
        started = time.monotonic()
        opened, errors = await open_many(args.n, args.concurrency, started + args.connect_timeout, open_one)
        all_connected = time.monotonic()
        result["server_cpu_us_per_connect"] = (total_cpu_seconds(args.pid) - cpu_before) * 1e6 / max(1, run.alive)
        await setup_profiler.stop()
        result.update(connected=run.alive, connect_errors=len(errors), connect_error_sample=errors[:3],
                      connect_seconds=all_connected - started, rss_idle=rss_idle)
        if run.alive < args.n:
            result["error"] = f"only {run.alive} of {args.n} connected"
            return result

        # Every reader is subscribed before the event after the newest one
        # seen; one more event goes by before the window opens.
        newest = max(run.arrivals)
        first, last = newest + 2, newest + 1 + args.events
        per_event_timeout = args.tick_interval * 3 + args.n / 1000
        await profiler.start()
        await run.wait_past(newest + 1, per_event_timeout + args.tick_interval)
        other_start = total_cpu_seconds(args.other_pid)
        cpu_start, own_start, window_start = total_cpu_seconds(args.pid), own_cpu_seconds(), time.monotonic()
        for event_id in range(first, last + 1):
            await run.wait_past(event_id, per_event_timeout)
        cpu_end, own_end, window_end = total_cpu_seconds(args.pid), own_cpu_seconds(), time.monotonic()
        other_end = total_cpu_seconds(args.other_pid)
        await profiler.stop()
        rss_loaded = total_rss_bytes(args.pid)

        spreads, lags = [], []
        for event_id in range(first, last + 1):
            times = run.arrivals.get(event_id, [])
            if times:
                spreads.append(max(times) - min(times))
                lags.append(statistics.median(times) - min(times))
        result.update(
            events=args.events,
            event_ids=[first, last],
            window_seconds=window_end - window_start,
            server_cpu_ms_per_event=(cpu_end - cpu_start) * 1000 / args.events,
            client_cpu_ms_per_event=(own_end - own_start) * 1000 / args.events,
            other_cpu_ms_per_event=(other_end - other_start) * 1000 / args.events if args.other_pid else None,
            spread_ms=[s * 1000 for s in spreads],
            spread_median_ms=statistics.median(spreads) * 1000,
            spread_p99_ms=percentile(spreads, 0.99) * 1000,
            median_lag_ms=statistics.median(lags) * 1000,
            arrivals_per_event=[len(run.arrivals.get(e, [])) for e in range(first, last + 1)],
            skipped=sum(run.skips.values()),
            dropped=run.dropped,
            bad_status=run.bad_status[:3],
            rss_loaded=rss_loaded,
            rss_per_connection=(rss_loaded - rss_idle) / args.n,
        )
        return result
    except asyncio.TimeoutError:
        result["error"] = "an event did not reach every reader in time"
        result.update(dropped=run.dropped, skipped=sum(run.skips.values()), alive=run.alive)
        return result
    finally:
        await profiler.stop()
        await setup_profiler.stop()
        for transport in transports:
            reset_on_close(transport)


# --- the chat: N held long polls ------------------------------------------------

class LongPoll(asyncio.Protocol):
    """One long-polling reader on a keep-alive connection: ``ask(n)`` sends
    GET /chat/get/n; ``answered`` completes with (status, arrival time)."""

    def __init__(self, host_header: bytes) -> None:
        self.host_header = host_header
        self.transport: Optional[asyncio.Transport] = None
        self.buffer = b""
        self.answered: Optional[asyncio.Future] = None
        self.number = -1
        self.lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def ask(self, number: int) -> asyncio.Future:
        self.number = number
        self.answered = asyncio.get_running_loop().create_future()
        self.transport.write(b"GET /chat/get/%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (number, self.host_header))
        return self.answered

    def data_received(self, data: bytes, monotonic=time.monotonic) -> None:
        now = monotonic()
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower() + b"\r\n"
        status = int(head[9:12])
        at = head.find(b"content-length:")
        if at >= 0:
            length = int(head[at + 15:head.find(b"\r\n", at)])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
        elif b"chunked" in head:
            stop = self.buffer.find(b"0\r\n\r\n", end + 4)
            if stop < 0:
                return
            self.buffer = self.buffer[stop + 5:]
        else:
            self.buffer = self.buffer[end + 4:]  # 204 and friends: no body
        if self.answered is not None and not self.answered.done():
            self.answered.set_result((status, now))

    def connection_lost(self, exc) -> None:
        self.lost = True
        if self.answered is not None and not self.answered.done():
            self.answered.set_exception(ConnectionError(f"closed while held: {exc}"))


async def wait_for_waiting(host: str, port: int, count: int, deadline: float, interval: float = 0.05) -> int:
    """Poll /status until the server holds ``count`` polls; return how many
    times it asked."""
    asked = 0
    while True:
        held = (await status(host, port))["chat"]["waiting"]
        asked += 1
        if held >= count:
            return asked
        if time.monotonic() > deadline:
            raise asyncio.TimeoutError(f"the server holds {held} of {count} polls")
        await asyncio.sleep(interval)


async def chat(args, targets: list[tuple[str, int]]) -> dict:
    [(host, port)] = targets  # one server only
    [pid] = args.pid
    loop = asyncio.get_running_loop()
    result: dict = {"scenario": "chat", "n": args.n}
    host_header = f"{host}:{port}".encode()
    polls: list[LongPoll] = []
    # Only the first post is profiled (the window is short: sample faster),
    # so the profile shows answering N polls, not taking N new ones.
    profiler = Profiler(pid, args.profile, rate=1000)
    setup_profiler = Profiler(pid, setup_path(args.profile), rate=200)

    async def open_one(index: int):
        transport, poll = await loop.create_connection(lambda: LongPoll(host_header), host, port)
        polls.append(poll)
        return poll

    try:
        rss_idle = rss_bytes(pid)
        number = (await status(host, port))["chat"]["messages"]
        await setup_profiler.start()
        cpu_before = cpu_seconds(pid)
        started = time.monotonic()
        deadline = started + args.connect_timeout
        # A held poll sends nothing back, so the client cannot tell when the
        # server has taken it: open them a batch at a time, and wait for
        # /status to count each batch held before the next, so as not to
        # overflow the server's listen backlog (a dropped handshake costs a
        # one-second retransmission and would be timed as the server's).
        errors, answers = [], []
        asked = 0
        for batch in range(0, args.n, args.concurrency):
            size = min(args.concurrency, args.n - batch)
            opened, failed = await open_many(size, size, deadline, open_one)
            errors += failed
            answers += [poll.ask(number) for poll in opened if poll is not None]
            if failed:
                break
            asked += await wait_for_waiting(host, port, len(answers), deadline, interval=0.005)
        result.update(connect_errors=len(errors), connect_error_sample=errors[:3], rss_idle=rss_idle)
        if len(polls) < args.n:
            result["error"] = f"only {len(polls)} of {args.n} connected"
            return result
        result["hold_seconds"] = time.monotonic() - started
        hold_cpu = cpu_seconds(pid) - cpu_before
        await setup_profiler.stop()
        # What one /status costs, so that the ones asked between batches (more
        # on a slow or busy server) can be taken out of the CPU per poll.
        cpu_before = cpu_seconds(pid)
        for _ in range(200):
            await status(host, port)
        status_cpu = (cpu_seconds(pid) - cpu_before) / 200
        # (on a loaded machine a /status may take long: status() waits 10 s)
        result.update(status_requests_during_hold=asked, server_cpu_us_per_status=status_cpu * 1e6,
                      server_cpu_us_per_hold=max(0.0, hold_cpu - asked * status_cpu) * 1e6 / args.n)
        result["rss_loaded"] = rss_bytes(pid)

        rounds, reasks = [], []
        await profiler.start()
        for round_number in range(args.rounds):
            cpu_start, own_start = cpu_seconds(pid), own_cpu_seconds()
            body = b"message=round+%d" % round_number
            post_started = time.monotonic()
            # Arrival times are taken as each answer comes in, whatever is
            # awaited first here.
            code, payload, _ = await request(host, port, "POST", "/chat/post", body, timeout=args.connect_timeout)
            if code != 200:
                raise ConnectionError(f"POST /chat/post answered {code}: {payload[:200]!r}")
            done = await asyncio.wait_for(asyncio.gather(*answers), args.connect_timeout)
            cpu_end, own_end = cpu_seconds(pid), own_cpu_seconds()
            # request() starts its clock after connecting; the POST's own
            # connect is part of what a poster waits for, so measure from before.
            delivered = [when - post_started for status_code, when in done]
            rounds.append(dict(
                post_status=code,
                statuses=sorted({status_code for status_code, _ in done}),
                last_ms=max(delivered) * 1000,
                median_ms=statistics.median(delivered) * 1000,
                first_ms=min(delivered) * 1000,
                server_cpu_ms=(cpu_end - cpu_start) * 1000,
                client_cpu_ms=(own_end - own_start) * 1000,
            ))
            number += 1
            await profiler.stop()
            if round_number + 1 < args.rounds:
                # The same N ask again on their open connections: a new
                # request each, without the connect.
                cpu_before = cpu_seconds(pid)
                answers = [poll.ask(number) for poll in polls]
                asked = await wait_for_waiting(host, port, args.n, time.monotonic() + args.connect_timeout)
                reasks.append(max(0.0, cpu_seconds(pid) - cpu_before - asked * status_cpu) * 1e6 / args.n)
        lasts = [r["last_ms"] for r in rounds]
        result.update(
            rounds=rounds,
            post_to_last_median_ms=statistics.median(lasts),
            post_to_last_max_ms=max(lasts),
            post_to_median_median_ms=statistics.median(r["median_ms"] for r in rounds),
            server_cpu_ms_per_post=statistics.median(r["server_cpu_ms"] for r in rounds),
            rss_per_poll=(result["rss_loaded"] - rss_idle) / args.n,
            server_cpu_us_per_reask=statistics.median(reasks) if reasks else None,
        )
        return result
    except (asyncio.TimeoutError, ConnectionError) as error:
        result["error"] = f"{type(error).__name__}: {error}"
        return result
    finally:
        await profiler.stop()
        await setup_profiler.stop()
        for poll in polls:
            if poll.transport is not None:
                reset_on_close(poll.transport)


# --- the restart: N EventSource clients while the server restarts --------------

NETSTAT_FIELDS = ("ListenOverflows", "ListenDrops", "TCPSynRetrans", "TCPReqQFullDrop", "TCPTimeouts",
                  "SyncookiesSent")
STREAM_END = b"0\r"  # the line of the chunked body's last chunk (every frame ends in "\n")


def netstat() -> dict:
    """The TcpExt counters of this network namespace (what ``nstat`` reads).
    The loopback has both ends in it: the server's dropped SYNs
    (ListenOverflows, ListenDrops) and the clients' SYN retransmits."""
    counters = {}
    try:
        with open("/proc/net/netstat") as table:
            lines = table.read().splitlines()
    except OSError:
        return counters
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            counters.update(zip(names.split()[1:], map(int, values.split()[1:])))
    return {name: counters.get(name) for name in NETSTAT_FIELDS}


class StormRun:
    """Every client of one restart, and what happened to each attempt."""

    def __init__(self, n: int, address: tuple[str, int], request: bytes) -> None:
        self.n, self.address, self.request = n, address, request
        self.clients: list["Browser"] = []
        self.watching = False       # from "ready" on, attempts are recorded
        self.attempts: list[float] = []
        self.failures: dict[str, int] = {}
        self.old_exit: Optional[float] = None  # set when run.py says the new process is up
        self.back = 0
        self.given_up = 0
        self.all_back = asyncio.Event()
        self.max_id = 0
        self.retries_seen: list[int] = []

    def failed(self, kind: str) -> None:
        if self.watching:
            self.failures[kind] = self.failures.get(kind, 0) + 1

    def check_done(self) -> None:
        if self.back + self.given_up >= self.n:
            self.all_back.set()


class Browser:
    """One EventSource, as a browser runs it: ``retry:`` sets the delay, the
    id it holds goes out as ``Last-Event-ID``, a refused or dropped
    connection is tried again after the delay, and a non-200 answer or a
    wrong Content-Type ends it for good (it gave up)."""

    def __init__(self, run: StormRun) -> None:
        self.run = run
        self.last_id: Optional[bytes] = None
        self.retry_ms = 3000  # the browsers' default until a retry: field says otherwise
        self.gave_up: Optional[str] = None
        self.log: list[list] = []  # per attempt since "ready": [start, connected, first event, outcome]
        self.back_at: Optional[float] = None
        self.connected: Optional[asyncio.Future] = None

    def start(self) -> None:
        asyncio.get_running_loop().create_task(self.attempt())

    def again(self) -> None:
        if self.gave_up is None:
            asyncio.get_running_loop().call_later(self.retry_ms / 1000, self.start)

    async def attempt(self) -> None:
        loop, run = asyncio.get_running_loop(), self.run
        started = time.monotonic()
        entry = [started, None, None, None]
        if run.watching:
            run.attempts.append(started)
            self.log.append(entry)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, run.address)
            entry[1] = time.monotonic()
            await loop.create_connection(lambda: BrowserStream(self, entry), sock=sock)
        except OSError as error:
            sock.close()
            kind = "refused" if isinstance(error, ConnectionRefusedError) else type(error).__name__
            entry[3] = kind
            run.failed(kind)
            if self.connected is not None and not self.connected.done():
                self.connected.set_exception(error)
            self.again()

    def event(self, entry: list, event_id: bytes, now: float) -> None:
        self.last_id = event_id
        if entry[2] is None:
            entry[2] = now
            run = self.run
            if run.old_exit is not None and self.back_at is None and entry[1] > run.old_exit:
                self.back_at = now
                run.back += 1
                run.check_done()
        if self.connected is not None and not self.connected.done():
            self.connected.set_result(now)


class BrowserStream(asyncio.Protocol):
    """One connection of a ``Browser``: the request, the head, then lines."""

    def __init__(self, browser: Browser, entry: list) -> None:
        self.browser, self.entry = browser, entry
        self.transport: Optional[asyncio.Transport] = None
        self.head = b""
        self.buffer = b""
        self.in_body = False
        self.ended = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        request = self.browser.run.request
        if self.browser.last_id is not None:
            request = request[:-2] + b"Last-Event-ID: " + self.browser.last_id + b"\r\n\r\n"
        transport.write(request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        browser = self.browser
        if not self.in_body:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.head[:end].lower()
            if not head.startswith(b"http/1.1 200 ") or b"content-type: text/event-stream" not in head:
                browser.gave_up = head.split(b"\r\n", 1)[0].decode("latin-1")
                self.finish("gave up")
                browser.run.failed("gave up: " + browser.gave_up)
                browser.run.given_up += 1
                browser.run.check_done()
                return
            self.entry[3] = "ok"
            data, self.head, self.in_body = self.head[end + 4:], b"", True
        data = self.buffer + data
        lines = data.split(b"\n")
        self.buffer = lines.pop()
        for line in lines:
            if line.startswith(b"id: "):
                browser.event(self.entry, line[4:], now)
            elif line.startswith(b"retry: "):
                browser.retry_ms = int(line[7:])
                if browser.run.watching:
                    browser.run.retries_seen.append(browser.retry_ms)
            elif line == STREAM_END:  # the response ended: the server closes it
                self.finish("ended")
                browser.again()
                return

    def finish(self, outcome: str) -> None:
        self.ended = True
        if self.entry[3] != "ok":
            self.entry[3] = outcome
        reset_on_close(self.transport)

    def connection_lost(self, exc) -> None:
        if self.ended:
            return
        self.ended = True
        browser = self.browser
        if not self.in_body:
            self.entry[3] = "closed before the response"
            browser.run.failed(self.entry[3])
            if browser.connected is not None and not browser.connected.done():
                browser.connected.set_exception(ConnectionError("closed before the response"))
        browser.again()


async def read_line_from_stdin() -> dict:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        raise ConnectionError("run.py closed our stdin before the restart")
    return json.loads(line)


async def restart(args, targets: list[tuple[str, int]]) -> dict:
    """N browsers on /ticker; "ready" on stdout once every one holds a price
    and the ids have passed ``--restart-min-id``; then run.py restarts the
    server and writes one JSON line on stdin (the times of SIGTERM, of the
    old process's exit and of the new one's first line, and its pid). A
    client is back when a connection it made after the old process exited
    delivered a price."""
    [(host, port)] = targets
    [old_pid] = args.pid
    run = StormRun(args.n, (host, port), (f"GET /ticker HTTP/1.1\r\nHost: {host}:{port}\r\n"
                                          "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n").encode())
    result: dict = {"scenario": "restart", "n": args.n}
    loop = asyncio.get_running_loop()

    async def open_one(index: int):
        browser = Browser(run)
        browser.connected = loop.create_future()
        run.clients.append(browser)
        browser.start()
        await browser.connected
        browser.connected = None

    try:
        started = time.monotonic()
        opened, errors = await open_many(args.n, args.concurrency, started + args.connect_timeout, open_one)
        result.update(connect_seconds=time.monotonic() - started, connect_errors=len(errors))
        if errors:
            result["error"] = f"{len(errors)} of {args.n} did not connect: {errors[:3]}"
            return result
        # Wait until the ids are past what the new process will reach while
        # they come back: a client whose id equals the new K waits a tick.
        deadline = time.monotonic() + args.restart_min_id * args.tick_interval * 2 + 10
        while min(int(c.last_id) for c in run.clients) < args.restart_min_id:
            if time.monotonic() > deadline:
                raise asyncio.TimeoutError("the ticker ids did not reach --restart-min-id")
            await asyncio.sleep(0.05)
        old_id = max(int(c.last_id) for c in run.clients)
        held = sorted(c.retry_ms for c in run.clients)  # the delay each will wait after SIGTERM
        before = netstat()
        run.watching = True
        own_start = own_cpu_seconds()
        print(json.dumps({"ready": True, "old_id": old_id}), flush=True)

        restarted = await asyncio.wait_for(read_line_from_stdin(), args.connect_timeout)
        new_pid, first_line = restarted["pid"], restarted["first_line"]
        run.old_exit = restarted["old_exit"]
        cpu_at_first_line = restarted["cpu_at_first_line"]
        for browser in run.clients:  # connections that delivered before the news came
            for entry in browser.log:
                if entry[1] is not None and entry[1] > run.old_exit and entry[2] is not None:
                    browser.back_at = entry[2]
                    run.back += 1
                    break
        run.check_done()

        samples = []  # (time, server CPU s, clients back, loadgen CPU s)
        async def sample():
            while True:
                try:
                    cpu = cpu_seconds(new_pid)
                except (OSError, IndexError):
                    cpu = None
                samples.append((time.monotonic(), cpu, run.back, own_cpu_seconds()))
                await asyncio.sleep(0.1)
        sampler = loop.create_task(sample())
        try:
            await asyncio.wait_for(run.all_back.wait(), max(1.0, first_line + args.restart_deadline - time.monotonic()))
        except asyncio.TimeoutError:
            pass
        ended = time.monotonic()
        sampler.cancel()
        samples.append((ended, cpu_seconds(new_pid), run.back, own_cpu_seconds()))
        server_cpu_end = cpu_seconds(new_pid)
        own_end = own_cpu_seconds()
        after = netstat()
        return restart_result(result, run, restarted, old_id, held, before, after, samples, ended,
                              server_cpu_end - cpu_at_first_line, own_end - own_start)
    except (asyncio.TimeoutError, ConnectionError) as error:
        result["error"] = f"{type(error).__name__}: {error}"
        return result
    finally:
        for browser in run.clients:
            browser.gave_up = browser.gave_up or "the run ended"
        # Whatever is still open: reset (the new server is stopped by run.py).


def restart_result(result: dict, run: StormRun, restarted: dict, old_id: int, held: list[int],
                   before: dict, after: dict,
                   samples: list, ended: float, server_cpu: float, loadgen_cpu: float) -> dict:
    """The figures of one restart, times relative to the new process's first line."""
    first_line = restarted["first_line"]
    since = lambda t: None if t is None else t - first_line
    back = sorted(b.back_at - first_line for b in run.clients if b.back_at is not None)
    gave_up = [b.gave_up for b in run.clients if b.gave_up and b.gave_up != "the run ended"]
    bucket = 0.1
    origin = restarted["sigterm"] - first_line
    counts: list[int] = []
    for at in run.attempts:
        index = max(0, int((at - first_line - origin) // bucket))
        counts.extend([0] * (index + 1 - len(counts)))
        counts[index] += 1
    last_back = max(back) if back else None
    window = (last_back if last_back is not None else ended - first_line)
    # The client that came back last: its attempts since SIGTERM.
    last = None
    latest = max((b for b in run.clients if b.back_at is not None), key=lambda b: b.back_at, default=None)
    if latest is not None:
        log = latest.log
        good = next(e for e in log if e[1] is not None and e[1] > run.old_exit and e[2] is not None)
        last = dict(
            attempts=len(log),
            refused=sum(1 for e in log if e[3] == "refused"),
            first_attempt_s=since(log[0][0]) if log else None,
            attempt_s=since(good[0]),
            connect_s=good[1] - good[0],
            connected_to_price_s=good[2] - good[1],
            back_s=since(good[2]),
            retry_ms=latest.retry_ms,
        )
    connects = [e[1] - e[0] for b in run.clients for e in b.log if e[1] is not None]
    cpu_timeline, back_timeline = [], []
    for (t0, c0, _, l0), (t1, c1, b1, l1) in zip(samples, samples[1:]):
        if c0 is not None and c1 is not None:
            cpu_timeline.append([round(since(t1), 3), round((c1 - c0) / (t1 - t0), 3), round((l1 - l0) / (t1 - t0), 3)])
        back_timeline.append([round(since(t1), 3), b1])
    retries = sorted(run.retries_seen)
    result.update(
        old_id=old_id,
        sigterm_to_exit_s=restarted["old_exit"] - restarted["sigterm"],
        exit_to_first_line_s=first_line - restarted["old_exit"],
        back=len(back),
        not_back=run.n - len(back) - len(gave_up),
        gave_up=len(gave_up),
        gave_up_sample=gave_up[:3],
        back_median_s=statistics.median(back) if back else None,
        back_p99_s=percentile(back, 0.99),
        back_last_s=last_back,
        attempts=len(run.attempts),
        failed_attempts=sum(run.failures.values()),
        failures=run.failures,
        attempts_origin_s=origin,
        attempts_per_100ms=counts,
        peak_attempts_per_100ms=max(counts) if counts else 0,
        connects_over_1s=sum(1 for c in connects if c >= 0.9),
        connect_max_s=max(connects) if connects else None,
        server_cpu_s=server_cpu,
        server_busy=server_cpu / window if window and window > 0 else None,
        server_cpu_us_per_client=server_cpu / max(1, len(back)) * 1e6,
        loadgen_cpu_s=loadgen_cpu,
        retry_ms_seen=[retries[0], statistics.median(retries), retries[-1]] if retries else None,
        retry_ms_at_sigterm=[min(held), statistics.median(held), max(held)],
        netstat={k: (after[k] - before[k]) if after.get(k) is not None and before.get(k) is not None else None
                 for k in NETSTAT_FIELDS},
        last_client=last,
        cpu_timeline=cpu_timeline,
        back_timeline=back_timeline,
        collision=(max(int(b.last_id) for b in run.clients if b.last_id) >= old_id),
    )
    return result


async def main(args) -> dict:
    targets = []
    for url in map(urlsplit, args.url):
        if url.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("the load generator only targets this machine (127.0.0.1)")
        targets.append((url.hostname, url.port))
    for host, port in targets:
        await wait_until_ready(host, port, time.monotonic() + 20)
    scenario = {"ticker": ticker, "chat": chat, "restart": restart}[args.scenario]
    result = await scenario(args, targets)
    result["loop"] = type(asyncio.get_running_loop()).__module__.split(".")[0]
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="N EventSource readers or N long polls against one server.")
    parser.add_argument("--url", action="append", required=True,
                        help="http://127.0.0.1:PORT/; repeat it (ticker only) to spread the readers round-robin")
    parser.add_argument("--pid", type=int, action="append", required=True,
                        help="the server process, for CPU and RSS; repeat it to sum over several")
    parser.add_argument("--other-pid", type=int, action="append", default=[],
                        help="a process whose CPU over the window is reported apart (redis-server)")
    parser.add_argument("--scenario", choices=("ticker", "chat", "restart"), default="ticker")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--events", type=int, default=10, help="ticker events measured")
    parser.add_argument("--rounds", type=int, default=5, help="chat posts measured")
    parser.add_argument("--tick-interval", type=float, default=1.0, help="the server's, for deadlines")
    parser.add_argument("--concurrency", type=int, default=100, help="connections being opened at once")
    parser.add_argument("--connect-timeout", type=float, default=120.0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--restart-min-id", type=int, default=20,
                        help="restart: the ticker id every client must hold before the restart")
    parser.add_argument("--restart-deadline", type=float, default=60.0,
                        help="restart: seconds after the new process's first line before the clients not back are counted")
    parser.add_argument("--profile", metavar="PATH", help="py-spy the server over the measured window, to PATH")
    parser.add_argument("--profile-native", action="store_true", help="with --profile: C frames too (py-spy --native)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    if args.scenario in ("chat", "restart") and (len(args.url) > 1 or len(args.pid) > 1):
        raise SystemExit(f"the {args.scenario} scenario targets one server")
    Profiler.native = args.profile_native
    hard = raise_open_file_limit()
    if args.n + 100 > hard:
        raise SystemExit(f"N = {args.n} needs more open files than the hard limit ({hard})")
    if args.loop == "uvloop":
        try:
            import uvloop
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            print("uvloop is not installed; using asyncio", file=sys.stderr)
    print(json.dumps(asyncio.run(main(args))), flush=True)
