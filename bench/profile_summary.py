"""Where the time goes: the top functions of a py-spy collapsed-stack file.

    python bench/profile_summary.py bench/results/profiles/tornado-ticker-5000.txt

Each line of the file is ``frame;frame;...;leaf count`` (``py-spy record
--format raw``; speedscope.app opens the same file). Prints the functions
with the most samples on top of the stack (self) and anywhere in it
(inclusive), as shares of all samples.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks.append((frames.split(";"), int(count)))
    return stacks


def short(frame: str) -> str:
    """``write (tornado/iostream.py)`` rather than a full path."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
            if marker == "lib/python3":
                where = "asyncio" + where.split("asyncio", 1)[1] if "asyncio" in where else where.split("/", 1)[-1]
    return f"{name} ({where})" if where else name


def summarise(path: Path, top: int) -> str:
    stacks = load(path)
    total = sum(count for _, count in stacks)
    if not total:
        return f"{path}: no samples"
    own, inclusive = Counter(), Counter()
    for frames, count in stacks:
        own[short(frames[-1])] += count
        for frame in {short(f) for f in frames}:
            inclusive[frame] += count
    lines = [f"{path}: {total} samples", "", "self (on top of the stack):"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in own.most_common(top)]
    lines += ["", "inclusive (anywhere in the stack):"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print("\n\n".join(summarise(path, args.top) for path in args.paths))


if __name__ == "__main__":
    main()
