"""The trajectory viewer's data: a sample of conversations, each assistant turn split into its
reasoning and the parsed Terminus 2 action with the observation after it, cut to fit (see
figures.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ttgen.report.common import ReportOptions, clip


def _split_think(text: str) -> tuple[str | None, str]:
    stripped = text.lstrip()
    if not stripped.startswith("<think>"):
        return None, text
    body = stripped[len("<think>") :]
    end = body.find("</think>")
    if end == -1:
        return body, ""
    return body[:end].strip("\n"), body[end + len("</think>") :]


def parse_assistant(text: str) -> dict[str, Any]:
    """An assistant message: reasoning and the Terminus 2 action (JSON or XML), or plain text."""
    from ttgen.agents.terminus2.parser import parse_json_response, parse_xml_response

    think, rest = _split_think(text)
    body = rest.strip()
    out: dict[str, Any] = {"think": think}
    result = None
    fmt = "text"
    if "<response>" in body:
        fmt, result = "xml", parse_xml_response(body)
    elif "{" in body:
        fmt, result = "json", parse_json_response(body)
    if result is not None and not result.error:
        out.update(
            format=fmt,
            analysis=result.analysis,
            plan=result.plan,
            commands=[
                {"keystrokes": c.keystrokes, "duration": c.duration} for c in result.commands
            ],
            task_complete=result.task_complete,
            warnings=[w[:300] for w in result.warnings[:5]],
        )
        return out
    out.update(format="text", text=body)
    looks_like_action = body.startswith("{") or "<response>" in body or '"commands"' in body
    if result is not None and looks_like_action:
        out["error"] = result.error[:300]
    return out


def _clip_turn(turn: dict[str, Any], limit: int) -> int:
    cut = 0
    a = turn["assistant"]
    for k in ("think", "analysis", "plan", "text"):
        if isinstance(a.get(k), str):
            a[k], c = clip(a[k], limit)
            cut += c
    for cmd in a.get("commands") or []:
        cmd["keystrokes"], c = clip(cmd["keystrokes"], limit)
        cut += c
    if isinstance(turn.get("observation"), str):
        turn["observation"], c = clip(turn["observation"], limit)
        cut += c
    return cut


def build_turns(messages: list[dict[str, str]]) -> dict[str, Any]:
    """system, prompt (the first user message) and one turn per assistant message with the next
    user message (the observation)."""
    system = prompt = None
    turns: list[dict[str, Any]] = []
    i = 0
    if messages and messages[0]["role"] == "system":
        system = messages[0]["content"]
        i = 1
    for m in messages[i:]:
        if m["role"] == "assistant":
            turns.append({"n": len(turns) + 1, "assistant": m["content"], "observation": None})
        elif not turns:
            prompt = m["content"] if prompt is None else f"{prompt}\n\n{m['content']}"
        elif turns[-1]["observation"] is None:
            turns[-1]["observation"] = m["content"]
        else:
            turns[-1]["observation"] += "\n\n" + m["content"]
    return {"system": system, "prompt": prompt, "turns": turns}


def build_trajectory(
    meta: dict[str, Any], messages: list[dict[str, str]], options: ReportOptions
) -> dict[str, Any]:
    """The viewer's form of one conversation, cut to fit ``options.trajectory_bytes``."""
    parts = build_turns(messages)
    n_turns = len(parts["turns"])
    limit, max_turns = options.max_chars, options.max_turns
    while True:
        keep = list(range(n_turns))
        if n_turns > max_turns:
            tail = max_turns // 4
            keep = list(range(max_turns - tail)) + list(range(n_turns - tail, n_turns))
        cut = 0
        turns = []
        for idx in keep:
            t = parts["turns"][idx]
            turn = {"n": t["n"], "assistant": parse_assistant(t["assistant"]),
                    "observation": t["observation"]}  # fmt: skip
            cut += _clip_turn(turn, limit)
            turns.append(turn)
        texts = {}
        for k in ("system", "prompt"):
            texts[k], c = clip(parts[k], limit) if parts[k] is not None else (None, 0)
            cut += c
        instruction, c = clip(str(meta.get("instruction") or ""), limit)
        traj = {
            **{k: v for k, v in meta.items() if k not in ("dir", "instruction")},
            "instruction": instruction,
            **texts,
            "n_turns": n_turns,
            "turns": turns,
            "omitted_turns": n_turns - len(turns),
            "chars_cut": cut + c,
        }
        size = len(json.dumps(traj, ensure_ascii=False))
        if size <= options.trajectory_bytes or (limit <= 250 and max_turns <= 4):
            return traj
        if limit > 250:
            limit = max(250, limit // 2)
        else:
            max_turns = max(4, max_turns // 2)


def _load_messages(path: Path) -> list[dict[str, str]]:
    """A trial's messages.json as the model saw it (contents as text; no merging or cutting)."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, list):
        raise ValueError("not a list of messages")
    out = []
    for m in raw:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            continue
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        out.append({"role": m["role"], "content": content if isinstance(content, str) else ""})
    return out


RECORD_META = ("id", "task", "subset", "domain", "difficulty", "source", "agent", "stand_in",
               "model", "outcome", "reward", "passed", "completed", "trial_name", "attempt",
               "n_tokens", "n_tokens_by", "context", "n_contexts", "instruction")  # fmt: skip


def collect_trajectories(
    records: list[tuple[str, int]], trials: list[dict[str, Any]], options: ReportOptions
) -> dict[str, Any]:
    """The viewer's trajectories: sampled kept records first, then sampled trials that are not
    among them, at most ``options.max_trajectories`` in all."""
    k = options.max_trajectories
    n_trials = min(len(trials), max(k // 4, k - len(records)))
    n_records = min(len(records), k - n_trials)
    items: list[dict[str, Any]] = []
    problems: list[str] = []
    shown_dirs: set[str] = set()
    for path, offset in records[:n_records]:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                rec = json.loads(f.readline())
            meta = {key: rec.get(key) for key in RECORD_META}
            meta["kind"] = "record"
            meta["stand_in"] = bool(rec.get("stand_in"))
            items.append(build_trajectory(meta, rec["messages"], options))
            if rec.get("trial_dir") and "#ctx" not in str(rec.get("id")):
                # the trial's final conversation (resolved: RUN may be given as a relative path)
                shown_dirs.add(str(Path(rec["trial_dir"]).resolve()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{path} at byte {offset}: {exc}")
    room = k - len(items)
    for t in trials:
        if room <= 0:
            break
        if str(Path(t["dir"]).resolve()) in shown_dirs:
            continue
        try:
            messages = _load_messages(Path(t["dir"]) / "agent" / "messages.json")
        except (OSError, ValueError) as exc:
            problems.append(f"{t['dir']}: {exc}")
            continue
        if not any(m["role"] == "assistant" for m in messages):
            continue
        items.append(build_trajectory(t, messages, options))
        room -= 1
    items.sort(key=lambda t: (t["kind"] != "record", str(t.get("task")), str(t.get("id"))))
    return {"items": items, "problems": problems}
