"""`make bench`: every server, every N, both scenarios; then the table and plot.

For each N, server and scenario, a fresh server process is started pinned to
one CPU (``taskset -c 0``), the load generator pinned to the other
(``taskset -c 1``) runs against it and prints its figures, and the server is
stopped (SIGTERM, then SIGKILL after a grace period) whatever happened. The
figures go to ``docs/bench.json``; ``docs/bench.md`` and ``docs/bench.png``
are made from them.

    python bench/run.py                       # the full run: N = 1000 5000 10000
    python bench/run.py --n 1000 --events 5   # a quick one
    python bench/run.py --report-only docs/bench.json   # redraw from figures
    python bench/run.py --scenarios redis --n 2000 5000  # only two processes on Redis against one

The ``redis`` scenario (run after the others) measures our ticker's fan-out
with ``--redis``: one process without it, one with it, and two sharing one
ticker through a redis-server of its own; it writes ``docs/bench-redis.md``
and ``docs/bench-redis.json`` and leaves ``bench.md/png/json`` alone when it
runs by itself.

Every server ticks at ``--tick-interval`` (one event to all N per tick) and
sends keep-alives every 15 s, so none is sent inside a measured window.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from loadgen import cpu_seconds

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
URL_LINE = re.compile(r"^(http://127\.0\.0\.1:\d+/)$", re.MULTILINE)

# How each server is started; {tick} is the tick interval in seconds.
SERVERS = {
    # Ours, with its defaults but two: --max-clients above N, and a poll
    # timeout longer than a run, since the peers' polls never time out.
    "tornado": ["app.py", "--port=0", "--tick-interval={tick}", "--max-clients=20000", "--poll-timeout=120"],
    # Ours again, with the writer the tutorial teaches and people copy:
    # Tornado's public API alone (the row above is the default, --writer=fast).
    "tornado-plain": ["app.py", "--port=0", "--tick-interval={tick}", "--max-clients=20000", "--poll-timeout=120",
                      "--writer=plain"],
    "sse-starlette": ["bench/peers/sse_starlette_app.py", "--port", "0", "--tick-interval", "{tick}"],
    # The peers' polls time out as ours do (204), after as long.
    "aiohttp-sse": ["bench/peers/aiohttp_app.py", "--port", "0", "--tick-interval", "{tick}", "--poll-timeout", "120"],
    "floor": ["bench/peers/floor.py", "--port", "0", "--tick-interval", "{tick}", "--poll-timeout", "120"],
    # Plain Tornado as its docs write it, on uvloop as ours runs: how much of
    # our gap to aiohttp is Tornado's own request machinery.
    "tornado-bare": ["bench/peers/tornado_bare.py", "--port", "0", "--tick-interval", "{tick}",
                     "--poll-timeout", "120", "--uvloop"],
}
# Passed to ours only when its --help lists them (older checkouts lack them).
OURS_IF_PRESENT = ["--max-clients-per-address=0", "--post-rate=0"]
OURS, OURS_PLAIN, FLOOR, BARE = "tornado", "tornado-plain", "floor", "tornado-bare"
OUR_SERVERS = (OURS, OURS_PLAIN)  # app.py, started from --app with --ours-flags
# The other frameworks, whose figures the goals hold ours to; tornado-bare is
# a baseline beside them in the tables, never a goal.
PEERS = ("sse-starlette", "aiohttp-sse")
SCENARIOS = ("ticker", "chat", "redis", "restart", "store")
# The restart scenario: our server restarted under N EventSource clients, once
# per row, back to back. The flags are passed only when app.py has them.
RESTART_RUNS = [("jitter off", ["--retry-jitter=0"]), ("default", [])]
RESTART_N = [5000, 10000]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

# The redis scenario: (label, processes, --redis, where each process runs,
# where the load generator runs). "server"/"client" stand for --server-cpu
# and --client-cpu; None is unpinned. The readers are split round-robin.
REDIS_SETUPS = [
    ("one process", 1, False, ["server"], "client"),
    ("one process, --redis", 1, True, ["server"], "client"),
    ("two processes, --redis, both on one CPU", 2, True, ["server", "server"], "client"),
    ("two processes, --redis, one per CPU", 2, True, ["server", "client"], None),
]

PACKAGES = ("tornado", "sse-starlette", "starlette", "uvicorn", "aiohttp", "aiohttp-sse", "uvloop")


class Runner:
    """Starts servers and the load generator, and stops every one it started."""

    def __init__(self, args) -> None:
        self.args = args
        self.started: list[subprocess.Popen] = []
        self.logs = BENCH / "results" / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.taskset = shutil.which("taskset") if not args.no_pin else None
        self._ours_extra: Optional[list[str]] = None
        self._ours_db: Optional[bool] = None
        # Ours keeps its chat in a file of this run's own, never the
        # checkout's instance/chat.db: a bench neither touches the user's
        # chat nor depends on what it holds.
        self.scratch = tempfile.TemporaryDirectory(prefix="bench-run-")
        if not args.no_pin and self.taskset is None:
            print("taskset (util-linux) not found: running unpinned", file=sys.stderr)

    def ours_extra(self) -> list[str]:
        """Flags ours gets when its app.py has them: every client here comes
        from 127.0.0.1, so a cap per address would turn most of N away,
        and a post rate per address most of the posts."""
        if self._ours_extra is None:
            self._ours_extra = [flag for flag in OURS_IF_PRESENT if has_flag(self.args.app, flag.split("=")[0])]
        return self._ours_extra

    def ours_take_db(self) -> bool:
        """Whether ours has ``--db`` (older checkouts keep the chat in memory)."""
        if self._ours_db is None:
            self._ours_db = has_flag(self.args.app, "--db")
        return self._ours_db

    def pinned(self, cpu: int, command: list[str]) -> list[str]:
        return [self.taskset, "-c", str(cpu), *command] if self.taskset else command

    def cpu(self, where):
        """A REDIS_SETUPS placement as a CPU number (None: unpinned)."""
        return {"server": self.args.server_cpu, "client": self.args.client_cpu}.get(where)

    def maybe_pinned(self, cpu, command: list[str]) -> list[str]:
        return command if cpu is None else self.pinned(cpu, command)

    def start_server(self, name: str, log_path: Path, cpu=None, extra: tuple = (),
                     port: int = 0) -> tuple[subprocess.Popen, str]:
        """Start one server; return once it has printed its URL (it listens
        by then). ``process.listening_at`` is when that line came, on the
        monotonic clock every process here shares. ``port`` (ours only)
        replaces ``--port=0``."""
        command = [arg.format(tick=self.args.tick_interval) for arg in SERVERS[name]] + list(extra)
        if name in OUR_SERVERS:
            command += self.ours_extra() + shlex.split(self.args.ours_flags)
            if self.ours_take_db() and not any(arg.startswith(("--db", "--redis")) for arg in command):
                command.append(f"--db={os.path.join(self.scratch.name, 'chat.db')}")
        if port:
            command = [f"--port={port}" if arg == "--port=0" else arg for arg in command]
        process = subprocess.Popen(
            self.maybe_pinned(self.args.server_cpu if cpu is None else cpu, [sys.executable, *command]),
            cwd=self.args.app if name in OUR_SERVERS else ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.started.append(process)
        found: dict = {}
        listening = threading.Event()

        def copy_to_log() -> None:  # until the server exits
            with open(log_path, "wb") as log:
                for line in process.stdout:
                    if not found:
                        url = URL_LINE.match(line.decode("latin-1").strip())
                        if url:
                            found.update(url=url.group(1), at=time.monotonic())
                            listening.set()
                    log.write(line)
                    log.flush()
            listening.set()

        threading.Thread(target=copy_to_log, daemon=True).start()
        if listening.wait(30) and found:
            process.listening_at = found["at"]
            return process, found["url"]
        raise RuntimeError(f"{name} did not print its URL; see {log_path}")

    def stop_timed(self, process: subprocess.Popen) -> float:
        """SIGTERM, and the moment the process is gone (SIGKILL after
        --grace), read from a pidfd rather than by polling."""
        pidfd = os.pidfd_open(process.pid)
        try:
            process.send_signal(signal.SIGTERM)
            if not select.select([pidfd], [], [], self.args.grace)[0]:
                process.kill()
                select.select([pidfd], [], [], 10)
            gone = time.monotonic()
        finally:
            os.close(pidfd)
        process.wait(timeout=10)
        self.started.remove(process)
        return gone

    def stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.args.grace)
            except subprocess.TimeoutExpired:
                process.kill()  # uvicorn waits on held polls forever
                process.wait(timeout=10)
        if process in self.started:
            self.started.remove(process)

    def stop_all(self) -> None:
        for process in list(self.started):
            try:
                self.stop(process)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
        self.scratch.cleanup()

    def start_redis(self, directory: str) -> tuple[subprocess.Popen, int]:
        """A redis-server of its own on a free port, nothing on disk, pinned
        with the servers; answers PING before this returns."""
        for attempt in range(5):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            log = open(Path(directory) / "redis.log", "a")
            process = subprocess.Popen(
                self.pinned(self.args.server_cpu, [
                    REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--dir", directory,
                    "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"]),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            self.started.append(process)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as client:
                        client.sendall(b"PING\r\n")
                        if client.recv(64).startswith(b"+PONG"):
                            return process, port
                except OSError:
                    pass
                time.sleep(0.1)
            self.stop(process)  # the port was taken meanwhile, or it hung: another port
        raise RuntimeError(f"redis-server did not start; see {directory}/redis.log")

    def measure_redis(self, setup: tuple, n: int) -> dict:
        """Our ticker at N readers, in one REDIS_SETUPS arrangement."""
        label, count, shared, placement, client = setup
        args = self.args
        processes, urls = [], []
        redis_process = None
        with tempfile.TemporaryDirectory(prefix="bench-redis-") as directory:
            try:
                extra = ()
                if shared:
                    redis_process, port = self.start_redis(directory)
                    extra = (f"--redis=redis://127.0.0.1:{port}/0",)
                for index, where in enumerate(placement):
                    log_path = self.logs / f"redis-{REDIS_SETUPS.index(setup)}-{n}-{index}.log"
                    process, url = self.start_server(OURS, log_path, cpu=self.cpu(where), extra=extra)
                    processes.append(process)
                    urls.append(url)
                command = [sys.executable, str(BENCH / "loadgen.py"), "--scenario", "ticker", "--n", str(n),
                           "--events", str(args.events), "--tick-interval", str(args.tick_interval),
                           "--concurrency", str(args.concurrency), "--connect-timeout", str(args.connect_timeout)]
                for process, url in zip(processes, urls):
                    command += ["--url", url, "--pid", str(process.pid)]
                if redis_process is not None:
                    command += ["--other-pid", str(redis_process.pid)]
                budget = 60 + args.connect_timeout * 2 + args.events * args.tick_interval * 4
                try:
                    done = subprocess.run(self.maybe_pinned(self.cpu(client), command), cwd=ROOT,
                                          capture_output=True, text=True, timeout=budget, stdin=subprocess.DEVNULL)
                except subprocess.TimeoutExpired:
                    return {"scenario": "redis", "n": n, "error": f"the load generator ran past {budget:.0f} s"}
                lines = done.stdout.strip().splitlines()
                if done.returncode != 0 or not lines:
                    return {"scenario": "redis", "n": n,
                            "error": f"the load generator exited {done.returncode}: {done.stderr.strip()[-500:]}"}
                result = json.loads(lines[-1])
                for process in processes + ([redis_process] if redis_process else []):
                    if process.poll() is not None:
                        result["error"] = f"a server or redis-server exited ({process.returncode}) during the run"
                return result
            finally:
                for process in processes:
                    self.stop(process)  # first, so that each releases its lease
                if redis_process is not None:
                    self.stop(redis_process)

    def measure_restart(self, n: int, label: str, flags: list[str]) -> dict:
        """Our server under N browsers on /ticker, SIGTERMed and started again
        on the same port once they all hold a price; the load generator
        reports how they came back (``loadgen.py``'s ``restart``)."""
        args = self.args
        slug = label.replace(" ", "-")
        process, url = self.start_server(OURS, self.logs / f"tornado-restart-{n}-{slug}-old.log", extra=flags)
        loadgen = new = None
        try:
            command = [
                sys.executable, str(BENCH / "loadgen.py"), "--url", url, "--pid", str(process.pid),
                "--scenario", "restart", "--n", str(n), "--tick-interval", str(args.tick_interval),
                "--concurrency", str(args.concurrency), "--connect-timeout", str(args.connect_timeout),
                "--restart-min-id", str(args.restart_min_id), "--restart-deadline", str(args.restart_deadline),
            ]
            with open(self.logs / f"loadgen-restart-{n}-{slug}.log", "w") as errors:
                loadgen = subprocess.Popen(self.pinned(args.client_cpu, command), cwd=ROOT, text=True,
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)
            budget = args.connect_timeout + args.restart_min_id * args.tick_interval * 2 + 30
            if not select.select([loadgen.stdout], [], [], budget)[0]:
                return {"scenario": "restart", "n": n, "error": f"no clients ready within {budget:.0f} s"}
            ready = json.loads(loadgen.stdout.readline() or "{}")
            if not ready.get("ready"):
                loadgen.stdin.close()
                out = loadgen.communicate(timeout=30)[0].strip().splitlines()
                return json.loads(out[-1]) if out else {
                    "scenario": "restart", "n": n, "error": f"the load generator exited {loadgen.returncode}"}
            sigterm = time.monotonic()
            old_exit = self.stop_timed(process)
            new, _ = self.start_server(OURS, self.logs / f"tornado-restart-{n}-{slug}-new.log",
                                       extra=flags, port=urlsplit(url).port)
            restarted = dict(sigterm=sigterm, old_exit=old_exit, first_line=new.listening_at, pid=new.pid,
                             cpu_at_first_line=cpu_seconds(new.pid))
            loadgen.stdin.write(json.dumps(restarted) + "\n")
            loadgen.stdin.flush()
            out = loadgen.communicate(timeout=args.restart_deadline + 60)[0].strip().splitlines()
            if loadgen.returncode != 0 or not out:
                return {"scenario": "restart", "n": n, "error": f"the load generator exited {loadgen.returncode}"}
            result = json.loads(out[-1])
            if new.poll() is not None:
                result["error"] = f"the new server exited ({new.returncode}) during the run"
            return result
        except subprocess.TimeoutExpired:
            return {"scenario": "restart", "n": n, "error": "the load generator did not finish in time"}
        finally:
            if loadgen is not None and loadgen.poll() is None:
                loadgen.kill()
                loadgen.wait()
            for server in (process, new):
                if server is not None:
                    self.stop(server)

    def measure(self, name: str, scenario: str, n: int) -> dict:
        """One server process, one scenario, one N: the load generator's figures."""
        log_path = self.logs / f"{name}-{scenario}-{n}.log"
        process, url = self.start_server(name, log_path)
        try:
            args = self.args
            command = [
                sys.executable, str(BENCH / "loadgen.py"), "--url", url, "--pid", str(process.pid),
                "--scenario", scenario, "--n", str(n), "--events", str(args.events),
                "--rounds", str(args.rounds), "--tick-interval", str(args.tick_interval),
                "--concurrency", str(args.concurrency), "--connect-timeout", str(args.connect_timeout),
            ]
            if args.profile:
                profiles = BENCH / "results" / "profiles"
                profiles.mkdir(parents=True, exist_ok=True)
                command += ["--profile", str(profiles / f"{name}-{scenario}-{n}.txt")]
                command += ["--profile-native"] if args.profile_native else []
            budget = 60 + args.connect_timeout * (2 + args.rounds) + args.events * args.tick_interval * 4
            try:
                done = subprocess.run(self.pinned(args.client_cpu, command), cwd=ROOT, capture_output=True,
                                      text=True, timeout=budget, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                return {"scenario": scenario, "n": n, "error": f"the load generator ran past {budget:.0f} s"}
            lines = done.stdout.strip().splitlines()
            if done.returncode != 0 or not lines:
                return {"scenario": scenario, "n": n,
                        "error": f"the load generator exited {done.returncode}: {done.stderr.strip()[-500:]}"}
            result = json.loads(lines[-1])
            if process.poll() is not None:
                result["error"] = f"the server exited ({process.returncode}) during the run; see {log_path}"
            return result
        finally:
            self.stop(process)


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
        "kernel": platform.release(), "packages": versions, "load_average_at_start": os.getloadavg(),
    }


def source_state(app: Path) -> dict:
    """Which code of ours was measured: the commit, and whether the files the
    server runs from differ from it."""
    def git(*command: str) -> str:
        try:
            done = subprocess.run(["git", *command], cwd=app, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""
    changed = git("status", "--porcelain", "--", "app.py", "handlers", "comet")
    return {"app": str(app), "commit": git("rev-parse", "--short", "HEAD") or "unknown",
            "changed_files": [line[3:] for line in changed.splitlines()]}


def run(args) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        # Servers started from here inherit it; ours raises its own anyway.
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    largest = max(args.n + (args.restart_n if "restart" in args.scenarios else []))
    if largest + 100 > hard:
        raise SystemExit(f"N = {largest} needs more open files than the hard limit ({hard})")
    report = {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "ours": source_state(args.app),
        "settings": {k: getattr(args, k) for k in ("n", "events", "rounds", "tick_interval", "concurrency",
                                                   "server_cpu", "client_cpu", "servers", "scenarios",
                                                   "ours_flags")}
                    | {"pinned": not args.no_pin, "commands": SERVERS},
        "results": [],
        "redis_results": [],
        "restart_results": [],
    }
    runner = Runner(args)
    began = time.monotonic()
    try:
        for n in args.n:
            for name in args.servers:
                for scenario in [s for s in args.scenarios if s in ("ticker", "chat")]:
                    step = time.monotonic()
                    try:
                        result = runner.measure(name, scenario, n)
                    except RuntimeError as error:
                        result = {"scenario": scenario, "n": n, "error": str(error)}
                    result["server"] = name
                    if name in OUR_SERVERS:
                        result["ours"] = source_state(args.app)  # the lead may commit mid-run
                    report["results"].append(result)
                    print(f"{name:>14} {scenario:<6} N={n:<6} {summary(result)}  ({time.monotonic() - step:.0f} s)",
                          flush=True)
        if "redis" in args.scenarios:
            report["redis_versions"] = redis_versions()
            for n in args.n:
                for setup in REDIS_SETUPS:
                    step = time.monotonic()
                    try:
                        result = runner.measure_redis(setup, n)
                    except (RuntimeError, OSError) as error:
                        result = {"scenario": "redis", "n": n, "error": str(error)}
                    result.update(scenario="redis", setup=setup[0], processes=setup[1], shared=setup[2],
                                  server_cpus=[runner.cpu(w) for w in setup[3]], client_cpu=runner.cpu(setup[4]))
                    report["redis_results"].append(result)
                    print(f"{setup[0]:>40} N={n:<6} {summary(result)}  ({time.monotonic() - step:.0f} s)",
                          flush=True)
        if "restart" in args.scenarios:
            jitter = has_flag(args.app, "--retry-jitter")
            report["restart"] = {"n": args.restart_n, "retry_jitter_flag": jitter, "min_id": args.restart_min_id,
                                 "deadline": args.restart_deadline, "runs": [label for label, _ in RESTART_RUNS]}
            for n in args.restart_n:
                for label, flags in RESTART_RUNS:
                    step = time.monotonic()
                    try:
                        result = runner.measure_restart(n, label, flags if jitter else [])
                    except (RuntimeError, OSError) as error:
                        result = {"scenario": "restart", "n": n, "error": str(error)}
                    result.update(scenario="restart", run=label, flags=flags if jitter else [],
                                  ours=source_state(args.app))
                    report["restart_results"].append(result)
                    print(f"{'restart, ' + label:>24} N={n:<6} {summary(result)}  ({time.monotonic() - step:.0f} s)",
                          flush=True)
    finally:
        runner.stop_all()
    report["seconds"] = round(time.monotonic() - began)
    report["machine"]["load_average_at_end"] = os.getloadavg()
    return report


def has_flag(app: Path, flag: str) -> bool:
    """Whether ``app.py --help`` lists ``flag`` (a flag that has not landed yet is not passed)."""
    try:
        done = subprocess.run([sys.executable, "app.py", "--help"], cwd=app, capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return re.search(rf"^\s*{re.escape(flag)}\b", done.stdout + done.stderr, re.MULTILINE) is not None


def summary(result: dict) -> str:
    if "error" in result:
        return "ERROR: " + result["error"]
    if result["scenario"] == "restart":
        return (f"back median {result['back_median_s']:.2f} s, last {number(result['back_last_s'], 2)} s, "
                f"peak {result['peak_attempts_per_100ms']} attempts/100 ms, {result['failed_attempts']} failed, "
                f"{result['gave_up']} gave up, {result['not_back']} not back")
    if result["scenario"] in ("ticker", "redis"):
        return (f"connect {result['connect_seconds']:.2f} s, spread {result['spread_median_ms']:.1f}/"
                f"{result['spread_p99_ms']:.1f} ms, cpu {result['server_cpu_ms_per_event']:.0f} ms/event, "
                f"rss {result['rss_per_connection'] / 1024:.1f} KB/conn")
    return (f"hold {result['hold_seconds']:.2f} s, post->last {result['post_to_last_median_ms']:.1f} ms, "
            f"cpu {result['server_cpu_ms_per_post']:.0f} ms/post, rss {result['rss_per_poll'] / 1024:.1f} KB/poll")


# --- the table -------------------------------------------------------------------

def figures(report: dict) -> dict:
    """(scenario, n, server) -> result, errors left out."""
    return {(r["scenario"], r["n"], r["server"]): r for r in report["results"] if "error" not in r}


def number(value, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def tables(scenario: str, columns, ns, servers, found) -> list[str]:
    """One Markdown table per N: a row per server, a column per figure."""
    out = []
    for n in ns:
        out += [f"### N = {n:,}", "", "| server | " + " | ".join(c[0] for c in columns) + " |",
                "| --- |" + " ---: |" * len(columns)]
        for server in servers:
            result = found.get((scenario, n, server))
            cells = [number(None if result is None else c[1](result), c[2]) for c in columns]
            out.append(f"| {server} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def ratio(ours, other) -> str:
    if ours is None or other is None or other == 0:
        return "n/a"
    return f"{ours / other:.2f}×"


TICKER_COLUMNS = [
    ("connect all N (s)", lambda r: r["connect_seconds"], 2),
    ("spread median (ms)", lambda r: r["spread_median_ms"], 1),
    ("spread p99 (ms)", lambda r: r["spread_p99_ms"], 1),
    ("server CPU per event (ms)", lambda r: r["server_cpu_ms_per_event"], 1),
    ("RSS per connection (KB)", lambda r: r["rss_per_connection"] / 1024, 1),
    ("load generator CPU per event (ms)", lambda r: r["client_cpu_ms_per_event"], 1),
]
CHAT_COLUMNS = [
    ("hold all N (s)", lambda r: r["hold_seconds"], 2),
    ("POST → last answer, median (ms)", lambda r: r["post_to_last_median_ms"], 1),
    ("POST → last answer, worst (ms)", lambda r: r["post_to_last_max_ms"], 1),
    ("POST → median answer (ms)", lambda r: r["post_to_median_median_ms"], 1),
    ("server CPU per post (ms)", lambda r: r["server_cpu_ms_per_post"], 1),
    ("RSS per held poll (KB)", lambda r: r["rss_per_poll"] / 1024, 1),
]
# What one request costs, ours against each other server: (scenario, label,
# figure, unit, digits). "connect" and RSS per stream come from the ticker.
RATIO_METRICS = [
    ("chat", "POST → last of N answers", lambda r: r["post_to_last_median_ms"], "ms", 0),
    ("chat", "server CPU per post", lambda r: r["server_cpu_ms_per_post"], "ms", 0),
    ("chat", "hold N polls", lambda r: r["hold_seconds"], "s", 2),
    ("chat", "RSS per held poll", lambda r: r["rss_per_poll"] / 1024, "KB", 1),
    ("ticker", "connect N streams", lambda r: r["connect_seconds"], "s", 2),
    ("chat", "server CPU per poll taken", lambda r: r["server_cpu_us_per_hold"], "µs", 0),
    ("chat", "server CPU per poll asked again", lambda r: r["server_cpu_us_per_reask"], "µs", 0),
    ("ticker", "server CPU per stream taken", lambda r: r["server_cpu_us_per_connect"], "µs", 0),
    ("ticker", "RSS per stream", lambda r: r["rss_per_connection"] / 1024, "KB", 1),
    ("ticker", "CPU per event", lambda r: r["server_cpu_ms_per_event"], "ms", 1),
    ("ticker", "spread, median", lambda r: r["spread_median_ms"], "ms", 1),
]
AIOHTTP = "aiohttp-sse"


def value_of(found: dict, key, metric):
    result = found.get(key)
    try:
        return None if result is None else metric(result)
    except KeyError:  # a figure an older bench.json does not have
        return None


# bench.md's last section is prose written from the tables and the other
# pages; a run rewrites everything above it and keeps it as it was.
BY_HAND = "## In short"


def written_by_hand(page: Path) -> str:
    """The hand-written section at the end of ``page``, if it has one."""
    text = page.read_text() if page.exists() else ""
    at = text.find("\n" + BY_HAND)
    return "" if at < 0 else text[at:]


def markdown(report: dict) -> str:
    found = figures(report)
    settings, host, ours = report["settings"], report["machine"], report.get("ours", {})
    servers, ns = settings["servers"], sorted(settings["n"])
    out = [
        "# Benchmark: Comet fan-out, Tornado against its peers",
        "",
        "Made by `make bench` (`bench/run.py`); how it measures and how to run it: "
        "[bench/README.md](../bench/README.md). Figures: [bench.json](bench.json).",
        "",
        f"- Run: {report['started']}, {report.get('seconds', '?')} s; "
        f"{host['cpus']} CPUs ({host['cpu_model'] or 'unknown model'}), Python {host['python']}, "
        f"Linux {host['kernel']}.",
        f"- Load average at start {', '.join(f'{x:.2f}' for x in host['load_average_at_start'])}; "
        f"at end {', '.join(f'{x:.2f}' for x in host.get('load_average_at_end', []))} "
        "(anything else running on the machine shows up as noise).",
        f"- Each server pinned to CPU {settings['server_cpu']}, the load generator to CPU {settings['client_cpu']}"
        + ("" if settings["pinned"] else " (NOT pinned: taskset missing or --no-pin)") + "; "
        f"a tick every {settings['tick_interval']} s, {settings['events']} events measured per run, "
        f"{settings['rounds']} chat posts.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in host["packages"].items() if v) + ".",
        f"- Ours (tornado) at commit {ours.get('commit', 'unknown')}"
        + (" (it changed during the run: see bench.json)"
           if len({str(r["ours"]) for r in report["results"] if "ours" in r} | {str(ours)}) > 1
           else "")
        + (f", with uncommitted changes to {', '.join(ours['changed_files'])}"
           if ours.get("changed_files") else "")
        + (f", with the flags `{settings['ours_flags']}`" if settings.get("ours_flags") else "") + ".",
        "",
        "## Ticker: one event to N EventSource readers",
        "",
        "Spread: last arrival minus first arrival of one event across the N readers; "
        "median and p99 over the measured events. CPU: the server's utime + stime over the "
        "window, per event. RSS: (RSS with N connected − RSS idle) / N.",
        "",
    ]
    out += tables("ticker", TICKER_COLUMNS, ns, servers, found)
    out += ["## Chat: one POST answers N held long polls", "",
            "From just before the POST's connection is opened to each held poll's complete answer; "
            "median and worst of the posts. CPU: the server's, from the POST to the last answer.", ""]
    out += tables("chat", CHAT_COLUMNS, ns, servers, found)
    if OURS in servers:
        out += ratio_tables(found, ns, servers)
        out += goal_lines(found, max(ns))
    if OURS_PLAIN in servers:
        out += ratio_tables(found, ns, servers, OURS_PLAIN)
    if report.get("restart_results"):
        out += restart_markdown(report)
    errors = [r for r in report["results"] if "error" in r]
    if errors:
        out += ["## Runs that failed", ""]
        out += [f"- {r['server']} {r['scenario']} N={r['n']}: {r['error']}" for r in errors]
        out.append("")
    return "\n".join(out)


def ratio_tables(found: dict, ns, servers, ours_name: str = OURS) -> list[str]:
    """Per N: each figure of ours (``ours_name``: the default writer, or
    --writer=plain) beside the other writer's, plain Tornado's, aiohttp's and
    the floor's, and ours divided by each other server's (below 1 is better)."""
    others = [s for s in servers if s != ours_name]
    shown = [s for s in (*OUR_SERVERS, BARE, AIOHTTP, FLOOR) if s in servers and s != ours_name]
    if ours_name == OURS:
        out = ["## Ours against the others: the figures and the ratios", "",
               "Each figure of ours (tornado, the default --writer=fast) next to ours with --writer=plain "
               "(tornado-plain), plain Tornado's (tornado-bare), aiohttp's and the floor's, then "
               "ours ÷ each other server (below 1 is better). The chat figures come from the chat scenario, "
               "the connect time and RSS per stream from the ticker's.", ""]
    else:
        out = ["## What the reader's copy costs: ours with --writer=plain against the others", "",
               "The same tables for tornado-plain, ours on Tornado's public API alone (the code the tutorial "
               "quotes and the copy list names): its figures beside the others', then tornado-plain ÷ each "
               "other server. Against tornado, what the fast writer buys.", ""]
    for n in ns:
        out += [f"### N = {n:,}", "",
                f"| figure | {ours_name} | " + " | ".join(shown) + " | " + " | ".join(f"÷ {s}" for s in others)
                + " |",
                "| --- | ---: |" + " ---: |" * (len(shown) + len(others))]
        for scenario, label, metric, unit, digits in RATIO_METRICS:
            ours = value_of(found, (scenario, n, ours_name), metric)
            values = [number(value_of(found, (scenario, n, s), metric), digits) for s in shown]
            cells = [ratio(ours, value_of(found, (scenario, n, s), metric)) for s in others]
            out.append(f"| {label} ({unit}) | {number(ours, digits)} | " + " | ".join(values + cells) + " |")
        out.append("")
    return out


def goal_lines(found: dict, n: int) -> list[str]:
    """The goals at the largest N, checked: the fan-out's (ticker near the
    floor, ahead of both peers) and the per-request cost's (each figure at or
    below aiohttp's; the ticker's CPU per event within 1.3× the floor)."""
    def get(scenario, server, label):
        metric = next(m[2] for m in RATIO_METRICS if m[1] == label)
        return value_of(found, (scenario, n, server), metric)

    checks = []
    for label in ("spread, median", "CPU per event"):
        ours, peers = get("ticker", OURS, label), [get("ticker", p, label) for p in PEERS]
        if ours is not None and None not in peers:
            checks.append((f"ticker {label} below both peers'", all(ours < p for p in peers)))
    ours, floor = get("ticker", OURS, "CPU per event"), get("ticker", FLOOR, "CPU per event")
    if ours is not None and floor:
        checks.append((f"ticker CPU per event within 1.3× the floor ({ours / floor:.2f}×)", ours <= 1.3 * floor))
    ours, floor = get("ticker", OURS, "spread, median"), get("ticker", FLOOR, "spread, median")
    if ours is not None and floor:
        checks.append((f"ticker spread within 2× the floor ({ours / floor:.2f}×; 1.07× at commit 0685ad8)",
                       ours <= 2 * floor))
    at_or_below_aiohttp = ("POST → last of N answers", "server CPU per post", "hold N polls", "RSS per held poll",
                           "connect N streams", "RSS per stream")
    for scenario, label, *_ in [m for m in RATIO_METRICS if m[1] in at_or_below_aiohttp]:
        ours, aiohttp = get(scenario, OURS, label), get(scenario, AIOHTTP, label)
        if ours is not None and aiohttp:
            checks.append((f"{label} at or below aiohttp's ({ours / aiohttp:.2f}×)", ours <= aiohttp))
    for label in ("POST → last of N answers", "server CPU per post"):
        ours, floor = get("chat", OURS, label), get("chat", FLOOR, label)
        if ours is not None and floor:
            checks.append((f"{label} within 2× the floor, the aim ({ours / floor:.2f}×)", ours <= 2 * floor))
    if not checks:
        return []
    lines = [f"## The goals at N = {n:,}", ""]
    lines += [f"- {'met' if ok else 'NOT met'}: {label}" for label, ok in checks]
    return lines + [""]


def redis_versions() -> dict:
    versions = {}
    try:
        done = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True, timeout=10)
        versions["redis-server"] = done.stdout.split(" v=")[1].split()[0] if " v=" in done.stdout else done.stdout
    except (OSError, subprocess.TimeoutExpired, IndexError):
        versions["redis-server"] = None
    try:
        versions["redis-py"] = metadata.version("redis")
    except metadata.PackageNotFoundError:
        versions["redis-py"] = None
    return versions


REDIS_COLUMNS = [
    ("connect all N (s)", lambda r: r["connect_seconds"], 2),
    ("spread median (ms)", lambda r: r["spread_median_ms"], 1),
    ("spread p99 (ms)", lambda r: r["spread_p99_ms"], 1),
    ("server CPU per event, all processes (ms)", lambda r: r["server_cpu_ms_per_event"], 1),
    ("redis-server CPU per event (ms)", lambda r: r["other_cpu_ms_per_event"], 1),
    ("RSS per connection (KB)", lambda r: r["rss_per_connection"] / 1024, 1),
    ("load generator CPU per event (ms)", lambda r: r["client_cpu_ms_per_event"], 1),
]


def redis_markdown(report: dict) -> str:
    """docs/bench-redis.md: our ticker on one process, and on two sharing it through Redis."""
    settings, host, ours = report["settings"], report["machine"], report.get("ours", {})
    versions = report.get("redis_versions", {})
    found = {(r["n"], r["setup"]): r for r in report["redis_results"] if "error" not in r}
    labels = [s[0] for s in REDIS_SETUPS]
    pin = lambda cpu: "unpinned" if cpu is None else f"CPU {cpu}"
    out = [
        "# Benchmark: one process against two sharing the ticker through Redis",
        "",
        "Made by `make bench` (`bench/run.py`, scenario `redis`); how it measures: "
        "[bench/README.md](../bench/README.md). Figures: [bench-redis.json](bench-redis.json).",
        "",
        f"- Run: {report['started']}, {report.get('seconds', '?')} s; "
        f"{host['cpus']} CPUs ({host['cpu_model'] or 'unknown model'}), Python {host['python']}, "
        f"Linux {host['kernel']}; redis-server {versions.get('redis-server')}, redis-py {versions.get('redis-py')}, "
        f"tornado {host['packages'].get('tornado')}.",
        f"- Load average at start {', '.join(f'{x:.2f}' for x in host['load_average_at_start'])}; "
        f"at end {', '.join(f'{x:.2f}' for x in host.get('load_average_at_end', []))}.",
        f"- Ours at commit {ours.get('commit', 'unknown')}"
        + (f", with uncommitted changes to {', '.join(ours['changed_files'])}" if ours.get("changed_files") else "")
        + f"; a tick every {settings['tick_interval']} s, {settings['events']} events measured per run"
        + ("" if settings["pinned"] else "; NOT pinned (taskset missing or --no-pin)") + ".",
        "",
        "Every run starts fresh processes, and, with `--redis`, a redis-server of its own "
        f"(`--save '' --appendonly no`, pinned to CPU {settings['server_cpu']} with the servers). "
        "With two processes, reader i connects to process i mod 2, so each holds N/2; both serve the "
        "same event ids (K lives in Redis), so an event's spread is its last arrival minus its first "
        "across all N readers of both processes. Server CPU and RSS are summed over the processes; "
        "redis-server's CPU is apart.",
        "",
        "Where each runs:",
        "",
    ]
    for label, count, shared, placement, client in REDIS_SETUPS:
        cpus = ", ".join(pin(settings["server_cpu"] if w == "server" else settings["client_cpu"]) for w in placement)
        gen = pin({"server": settings["server_cpu"], "client": settings["client_cpu"]}.get(client))
        out.append(f"- **{label}**: {'processes on' if count > 1 else 'server on'} {cpus}; load generator {'on ' if client else ''}{gen}.")
    out += [
        "",
        "The third row puts both processes on the one CPU the first row had: it measures what sharing "
        "through Redis and splitting the readers across processes costs, not what a second core buys. "
        "The fourth gives each process a core of its own, but this machine has only two, so the load "
        "generator has no core of its own and competes with both servers: its spread is an upper bound. "
        "On a machine with a core per process (and one for the readers) the fourth row is the deployment.",
        "",
    ]
    for n in sorted(settings["n"]):
        out += [f"## N = {n:,}", "", "| setup | " + " | ".join(c[0] for c in REDIS_COLUMNS) + " |",
                "| --- |" + " ---: |" * len(REDIS_COLUMNS)]
        for label in labels:
            result = found.get((n, label))
            cells = []
            for column in REDIS_COLUMNS:
                try:
                    value = None if result is None else column[1](result)
                except (KeyError, TypeError):
                    value = None
                # No redis-server in a run without --redis: a dash, not a missing figure.
                cells.append("–" if result is not None and value is None else number(value, column[2]))
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        base = found.get((n, labels[0]))
        if base:
            out += ["", "Against one process without Redis: "
                    + "; ".join(f"{label}: spread {ratio(found[(n, label)]['spread_median_ms'], base['spread_median_ms'])}, "
                                f"CPU {ratio(found[(n, label)]['server_cpu_ms_per_event'], base['server_cpu_ms_per_event'])}"
                                for label in labels[1:] if (n, label) in found) + "."]
        out.append("")
    errors = [r for r in report["redis_results"] if "error" in r]
    if errors:
        out += ["## Runs that failed", ""]
        out += [f"- {r.get('setup', '?')} N={r['n']}: {r['error']}" for r in errors]
        out.append("")
    return "\n".join(out)


# --- the restart storm ---------------------------------------------------------

def restart_limit(result: dict) -> str:
    """What held back the last client: its wait for the retry timer, its
    connect (a dropped SYN is sent again after 1 s, then 3 s), or the time
    from connected to its price (in the accept queue behind the others, or a
    handshake whose last ACK the server's kernel dropped, the queue being
    full, until its SYN-ACK was sent again)."""
    last, busy = result.get("last_client"), result.get("server_busy")
    if not last:
        return "no client came back"
    parts = {
        "its retry timer": last["attempt_s"],
        "connecting (SYN retransmits: the accept queue was full)": last["connect_s"],
        "from connected to its price (queued for the server's CPU, or its handshake's last ACK "
        "dropped and the SYN-ACK sent again)": last["connected_to_price_s"],
    }
    verdict = max(parts, key=parts.get)
    busy_text = "n/a" if busy is None else f"{busy:.0%}"
    return (f"mostly {verdict}. It came back {last['back_s']:.2f} s after the first line: {last['attempts']} "
            f"attempt(s) since SIGTERM ({last['refused']} refused, retry {last['retry_ms']} ms); the one that "
            f"worked started at {last['attempt_s']:+.2f} s, took {last['connect_s'] * 1000:.0f} ms to connect and "
            f"{last['connected_to_price_s'] * 1000:.0f} ms more to a price; the server was busy {busy_text} of the "
            f"time from its first line to the last client, {result['connects_over_1s']:,} connects took ≥ 0.9 s")


RESTART_COLUMNS = [
    ("retry: at SIGTERM, min / median / max (ms)",
     lambda r: "/".join(f"{x:.0f}" for x in r["retry_ms_at_sigterm"])),
    ("SIGTERM → old process gone (s)", lambda r: f"{r['sigterm_to_exit_s']:.2f}"),
    ("gone → new first line (s)", lambda r: f"{r['exit_to_first_line_s']:.2f}"),
    ("all back, median (s)", lambda r: number(r["back_median_s"], 2)),
    ("all back, last (s)", lambda r: number(r["back_last_s"], 2)),
    ("last back, from SIGTERM (s)", lambda r: number(None if r["back_last_s"] is None else
                                                     r["back_last_s"] - r["attempts_origin_s"], 2)),
    ("peak attempts per 100 ms", lambda r: f"{r['peak_attempts_per_100ms']:,}"),
    ("attempts", lambda r: f"{r['attempts']:,}"),
    ("failed attempts", lambda r: f"{r['failed_attempts']:,}"),
    ("gave up", lambda r: f"{r['gave_up']:,}"),
    ("not back in time", lambda r: f"{r['not_back']:,}"),
]
RESTART_COST_COLUMNS = [
    ("server CPU, first line → last back (s)", lambda r: f"{r['server_cpu_s']:.2f}"),
    ("server busy", lambda r: "n/a" if r["server_busy"] is None else f"{r['server_busy']:.0%}"),
    ("server CPU per client back (µs)", lambda r: f"{r['server_cpu_us_per_client']:.0f}"),
    ("load generator CPU (s)", lambda r: f"{r['loadgen_cpu_s']:.2f}"),
    ("ListenOverflows / ListenDrops", lambda r: f"{r['netstat'].get('ListenOverflows')} / {r['netstat'].get('ListenDrops')}"),
    ("SYN retransmits", lambda r: str(r["netstat"].get("TCPSynRetrans"))),
    ("connects ≥ 0.9 s", lambda r: f"{r['connects_over_1s']:,}"),
]


def restart_markdown(report: dict) -> list[str]:
    """The restart section: how N browsers came back, what it cost, and the goal."""
    settings = report.get("restart", {})
    results = report.get("restart_results", [])
    found = {(r["n"], r["run"]): r for r in results if "error" not in r}
    runs = settings.get("runs", [label for label, _ in RESTART_RUNS])
    host = report["machine"]
    out = [
        "## Restart: N browsers on /ticker while the server restarts", "",
        f"Our server holds N EventSource-like clients on `/ticker` (each honours `retry:`, resends "
        "`Last-Event-ID`, tries a refused connection again after its retry delay, and gives up only on a "
        "non-200 answer or a wrong Content-Type, as a browser does). Once every one holds a price with an id "
        f"of at least {settings.get('min_id', '?')} (so that no id the new process reaches while they come "
        "back matches one they hold), it is sent SIGTERM; when it has exited, the same command starts it "
        "again on the same port, pinned like the first. Times are from the new process's first line on "
        "stdout (its URL, printed once it listens) to each client's first price on a connection opened after "
        "the old process exited. The two runs of each N are back to back.",
        "",
        f"- Load average at start {', '.join(f'{x:.2f}' for x in host['load_average_at_start'])}; at end "
        f"{', '.join(f'{x:.2f}' for x in host.get('load_average_at_end', []))}. The machine is shared with "
        "other work: runs vary by 20-30 %.",
        "- Runs: " + "; ".join(f"**{label}**: `{' '.join(flags) or 'no flag'}`" for label, flags in RESTART_RUNS)
        + (". " if settings.get("retry_jitter_flag", True) else
           ". **This app.py has no `--retry-jitter`: both runs were started without it, so both send a "
           "fixed retry.** ")
        + "Plot: [bench-restart.png](bench-restart.png).",
        "",
        "| N | run | " + " | ".join(c[0] for c in RESTART_COLUMNS) + " |",
        "| ---: | --- |" + " ---: |" * len(RESTART_COLUMNS),
    ]
    ns = sorted({r["n"] for r in results})
    for n in ns:
        for label in runs:
            r = found.get((n, label))
            out.append(f"| {n:,} | {label} | " + " | ".join(c[1](r) if r else "n/a" for c in RESTART_COLUMNS) + " |")
    out += ["", "What the recovery cost, and the kernel's counters over it (ListenOverflows: SYNs or handshakes "
            "dropped because the accept queue, backlog 1024, was full; SYN retransmits: the clients' kernels "
            "sending a dropped SYN again, after 1 s, then 3 s; the counters are the whole machine's):", "",
            "| N | run | " + " | ".join(c[0] for c in RESTART_COST_COLUMNS) + " |",
            "| ---: | --- |" + " ---: |" * len(RESTART_COST_COLUMNS)]
    for n in ns:
        for label in runs:
            r = found.get((n, label))
            out.append(f"| {n:,} | {label} | " + " | ".join(c[1](r) if r else "n/a" for c in RESTART_COST_COLUMNS) + " |")
    out += ["", "What limited the last client:", ""]
    for n in ns:
        for label in runs:
            r = found.get((n, label))
            if r:
                out.append(f"- N = {n:,}, {label}: " + restart_limit(r)
                           + (". Some ids may have matched: a client may have waited a tick." if r.get("collision") else "."))
    out.append("")
    if ns and len(runs) == 2:
        n = max(ns)
        off, on = found.get((n, runs[0])), found.get((n, runs[1]))
        if off and on:
            checks = [
                ("with the default flags, no client gives up", on["gave_up"] == 0 and on["not_back"] == 0),
                (f"peak attempts per 100 ms with jitter at most half of jitter off "
                 f"({on['peak_attempts_per_100ms']:,} against {off['peak_attempts_per_100ms']:,})",
                 on["peak_attempts_per_100ms"] * 2 <= off["peak_attempts_per_100ms"]),
                (f"the last client back no later than with jitter off ({number(on['back_last_s'], 2)} s against "
                 f"{number(off['back_last_s'], 2)} s)",
                 on["back_last_s"] is not None and off["back_last_s"] is not None
                 and on["back_last_s"] <= off["back_last_s"]),
                (f"the last client back within 4.5 s of the new process's first line "
                 f"({number(on['back_last_s'], 2)} s)", on["back_last_s"] is not None and on["back_last_s"] <= 4.5),
            ]
            out += [f"### The goal at N = {n:,}", ""]
            out += [f"- {'met' if ok else 'NOT met'}: {label}" for label, ok in checks] + [""]
    errors = [r for r in results if "error" in r]
    if errors:
        out += ["### Runs that failed", ""]
        out += [f"- N={r['n']} {r.get('run', '?')}: {r['error']}" for r in errors] + [""]
    return out


def restart_page(report: dict) -> str:
    """docs/bench-restart.md, for a run of the restart scenario."""
    host, ours = report["machine"], report.get("ours", {})
    return "\n".join([
        "# Benchmark: the restart storm", "",
        "Made by `make bench` (`bench/run.py`, scenario `restart`); how it measures: "
        "[bench/README.md](../bench/README.md). Figures: [bench-restart.json](bench-restart.json).", "",
        f"- Run: {report['started']}, {report.get('seconds', '?')} s; {host['cpus']} CPUs "
        f"({host['cpu_model'] or 'unknown model'}), Python {host['python']}, Linux {host['kernel']}; "
        f"tornado {host['packages'].get('tornado')}; ours at commit {ours.get('commit', 'unknown')}"
        + (f", with uncommitted changes to {', '.join(ours['changed_files'])}" if ours.get("changed_files") else "")
        + f"; server on CPU {report['settings']['server_cpu']}, load generator on CPU {report['settings']['client_cpu']}.",
        "",
    ] + restart_markdown(report)[1:])


def restart_plot(report: dict, path: Path) -> None:
    """Attempts per 100 ms, clients back and server CPU over time: both runs of each N in one panel."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for r in report["restart_results"] if "error" not in r]
    ns = sorted({r["n"] for r in results})
    if not ns:
        return
    figure, axes = plt.subplots(3, len(ns), figsize=(6 * len(ns), 9), constrained_layout=True, squeeze=False,
                                sharex="col")
    for column, n in enumerate(ns):
        for r in [r for r in results if r["n"] == n]:
            style = dict(label=r["run"], linewidth=1.5)
            counts = r["attempts_per_100ms"]
            xs = [r["attempts_origin_s"] + 0.1 * i for i in range(len(counts))]
            axes[0][column].step(xs, counts, where="post", **style)
            back = r["back_timeline"]
            axes[1][column].plot([t for t, _ in back], [100 * b / n for _, b in back], **style)
            cpu = r["cpu_timeline"]
            axes[2][column].plot([t for t, _, _ in cpu], [100 * c for _, c, _ in cpu], **style)
        axes[0][column].set_title(f"N = {n:,}: connection attempts per 100 ms")
        axes[1][column].set_title("clients holding a price from the new process (%)")
        axes[2][column].set_title("new server's CPU (% of one core, per 100 ms)")
        for axis in axes[:, column]:
            axis.axvline(0, color="grey", linewidth=0.8, linestyle=":")
            axis.set_xlabel("seconds since the new process's first line")
            axis.grid(True, alpha=0.3)
            axis.set_ylim(bottom=0)
            axis.legend()
    figure.suptitle(f"Restarting the server under N EventSource clients ({report['started'][:10]})")
    figure.savefig(path, dpi=100)
    plt.close(figure)


# --- the plot --------------------------------------------------------------------

def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = figures(report)
    settings = report["settings"]
    ns = sorted(settings["n"])
    panels = [
        ("ticker", "fan-out spread, median (ms)", lambda r: r["spread_median_ms"]),
        ("ticker", "server CPU per event (ms)", lambda r: r["server_cpu_ms_per_event"]),
        ("ticker", "RSS per connection (KB)", lambda r: r["rss_per_connection"] / 1024),
        ("chat", "POST → last of N answers (ms)", lambda r: r["post_to_last_median_ms"]),
    ]
    figure, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    styles = {"tornado": "o-", "tornado-plain": "o--", "tornado-bare": "D-.", "sse-starlette": "s--", "aiohttp-sse": "^--", "floor": "x:"}
    for axis, (scenario, title, metric) in zip(axes.flat, panels):
        for server in settings["servers"]:
            points = [(n, metric(found[(scenario, n, server)])) for n in ns if (scenario, n, server) in found]
            if points:
                axis.plot(*zip(*points), styles.get(server, "o-"), label=server, linewidth=2 if server == OURS else 1)
        axis.set_title(title)
        axis.set_xlabel("N connections")
        axis.set_xticks(ns)
        axis.set_ylim(bottom=0)
        axis.grid(True, alpha=0.3)
    labelled = {}
    for axis in axes.flat:
        for line in axis.get_lines():
            labelled.setdefault(line.get_label(), line)
    if labelled:
        figure.legend(labelled.values(), labelled.keys(), loc="outside lower center", ncols=len(labelled))
    figure.suptitle(f"One event to N readers, each server on one CPU ({report['started'][:10]}; "
                    "lower is better)")
    figure.savefig(path, dpi=100)
    plt.close(figure)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Run the Comet benchmark and write docs/bench.md and docs/bench.png.")
    parser.add_argument("--n", type=int, nargs="+")
    parser.add_argument("--events", type=int, default=15, help="ticker events measured per run")
    parser.add_argument("--rounds", type=int, default=5, help="chat posts measured per run")
    parser.add_argument("--tick-interval", type=float, default=1.0)
    parser.add_argument("--servers", nargs="+", choices=list(SERVERS), default=list(SERVERS))
    parser.add_argument("--app", type=Path, default=ROOT,
                        help="the checkout whose app.py is 'tornado' (to compare two versions of ours)")
    parser.add_argument("--ours-flags", default="--uvloop", metavar="FLAGS",
                        help="flags for our app.py (default --uvloop, as the README advises for a busy "
                             "server; --ours-flags= runs it on asyncio's own loop)")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS),
                        help="redis: our ticker on one process and on two sharing it through Redis "
                             "(docs/bench-redis.md); restart: our server restarted under N browsers "
                             "(docs/bench-restart.md); store: the chat on SQLite against :memory: "
                             "(bench/store.py, docs/bench-store.md)")
    parser.add_argument("--restart-n", type=int, nargs="+",
                        help=f"N for the restart scenario (default {' '.join(map(str, RESTART_N))}, or --n when given)")
    parser.add_argument("--restart-min-id", type=int, default=20,
                        help="restart: the ticker id every client holds before SIGTERM")
    parser.add_argument("--restart-deadline", type=float, default=60.0,
                        help="restart: seconds after the new process's first line until the clients not back are counted")
    parser.add_argument("--concurrency", type=int, default=100, help="connections being opened at once")
    parser.add_argument("--connect-timeout", type=float, default=90.0)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL")
    parser.add_argument("--out", type=Path, help="where bench.md/png/json go (docs/; bench/results/ with --profile)")
    parser.add_argument("--report-only", type=Path, metavar="JSON", help="redraw the table and plot from figures")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy each server over its measured window, to bench/results/profiles/ "
                             "(the sampling slows the server: its figures are not the benchmark's)")
    parser.add_argument("--profile-native", action="store_true",
                        help="with --profile: C frames too (py-spy --native: the garbage collector, system calls)")
    args = parser.parse_args(argv)
    args.restart_n = args.restart_n or args.n or RESTART_N
    args.n = args.n or [1000, 5000, 10000]
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    args.app = args.app.resolve()
    if args.out is None:
        args.out = BENCH / "results" if args.profile else ROOT / "docs"
    # SIGTERM (a CI timeout, a kill) takes the same path as Ctrl-C: the
    # finally blocks stop every server this run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        report = json.loads(args.report_only.read_text())
        main_run = bool(report["results"])
    else:
        report = run(args)
        main_run = any(s in ("ticker", "chat") for s in args.scenarios)
        # Each side scenario keeps its own figures, so that --report-only on
        # its json redraws its page alone.
        if report["redis_results"]:
            (args.out / "bench-redis.json").write_text(
                json.dumps(dict(report, results=[], restart_results=[]), indent=1) + "\n")
        if report["restart_results"]:
            (args.out / "bench-restart.json").write_text(
                json.dumps(dict(report, results=[], redis_results=[]), indent=1) + "\n")
        if main_run:
            (args.out / "bench.json").write_text(json.dumps(report, indent=1) + "\n")
    if report.get("restart_results"):
        (args.out / "bench-restart.md").write_text(restart_page(report))
        restart_plot(report, args.out / "bench-restart.png")
        print("\n".join(restart_markdown(report)))
        print(f"wrote {args.out / 'bench-restart.md'} and {args.out / 'bench-restart.png'}")
    if report.get("redis_results"):
        (args.out / "bench-redis.md").write_text(redis_markdown(report))
        print(f"wrote {args.out / 'bench-redis.md'}")
    if "store" in args.scenarios and not args.report_only:
        # Its own script and page: two stores of ours, not servers side by side.
        subprocess.run([sys.executable, str(BENCH / "store.py"), "--out", str(args.out),
                        "--server-cpu", str(args.server_cpu), "--client-cpu", str(args.client_cpu)], check=True)
    if main_run:
        found, ns = figures(report), sorted(report["settings"]["n"])
        print("\n".join(ratio_tables(found, ns, report["settings"]["servers"]) + goal_lines(found, max(ns))))
        page = args.out / "bench.md"
        page.write_text(markdown(report) + written_by_hand(page))
        plot(report, args.out / "bench.png")
        print(f"wrote {args.out / 'bench.md'} and {args.out / 'bench.png'}")


if __name__ == "__main__":
    main()
