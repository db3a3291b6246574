"""Two or more versions of ours, measured alternately: which change pays?

    python bench/compare.py base=/tmp/before cand=/tmp/after --repeat 3 --n 3000
    python bench/compare.py base=. uvloop=.:--uvloop          # the same checkout, a flag added

Each ``NAME=DIR[:FLAGS]`` is a checkout whose ``app.py`` runs as ``tornado``
(``run.py --app DIR --ours-flags FLAGS``). The versions run one after the
other, ``--repeat`` times round, so that whatever else loads the machine
meanwhile falls on all of them alike; each run is a fresh ``run.py`` with
our server alone. The table gives, per figure, the minimum and the median
over every run (and every chat post), and each version's change against the
first. On a shared machine the median moves by 10-20 % between runs of the
same code: trust a change only when both columns agree and it repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent

# (label, scenario, the figures of one result)
FIGURES = [
    ("CPU per woken poll (µs)", "chat", lambda r, n: [x["server_cpu_ms"] * 1000 / n for x in r["rounds"]]),
    ("CPU per poll taken (µs)", "chat", lambda r, n: [r["server_cpu_us_per_hold"]]),
    ("CPU per poll asked again (µs)", "chat", lambda r, n: [r["server_cpu_us_per_reask"]]),
    ("hold N polls (s)", "chat", lambda r, n: [r["hold_seconds"]]),
    ("RSS per held poll (KB)", "chat", lambda r, n: [r["rss_per_poll"] / 1024]),
    ("CPU per stream taken (µs)", "ticker", lambda r, n: [r["server_cpu_us_per_connect"]]),
    ("connect N streams (s)", "ticker", lambda r, n: [r["connect_seconds"]]),
    ("ticker CPU per event (ms)", "ticker", lambda r, n: [r["server_cpu_ms_per_event"]]),
    ("RSS per stream (KB)", "ticker", lambda r, n: [r["rss_per_connection"] / 1024]),
]


def version(text: str) -> tuple[str, Path, str]:
    name, _, where = text.partition("=")
    if not where:
        raise argparse.ArgumentTypeError(f"{text!r}: NAME=DIR[:FLAGS]")
    directory, _, flags = where.partition(":")
    return name, Path(directory).resolve(), flags


def measure(name: str, directory: Path, flags: str, args, out: Path) -> dict:
    command = [sys.executable, str(BENCH / "run.py"), "--app", str(directory), "--servers", "tornado",
               "--n", str(args.n), "--scenarios", *args.scenarios, "--events", str(args.events),
               "--rounds", str(args.rounds), "--out", str(out)]
    if flags:
        command.append(f"--ours-flags={flags}")
    subprocess.run(command, check=False, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        return json.loads((out / "bench.json").read_text())
    except (OSError, ValueError):
        return {"results": []}


def table(names: list[str], figures: dict) -> str:
    out = ["| figure | " + " | ".join(f"{name} min / median" for name in names) + " |",
           "| --- |" + " ---: |" * len(names)]
    for label, _, _ in FIGURES:
        base = figures[names[0]].get(label)
        cells = []
        for name in names:
            values = figures[name].get(label)
            if not values:
                cells.append("n/a")
                continue
            low, middle = min(values), statistics.median(values)
            cell = f"{low:,.1f} / {middle:,.1f}" if low < 100 else f"{low:,.0f} / {middle:,.0f}"
            if name != names[0] and base:
                cell += f" ({100 * (low / min(base) - 1):+.0f} % / {100 * (middle / statistics.median(base) - 1):+.0f} %)"
            cells.append(cell)
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="+", type=version, metavar="NAME=DIR[:FLAGS]")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--events", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--scenarios", nargs="+", choices=("chat", "ticker"), default=["chat", "ticker"])
    args = parser.parse_args(argv)
    names = [name for name, _, _ in args.versions]
    figures: dict = {name: defaultdict(list) for name in names}
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as scratch:
        for round_number in range(args.repeat):
            for name, directory, flags in args.versions:
                report = measure(name, directory, flags, args, Path(scratch) / f"{name}-{round_number}")
                for result in report["results"]:
                    if "error" in result:
                        print(f"{name}, run {round_number + 1}: {result['scenario']}: {result['error']}", file=sys.stderr)
                        continue
                    for label, scenario, values in FIGURES:
                        if result["scenario"] == scenario:
                            try:
                                figures[name][label] += [v for v in values(result, args.n) if v is not None]
                            except KeyError:
                                pass
                print(f"{name}, run {round_number + 1} of {args.repeat} done", file=sys.stderr, flush=True)
    print(f"N = {args.n:,}, {args.repeat} runs each, alternating; min / median (change against {names[0]}):\n")
    print(table(names, figures))


if __name__ == "__main__":
    main()
