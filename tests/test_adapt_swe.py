"""Finding the code files in SWE prompts: every layout, line numbers, unsafe paths."""

from __future__ import annotations

import pytest

from ttgen.sources.swe_files import check_path, parse_code_files, strip_line_numbers

# SWE-bench writes an empty line as "N " (number and space); the README has one as bare "N".
SWE_BENCH_NUMBERED = "\n".join([
    "<issue>", "Division by zero in mean() for empty input", "</issue>", "<code>",
    "[start of stats/core.py]",
    "1 def mean(xs):", "2     return sum(xs) / len(xs)", "3 ", "4 ", "5 def total(xs):",
    "6     return sum(xs)",
    "[end of stats/core.py]",
    "[start of README.md]", "1 # stats", "2", "3 Simple statistics.", "[end of README.md]",
    "</code>", "",
])  # fmt: skip


def test_swe_bench_blocks_with_line_numbers_are_stripped():
    parsed = parse_code_files(SWE_BENCH_NUMBERED)
    assert parsed.problems == []
    assert parsed.files == {
        "stats/core.py": "def mean(xs):\n    return sum(xs) / len(xs)\n\n\ndef total(xs):\n"
        "    return sum(xs)\n",
        "README.md": "# stats\n\nSimple statistics.\n",
    }


def test_numbers_stay_unless_every_line_has_consecutive_ones():
    # A data file whose lines start with numbers that are not a line numbering.
    prompt = "[start of data/scores.txt]\n1 alice 90\n3 bob 85\n[end of data/scores.txt]\n"
    assert parse_code_files(prompt).files == {"data/scores.txt": "1 alice 90\n3 bob 85\n"}
    prompt = "[start of a.py]\n1 x = 1\ny = 2\n[end of a.py]\n"
    assert parse_code_files(prompt).files == {"a.py": "1 x = 1\ny = 2\n"}
    assert strip_line_numbers(["7 a", "8", "9   indented"]) == ["a", "", "  indented"]
    assert strip_line_numbers(["7 a", "9 b"]) == ["7 a", "9 b"]


def test_unnumbered_swe_bench_block_and_missing_end_marker():
    prompt = "[start of pkg/a.py]\nimport os\n\nprint(os.sep)\n[end of pkg/a.py]\n[start of pkg/b.py]\nx = 1\n"
    parsed = parse_code_files(prompt)
    assert parsed.files == {"pkg/a.py": "import os\n\nprint(os.sep)\n"}
    assert parsed.problems == ["[start of pkg/b.py] has no matching [end of pkg/b.py]"]


AGENTLESS = """\
--- BEGIN ISSUE ---
Parsing fails. Reproduce with:
```python
from cfg import parse
parse("a=1")
```
--- END ISSUE ---

--- BEGIN FILE ---
```
### src/cfg/parser.py
def parse(text):
    return dict(line.split(":") for line in text.splitlines())
```
--- END FILE ---
"""


def test_agentless_header_inside_the_fence_is_not_part_of_the_file():
    parsed = parse_code_files(AGENTLESS)
    assert parsed.files == {
        "src/cfg/parser.py": 'def parse(text):\n    return dict(line.split(":") for line in '
        "text.splitlines())\n"
    }  # the snippet (no path) is not a file


@pytest.mark.parametrize(
    ("prompt", "path"),
    [
        ("```python app/main.py\nprint(1)\n```\n", "app/main.py"),
        ("```python:app/main.py\nprint(1)\n```\n", "app/main.py"),
        ("```app/main.py\nprint(1)\n```\n", "app/main.py"),
        ('```python title="app/main.py"\nprint(1)\n```\n', "app/main.py"),
        ("app/main.py\n```python\nprint(1)\n```\n", "app/main.py"),
        ("File: app/main.py\n\n```python\nprint(1)\n```\n", "app/main.py"),
        ("### `app/main.py`\n```python\nprint(1)\n```\n", "app/main.py"),
        ("**app/main.py**\n```\nprint(1)\n```\n", "app/main.py"),
        ("# app/main.py\n```\nprint(1)\n```\n", "app/main.py"),
        ("```python\n# app/main.py\nprint(1)\n```\n", "app/main.py"),
        ("```js\n// web/app.js\nprint(1)\n```\n", "web/app.js"),
        ("````markdown docs/guide.md\nprint(1)\n````\n", "docs/guide.md"),
        ("```python\n./app/main.py\nprint(1)\n```\n", "app/main.py"),
    ],
)
def test_fenced_layouts(prompt, path):
    parsed = parse_code_files(prompt)
    assert parsed.problems == []
    assert parsed.files == {path: "print(1)\n"}


@pytest.mark.parametrize(
    "prompt",
    [
        "Here is what I ran:\n```python\nprint(1)\n```\n",  # prose before the fence
        "```diff src/a.py\n-x\n+y\n```\n",  # a diff is not a file
        "```python\nprint(1)\n```\n",  # no path at all
        "```python src/a.py\nprint(1)\n",  # never closed
    ],
)
def test_fences_that_are_not_files(prompt):
    assert parse_code_files(prompt).files == {}


def test_fenced_block_keeps_nested_shorter_fences():
    prompt = "````markdown README.md\n# Title\n```bash\nmake\n```\n````\n"
    assert parse_code_files(prompt).files == {"README.md": "# Title\n```bash\nmake\n```\n"}


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("/etc/passwd", "absolute paths are not allowed"),
        ("../outside.py", "'..' would leave /app"),
        ("pkg/../../x.py", "'..' would leave /app"),
        ("C:/win/x.py", "absolute paths are not allowed"),
        ("pkg\\mod.py", "backslashes"),
    ],
)
def test_unsafe_paths_are_problems(raw, problem):
    path, why = check_path(raw)
    assert path is None and problem in why
    parsed = parse_code_files(f"[start of {raw}]\nx = 1\n[end of {raw}]\n")
    assert parsed.files == {}
    assert problem in parsed.problems[0] and f"[start of {raw}] block" in parsed.problems[0]


def test_unsafe_fenced_path_is_reported():
    parsed = parse_code_files("```python\n### ../../etc/cron.d/job\nx\n```\n")
    assert parsed.files == {}
    assert "'..' would leave /app" in parsed.problems[0]
    assert "fenced block at line 1" in parsed.problems[0]


def test_first_occurrence_of_a_path_wins_and_order_is_kept():
    prompt = (
        "[start of b.py]\nB = 1\n[end of b.py]\n"
        "[start of a.py]\nA = 1\n[end of a.py]\n"
        "```python b.py\nexcerpt\n```\n"
    )
    parsed = parse_code_files(prompt)
    assert list(parsed.files) == ["b.py", "a.py"]
    assert parsed.files["b.py"] == "B = 1\n"
