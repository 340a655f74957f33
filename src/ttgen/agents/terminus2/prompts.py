"""Terminus 2's prompt templates and the fixed messages of its loop, word for word.

Templates (in templates/):
  json-2025.txt  Harbor's terminus-json-plain.txt before 2025-12-26 ("Most bash commands should
                 end with a newline"): the wording the paper's Terminal-Corpus was generated with;
                 our default.
  json.txt       the same template after Harbor commit a36e3cc ("You must end every command with
                 a newline (\\n) or it will not execute.").
  xml.txt        terminus-xml-plain.txt (the XML action format).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

TEMPLATES = {"json-2025": "json-2025.txt", "json": "json.txt", "xml": "xml.txt"}
DEFAULT_TEMPLATE = "json-2025"
_PLACEHOLDER = re.compile(r"\{(instruction|terminal_state)\}")

COMPLETION_CONFIRMATION = (
    "Current terminal state:\n{terminal_output}\n\n"
    "Are you sure you want to mark the task as complete? This will trigger your solution to be "
    "graded and you won't be able to make any further corrections. If so, include "
    '"task_complete": true in your JSON response again.'
)
PARSE_ERROR_FEEDBACK = (
    "Previous response had parsing errors:\nERROR: {error}{warnings}\n\n"
    "Please fix these issues and provide a proper {response_type}."
)
# What the parse-error feedback asks for, per action format (Harbor's wording).
RESPONSE_TYPE = {"json": "JSON response", "json-2025": "JSON response", "xml": "response"}
WARNINGS_PREFIX = "Previous response had warnings:\nWARNINGS: {warnings}\n\n"
# Sent instead of an observation when a response was cut at the output limit (finish_reason
# "length") and nothing could be salvaged from it; nothing of it was executed.
OUTPUT_LENGTH_ERROR = (
    "ERROR!! NONE of the actions you just requested were performed because you exceeded "
    "{limit}. Your outputs must be less than {limit}. Re-issue this request, breaking it into "
    "chunks each of which is less than {limit}."
)
OUTPUT_LENGTH_WARNINGS = "\n\nParser warnings from your truncated response:\n{warnings}"


@cache
def template_text(name: str = DEFAULT_TEMPLATE) -> str:
    if name not in TEMPLATES:
        raise ValueError(f"unknown Terminus 2 template {name!r}; use one of {sorted(TEMPLATES)}")
    return (resources.files(__package__) / "templates" / TEMPLATES[name]).read_text("utf-8")


def render_prompt(instruction: str, terminal_state: str, template: str = DEFAULT_TEMPLATE) -> str:
    """The first user message: the template with the task and the initial screen filled in
    (in one pass, so braces or placeholder names inside the instruction stay as they are)."""
    values = {"instruction": instruction, "terminal_state": terminal_state}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template_text(template))


def parse_error_message(
    error: str, warning_text: str = "", template: str = DEFAULT_TEMPLATE
) -> str:
    warnings = f"\nWARNINGS: {warning_text}" if warning_text else ""
    return PARSE_ERROR_FEEDBACK.format(
        error=error, warnings=warnings, response_type=RESPONSE_TYPE[template]
    )


def completion_message(terminal_output: str) -> str:
    return COMPLETION_CONFIRMATION.format(terminal_output=terminal_output)


def output_length_message(max_tokens: int | None, warning_text: str = "") -> str:
    """Harbor's reply to a truncated response: the limit in tokens where it is known."""
    limit = f"{max_tokens} tokens" if max_tokens else "the maximum output length"
    text = OUTPUT_LENGTH_ERROR.format(limit=limit)
    if warning_text:
        text += OUTPUT_LENGTH_WARNINGS.format(warnings=warning_text)
    return text
