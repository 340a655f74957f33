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


# -- XML (terminus-xml-plain) ---------------------------------------------------------------------

XML_SECTIONS = ("analysis", "plan", "commands")
_XML_KNOWN = (*XML_SECTIONS, "task_complete")
_KEYSTROKES = re.compile(r"<keystrokes([^>]*)>(.*?)</keystrokes>", re.DOTALL)
_ENTITIES = {"&lt;": "<", "&gt;": ">", "&amp;": "&", "&quot;": '"', "&apos;": "'"}
EMPTY_COMMANDS_WARNING = (
    "Commands section is empty; not taking any action. If you want to wait a specific amount of "
    "time please use `sleep`, but if you're waiting for a command to finish then continue to wait."
)


def _section(content: str, name: str) -> str | None:
    m = re.search(rf"<{name}>(.*?)</{name}>", content, re.DOTALL)
    if m:
        return m.group(1).strip()
    if re.search(rf"<{name}\s*/>", content) or f"<{name}></{name}>" in content:
        return ""
    return None


def _top_level_tags(content: str) -> list[str]:
    tags, depth, i = [], 0, 0
    while True:
        i = content.find("<", i)
        if i == -1:
            return tags
        end = content.find(">", i)
        if end == -1:
            return tags
        inner = content[i + 1 : end]
        i = end + 1
        if not inner or inner[0] in "!?":
            continue
        if inner.startswith("/"):
            depth -= 1
            continue
        name = inner.split()[0].rstrip("/") if inner.split() else inner
        if depth == 0:
            tags.append(name)
        if not inner.endswith("/"):
            depth += 1


def _attribute_warnings(attrs: str, n: int, warnings: list[str]) -> None:
    for name, value in re.findall(r"(\w+)\s*=\s*([^\"'\s>]+)", attrs):
        warnings.append(
            f"Command {n}: Attribute '{name}' value should be quoted: {name}=\"{value}\""
        )
    for name, value in re.findall(r"(\w+)\s*=\s*'([^']*)'", attrs):
        warnings.append(
            f"Command {n}: Use double quotes for attribute '{name}': {name}=\"{value}\""
        )
    for name in re.findall(r"(\w+)\s*=", attrs):
        if name != "duration":
            warnings.append(
                f"Command {n}: Unknown attribute '{name}' - known attributes are: duration"
            )


def _xml_commands(section: str, warnings: list[str]) -> list[Command]:
    found = _KEYSTROKES.findall(section)
    out = []
    for n, (attrs, keys) in enumerate(found, start=1):
        _attribute_warnings(attrs, n, warnings)
        duration = 1.0
        m = re.search(r"duration\s*=\s*[\"']([^\"']*)[\"']", attrs)
        if m is None:
            warnings.append(f"Command {n}: Missing duration attribute, using default 1.0")
        else:
            try:
                duration = float(m.group(1))
            except ValueError:
                warnings.append(
                    f"Command {n}: Invalid duration value '{m.group(1)}', using default 1.0"
                )
        if n < len(found) and not keys.endswith("\n"):
            warnings.append(
                f"Command {n} should end with newline when followed by another command. "
                "Otherwise the two commands will be concatenated together on the same line."
            )
        out.append(Command(keys, duration))
    for entity, char in _ENTITIES.items():
        if entity in section:
            warnings.append(
                f"Warning: {entity} is read verbatim and not converted to {char}. NEVER USE "
                f"{entity}, unless you want these exact characters to appear directly in the output."
            )
    if "\\r\\n" in section:
        warnings.append(
            "Warning: \\r\\n line endings are not necessary - use \\n instead for simpler output"
        )
    return out


def parse_xml_response(text: str) -> ParseResult:
    """Parse a terminus-xml-plain response (`<response>` with analysis, plan, commands)."""
    warnings: list[str] = []
    start = text.find("<response>")
    if start == -1:
        return ParseResult(error="No <response> tag found")
    if text[:start].strip():
        warnings.append("Extra text detected before <response> tag")
    end = text.find("</response>", start)
    if end != -1 and text[end + len("</response>") :].strip():
        warnings.append("Extra text detected after </response> tag")
        count = text.count("<response>")
        if count > 1:
            warnings.append(
                f"IMPORTANT: Only issue one <response> block at a time. You issued {count} and "
                "only the first was executed."
            )
    body = text[start + len("<response>") : end if end != -1 else len(text)].strip()
    complete = bool(re.search(r"<task_complete>\s*true\s*</task_complete>", body, re.IGNORECASE))
    sections = {name: _section(body, name) for name in _XML_KNOWN}
    for name in XML_SECTIONS:
        if sections[name] is None:
            warnings.append(f"Missing <{name}> section")
    for tag in dict.fromkeys(_top_level_tags(body)):
        if tag not in _XML_KNOWN:
            warnings.append(
                f"Unknown tag found: <{tag}>, expected analysis/plan/commands/task_complete"
            )
    for name in _XML_KNOWN:
        count = len(re.findall(rf"<{name}(?:\s|>|/>)", body))
        if count > 1:
            warnings.append(
                f"IMPORTANT: Only issue one <commands> block at a time. You issued {count} and "
                "only the first was executed."
                if name == "commands"
                else f"Multiple <{name}> sections found"
            )
    positions = []
    for name in XML_SECTIONS:
        m = re.search(rf"<{name}(?:\s|>|/>)", body)
        if m:
            positions.append((m.start(), name))
    actual = [n for _, n in sorted(positions)]
    expected = [n for n in XML_SECTIONS if n in actual]
    if len(actual) >= 2 and actual != expected:
        warnings.append(
            f"Sections appear in wrong order. Found: {' → '.join(actual)}, "
            f"expected: {' → '.join(expected)}"
        )
    analysis, plan = sections["analysis"] or "", sections["plan"] or ""
    commands_text = sections["commands"]
    if not commands_text:
        if commands_text is None and not complete:
            return ParseResult([], False, "Missing <commands> section", warnings, analysis, plan)
        if commands_text is not None and not complete:
            warnings.append(EMPTY_COMMANDS_WARNING)
        return ParseResult([], complete, "", warnings, analysis, plan)
    return ParseResult(_xml_commands(commands_text, warnings), complete, "", warnings,
                       analysis, plan)  # fmt: skip


def salvage_xml_response(text: str) -> str | None:
    """From a response cut at the output limit, the complete XML response it begins with, if
    any (as Harbor's XML parser salvages): the text up to the first ``</response>`` after
    ``</commands>``, when that parses without error and holds one ``<commands>`` block."""
    commands_end = text.find("</commands>")
    if commands_end == -1:
        return None
    response_end = text.find("</response>", commands_end)
    if response_end == -1:
        return None
    clean = text[: response_end + len("</response>")]
    result = parse_xml_response(clean)
    multiple = any("only issue one" in w.lower() and "block at a time" in w.lower()
                   for w in result.warnings)  # fmt: skip
    if result.error or multiple:
        return None
    return clean
