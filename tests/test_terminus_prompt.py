"""Terminus 2 prompt templates (word for word) and the JSON response parser."""

from __future__ import annotations

import json

import pytest

from ttgen.agents.terminus2.parser import parse_json_response
from ttgen.agents.terminus2.prompts import (
    completion_message,
    parse_error_message,
    render_prompt,
    template_text,
)


def test_paper_template_is_the_default_and_differs_from_the_new_one_by_one_line():
    old, new = template_text("json-2025"), template_text("json")
    assert render_prompt("x", "y") == render_prompt("x", "y", "json-2025")
    assert old.startswith(
        "You are an AI assistant tasked with solving command-line tasks in a Linux environment."
    )
    diff = [(a, b) for a, b in zip(old.splitlines(), new.splitlines(), strict=True) if a != b]
    assert diff == [(
        "- Most bash commands should end with a newline (\\n) to cause them to execute",
        "- You must end every command with a newline (\\n) or it will not execute.",
    )]  # fmt: skip
    assert "  - C-c for Ctrl+C\n  - C-d for Ctrl+D\n" in old
    assert old.endswith(
        "Task Description:\n{instruction}\n\nCurrent terminal state:\n{terminal_state}\n"
    )
    # the example object in the template is valid JSON as the model sees it
    start = old.index("{\n")
    json.loads(old[start : old.index("\n}\n") + 2])


def test_render_fills_placeholders_once():
    text = render_prompt("echo {terminal_state} {x}", "Current Terminal Screen:\n$ ", "xml")
    assert text.endswith(
        "Task Description:\necho {terminal_state} {x}\n\n"
        "Current terminal state:\nCurrent Terminal Screen:\n$ \n"
    )
    assert '<keystrokes duration="0.1">ls -la\n</keystrokes>' in text


def test_fixed_loop_messages():
    assert completion_message("$ ls\n") == (
        "Current terminal state:\n$ ls\n\n\nAre you sure you want to mark the task as complete? "
        "This will trigger your solution to be graded and you won't be able to make any further "
        'corrections. If so, include "task_complete": true in your JSON response again.'
    )
    assert parse_error_message("Missing required fields: plan") == (
        "Previous response had parsing errors:\nERROR: Missing required fields: plan\n\n"
        "Please fix these issues and provide a proper JSON response."
    )


GOOD = '{"analysis": "a", "plan": "p", "commands": [{"keystrokes": "ls\\n", "duration": 0.1}]}'


def test_well_formed_response():
    r = parse_json_response(GOOD)
    assert not r.error and not r.warnings
    assert [(c.keystrokes, c.duration) for c in r.commands] == [("ls\n", 0.1)]
    assert (r.analysis, r.plan, r.task_complete) == ("a", "p", False)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("no json here", "No valid JSON found in response"),
        ('{"analysis": "a", "commands": []}', "Missing required fields: plan"),
        ('{"analysis": "a", "plan": "p", "commands": "ls"}', "Field 'commands' must be an array"),
        ('{"analysis": "a", "plan": "p", "commands": [{"duration": 1}]}',
         "Command 1 missing required 'keystrokes' field"),
        ('{"analysis": "a", "plan": "p", "commands": [{"keystrokes": 5}]}',
         "Command 1 'keystrokes' must be a string"),
        ('{"analysis": "a" "plan": "p", "commands": []}', "Invalid JSON: Expecting ',' delimiter"),
    ],
)  # fmt: skip
def test_errors(text, error):
    r = parse_json_response(text)
    assert r.error.startswith(error), r.error
    assert r.commands == []


def test_extra_text_and_defaults_give_warnings():
    text = "Sure! " + GOOD.replace(', "duration": 0.1', "") + "\nDone."
    r = parse_json_response(text)
    assert not r.error
    assert r.warnings == [
        "Extra text detected before JSON object",
        "Extra text detected after JSON object",
        "Command 1: Missing duration field, using default 1.0",
    ]
    assert r.commands[0].duration == 1.0
    assert r.warning_text.startswith("- Extra text detected before JSON object\n- ")


def test_missing_newline_between_commands_and_field_order_warn():
    text = ('{"plan": "p", "analysis": "a", "commands": [{"keystrokes": "cd /app", "duration": 1},'
            ' {"keystrokes": "ls\\n", "duration": 1, "wait": true}]}')  # fmt: skip
    r = parse_json_response(text)
    assert not r.error
    assert "Fields appear in wrong order. Found: plan → analysis → commands, " \
        "expected: analysis → plan → commands" in r.warnings  # fmt: skip
    assert any(w.startswith("Command 1 should end with newline") for w in r.warnings)
    assert "Command 2: Unknown fields: wait" in r.warnings


def test_task_complete_forms_and_bad_commands_when_complete():
    for value in ("true", '"true"', '"yes"', '"1"'):
        r = parse_json_response(
            f'{{"analysis": "a", "plan": "p", "commands": [], "task_complete": {value}}}'
        )
        assert r.task_complete, value
    r = parse_json_response(
        '{"analysis": "a", "plan": "p", "commands": [{"x": 1}], "task_complete": true}'
    )
    assert not r.error and r.task_complete
    assert "Command 1 missing required 'keystrokes' field" in r.warnings


def test_auto_fixes():
    r = parse_json_response(GOOD[:-2])  # lost the closing "]}"? only "}" can be fixed
    assert r.error  # an unclosed list is not repaired
    r = parse_json_response('{"analysis": "a", "plan": "p", "commands": []')
    assert not r.error
    assert r.warnings[0] == (
        "AUTO-CORRECTED: Fixed incomplete JSON by adding missing closing brace - "
        "please fix this in future responses"
    )


def test_braces_inside_strings_do_not_confuse_extraction():
    text = '{"analysis": "a {", "plan": "}", "commands": [{"keystrokes": "echo \\"}\\"\\n"}]}'
    r = parse_json_response(text)
    assert not r.error
    assert r.commands[0].keystrokes == 'echo "}"\n'


# -- XML ----------------------------------------------------------------------------------------

from ttgen.agents.terminus2.parser import EMPTY_COMMANDS_WARNING, parse_xml_response  # noqa: E402

XML_GOOD = """<response>
<analysis>Nothing yet.</analysis>
<plan>List and enter.</plan>
<commands>
<keystrokes duration="0.1">ls -la
</keystrokes>
<keystrokes duration="0.5">cat <<'EOF' > a && echo "$x" | grep '<b>'
EOF
</keystrokes>
</commands>
</response>"""


def test_xml_well_formed_keeps_keystrokes_raw():
    r = parse_xml_response(XML_GOOD)
    assert not r.error and not r.warnings
    assert [(c.keystrokes, c.duration) for c in r.commands] == [
        ("ls -la\n", 0.1),
        ("cat <<'EOF' > a && echo \"$x\" | grep '<b>'\nEOF\n", 0.5),
    ]
    assert (r.analysis, r.plan, r.task_complete) == ("Nothing yet.", "List and enter.", False)


def test_xml_errors_and_warnings():
    assert parse_xml_response("just text").error == "No <response> tag found"
    r = parse_xml_response("<response><analysis>a</analysis><plan>p</plan></response>")
    assert r.error == "Missing <commands> section" and "Missing <commands> section" in r.warnings
    r = parse_xml_response(
        "Here:\n<response><plan>p</plan><analysis>a</analysis><commands>"
        "<keystrokes duration=2 wait='1'>ls</keystrokes><keystrokes>&amp;&amp;\n</keystrokes>"
        "</commands><extra/></response>\nthanks"
    )
    assert not r.error
    assert r.warnings[:2] == [
        "Extra text detected before <response> tag", "Extra text detected after </response> tag"
    ]  # fmt: skip
    joined = "\n".join(r.warnings)
    for part in (
        "Unknown tag found: <extra>",
        "Sections appear in wrong order. Found: plan → analysis → commands",
        "Command 1: Attribute 'duration' value should be quoted: duration=\"2\"",
        "Command 1: Use double quotes for attribute 'wait'",
        "Command 1: Unknown attribute 'wait' - known attributes are: duration",
        "Command 2: Missing duration attribute, using default 1.0",
        "Command 1 should end with newline when followed by another command.",
        "Warning: &amp; is read verbatim and not converted to &.",
    ):
        assert part in joined, part
    assert r.commands[1].keystrokes == "&amp;&amp;\n"  # never unescaped


def test_xml_task_complete_and_empty_commands():
    base = "<response><analysis>a</analysis><plan>p</plan><commands></commands>{tc}</response>"
    assert parse_xml_response(base.format(tc="<task_complete>true</task_complete>")).task_complete
    for tc in ("<task_complete/>", "<task_complete></task_complete>",
               "<task_complete>false</task_complete>", ""):  # fmt: skip
        r = parse_xml_response(base.format(tc=tc))
        assert not r.task_complete and r.warnings == [EMPTY_COMMANDS_WARNING], tc


def test_parse_error_feedback_names_the_format():
    assert parse_error_message("x", template="xml").endswith("provide a proper response.")
    assert parse_error_message("x", "- w").endswith(
        "ERROR: x\nWARNINGS: - w\n\nPlease fix these issues and provide a proper JSON response."
    )
