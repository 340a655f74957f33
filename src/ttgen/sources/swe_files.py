"""Find the code files shown in a SWE prompt, so an adapter can put them in the environment.

The paper: "For each code file identified in a SWE prompt, we instantiate a corresponding file
within the environment." It does not say how the files are found; these are the layouts the
public SWE prompt sets use:

* SWE-bench style blocks, often with every line numbered (``12 def f():``)::

      [start of src/pkg/mod.py]
      1 import os
      2 ...
      [end of src/pkg/mod.py]

  The numbers are stripped only when every line of the block carries one and they are
  consecutive, so a file whose lines happen to start with digits is kept as it is.

* Fenced blocks with a path header: the path as the info string (```` ```python src/a.py ````,
  ```` ```python:src/a.py ````, ```` ```src/a.py ````), as the first line inside the fence
  (``### src/a.py``, ``# src/a.py``, ``// src/a.js``, ``File: src/a.py``, the Agentless
  repair-prompt form; the header line is not part of the file), or as the line right before
  the fence (``src/a.py``, ``File: src/a.py``, ``### src/a.py``, ``**src/a.py**``).
  Fences without a path (an issue's reproduction snippet, a diff) are not files.

Paths must be relative and stay inside /app: absolute paths, ``..``, backslashes and control
characters are reported as problems, never materialized.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_START_RE = re.compile(r"^\[start of (?P<path>[^\]\n]+)\][ \t]*$", re.MULTILINE)
_FENCE_RE = re.compile(r"^(?P<indent>[ \t]{0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)$")
_NUMBERED_RE = re.compile(r"^(\d+)(?: (.*))?$", re.DOTALL)
# A bare path: word characters, dots, dashes, plus and slashes; no spaces.
_PATH_CHARS = r"[\w.\-+@/\\]+"
_PATH_TOKEN_RE = re.compile(rf"^{_PATH_CHARS}$")
# A header line naming a path, before a fence or as its first line.
_HEADER_RE = re.compile(
    r"^\s*(?:#{1,6}\s+|//+\s*|--\s+|<!--\s*)?"  # markdown heading or comment leader
    r"(?:(?:file(?:name)?|path)\s*[:=]\s*)?"  # optional "File:" label
    r"(?P<q>\*\*|`|\"|')?"  # optional emphasis or quotes
    rf"(?P<path>{_PATH_CHARS})"
    r"(?P=q)?:?\s*(?:-->)?\s*$",
    re.IGNORECASE,
)
_NOT_FILE_LANGS = frozenset({"diff", "patch", "console", "shell-session", "text", "output"})
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class ParsedFiles:
    """The files found in one prompt (in order of appearance) and the problems met."""

    files: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def check_path(raw: str) -> tuple[str | None, str | None]:
    """Normalize a file path from a prompt: ``(path, None)`` when safe, else ``(None, problem)``."""
    path = raw.strip()
    if not path:
        return None, "empty file path"
    if _CONTROL_RE.search(path):
        return None, f"file path {path!r} contains control characters"
    if "\\" in path:
        return None, f"file path {path!r} uses backslashes (expected a relative POSIX path)"
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return None, f"unsafe file path {path!r}: absolute paths are not allowed"
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None, f"unsafe file path {path!r}: '..' would leave /app"
    if not parts:
        return None, f"file path {path!r} names no file"
    if any(len(p.encode("utf-8")) > 255 for p in parts):
        return None, f"file path {path!r} has a component longer than 255 bytes"
    return "/".join(parts), None


def _looks_like_path(token: str) -> bool:
    """A path has a directory or an extension (``src/x``, ``setup.py``), not just a word."""
    if not _PATH_TOKEN_RE.match(token) or token.startswith(("-", "+")) or token.endswith("/"):
        return False
    name = token.rsplit("/", 1)[-1]
    if "/" in token:
        return bool(name)
    stem, dot, ext = name.rpartition(".")
    return bool(dot and stem.strip(".") and ext and re.fullmatch(r"[A-Za-z0-9_+\-]{1,10}", ext))


def _header_path(line: str) -> str | None:
    """The path a header line names, or None when the line is not a path header."""
    m = _HEADER_RE.match(line)
    if not m:
        return None
    path = m.group("path")
    return path if _looks_like_path(path) else None


def _info_path(info: str) -> str | None:
    """A path in a fence's info string: ``python src/a.py``, ``python:src/a.py``, ``src/a.py``."""
    tokens = info.strip().split()
    if not tokens:
        return None
    if tokens[0].lower() in _NOT_FILE_LANGS:
        return None
    candidates: list[str] = []
    for i, tok in enumerate(tokens):
        tok = tok.strip("`'\"")
        for prefix in ("title=", "file=", "filename=", "path="):
            if tok.lower().startswith(prefix):
                tok = tok[len(prefix) :].strip("`'\"")
        if i == 0 and ":" in tok and not tok.startswith(("/", ".")):
            lang, _, rest = tok.partition(":")
            if lang.isalnum() and rest:
                tok = rest
        candidates.append(tok)
    for tok in candidates:
        if _looks_like_path(tok):
            return tok
    return None


def strip_line_numbers(lines: list[str]) -> list[str]:
    """Drop SWE-bench line numbers (``12 code``) when every line has one and they are consecutive."""
    if not lines:
        return lines
    out: list[str] = []
    expected: int | None = None
    for line in lines:
        m = _NUMBERED_RE.match(line)
        if not m:
            return lines
        n = int(m.group(1))
        if expected is not None and n != expected:
            return lines
        expected = n + 1
        out.append(m.group(2) or "")
    return out


def _join(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""


def parse_code_files(prompt: str) -> ParsedFiles:
    """Every code file a SWE prompt shows, keyed by its relative path, in order of appearance.

    The first occurrence of a path wins (later blocks with the same path are excerpts).
    Unsafe paths are listed in ``problems`` and not returned.
    """
    result = ParsedFiles()
    lines = prompt.split("\n")
    consumed = [False] * len(lines)

    def add(raw_path: str, content: str, where: str) -> None:
        path, problem = check_path(raw_path)
        if problem:
            result.problems.append(f"{problem} ({where})")
            return
        assert path is not None
        if path not in result.files:
            result.files[path] = content

    # 1. [start of path] ... [end of path] blocks.
    i = 0
    while i < len(lines):
        m = _START_RE.match(lines[i])
        if not m:
            i += 1
            continue
        raw = m.group("path")
        end_marker = f"[end of {raw}]"
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != end_marker:
            j += 1
        if j == len(lines):
            result.problems.append(f"[start of {raw}] has no matching {end_marker}")
            i += 1
            continue
        body = strip_line_numbers(lines[i + 1 : j])
        add(raw, _join(body), f"[start of {raw}] block")
        for k in range(i, j + 1):
            consumed[k] = True
        i = j + 1

    # 2. Fenced blocks with a path header.
    i = 0
    while i < len(lines):
        if consumed[i]:
            i += 1
            continue
        m = _FENCE_RE.match(lines[i])
        if not m:
            i += 1
            continue
        fence = m.group("fence")
        close_re = re.compile(rf"^[ \t]{{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        j = i + 1
        while j < len(lines) and not close_re.match(lines[j]):
            j += 1
        if j == len(lines):
            break  # an unclosed fence runs to the end: not a file block
        info = m.group("info")
        body = lines[i + 1 : j]
        indent = m.group("indent")
        if indent:
            body = [b[len(indent) :] if b.startswith(indent) else b for b in body]
        lang = info.strip().split()[0].lower() if info.strip() else ""
        path = None
        if lang not in _NOT_FILE_LANGS:
            path = _info_path(info)
            if path is None and body:
                path = _header_path(body[0])
                if path is not None:
                    body = body[1:]
            if path is None:
                path = _path_before(lines, i, consumed)
        if path is not None:
            add(path, _join(body), f"fenced block at line {i + 1}")
        i = j + 1
    return result


def _path_before(lines: list[str], fence_at: int, consumed: list[bool]) -> str | None:
    """The path on the line right before a fence (one blank line in between is allowed)."""
    k = fence_at - 1
    if k >= 0 and not lines[k].strip():
        k -= 1
    if k < 0 or consumed[k]:
        return None
    line = lines[k]
    if _FENCE_RE.match(line):
        return None
    return _header_path(line)
