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

The tutorial's ``curl`` sessions are checked too, against a live server
(tests/process/test_tutorial_curl.py), in the order the tutorial shows them.
A session is a fenced block marked ``console``:

    ```console
    $ curl -i http://127.0.0.1:8888/chat/get/0
    HTTP/1.1 200 OK
    ...
    X-Chat-Epoch: <epoch>

    hi
    ```

Each ``$ curl ...`` line is a command (split as a shell would, no shell
run); the lines after it, up to the next ``$``, are what it prints on stdout,
compared line by line: ``...`` alone on a line stands for any number of
lines, and ``<name>`` for a value that differs from run to run (PLACEHOLDERS;
every ``<epoch>`` of a run must be the same one). ``127.0.0.1:8888`` becomes
the test server's address. A command without ``--max-time`` of its own gets
one, so no session can hang a test. A block right after ``<!-- curl: held
-->`` holds one command the server is expected to hold: it runs in the
background, and must still be waiting, silent, after HELD_FOR seconds; its
output is the next block marked ``<!-- curl: answer -->``, read once the
commands between have run.

"What to copy into your app" is checked by tests/process/test_copy_list.py:
the bullet list after ``<!-- copy-list -->`` names files (`` `path` ``) and
marked passages (`` `path#name` ``); the block after ``<!-- copy-example:
NAME -->`` is an app that uses them, with a line ``# paste path#name here``
where each passage goes (``copy_app()`` makes that folder).

The console blocks after ``<!-- copy-run -->`` run that app as the text
says (tests/process/test_tutorial_curl.py), in such a folder, one session
in order, each ``$`` line through bash: the command that runs the example
(``python NAME PORT``) starts it and stays running, its first line of
output compared; an assignment (``NAME=...``) is run again before each
later command, as a shell would remember it; ``python`` is the tests'
Python. ``127.0.0.1:COPY_PORT`` becomes the app's address. These blocks are
not sessions against app.py.
"""

from __future__ import annotations

import re
import shutil
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


# --- curl sessions -------------------------------------------------------------------------

CURL_DIRECTIVE = re.compile(r"^<!--\s*curl:\s*(held|answer)\s*-->\s*$")
ELLIPSIS = "..."
HELD_FOR = 1.0  # seconds a held command must stay silent
TUTORIAL_ADDRESS = "127.0.0.1:8888"
PLACEHOLDERS = {
    "epoch": r"[A-Za-z0-9_-]{1,64}",  # the chat history's name
    "n": r"[0-9]+",  # a whole number (an id, a count)
    "price": r"[0-9]+\.[0-9]{2}",  # as the ticker sends it
    "number": r"[0-9]+(?:\.[0-9]+)?",  # a number in JSON
    "ms": r"[0-9]+",  # a retry: delay
    "date": r"[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
    "time": r"[0-9]{2}:[0-9]{2}:[0-9]{2}",  # the time of day, as the example app sends it
}
PLACEHOLDER = re.compile(r"<([a-z]+)>")


@dataclass
class Command:
    """One ``$ curl ...`` line of a session, and what it must print."""

    line: int  # in the tutorial
    text: str  # as written after "$ "
    expected: list[str]
    held: bool = False  # runs in the background; ``answer`` is what it prints
    answer: Optional[list[str]] = None
    answer_line: int = 0  # where the answer block opens


def fenced_blocks(lines: list[str]) -> list[tuple[int, str, list[str]]]:
    """(line of the opening fence, its info string, the lines inside) of
    every fenced block."""
    blocks, index = [], 0
    while index < len(lines):
        opener = FENCE.match(lines[index])
        if not opener:
            index += 1
            continue
        fence, info = opener.group(1), lines[index][len(opener.group(1)):].strip()
        end = index + 1
        while end < len(lines) and not (lines[end].startswith(fence) and not lines[end].strip(fence[0]).strip()):
            end += 1
        blocks.append((index + 1, info, lines[index + 1:end]))
        index = end + 1
    return blocks


def directive_before(lines: list[str], fence_line: int, directive: re.Pattern) -> Optional[re.Match]:
    """``directive`` matched on the last non-blank line before the block
    that opens at ``fence_line``, if it is there."""
    index = fence_line - 2
    while index >= 0 and not lines[index].strip():
        index -= 1
    return directive.match(lines[index].strip()) if index >= 0 else None


def curl_sessions(text: str) -> tuple[list[Command], list[str]]:
    """Every curl command of the tutorial in order, and what is wrong with
    the way the sessions are written (a command that is not curl, a held
    block without its answer, an unknown placeholder)."""
    lines = text.splitlines()
    commands: list[Command] = []
    problems: list[str] = []
    waiting: Optional[Command] = None  # the held command whose answer block is still to come
    for start, info, body in fenced_blocks(lines):
        if directive_before(lines, start, COPY_RUN):
            continue  # the example app's session: copy_run()
        found = directive_before(lines, start, CURL_DIRECTIVE)
        directive = found.group(1) if found else None
        where = f"docs/tutorial.md:{start}"
        if directive == "answer":
            if waiting is None:
                problems.append(f"{where}: an answer block without a held command before it")
            else:
                waiting.answer, waiting.answer_line = body, start
                waiting = None
            continue
        if info != "console":
            if directive == "held":
                problems.append(f"{where}: a held block must be a console block")
            continue
        session: list[Command] = []
        for offset, line in enumerate(body):
            number = start + 1 + offset
            if line.startswith("$ "):
                command = line[2:].strip()
                if not command.startswith("curl "):
                    problems.append(f"docs/tutorial.md:{number}: only curl runs in a console block: {command!r}")
                session.append(Command(number, command, []))
            elif not session:
                problems.append(f"docs/tutorial.md:{number}: output before any command")
            else:
                session[-1].expected.append(line)
        if directive == "held":
            if waiting is not None:
                problems.append(f"{where}: a held command before the last one was answered")
            if len(session) != 1 or session[0].expected:
                problems.append(f"{where}: a held block holds one command and no output")
            if session:
                session[0].held = True
                waiting = session[0]
        commands += session
    if waiting is not None:
        problems.append(f"docs/tutorial.md:{waiting.line}: a held command whose answer block never comes")
    for command in commands:
        for expected in command.expected + (command.answer or []):
            for name in PLACEHOLDER.findall(expected):
                if name not in PLACEHOLDERS:
                    problems.append(f"docs/tutorial.md:{command.line}: unknown placeholder <{name}>")
    return commands, problems


def _line_pattern(expected: str) -> re.Pattern:
    parts, last = [], 0
    for match in PLACEHOLDER.finditer(expected):
        if match.group(1) not in PLACEHOLDERS:
            continue
        parts.append(re.escape(expected[last:match.start()]))
        parts.append(f"({PLACEHOLDERS[match.group(1)]})")
        last = match.end()
    parts.append(re.escape(expected[last:]))
    return re.compile("".join(parts))


def _trimmed(lines: list[str]) -> list[str]:
    lines = [line.rstrip("\r") for line in lines]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def match_output(expected: list[str], actual: list[str], bound: dict[str, str]) -> Optional[str]:
    """None when ``actual`` (lines printed) is what ``expected`` shows, else
    why not. ``bound`` holds the placeholders that must keep their value
    (``<epoch>``): the first match binds it."""
    expected, actual = _trimmed(expected), _trimmed(actual)
    patterns = [None if line == ELLIPSIS else (line, _line_pattern(line)) for line in expected]

    def match(i: int, j: int, found: dict[str, str]) -> Optional[dict[str, str]]:
        if i == len(patterns):
            return found if j == len(actual) else None
        if patterns[i] is None:
            for k in range(j, len(actual) + 1):
                result = match(i + 1, k, found)
                if result is not None:
                    return result
            return None
        if j == len(actual):
            return None
        line, pattern = patterns[i]
        hit = pattern.fullmatch(actual[j])
        if not hit:
            return None
        names = [name for name in PLACEHOLDER.findall(line) if name in PLACEHOLDERS]
        values = dict(found)
        for name, value in zip(names, hit.groups()):
            if name == "epoch":
                if values.setdefault(name, value) != value:
                    return None
        return match(i + 1, j + 1, values)

    result = match(0, 0, dict(bound))
    if result is None:
        shown = "\n".join(f"    {line}" for line in actual) or "    (nothing)"
        return f"printed\n{shown}\nwhich is not what the tutorial shows:\n" + "\n".join(
            f"    {line}" for line in expected)
    bound.update(result)
    return None


# --- what to copy ---------------------------------------------------------------------------

COPY_LIST = re.compile(r"^<!--\s*copy-list\s*-->\s*$")
COPY_ITEM = re.compile(r"^- `([^`#]+)(?:#([^`]+))?`")
COPY_EXAMPLE = re.compile(r"^<!--\s*copy-example:\s*(\S+)\s*-->\s*$")
COPY_RUN = re.compile(r"^<!--\s*copy-run\s*-->\s*$")
COPY_PORT = 8890  # the example app's port in the text: clear of make run's 8888
PASTE = re.compile(r"^# paste (\S+?)#(\S+) here$")


def copy_list(text: str) -> list[tuple[str, Optional[str]]]:
    """The tutorial's list of what to copy, after ``<!-- copy-list -->``:
    (path, None) for a file, (path, name) for a marked passage to paste."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if COPY_LIST.match(line.strip())), None)
    if start is None:
        return []
    items = []
    for line in lines[start + 1:]:
        if not line.strip() and items:
            break
        match = COPY_ITEM.match(line)
        if match:
            items.append((match.group(1), match.group(2)))
    return items


def copy_example(text: str) -> Optional[tuple[str, list[str]]]:
    """(file name, lines) of the block after ``<!-- copy-example: NAME -->``."""
    lines = text.splitlines()
    for start, _, body in fenced_blocks(lines):
        match = directive_before(lines, start, COPY_EXAMPLE)
        if match:
            return match.group(1), body
    return None


def pasted(example: list[str], passages: dict[str, list[str]]) -> str:
    """The example with each ``# paste PATH#NAME here`` line replaced by that
    passage (``passages`` by ``PATH#NAME``)."""
    out = []
    for line in example:
        match = PASTE.match(line)
        out.extend(passages[f"{match.group(1)}#{match.group(2)}"] if match else [line])
    return "\n".join(out) + "\n"


def copy_app(directory: Path, text: str) -> Path:
    """The listed files copied into ``directory`` (their folders kept), and
    the example written beside them with its passages pasted: the app."""
    passages = {}
    for path, name in copy_list(text):
        if name is None:
            (directory / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / path, directory / path)
        else:
            found, problems = scan(ROOT / path)
            assert not problems and name in found, f"{path} has no passage {name!r}: {problems}"
            passages[f"{path}#{name}"] = found[name]
    example = copy_example(text)
    assert example is not None, "docs/tutorial.md has no <!-- copy-example: NAME --> block"
    name, lines = example
    (directory / name).write_text(pasted(lines, passages), encoding="utf-8")
    return directory / name


def copy_run(text: str) -> list[Command]:
    """The commands of the ``<!-- copy-run -->`` blocks, in order, each with
    what it prints."""
    lines = text.splitlines()
    commands: list[Command] = []
    for start, info, body in fenced_blocks(lines):
        if info != "console" or not directive_before(lines, start, COPY_RUN):
            continue
        for offset, line in enumerate(body):
            if line.startswith("$ "):
                commands.append(Command(start + 1 + offset, line[2:].strip(), []))
            elif commands:
                commands[-1].expected.append(line)
    return commands


# --- length ------------------------------------------------------------------------------------

MAIN_LINE_WORDS = 6400  # the tutorial before its appendices, code included
CHAPTER_WORDS = 1200


def words_per_chapter(text: str) -> dict[str, int]:
    """Words (as ``wc -w`` counts them: code, tables and all) under each
    ``#`` or ``##`` heading outside a fenced block, by heading."""
    counts: dict[str, int] = {}
    heading, fence = "", None
    for line in text.splitlines():
        opener = FENCE.match(line)
        if opener and fence is None:
            fence = opener.group(1)
        elif fence is not None and line.strip() == fence:
            fence = None
        elif fence is None and re.match(r"^#{1,2} ", line):
            heading = line
            continue
        counts[heading] = counts.get(heading, 0) + len(line.split())
    return counts


if __name__ == "__main__":
    print(f"{refresh()} excerpt(s) pasted again into {TUTORIAL.relative_to(ROOT)}")
