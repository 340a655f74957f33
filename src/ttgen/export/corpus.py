"""Terminal-Corpus rows: the schema of the released ``nvidia/Nemotron-Terminal-Corpus``.

The release (Harbor's trace-export schema) has exactly these fields, and strict loaders reject
any other key except the optional ``source``:

    conversations   list of {role, content}: starts with the user turn holding the Terminus 2
                    prompt (instruction + initial screen); assistant turns are
                    "<think>…</think>" + the JSON action
    agent           "terminus-2"
    model           the teacher, e.g. "deepseek-ai/DeepSeek-V3.2"
    model_provider  str
    date            str (ISO 8601: when the trial started, UTC written with "Z" as in the trial's
                    result.json and in Harbor's trace rows)
    task            the task id
    episode         "episode-N", N = number of assistant turns - 1 (the final episode's index)
    run_id          the rollout job
    trial_name      the trial
    enable_thinking bool (the assistant turns carry reasoning)
    source          ours: "dataset_adapters/math", "skill_based/medium/security", ...
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])

# The columns the released Terminal-Corpus and Harbor's trace rows share, in their order.
TRACE_FIELDS: list[tuple[str, pa.DataType]] = [
    ("conversations", pa.list_(MESSAGE_TYPE)),
    ("agent", pa.string()),
    ("model", pa.string()),
    ("model_provider", pa.string()),
    ("date", pa.string()),
    ("task", pa.string()),
    ("episode", pa.string()),
    ("run_id", pa.string()),
    ("trial_name", pa.string()),
]
CORPUS_SCHEMA = pa.schema(
    [*TRACE_FIELDS, ("enable_thinking", pa.bool_()), ("source", pa.string())]
)
CORPUS_FIELDS = tuple(CORPUS_SCHEMA.names)


def utc_z(date: str) -> str:
    """An ISO 8601 time in UTC as result.json writes it (and Harbor's rows carry it): "Z", not
    "+00:00". Other offsets and other text are left as they are."""
    return date[: -len("+00:00")] + "Z" if date.endswith("+00:00") else date


def corpus_row(record: dict[str, Any]) -> dict[str, Any]:
    """A curated record as a Terminal-Corpus row."""
    conversations = [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    n_assistant = sum(m["role"] == "assistant" for m in conversations)
    return {
        "conversations": conversations,
        "agent": record.get("agent") or "terminus-2",
        "model": record.get("model") or "",
        "model_provider": record.get("model_provider") or "",
        "date": utc_z(record.get("date") or ""),
        "task": record["task"],
        "episode": f"episode-{max(0, n_assistant - 1)}",
        "run_id": record.get("run_id") or "",
        "trial_name": record.get("trial_name") or record["id"],
        "enable_thinking": bool(record.get("enable_thinking")),
        "source": record.get("source") or "other",
    }
