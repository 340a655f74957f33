"""The generator's answer: the XML-tagged task format and its parser.

The generation prompts ask for one ``<task>`` element (tag names below). Models do not escape
``<`` or ``&`` inside code, so this is not an XML parser: it finds the tags by name and takes
what is between them verbatim (an optional ``<![CDATA[ ... ]]>`` wrapper or a Markdown code
fence around a whole block is removed). Anything outside the tags (reasoning, remarks) is ignored.

    <task>
      <title>one line</title>
      <instruction>the Markdown instruction the agent sees</instruction>
      <files>
        <file path="/app/data/input.csv">file content</file>
      </files>
      <setup>optional bash run once while the image is built (binary or derived inputs)</setup>
      <tests>a pytest module</tests>
      <weights>{"test_function_name": 2.0, ...}</weights>
    </task>

`parse_answer` raises `AnswerFormatError` with every problem found, phrased so that it can be
sent back to the model as is.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

REQUIRED_TAGS = ("title", "instruction", "tests", "weights")
FORBIDDEN_PREFIXES = ("/tests", "/logs", "/solution", "/proc", "/sys", "/dev", "/oracle")
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_TOTAL_BYTES = 8 * 1024 * 1024

_FENCE_RE = re.compile(r"^\s*```[\w+-]*[ \t]*\n(?P<body>.*?)\n?```\s*$", re.DOTALL)
_CDATA_RE = re.compile(r"^\s*<!\[CDATA\[(?P<body>.*?)\]\]>\s*$", re.DOTALL)
_FILE_RE = re.compile(r"<file\b(?P<attrs>[^>]*)>(?P<body>.*?)</file\s*>", re.DOTALL | re.IGNORECASE)
_ATTR_RE = re.compile(r"""(\w+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
# Top-level test functions and methods of Test classes (indented).
_TEST_DEF_RE = re.compile(r"^[ \t]*(?:async\s+)?def\s+(test\w*)\s*\(", re.MULTILINE)


class AnswerFormatError(ValueError):
    """The answer does not follow the format; `problems` lists what is wrong."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass
class TaskDraft:
    """A parsed answer: what the task directory will be made of."""

    title: str
    instruction: str
    tests: str
    weights: dict[str, float]
    files: dict[str, str] = field(default_factory=dict)  # absolute path in the container → text
    setup: str = ""

    @property
    def test_names(self) -> list[str]:
        return test_functions(self.tests)

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "instruction": self.instruction,
            "files": self.files,
            "setup": self.setup,
            "tests": self.tests,
            "weights": self.weights,
        }


def test_functions(code: str) -> list[str]:
    """Names of the test functions defined in a pytest module (top level or in classes)."""
    return list(dict.fromkeys(_TEST_DEF_RE.findall(code.replace("\r\n", "\n"))))


def _unwrap(text: str) -> str:
    m = _CDATA_RE.match(text)
    if m:
        text = m.group("body")
    m = _FENCE_RE.match(text)
    if m:
        text = m.group("body")
    return text


def _block(text: str, tag: str) -> str | None:
    """The content of the first <tag>…</tag> (the last closing tag when the content itself
    mentions the tag, e.g. an instruction quoting "</title>" is rare but a test quoting
    "</tests>" must not cut the module short)."""
    open_m = re.search(rf"<{tag}(?:\s[^>]*)?>", text, re.IGNORECASE)
    if not open_m:
        return None
    closes = list(re.finditer(rf"</{tag}\s*>", text[open_m.end() :], re.IGNORECASE))
    if not closes:
        return None
    # Prefer the closing tag followed by the next known tag or the end of the task.
    end = closes[-1] if tag in ("tests", "setup", "instruction") else closes[0]
    return text[open_m.end() : open_m.end() + end.start()]


def _strip_outer_newlines(text: str) -> str:
    text = text.replace("\r\n", "\n")
    if text.startswith("\n"):
        text = text[1:]
    return text.rstrip() + "\n" if text.strip() else ""


def normalize_container_path(raw: str) -> str:
    """An absolute, normalized path in the container; relative paths are under /app."""
    p = raw.strip()
    if not p.startswith("/"):
        p = "/app/" + p
    return posixpath.normpath(p)


def parse_answer(text: str) -> TaskDraft:
    """Parse a generator answer; raises AnswerFormatError listing every problem."""
    problems: list[str] = []
    task = _block(text, "task")
    body = task if task is not None else text
    blocks: dict[str, str | None] = {t: _block(body, t) for t in (*REQUIRED_TAGS, "files", "setup")}
    for tag in REQUIRED_TAGS:
        if blocks[tag] is None or not blocks[tag].strip():  # type: ignore[union-attr]
            problems.append(f"<{tag}> is missing or empty")
    title = " ".join((blocks["title"] or "").split())
    instruction = _strip_outer_newlines(_unwrap(blocks["instruction"] or ""))
    tests = _strip_outer_newlines(_unwrap(blocks["tests"] or ""))
    setup = _strip_outer_newlines(_unwrap(blocks["setup"] or ""))

    weights: dict[str, float] = {}
    raw_weights = _unwrap(blocks["weights"] or "").strip()
    if raw_weights:
        try:
            data = json.loads(raw_weights)
        except ValueError as exc:
            problems.append(f"<weights> is not valid JSON ({exc.msg} at line {exc.lineno})")
            data = None
        if data is not None and not isinstance(data, dict):
            problems.append('<weights> must be a JSON object like {"test_name": 1.0}')
        elif isinstance(data, dict):
            for key, value in data.items():
                if isinstance(value, bool) or not isinstance(value, int | float):
                    problems.append(f"<weights>: weight of {key!r} is not a number")
                elif not math.isfinite(value) or value <= 0:
                    problems.append(f"<weights>: weight of {key!r} must be positive")
                else:
                    weights[str(key)] = float(value)

    files: dict[str, str] = {}
    total = 0
    files_block = blocks["files"] or ""
    for m in _FILE_RE.finditer(files_block):
        attrs = {k.lower(): v1 or v2 for k, v1, v2 in _ATTR_RE.findall(m.group("attrs"))}
        raw_path = attrs.get("path", "").strip()
        if not raw_path:
            problems.append("a <file> has no path attribute")
            continue
        path = normalize_container_path(raw_path)
        if ".." in raw_path.split("/") or path in ("/", "/app"):
            problems.append(f"<file path={raw_path!r}>: not a file path inside the container")
            continue
        if any(path == p or path.startswith(p + "/") for p in FORBIDDEN_PREFIXES):
            problems.append(
                f"<file path={raw_path!r}>: {path.split('/')[1]} is reserved for the harness; "
                "put input files under /app"
            )
            continue
        if path in files:
            problems.append(f"<file path={raw_path!r}> is given twice")
            continue
        content = _unwrap(m.group("body"))
        if content.startswith("\n"):
            content = content[1:]
        size = len(content.encode("utf-8"))
        if size > MAX_FILE_BYTES:
            problems.append(f"<file path={raw_path!r}> is {size} bytes (max {MAX_FILE_BYTES})")
            continue
        total += size
        files[path] = content
    if total > MAX_TOTAL_BYTES:
        problems.append(f"the input files total {total} bytes (max {MAX_TOTAL_BYTES})")

    if tests and not test_functions(tests):
        problems.append("<tests> defines no test functions (def test_...)")
    if problems:
        raise AnswerFormatError(problems)
    return TaskDraft(
        title=title, instruction=instruction, tests=tests, weights=weights, files=files, setup=setup
    )
