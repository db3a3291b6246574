"""The tutorial's quotes of the code: finding them, checking them, pasting them again.

In the code, a passage the tutorial quotes sits between two marker comments:

    # tutorial: chat-get               // tutorial: poll-loop
    ...                                ...
    # end tutorial: chat-get           // end tutorial: poll-loop

(``{# tutorial: name #}`` in a template). In the tutorial, a quote is a
directive followed by a fenced block:

    <!-- excerpt: handlers/chat.py#chat-get -->
    ```python
    ...
    ```

The block must equal the lines between the markers, marker lines left out and
their common indentation removed (a method reads from column 0);
tests/unit/test_tutorial.py checks that. After changing quoted code,
``python -m tests.tutorial`` pastes every passage into the tutorial again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial.md"
SOURCE_GLOBS = ("app.py", "comet/*.py", "handlers/*.py", "static/js/*.js", "templates/*.html")

MARKER = re.compile(r"^\s*(?:#|//|\{#)\s*(end\s+)?tutorial:\s*(\S+?)\s*(?:#\})?\s*$")
DIRECTIVE = re.compile(r"^<!--\s*excerpt:\s*(\S+?)#(\S+?)\s*-->\s*$")
FENCE = re.compile(r"^(`{3,}|~{3,})")


def dedent(lines: list[str]) -> list[str]:
    """Remove the indentation every non-blank line shares; blank lines become
    empty. The one rule both the tutorial and this check follow."""
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents, default=0)
    return [line[cut:] if line.strip() else "" for line in lines]


def scan(path: Path) -> tuple[dict[str, list[str]], list[str]]:
    """The marked passages of one file, by name, and what is wrong with its
    markers (an end without a begin, a begin never ended, a name used twice)."""
    rel = path.relative_to(ROOT).as_posix()
    passages: dict[str, list[str]] = {}
    problems: list[str] = []
    open_at: dict[str, int] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        match = MARKER.match(line)
        if not match:
            continue
        is_end, name = bool(match.group(1)), match.group(2)
        if not is_end:
            if name in open_at or name in passages:
                problems.append(f"{rel}:{number}: marker {name!r} begins twice")
            else:
                open_at[name] = number
        elif name not in open_at:
            problems.append(f"{rel}:{number}: 'end tutorial: {name}' without a begin marker")
        else:
            begin = open_at.pop(name)
            inside = [text for text in lines[begin:number - 1] if not MARKER.match(text)]
            if not any(text.strip() for text in inside):
                problems.append(f"{rel}:{begin}: marker {name!r} holds no code")
            passages[name] = dedent(inside)
    for name, begin in open_at.items():
        problems.append(f"{rel}:{begin}: 'tutorial: {name}' is never ended")
    return passages, problems


def source_files() -> list[Path]:
    return sorted({path for pattern in SOURCE_GLOBS for path in ROOT.glob(pattern)})


@dataclass
class Excerpt:
    path: str
    name: str
    line: int  # of the directive in the tutorial
    block: Optional[list[str]]  # None: no fenced block follows the directive


def excerpts(text: str) -> list[Excerpt]:
    """Every directive in the tutorial, with the fenced block right after it."""
    lines = text.splitlines()
    found = []
    for index, line in enumerate(lines):
        match = DIRECTIVE.match(line.strip())
        if not match:
            continue
        block = None
        start = index + 1
        while start < len(lines) and not lines[start].strip():
            start += 1
        opener = FENCE.match(lines[start]) if start < len(lines) else None
        if opener:
            fence = opener.group(1)
            end = start + 1
            while end < len(lines) and not (
                lines[end].startswith(fence[0] * len(fence)) and not lines[end].strip(fence[0]).strip()
            ):
                end += 1
            if end < len(lines):
                block = lines[start + 1:end]
        found.append(Excerpt(match.group(1), match.group(2), index + 1, block))
    return found


def refresh() -> int:
    """Paste every excerpt again from its source: after changing marked code,
    run ``python -m tests.tutorial``, then read the diff before committing."""
    lines = TUTORIAL.read_text(encoding="utf-8").splitlines()
    sources = {path.relative_to(ROOT).as_posix(): scan(path)[0] for path in source_files()}
    changed = 0
    for excerpt in reversed(excerpts("\n".join(lines))):  # from the end: line numbers stay valid
        passage = sources.get(excerpt.path, {}).get(excerpt.name)
        if passage is None or excerpt.block is None or excerpt.block == passage:
            continue
        start = next(i for i in range(excerpt.line, len(lines)) if FENCE.match(lines[i])) + 1
        lines[start:start + len(excerpt.block)] = passage
        changed += 1
    TUTORIAL.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return changed


if __name__ == "__main__":
    print(f"{refresh()} excerpt(s) pasted again into {TUTORIAL.relative_to(ROOT)}")
