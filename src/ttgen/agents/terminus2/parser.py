"""Parsing Terminus 2 JSON responses, with Harbor's observable behaviour.

The messages (errors, warnings, auto-correction notes) are what the teacher model reads back in
the next turn, so they are part of the data format and follow Harbor's wording. Rules:
  * the first balanced top-level ``{...}`` (string-aware) is the response; text around it gives a
    warning, not an error;
  * ``analysis``, ``plan`` and ``commands`` are required; ``commands`` must be a list of objects
    with a string ``keystrokes`` and an optional numeric ``duration`` (default 1.0);
  * ``task_complete`` is a bool or "true"/"1"/"yes";
  * a command error while ``task_complete`` is true becomes a warning (the task is complete);
  * after an error two repairs are tried in order (close missing braces; take the first object
    that parses); a repaired response carries an ``AUTO-CORRECTED`` warning.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

REQUIRED = ("analysis", "plan", "commands")
_FLAT_OBJECT = re.compile(r"\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}", re.DOTALL)


@dataclass
class Command:
    keystrokes: str
    duration: float = 1.0


@dataclass
class ParseResult:
    commands: list[Command] = field(default_factory=list)
    task_complete: bool = False
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    analysis: str = ""
    plan: str = ""

    @property
    def warning_text(self) -> str:
        """Warnings as Harbor lists them: one "- " line each."""
        return "\n".join(f"- {w}" for w in self.warnings)


def _first_object(text: str) -> tuple[int, int] | None:
    depth, start, in_str, esc = 0, -1, False, False
    for i, ch in enumerate(text):
        if esc:
            esc = False
        elif ch == "\\":
            esc = True
        elif ch == '"':
            in_str = not in_str
        elif not in_str:
            if ch == "{":
                if depth == 0:
                    start = i
                depth += 1
            elif ch == "}" and depth > 0:
                depth -= 1
                if depth == 0:
                    return start, i + 1
    return None


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.lower() in ("true", "1", "yes")
    return bool(value) if isinstance(value, bool) else False


def _order_warning(raw: str) -> str | None:
    found = []
    for name in REQUIRED:
        m = re.search(rf'"{name}"\s*:', raw)
        if m:
            found.append((m.start(), name))
    if len(found) < 2:
        return None
    actual = [n for _, n in sorted(found)]
    expected = [n for n in REQUIRED if n in actual]
    if actual == expected:
        return None
    return (
        f"Fields appear in wrong order. Found: {' → '.join(actual)}, "
        f"expected: {' → '.join(expected)}"
    )


def _commands(items: list, warnings: list[str]) -> tuple[list[Command], str]:
    out: list[Command] = []
    for i, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            return [], f"Command {i} must be an object"
        if "keystrokes" not in item:
            return [], f"Command {i} missing required 'keystrokes' field"
        keys = item["keystrokes"]
        if not isinstance(keys, str):
            return [], f"Command {i} 'keystrokes' must be a string"
        if "duration" not in item:
            warnings.append(f"Command {i}: Missing duration field, using default 1.0")
            duration = 1.0
        elif isinstance(item["duration"], bool) or not isinstance(item["duration"], int | float):
            warnings.append(f"Command {i}: Invalid duration value, using default 1.0")
            duration = 1.0
        else:
            duration = float(item["duration"])
        unknown = [k for k in item if k not in ("keystrokes", "duration")]
        if unknown:
            warnings.append(f"Command {i}: Unknown fields: {', '.join(unknown)}")
        if i < len(items) and not keys.endswith("\n"):
            warnings.append(
                f"Command {i} should end with newline when followed by another command. "
                "Otherwise the two commands will be concatenated together on the same line."
            )
        out.append(Command(keys, duration))
    return out, ""


def _parse_once(text: str) -> ParseResult:
    span = _first_object(text)
    if span is None:
        return ParseResult(error="No valid JSON found in response",
                           warnings=["No valid JSON object found"])  # fmt: skip
    start, end = span
    warnings: list[str] = []
    if text[:start].strip():
        warnings.append("Extra text detected before JSON object")
    if text[end:].strip():
        warnings.append("Extra text detected after JSON object")
    raw = text[start:end]
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        if len(raw) < 200:
            detail = f" | Content: {raw!r}"
        else:
            detail = f" | Content preview: {raw[:100]!r}..."
        return ParseResult(error=f"Invalid JSON: {exc}{detail}", warnings=warnings)
    if not isinstance(data, dict):
        return ParseResult(error="Response must be a JSON object", warnings=warnings)
    missing = [f for f in REQUIRED if f not in data]
    if missing:
        return ParseResult(error=f"Missing required fields: {', '.join(missing)}",
                           warnings=warnings)  # fmt: skip
    for name in ("analysis", "plan"):
        if not isinstance(data[name], str):
            warnings.append(f"Field '{name}' should be a string")
    if not isinstance(data["commands"], list):
        return ParseResult(error="Field 'commands' must be an array", warnings=warnings)
    order = _order_warning(raw)
    if order:
        warnings.append(order)
    tc = data.get("task_complete")
    if tc is not None and not isinstance(tc, bool | str):
        warnings.append("Field 'task_complete' should be a boolean or string")
    complete = _truthy(tc)
    analysis, plan = str(data["analysis"]), str(data["plan"])
    commands, error = _commands(data["commands"], warnings)
    if error:
        if complete:
            return ParseResult([], True, "", [*warnings, error], analysis, plan)
        return ParseResult([], False, error, warnings, analysis, plan)
    return ParseResult(commands, complete, "", warnings, analysis, plan)


def _close_braces(text: str, error: str) -> str | None:
    if not any(s in error for s in ("Invalid JSON", "Expecting", "Unterminated", "No valid JSON")):
        return None
    missing = text.count("{") - text.count("}")
    return text + "}" * missing if missing > 0 else None


def _first_parsable(text: str, error: str) -> str | None:
    for candidate in _FLAT_OBJECT.findall(text):
        try:
            json.loads(candidate)
        except json.JSONDecodeError:
            continue
        return candidate
    return None


_FIXES = (
    ("Fixed incomplete JSON by adding missing closing brace", _close_braces),
    ("Extracted JSON from mixed content", _first_parsable),
)


def parse_json_response(text: str) -> ParseResult:
    result = _parse_once(text)
    if not result.error:
        return result
    for name, fix in _FIXES:
        fixed = fix(text, result.error)
        if fixed is None:
            continue
        repaired = _parse_once(fixed)
        if not repaired.error:
            repaired.warnings.insert(
                0, f"AUTO-CORRECTED: {name} - please fix this in future responses"
            )
            return repaired
    return result
