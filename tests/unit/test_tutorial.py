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


def test_the_main_line_is_short_and_no_chapter_is_long():
    """The tutorial before its appendices is read top to bottom: at most
    MAIN_LINE_WORDS, and no chapter over CHAPTER_WORDS. What only matters
    under load, and more of the code, go to the appendices."""
    counts = tutorial.words_per_chapter(TUTORIAL.read_text(encoding="utf-8"))
    main = {heading: words for heading, words in counts.items() if not heading.startswith("## Appendix")}
    assert len(main) > 5 and len(counts) > len(main), counts  # the headings are read right
    long = {heading: words for heading, words in main.items() if words > tutorial.CHAPTER_WORDS}
    assert not long, f"chapters over {tutorial.CHAPTER_WORDS} words: {long}"
    assert sum(main.values()) <= tutorial.MAIN_LINE_WORDS, f"the main line is {sum(main.values())} words"


def test_words_per_chapter_counts_code_and_skips_headings_in_code():
    text = "# T\nintro words\n## 1. A\none two\n```python\n# not a heading\nx = 1\n```\n## Appendix A\nz\n"
    assert tutorial.words_per_chapter(text) == {"# T": 2, "## 1. A": 11, "## Appendix A": 1}


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


# The curl sessions and the copy list: their conventions, on made-up text, and
# the tutorial's own written by them. tests/process runs them for real.

def test_the_tutorials_curl_sessions_are_well_formed():
    commands, problems = tutorial.curl_sessions(TUTORIAL.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)
    assert commands and any(command.held and command.answer is not None for command in commands)


def test_curl_sessions_pair_a_held_command_with_its_answer():
    text = (
        "```console\n$ curl -d message=hi http://127.0.0.1:8888/chat/post\n{\"id\": 0}\n```\n"
        "<!-- curl: held -->\n```console\n$ curl -i http://127.0.0.1:8888/chat/get/1\n```\n"
        "text\n\n<!-- curl: answer -->\n```text\nHTTP/1.1 200 OK\n...\nagain\n```\n"
        "```python\n$ not a session\n```\n"
    )
    commands, problems = tutorial.curl_sessions(text)
    assert not problems
    post, get = commands
    assert (post.text, post.expected, post.held) == ("curl -d message=hi http://127.0.0.1:8888/chat/post",
                                                     ['{"id": 0}'], False)
    assert get.held and get.expected == [] and get.answer == ["HTTP/1.1 200 OK", "...", "again"]
    assert get.line == 7 and get.answer_line == 12


def test_curl_sessions_report_what_cannot_be_run():
    text = (
        "```console\n$ rm -rf /\n$ curl http://x/ <price\n<nonsense>\n```\n"
        "<!-- curl: held -->\n```console\n$ curl http://127.0.0.1:8888/chat/get/9\n```\n"
    )
    problems = tutorial.curl_sessions(text)[1]
    assert any("only curl" in problem for problem in problems)
    assert any("unknown placeholder <nonsense>" in problem for problem in problems)
    assert any("never comes" in problem for problem in problems)


def test_match_output_reads_placeholders_and_ellipses():
    expected = ["retry: <ms>", "", "id: <epoch>:1", "data: <price>", "...", "id: <epoch>:9"]
    bound: dict[str, str] = {}
    printed = ["retry: 2345", "", "id: Ab_3-x:1", "data: 101.25", "", "more", "id: Ab_3-x:9", ""]
    assert tutorial.match_output(expected, printed, bound) is None
    assert bound == {"epoch": "Ab_3-x"}
    # Another epoch later in the run does not pass; nor a price without its two decimals.
    assert tutorial.match_output(["id: <epoch>:1"], ["id: Other:1"], bound) is not None
    assert tutorial.match_output(["data: <price>"], ["data: 101.2"], {}) is not None
    # Every line must be there, in order: no line left out unless "..." says so.
    assert tutorial.match_output(["a", "b"], ["a", "x", "b"], {}) is not None
    assert tutorial.match_output(["a", "...", "b"], ["a", "b"], {}) is None
    assert tutorial.match_output(["a"], ["a", "b"], {}) is not None


def test_the_copy_list_names_existing_files_and_passages():
    text = TUTORIAL.read_text(encoding="utf-8")
    items = tutorial.copy_list(text)
    assert ("handlers/eventsource.py", None) in items, items
    for path, name in items:
        assert (ROOT / path).is_file(), path
        if name is not None:
            assert name in scan(ROOT / path)[0], f"{path} has no 'tutorial: {name}' passage"
    name, lines = tutorial.copy_example(text)
    pastes = [line for line in lines if tutorial.PASTE.match(line)]
    assert name.endswith(".py") and pastes == [f"# paste {p}#{n} here" for p, n in items if n], pastes


def test_pasted_puts_each_passage_where_the_example_says():
    example = ["import x", "# paste a.py#f here", "f()"]
    assert tutorial.pasted(example, {"a.py#f": ["def f():", "    pass"]}) == "import x\ndef f():\n    pass\nf()\n"


def test_the_stream_authentication_sketch_is_the_tested_apps():
    """The prepare() shown in "Authenticating a stream" is the one the
    example app runs (tests/process/test_copy_list.py checks it refuses a
    stranger and serves a signed-in user), line for line."""
    text = TUTORIAL.read_text(encoding="utf-8")
    example = tutorial.copy_example(text)[1]
    sketches = [body for _, info, body in tutorial.fenced_blocks(text.splitlines())
                if info == "python" and body != example and any("get_signed_cookie" in line for line in body)]
    assert sketches, "no authentication sketch in docs/tutorial.md"
    for sketch in sketches:
        missing = [line for line in sketch if line.strip() and line not in example]
        assert not missing, f"not in the example app: {missing}"
