"""Conversations from an ATIF trajectory (agent/trajectory.json), for trials without messages.json.

Harbor's Terminus 2 writes only the ATIF trajectory; ttgen's writes both, and for a run without
summarization the messages read here equal its messages.json turn for turn:

* a ``user`` step is a user turn; a ``system`` step is a system turn (mid-conversation it reads
  as a user turn, see `normalize_messages`), except Terminus 2's summarization marker, which
  closes a context (the next context starts again from the first user turn);
* an ``agent`` step is an assistant turn: its ``reasoning_content`` as ``<think>…</think>``
  before its message, in the same form as ttgen's messages.json; its observation results
  (joined by a newline) are the next user turn;
* the message is the model's raw response when the trajectory holds it (ttgen, or Harbor with
  ``raw_content``); Harbor's default keeps only "Analysis: …\\nPlan: …" plus tool calls, from
  which the Terminus 2 JSON response is rebuilt (analysis, plan, commands with keystrokes and
  duration, task_complete): the form the model was asked to answer in;
* a continuation file of Harbor's ``linear_history`` mode (``trajectory.cont-N.json``) is a
  context of its own, its copied steps (``is_copied_context``) included as the context the model
  saw.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ttgen.agents.terminus2.parser import parse_json_response, parse_xml_response
from ttgen.llm import with_reasoning

SUMMARIZATION_MARKER = "Performed context summarization"
_CONT_RE = re.compile(r"^trajectory\.cont-(\d+)\.json$")
_STRUCTURED_RE = re.compile(r"\A(?:Analysis: (?P<analysis>.*?))?\n?(?:Plan: (?P<plan>.*))?\Z", re.S)


class TrajectoryError(ValueError):
    pass


def trajectory_files(agent_dir: Path) -> list[Path]:
    """The trajectory files of a trial, in order: trajectory.json, then Harbor's continuation
    files (trajectory.cont-1.json, ...)."""
    main = agent_dir / "trajectory.json"
    if not main.is_file():
        return []
    conts = sorted(
        (int(m.group(1)), p)
        for p in agent_dir.glob("trajectory.cont-*.json")
        if (m := _CONT_RE.match(p.name))
    )
    return [main, *(p for _, p in conts)]


def read_trajectory(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TrajectoryError(f"{path.name}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise TrajectoryError(f"{path.name}: not an ATIF trajectory (no steps list)")
    return data


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # ATIF content parts
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return json.dumps(content, ensure_ascii=False)


def _is_response(message: str) -> bool:
    """The message is a Terminus 2 response as the model wrote it (JSON or XML form)."""
    stripped = message.lstrip()
    if stripped.startswith("{"):
        return not parse_json_response(message).error
    if "<response>" in message or "<commands>" in message:
        return not parse_xml_response(message).error
    return False


def _rebuilt_response(message: str, calls: list[dict[str, Any]]) -> str:
    """Harbor's structured agent step (Analysis/Plan text + tool calls) as the Terminus 2 JSON
    response it came from."""
    m = _STRUCTURED_RE.match(message)
    analysis = (m.group("analysis") or "") if m else message
    plan = (m.group("plan") or "") if m else ""
    commands = []
    complete = False
    for call in calls:
        name = call.get("function_name")
        args = call.get("arguments") or {}
        if name == "bash_command":
            commands.append(
                {"keystrokes": str(args.get("keystrokes", "")), "duration": args.get("duration", 1.0)}
            )
        elif name == "mark_task_complete":
            complete = True
    body: dict[str, Any] = {"analysis": analysis, "plan": plan, "commands": commands}
    if complete:
        body["task_complete"] = True
    return json.dumps(body, indent=2, ensure_ascii=False)


def assistant_text(step: dict[str, Any]) -> str:
    message = _text(step.get("message"))
    calls = [c for c in step.get("tool_calls") or [] if isinstance(c, dict)]
    if calls and not _is_response(message):
        message = _rebuilt_response(message, calls)
    reasoning = step.get("reasoning_content")
    return with_reasoning(reasoning if isinstance(reasoning, str) else None, message)


def signals_complete(step: dict[str, Any]) -> bool:
    """The agent step marked the task complete (a mark_task_complete call, or a raw response
    whose task_complete is true)."""
    for call in step.get("tool_calls") or []:
        if isinstance(call, dict) and call.get("function_name") == "mark_task_complete":
            return True
    message = _text(step.get("message"))
    if not _is_response(message):
        return False
    parse = parse_json_response if message.lstrip().startswith("{") else parse_xml_response
    return parse(message).task_complete


def contexts_from_trajectory(data: dict[str, Any]) -> list[list[dict[str, str]]]:
    """The raw message lists (one per context) of one ATIF trajectory (see the module doc)."""
    contexts: list[list[dict[str, str]]] = []
    current: list[dict[str, str]] = []
    first_user: dict[str, str] | None = None
    for step in data["steps"]:
        if not isinstance(step, dict):
            continue
        source = step.get("source")
        message = _text(step.get("message"))
        if source == "system" and message.startswith(SUMMARIZATION_MARKER):
            if current:
                contexts.append(current)
            current = [dict(first_user)] if first_user else []
            continue
        if source in ("user", "system"):
            turn = {"role": source, "content": message}
            if first_user is None and source == "user":
                first_user = turn
            current.append(turn)
        elif source == "agent":
            current.append({"role": "assistant", "content": assistant_text(step)})
            results = (step.get("observation") or {}).get("results") or []
            texts = [_text(r.get("content")) for r in results if isinstance(r, dict)]
            if texts:
                current.append({"role": "user", "content": "\n".join(texts)})
    if current:
        contexts.append(current)
    return contexts


def completed(data: dict[str, Any]) -> bool:
    """Terminus 2 ends a trajectory as complete when the model confirms completion twice in a
    row: the last two agent steps both marked the task complete."""
    agent_steps = [s for s in data["steps"] if isinstance(s, dict) and s.get("source") == "agent"]
    return len(agent_steps) >= 2 and all(signals_complete(s) for s in agent_steps[-2:])
