"""docs/tutorial.md quotes the real code; these tests keep the quotes true.

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
their common indentation removed (a method reads from column 0). So a change
to quoted code fails here until the tutorial is updated with it, and since
every marker pair must be quoted, no marker outlives its passage.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

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


TUTORIAL_EXCERPTS = excerpts(TUTORIAL.read_text(encoding="utf-8")) if TUTORIAL.exists() else []


def test_the_tutorial_quotes_the_code():
    assert TUTORIAL.exists(), "docs/tutorial.md is missing"
    assert TUTORIAL_EXCERPTS, "docs/tutorial.md has no <!-- excerpt: path#name --> directive"


@pytest.mark.parametrize("excerpt", TUTORIAL_EXCERPTS, ids=[e.name for e in TUTORIAL_EXCERPTS])
def test_excerpt_matches_its_source(excerpt: Excerpt):
    where = f"docs/tutorial.md:{excerpt.line}"
    assert excerpt.block is not None, f"{where}: no closed fenced block follows the excerpt directive"
    source = ROOT / excerpt.path
    assert source.is_file(), f"{where}: {excerpt.path} does not exist"
    passages, problems = scan(source)
    assert not problems, "\n".join(problems)
    assert excerpt.name in passages, f"{where}: {excerpt.path} has no 'tutorial: {excerpt.name}' markers"
    expected = passages[excerpt.name]
    if excerpt.block != expected:
        diff = "\n".join(difflib.unified_diff(
            excerpt.block, expected, "docs/tutorial.md", f"{excerpt.path}#{excerpt.name}", lineterm=""
        ))
        pytest.fail(f"{where}: the excerpt no longer matches its source; copy the code again:\n{diff}")


def test_every_marker_is_paired():
    problems = [problem for path in source_files() for problem in scan(path)[1]]
    assert not problems, "\n".join(problems)


def test_every_marked_passage_is_quoted():
    marked = {
        f"{path.relative_to(ROOT).as_posix()}#{name}"
        for path in source_files()
        for name in scan(path)[0]
    }
    quoted = {f"{e.path}#{e.name}" for e in TUTORIAL_EXCERPTS}
    assert not marked - quoted, f"marked in the code but never quoted in docs/tutorial.md: {sorted(marked - quoted)}"


# The checker itself, on made-up text: it must notice what it is there to notice.

def test_scan_finds_a_passage_dedented_and_reports_broken_markers(tmp_path, monkeypatch):
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    good = tmp_path / "good.py"
    good.write_text("class A:\n    # tutorial: m\n    def f(self):\n\n        return 1\n    # end tutorial: m\n")
    assert scan(good) == ({"m": ["def f(self):", "", "    return 1"]}, [])
    bad = tmp_path / "bad.js"
    bad.write_text("// tutorial: a\nx();\n// end tutorial: b\n// tutorial: c\n")
    problems = scan(bad)[1]
    assert len(problems) == 3 and all(problem.startswith("bad.js:") for problem in problems)


def test_excerpts_pairs_each_directive_with_the_block_after_it():
    text = (
        "<!-- excerpt: a.py#one -->\n```python\nx = 1\n\ny = 2\n```\n"
        "<!-- excerpt: b.js#two -->\nno block here\n"
    )
    one, two = excerpts(text)
    assert (one.path, one.name, one.block) == ("a.py", "one", ["x = 1", "", "y = 2"])
    assert (two.path, two.name, two.block) == ("b.js", "two", None)


def refresh() -> int:
    """Paste every excerpt again from its source: after changing marked code,
    run ``python -m tests.test_tutorial``, then read the diff before committing."""
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
