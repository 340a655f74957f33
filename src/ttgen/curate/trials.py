"""Trial folders → trajectory records with provenance (the first step of `ttgen curate`).

A rollout job folder holds one folder per trial (result.json, agent/messages.json, ...; see
ARCHITECTURE "Trials"). `find_trials` walks job folders (or single trials, or folders of jobs) in
a fixed order, and `read_trial` turns one trial into records:

* one record per conversation: ``agent/messages.json`` (the final context), plus one per earlier
  context kept by Terminus 2's summarization (``messages.ctx-N.json``, ids ``…#ctxN``); a trial
  without messages.json (a job that Harbor ran) gives its conversations from the ATIF
  ``agent/trajectory.json`` (see atif.py), and its outcome from Harbor's exception and verifier
  fields (`ttgen.formats.trial.harbor_outcome`);
* provenance from the task's ``[metadata]`` (kept in result.json since ttgen records it; else read
  from the task folder): subset (dataset_adapters / skill_based / seed_based / other), domain,
  difficulty and ``source`` in the release's layout (``dataset_adapters/math``,
  ``skill_based/medium/security``); the model, provider, job (run id), trial, attempt, date,
  reward, outcome, turns and completion (the teacher confirmed ``task_complete``);
* the instruction as the trial recorded it (result.json ``instruction``: what the agent was
  given), else the task folder's instruction.md, else (trials of earlier releases and of Harbor)
  what the prompt template holds between "Task Description:" and the terminal state;
* conversations are normalized for training: roles user/assistant (a leading system message is
  kept), consecutive messages of one role merged (a summarization handoff puts two user turns in
  a row), a trailing user turn (an observation no one answered) dropped.

A trial that cannot give a record is a `Drop` with a reason: ``infrastructure`` (an
infrastructure outcome: its reward is not real, so it never becomes data), ``unfinished`` (no
valid result.json), ``no_conversation`` (an agent that keeps no conversation, e.g. nop: neither
messages.json nor an ATIF trajectory.json) or ``unreadable`` (messages.json or trajectory.json
broken; the problem is named).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttgen.curate import atif
from ttgen.formats.trial import TrialResult, read_trial_result, task_metadata_of

# Where Terminus 2's prompt templates put the instruction (all three templates).
_INSTRUCTION_RE = re.compile(r"\nTask Description:\n(.*)\n\nCurrent terminal state:\n", re.S)
_CTX_RE = re.compile(r"^messages\.ctx-(\d+)\.json$")
# Rough size of a token for the estimate used when no tokenizer counts exactly (mixed English,
# code and JSON with a modern BPE vocabulary).
BYTES_PER_TOKEN = 3.6
# Subsets as in the release: task.toml [metadata] source → subset.
SUBSET_OF_SOURCE = {
    "adapter": "dataset_adapters",
    "skill_synth": "skill_based",
    "seed_synth": "seed_based",
}
# Agents that are no teacher: their conversations (if any) are labelled as a stand-in.
STAND_IN_AGENTS = frozenset({"oracle", "nop"})


@dataclass(frozen=True)
class Drop:
    """A trial (or one of its conversations) that gives no record, and why."""

    id: str
    reason: str
    detail: str = ""
    task: str | None = None
    outcome: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "reason": self.reason}
        if self.task is not None:
            out["task"] = self.task
        if self.outcome is not None:
            out["outcome"] = self.outcome
        if self.detail:
            out["detail"] = self.detail
        return out


def find_trials(paths: Iterable[Path]) -> Iterator[Path]:
    """Trial folders under `paths` (a trial, a job, or a folder of jobs), each path's trials in
    sorted order. A path that does not exist raises FileNotFoundError naming it."""
    seen: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        if not path.is_dir():
            raise NotADirectoryError(
                f"{path}: not a rollout folder (expected a job or trial folder)"
            )
        for trial in _walk(path, depth=0):
            key = trial.resolve()
            if key not in seen:
                seen.add(key)
                yield trial


def _walk(path: Path, depth: int) -> Iterator[Path]:
    if _is_trial(path):
        yield path
        return
    if depth >= 4:
        return
    try:
        children = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return
    for child in children:
        yield from _walk(child, depth + 1)


def _is_trial(path: Path) -> bool:
    # A trial folder: config.json with a trial_name (written first), or result.json.
    if (path / "result.json").is_file() and (path / "agent").is_dir():
        return True
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    try:
        return "trial_name" in json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def _no_conversation(agent: str) -> str:
    text = f"agent {agent} kept no conversation (no agent/messages.json or agent/trajectory.json)"
    if agent == "oracle":
        text += (
            " (the oracle records a conversation only when asked: `ttgen rollout --agent oracle "
            "--ak transcript=true` writes its reference solution as a stand-in conversation, "
            "labelled stand_in, as `ttgen run` does without a teacher)"
        )
    elif agent == "nop":
        text += " (the nop agent does nothing, so it has no conversation to train on)"
    return text


def looks_like_tasks(path: Path) -> int:
    """How many task folders (task.toml) lie in `path` (itself or up to two levels down): the
    common mistake of giving curate the tasks instead of a rollout job."""
    if (path / "task.toml").is_file():
        return 1
    n = 0
    for pattern in ("*/task.toml", "*/*/task.toml"):
        n += sum(1 for _ in path.glob(pattern))
    return n


def read_trial(trial_dir: Path) -> tuple[list[dict[str, Any]], list[Drop]]:
    """The records of one trial folder (see the module docstring) and what was dropped."""
    result = read_trial_result(trial_dir)
    if result is None:
        return [], [Drop(str(trial_dir), "unfinished", "no valid result.json")]
    run_id = result.config.job_id or trial_dir.parent.name
    base_id = f"{run_id}/{result.trial_name}"
    outcome = str(result.outcome)
    if result.is_infra:
        info = result.exception_info
        detail = f"{info.exception_type}: {info.exception_message}"[:300] if info else ""
        return [], [Drop(base_id, "infrastructure", detail, result.task_name, outcome)]
    agent_dir = trial_dir / "agent"
    meta = dict((result.agent_result.metadata if result.agent_result else None) or {})
    main = agent_dir / "messages.json"
    raws: list[tuple[str, str, Any]] = []  # (record id, file name, raw messages or error)
    if main.is_file():
        contexts = sorted(
            (int(m.group(1)), p)
            for p in agent_dir.glob("messages.ctx-*.json")
            if (m := _CTX_RE.match(p.name))
        )
        for n, path in [*contexts, (None, main)]:
            rid = base_id if n is None else f"{base_id}#ctx{n}"
            try:
                raws.append((rid, path.name, json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError) as exc:
                raws.append((rid, path.name, exc))
    elif files := atif.trajectory_files(agent_dir):
        # No messages.json (a job that Harbor ran): the conversation from the ATIF trajectory.
        try:
            datas = [atif.read_trajectory(f) for f in files]
        except atif.TrajectoryError as exc:
            return [], [Drop(base_id, "unreadable", str(exc), result.task_name, outcome)]
        contexts_ = [c for data in datas for c in atif.contexts_from_trajectory(data)]
        for n, messages_ in enumerate(contexts_, start=1):
            last = n == len(contexts_)
            raws.append((base_id if last else f"{base_id}#ctx{n}", "trajectory.json", messages_))
        if "task_complete" not in meta:
            meta["task_complete"] = atif.completed(datas[-1])
        meta.setdefault("ended", "task_complete" if meta["task_complete"] else None)
    else:
        return [], [
            Drop(base_id, "no_conversation", _no_conversation(result.agent_info.name),
                 result.task_name, outcome)
        ]  # fmt: skip
    conversations: list[tuple[str, list[dict[str, str]]]] = []
    drops: list[Drop] = []
    for rid, name, raw in raws:
        try:
            if isinstance(raw, Exception):
                raise raw
            messages = normalize_messages(raw)
        except (OSError, ValueError) as exc:
            drops.append(Drop(rid, "unreadable", f"{name}: {exc}", result.task_name, outcome))
            continue
        if not any(m["role"] == "assistant" for m in messages):
            drops.append(Drop(rid, "empty", "no assistant turn", result.task_name, outcome))
            continue
        conversations.append((rid, messages))
    if not conversations:
        return [], drops
    provenance = _provenance(result)
    instruction = _instruction(result, [m for _, m in conversations])
    info = result.agent_info.model_info
    records = []
    for idx, (rid, messages) in enumerate(conversations):
        final = idx == len(conversations) - 1
        n_turns = sum(m["role"] == "assistant" for m in messages)
        records.append({
            "id": rid,
            "task": result.task_name,
            **provenance,
            "agent": _agent_name(result.agent_info.name),
            "stand_in": result.agent_info.name in STAND_IN_AGENTS,
            "model": info.name if info else None,
            "model_provider": info.provider if info else None,
            "run_id": run_id,
            "trial_name": result.trial_name,
            "attempt": result.attempt,
            "date": result.started_at.isoformat() if result.started_at else None,
            "reward": result.reward,
            "outcome": outcome,
            "passed": result.reward is not None and result.reward >= 1,
            "completed": bool(meta.get("task_complete")) and final,
            "ended": meta.get("ended") if final else "summarized",
            "n_turns": n_turns,
            "context": idx,
            "n_contexts": len(conversations),
            "n_tokens": estimate_tokens(messages),
            "n_tokens_by": "estimate",
            "enable_thinking": any(
                m["role"] == "assistant" and m["content"].lstrip().startswith("<think>")
                for m in messages
            ),
            "cost_usd": result.agent_result.cost_usd if result.agent_result and final else None,
            **({"tamper_evidence": result.tamper_evidence} if result.tamper_evidence else {}),
            "task_path": result.config.task_path,
            "task_checksum": result.task_checksum,
            "trial_dir": str(trial_dir),
            # the two big fields last: readers that need only provenance stop early
            "instruction": instruction,
            "messages": messages,
        })  # fmt: skip
    return records, drops


def normalize_messages(raw: Any) -> list[dict[str, str]]:
    """A conversation as training rows need it (see the module docstring); ValueError when
    `raw` is not a list of {role, content} messages."""
    if not isinstance(raw, list):
        raise ValueError("not a list of messages")
    out: list[dict[str, str]] = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ValueError(f"message {i} has no role")
        role, content = m["role"], m.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str):
            # content parts (OpenAI's list form): keep the text parts
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            else:
                raise ValueError(f"message {i}: content is {type(content).__name__}")
        if role not in ("user", "assistant", "system"):
            raise ValueError(f"message {i}: unknown role {role!r}")
        if role == "system" and out:
            role = "user"  # a system notice mid-conversation reads as a user turn
        if out and out[-1]["role"] == role:
            out[-1] = {"role": role, "content": out[-1]["content"] + "\n\n" + content}
        else:
            out.append({"role": role, "content": content})
    while out and out[-1]["role"] != "assistant":
        out.pop()
    if out and out[0]["role"] == "assistant":
        raise ValueError("the conversation starts with an assistant turn")
    return out


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """A tokenizer-free estimate of a conversation's length in tokens (UTF-8 bytes / 3.6)."""
    size = sum(len(m["content"].encode("utf-8")) + 8 for m in messages)
    return round(size / BYTES_PER_TOKEN)


def _agent_name(name: str) -> str:
    return "terminus-2" if name in ("terminus2", "terminus-2", "terminus_2") else name


def _provenance(result: TrialResult) -> dict[str, Any]:
    meta = task_metadata_of(result)
    src = str(meta.get("source") or result.source or "")
    subset = str(meta.get("subset") or SUBSET_OF_SOURCE.get(src, "other"))
    if subset == "dataset_adapters":
        domain = meta.get("adapter") or meta.get("domain")
    else:
        domain = meta.get("domain") or meta.get("category")
    difficulty = meta.get("difficulty")
    domain = str(domain) if domain not in (None, "") else None
    difficulty = str(difficulty) if difficulty not in (None, "") else None
    parts = [subset]
    if subset == "skill_based" and difficulty:
        parts.append(difficulty)
    if domain:
        parts.append(domain)
    return {
        "subset": subset,
        "domain": domain,
        "difficulty": difficulty,
        "source": "/".join(parts),
    }


def _instruction(result: TrialResult, conversations: list[list[dict[str, str]]]) -> str:
    """The task's instruction: as the trial recorded it (the exact text the agent was given),
    else instruction.md when the task folder is still there, else (trials of earlier releases
    and of Harbor) the text the prompt template put between "Task Description:" and the
    terminal state."""
    if result.instruction:
        return result.instruction
    if result.config.task_path:
        try:
            return (Path(result.config.task_path) / "instruction.md").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            pass
    for messages in conversations:
        first = next((m["content"] for m in messages if m["role"] == "user"), "")
        if m := _INSTRUCTION_RE.search(first):
            return m.group(1)
    return ""
