#!/usr/bin/env python3
"""Check a math answer against the reference answer (written by `ttgen adapt math`).

usage: verify_math.py EXPECTED_FILE SOLUTION_FILE

Exit status 0 when the solution matches, 3 when it does not (or the file is missing, empty or
unreadable), 2 on a usage error; any other status (1: an uncaught exception) is a checker crash. Prints what it compared and why it decided as it did.

Candidates are taken from the solution file: the whole content (unless it spans lines and reads
as a number: "1\\n2" is not 12), the last \\boxed{...}, the last non-empty line, and on that
line the text after "answer is" / "answer:" and after the last "=". Each is normalized (LaTeX
delimiters, \\boxed, \\text{}, \\left/\\right, spacing commands, \\frac{a}{b} -> a/b,
\\sqrt{x} -> sqrt(x), degrees, percent signs, a trailing period, thousands separators, a
leading "x =") and compared with the normalized reference: numerically (exact for
integers, else relative 1e-6 / absolute 1e-9), element-wise for tuples, intervals and sets, else
as case-insensitive strings. A percentage is not converted to a decimal: 50% matches 50, not 0.5.

Standard library only, and no syntax newer than Python 3.8: this runs inside the task's
container with whatever python3 its image has.
"""

from __future__ import annotations

import math
import re
import sys
from fractions import Fraction
from typing import Union

MAX_SOLUTION_BYTES = 1 << 20
FAILED = 3  # exit status for "no match"; 1 stays Python's own for a crash
REL_TOL = 1e-6
ABS_TOL = 1e-9

_UNICODE = {
    "\u2212": "-",  # minus sign
    "\u2013": "-",
    "\u00d7": "*",
    "\u22c5": "*",
    "\u00b7": "*",
    "\u00f7": "/",
    "\u03c0": "\\pi ",
    "\u221e": "\\infty ",
    "\u221a": "\\sqrt",
    "\u00b0": "",
    "\u00a0": " ",
    "\u2009": "",
    "\u202f": "",
}
_UNWRAP_COMMANDS = (
    "\\text",
    "\\textbf",
    "\\textit",
    "\\textrm",
    "\\mathrm",
    "\\mathbf",
    "\\mathit",
    "\\mbox",
    "\\operatorname",
    "\\hbox",
)
_SPACING_RE = re.compile(r"\\[,!;:> ]|\\q?quad\b|~|\\displaystyle|\\limits")
_SIZING_RE = re.compile(r"\\(?:left|right|[bB]igg?[lr]?)(?![A-Za-z])")
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree")
_THOUSANDS_RE = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_VAR_PREFIX_RE = re.compile(r"^[a-z](?:_\{?\w+\}?)?(?:\([a-z]\))?=(?!=)", re.IGNORECASE)
_ANSWER_PREFIX_RE = re.compile(r"^(?:the)?(?:final)?answer(?:is)?[:=]?", re.IGNORECASE)
_RIGHT_UNITS_RE = re.compile(r"^(?P<value>.*\d.*?)\s*\\(?:text|mbox|mathrm)\{\s*[A-Za-z][^{}]*\}$")
_CHOICE_RE = re.compile(r"^\(?([a-e])\)?$", re.IGNORECASE)


# -- LaTeX helpers --------------------------------------------------------------------------------


def _group(s: str, i: int) -> tuple[str, int] | None:
    """The brace group starting at s[i] == '{': (inner text, index after '}'), or None."""
    if i >= len(s) or s[i] != "{":
        return None
    depth = 0
    for j in range(i, len(s)):
        if s[j] == "{" and (j == 0 or s[j - 1] != "\\"):
            depth += 1
        elif s[j] == "}" and (j == 0 or s[j - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return s[i + 1 : j], j + 1
    return None


def _argument(s: str, i: int) -> tuple[str, int] | None:
    """A command argument at s[i]: a brace group, or one character/digit (\\frac12)."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return None
    if s[i] == "{":
        return _group(s, i)
    if s[i] == "\\":
        m = re.match(r"\\[A-Za-z]+", s[i:])
        if m:
            return m.group(0), i + len(m.group(0))
    return s[i], i + 1


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} or \\fbox{...} (nested braces allowed)."""
    best = None
    for m in re.finditer(r"\\(?:boxed|fbox)\s*", text):
        g = _group(text, m.end())
        if g is not None:
            best = g[0]
        elif text[m.end() : m.end() + 1] not in ("", "{"):
            # \boxed 5 (a space-separated argument)
            tail = re.match(r"[^\s$]+", text[m.end() :])
            if tail:
                best = tail.group(0)
    return best


def _unwrap(s: str, command: str) -> str:
    """Replace \\command{x} with x everywhere."""
    pat = re.compile(re.escape(command) + r"(?![A-Za-z])\s*")
    while True:
        m = pat.search(s)
        if not m:
            return s
        g = _group(s, m.end())
        inner, end = (g[0], g[1]) if g is not None else ("", m.end())
        s = s[: m.start()] + inner + s[end:]


def _simple(x: str) -> bool:
    return re.fullmatch(r"[\w.]+", x) is not None


def _paren(x: str) -> str:
    return x if _simple(x) else f"({x})"


def _replace_frac(s: str) -> str:
    """\\frac{a}{b} -> a/b (parenthesized when needed), innermost first."""
    s = re.sub(r"\\[dtc]frac(?![A-Za-z])", r"\\frac", s)
    while True:
        i = s.rfind("\\frac")
        if i < 0:
            return s
        num = _argument(s, i + len("\\frac"))
        den = _argument(s, num[1]) if num else None
        if num is None or den is None:
            return s.replace("\\frac", "")
        s = s[:i] + f"{_paren(num[0])}/{_paren(den[0])}" + s[den[1] :]


def _replace_sqrt(s: str) -> str:
    """\\sqrt{x} -> sqrt(x), \\sqrt[n]{x} -> (x)^(1/n), \\sqrt2 -> sqrt(2)."""
    while True:
        i = s.rfind("\\sqrt")
        if i < 0:
            return s
        j = i + len("\\sqrt")
        index = None
        m = re.match(r"\s*\[([^\]]*)\]", s[j:])
        if m:
            index, j = m.group(1).strip(), j + m.end()
        arg = _argument(s, j)
        if arg is None:
            return s.replace("\\sqrt", "sqrt")
        if index and index != "2":
            s = s[:i] + f"({arg[0]})^(1/{_paren(index)})" + s[arg[1] :]
        else:
            s = s[:i] + f"sqrt({arg[0]})" + s[arg[1] :]


def _exponent_braces(s: str) -> str:
    """2^{10} -> 2^(10): braces after ^ group, they are not a set."""
    while True:
        m = re.search(r"\^\s*\{", s)
        if not m:
            return s
        g = _group(s, m.end() - 1)
        if g is None:
            return s
        s = s[: m.start()] + f"^({g[0]})" + s[g[1] :]


def normalize(answer: str) -> str:
    """A canonical string for an answer; see the module docstring for the steps."""
    s = answer.strip()
    for a, b in _UNICODE.items():
        s = s.replace(a, b)
    boxed = last_boxed(s)
    if boxed is not None:
        s = boxed
    s = s.replace("$", "")
    s = re.sub(r"\\[()\[\]]", "", s)
    s = s.strip()
    m = _RIGHT_UNITS_RE.match(s)
    if m:
        s = m.group("value")
    for command in _UNWRAP_COMMANDS:
        s = _unwrap(s, command)
    s = re.sub(r"\\left\.|\\right\.", "", s)
    s = _SIZING_RE.sub("", s)
    s = _DEGREE_RE.sub("", s)
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace("{,}", "")
    s = _SPACING_RE.sub("", s)
    s = _replace_frac(s)
    s = _replace_sqrt(s)
    s = _exponent_braces(s)
    s = re.sub(r"\\(?:cdot|times|ast)(?![A-Za-z])", "*", s)
    s = re.sub(r"\\div(?![A-Za-z])", "/", s)
    s = re.sub(r"\\(?:pi)(?![A-Za-z])", "pi", s)
    s = re.sub(r"\\infty(?![A-Za-z])", "inf", s)
    s = s.replace("\\{", "{").replace("\\}", "}")
    s = re.sub(r"\s+", "", s)
    s = _ANSWER_PREFIX_RE.sub("", s, count=1) or s
    s = s.rstrip(".;")
    if s.count("=") == 1:
        m = _VAR_PREFIX_RE.match(s)
        if m and s[m.end() :]:
            s = s[m.end() :]
    if _THOUSANDS_RE.match(s):
        s = s.replace(",", "")
    return s


# -- numbers --------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z]+)|(?P<op>\*\*|[-+*/^(){}]))"
)


class _NotNumeric(Exception):
    pass


Number = Union[Fraction, float]  # noqa: UP007 (runs on the image's python3, maybe < 3.10)


def _isqrt_fraction(x: Fraction) -> Fraction | None:
    if x < 0:
        return None
    n, d = x.numerator, x.denominator
    rn, rd = math.isqrt(n), math.isqrt(d)
    if rn * rn == n and rd * rd == d:
        return Fraction(rn, rd)
    return None


class _Parser:
    """Evaluates + - * / ^, parentheses, sqrt(), pi and implicit products (2sqrt(3), 3pi)."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN_RE.match(text, pos)
            if not m or m.end() == pos:
                raise _NotNumeric(text)
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise _NotNumeric("unexpected end")
        self.i += 1
        return tok

    def parse(self) -> Number:
        value = self.expr()
        if self.peek() is not None:
            raise _NotNumeric("trailing input")
        return value

    def expr(self) -> Number:
        value = self.term()
        while (tok := self.peek()) is not None and tok[1] in ("+", "-"):
            self.take()
            rhs = self.term()
            value = value + rhs if tok[1] == "+" else value - rhs
        return value

    def _starts_atom(self, tok: tuple[str, str] | None) -> bool:
        # Implicit products are 2sqrt(3), 3pi, 2(1+x); never two numbers in a row (1.5.5).
        return tok is not None and (tok[0] == "name" or tok[1] in ("(", "{"))

    def term(self) -> Number:
        value = self.factor()
        while True:
            tok = self.peek()
            if tok is not None and tok[1] in ("*", "/"):
                self.take()
                rhs = self.factor()
                if tok[1] == "*":
                    value = value * rhs
                else:
                    if rhs == 0:
                        raise _NotNumeric("division by zero")
                    value = value / rhs
            elif self._starts_atom(tok):
                value = value * self.power()
            else:
                return value

    def factor(self) -> Number:
        tok = self.peek()
        if tok is not None and tok[1] in ("+", "-"):
            self.take()
            value = self.factor()
            return -value if tok[1] == "-" else value
        return self.power()

    def power(self) -> Number:
        base = self.atom()
        tok = self.peek()
        if tok is not None and tok[1] in ("^", "**"):
            self.take()
            exponent = self.factor()
            return _pow(base, exponent)
        return base

    def atom(self) -> Number:
        kind, text = self.take()
        if kind == "num":
            exp = text.lower().partition("e")[2]
            if exp and abs(int(exp)) > 1000:  # 1e99999999 would take ages to build exactly
                raise _NotNumeric("exponent too large")
            return Fraction(text)
        if kind == "name":
            low = text.lower()
            if low == "pi":
                return math.pi
            if low == "sqrt":
                arg = self.atom()
                if isinstance(arg, Fraction):
                    exact = _isqrt_fraction(arg)
                    if exact is not None:
                        return exact
                if arg < 0:
                    raise _NotNumeric("sqrt of a negative number")
                return math.sqrt(arg)
            raise _NotNumeric(f"unknown name {text}")
        if text in ("(", "{"):
            value = self.expr()
            closing = self.take()[1]
            if closing != {"(": ")", "{": "}"}[text]:
                raise _NotNumeric("unbalanced parentheses")
            return value
        raise _NotNumeric(f"unexpected {text}")


def _pow(base: Number, exponent: Number) -> Number:
    if isinstance(base, Fraction) and isinstance(exponent, Fraction) and exponent.denominator == 1:
        e = exponent.numerator
        bits = max(base.numerator.bit_length(), base.denominator.bit_length())
        if abs(e) * max(bits, 1) > 200_000:
            raise _NotNumeric("number too large")
        if base == 0 and e < 0:
            raise _NotNumeric("division by zero")
        return base**e
    try:
        result = float(base) ** float(exponent)
    except (OverflowError, ZeroDivisionError):
        raise _NotNumeric("number too large") from None
    if isinstance(result, complex):
        raise _NotNumeric("complex result")
    return result


def to_number(s: str) -> Number | None:
    """The value of a normalized answer when it is a plain numeric expression, else None."""
    if not s or not re.search(r"\d|pi", s):
        return None
    try:
        value = _Parser(s).parse()
    except (_NotNumeric, ValueError, ZeroDivisionError, OverflowError):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def numbers_equal(a: Number, b: Number, exact: bool) -> bool:
    if exact and isinstance(a, Fraction) and isinstance(b, Fraction):
        return a == b
    if a == b:
        return True
    fa, fb = float(a), float(b)
    return abs(fa - fb) <= max(ABS_TOL, REL_TOL * max(abs(fa), abs(fb)))


# -- structure --------------------------------------------------------------------------------


def _split_top(s: str) -> list[str]:
    """Split at commas outside any brackets."""
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _enclosed(s: str) -> bool:
    """True when s[0] and s[-1] are one bracket pair around the whole string."""
    depth = 0
    for i, ch in enumerate(s):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0 and i != len(s) - 1:
                return False
    return depth == 0


def as_collection(s: str) -> tuple[str, list[str]] | None:
    """(kind, elements) for a tuple/interval "(a,b]", a set "{a,b}" or a bare list "a,b"."""
    if len(s) >= 2 and s[0] in "([{" and s[-1] in ")]}" and _enclosed(s):
        inner = _split_top(s[1:-1])
        if len(inner) >= 2:
            kind = "set" if s[0] == "{" and s[-1] == "}" else s[0] + s[-1]
            return kind, inner
        return None
    parts = _split_top(s)
    if len(parts) >= 2:
        return "list", parts
    return None


def _same_elements(a: list[str], b: list[str], ordered: bool) -> bool:
    if len(a) != len(b):
        return False
    if ordered:
        return all(answers_match(a[k], b[k])[0] for k in range(len(a)))
    unused = list(b)
    for x in a:
        for k, y in enumerate(unused):
            if answers_match(x, y)[0]:
                del unused[k]
                break
        else:
            return False
    return True


def answers_match(expected: str, got: str) -> tuple[bool, str]:
    """Compare two normalized answers: (match, how)."""
    if expected.lower() == got.lower():
        return True, "same normalized text"
    ce, cg = _CHOICE_RE.match(expected), _CHOICE_RE.match(got)
    if ce and cg:
        return ce.group(1).lower() == cg.group(1).lower(), "choice letter"
    ne, ng = to_number(expected), to_number(got)
    if ne is not None and ng is not None:
        exact = "." not in expected and "." not in got
        if numbers_equal(ne, ng, exact):
            return True, f"numeric: {_show(ne)} = {_show(ng)}"
        return False, f"numeric: {_show(ne)} != {_show(ng)}"
    ae, ag = as_collection(expected), as_collection(got)
    if ae and ag:
        (ke, ee), (kg, eg) = ae, ag
        if ke == kg or {ke, kg} == {"list", "()"}:
            ordered = ke not in ("set", "list") or kg not in ("set", "list")
            if _same_elements(ee, eg, ordered):
                return True, f"element-wise ({len(ee)} elements)"
        return False, "different elements"
    return False, "different text"


def _show(x: Number) -> str:
    if isinstance(x, Fraction):
        return str(x) if x.denominator != 1 else str(x.numerator)
    return f"{x:.10g}"


# -- candidates and main ------------------------------------------------------------------------


def candidates(text: str) -> list[tuple[str, str]]:
    """(where, raw text) of the answer candidates in a solution file, without repeats."""
    found: list[tuple[str, str]] = []
    whole = text.strip()
    # Several lines make one answer only as text (a matrix); "1\n2" must not read as 12.
    if whole and ("\n" not in whole or to_number(normalize(whole)) is None):
        found.append(("whole file", whole))
    boxed = last_boxed(text)
    if boxed is not None:
        found.append(("last \\boxed{}", boxed))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines:
        last = lines[-1]
        found.append(("last line", last))
        m = re.search(r"answer\s*(?:is|:)\s*(.+)$", last, re.IGNORECASE)
        if m:
            found.append(('after "answer is"', m.group(1)))
        if "=" in last:
            found.append(('after the last "="', last.rsplit("=", 1)[1]))
    seen: set[str] = set()
    unique = []
    for where, raw in found:
        if raw.strip() and raw.strip() not in seen:
            seen.add(raw.strip())
            unique.append((where, raw.strip()))
    return unique


def _clip(s: str, n: int = 160) -> str:
    s = s.replace("\n", "\\n")
    return s if len(s) <= n else s[: n - 3] + "..."


def check(expected_raw: str, solution: str) -> tuple[bool, list[str]]:
    """(match, report lines) for a reference answer and a solution file's text."""
    report = []
    expected = normalize(expected_raw)
    report.append(f"reference answer: {_clip(expected_raw.strip())}  (normalized: {expected})")
    cands = candidates(solution)
    if not cands:
        report.append("the solution file is empty")
        return False, report
    for where, raw in cands:
        got = normalize(raw)
        ok, how = answers_match(expected, got)
        verdict = "MATCH" if ok else "no match"
        report.append(f"  {where}: {_clip(raw)!r} -> {_clip(got)!r}: {verdict} ({how})")
        if ok:
            return True, report
    return False, report


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: verify_math.py EXPECTED_FILE SOLUTION_FILE", file=sys.stderr)
        return 2
    expected_path, solution_path = argv[1], argv[2]
    try:
        with open(expected_path, encoding="utf-8") as f:
            expected = f.read()
    except OSError as exc:
        print(f"cannot read the reference answer {expected_path}: {exc.strerror}")
        return 2
    try:
        with open(solution_path, "rb") as f:
            data = f.read(MAX_SOLUTION_BYTES + 1)
    except FileNotFoundError:
        print(f"FAIL: {solution_path} does not exist")
        return FAILED
    except OSError as exc:
        print(f"FAIL: cannot read {solution_path}: {exc.strerror}")
        return FAILED
    if len(data) > MAX_SOLUTION_BYTES:
        print(f"FAIL: {solution_path} is larger than {MAX_SOLUTION_BYTES} bytes")
        return FAILED
    solution = data.decode("utf-8", errors="replace")
    print(f"{solution_path} ({len(data)} bytes): {_clip(solution.strip(), 200)!r}")
    ok, report = check(expected, solution)
    print("\n".join(report))
    print("PASS: the answer matches the reference" if ok else "FAIL: no candidate matches")
    return 0 if ok else FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv))
