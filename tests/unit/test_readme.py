"""README.md is a doorway: short, and its flags table lists every flag
``python app.py --help`` does, no more and no fewer."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.tutorial import ROOT

README = ROOT / "README.md"
WORD_LIMIT = 900


def app_flags() -> set[str]:
    """The flags of app.py's own groups ("app options", "server options"),
    as --help prints them (to stderr); Tornado's logging flags and --help
    left out."""
    result = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    flags, ours = set(), False
    for line in (result.stdout + result.stderr).splitlines():
        if line.endswith("options:"):
            ours = line in ("app options:", "server options:")
        match = re.match(r"^  (--[a-z0-9-]+)", line)
        if ours and match:
            flags.add(match.group(1))
    return flags


def readme_flags() -> set[str]:
    return set(re.findall(r"^\| `(--[a-z0-9-]+)` \|", README.read_text(encoding="utf-8"), re.MULTILINE))


def test_the_flags_table_lists_every_flag_of_app_py():
    flags = app_flags()
    assert "--port" in flags and "--writer" in flags, flags  # the --help format is still read right
    table = readme_flags()
    assert not flags - table, f"in `python app.py --help` but not in README.md's table: {sorted(flags - table)}"
    assert not table - flags, f"in README.md's table but not an app.py flag: {sorted(table - flags)}"


def test_the_readme_is_under_900_words():
    words = len(README.read_text(encoding="utf-8").split())  # as `wc -w` counts them
    assert words < WORD_LIMIT, f"README.md is {words} words; the rest belongs in docs/"
