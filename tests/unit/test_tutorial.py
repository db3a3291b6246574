"""docs/tutorial.md quotes the real code; these tests keep the quotes true
(the rules are in tests/tutorial.py). A change to quoted code fails here
until the tutorial is updated with it, and since every marker pair must be
quoted, no marker outlives its passage."""

from __future__ import annotations

import difflib

import pytest

from tests import tutorial
from tests.tutorial import ROOT, TUTORIAL, Excerpt, excerpts, scan, source_files

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
    monkeypatch.setattr(tutorial, "ROOT", tmp_path)
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
