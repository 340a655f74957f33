"""Trial folders as a rollout job writes them, made directly (for curation tests and benchmarks).

`write_trial` writes ``config.json``, ``result.json`` (a real `TrialResult`) and the agent's
``messages.json`` (+ earlier contexts) the way a Terminus 2 trial leaves them, without running
one; tests that need real trials run real jobs instead.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ttgen.formats.trial import (
    AgentInfo,
    AgentResultModel,
    AgentSpec,
    ModelInfoModel,
    Outcome,
    TrialConfig,
    TrialResult,
    VerifierResult,
    write_json_atomic,
)


def terminus_turn(keystrokes: str, *, complete: bool = False, think: str | None = None) -> str:
    """An assistant message as Terminus 2 keeps it: <think> reasoning + the JSON action."""
    action = {
        "analysis": "Looking at the terminal.",
        "plan": "Run the next command.",
        "commands": [{"keystrokes": keystrokes, "duration": 0.1}] if keystrokes else [],
        "task_complete": complete,
    }
    body = json.dumps(action, indent=2)
    return f"<think>{think}</think>\n\n{body}" if think else body


def conversation(instruction: str, turns: list[str], *, observation: str = "$ ") -> list[dict]:
    """user prompt, then (assistant turn, user observation) pairs ending with the last turn."""
    prompt = (
        "You are an AI assistant tasked with solving command-line tasks in a Linux environment."
        f"\n\nTask Description:\n{instruction}\n\nCurrent terminal state:\nroot@box:/app# \n"
    )
    msgs: list[dict[str, str]] = [{"role": "user", "content": prompt}]
    for i, t in enumerate(turns):
        msgs.append({"role": "assistant", "content": t})
        if i < len(turns) - 1:
            msgs.append({"role": "user", "content": f"New Terminal Output:\n{observation}"})
    return msgs


def write_trial(
    job_dir: Path,
    trial_name: str,
    *,
    task: str,
    messages: list[dict[str, str]] | None,
    outcome: Outcome = Outcome.PASSED,
    reward: float | None = 1.0,
    task_metadata: dict[str, Any] | None = None,
    task_path: str = "",
    model: str = "deepseek-ai/DeepSeek-V3.2",
    provider: str | None = "hosted_vllm",
    agent: str = "terminus-2",
    task_complete: bool = True,
    contexts: list[list[dict[str, str]]] | None = None,
    job_id: str = "job1",
    attempt: int = 0,
    exception: tuple[str, str] | None = None,
) -> Path:
    """Write one trial folder under `job_dir` (see the module docstring)."""
    d = job_dir / trial_name
    (d / "agent").mkdir(parents=True, exist_ok=True)
    config = TrialConfig(
        task_path=task_path,
        task_name=task,
        trial_name=trial_name,
        attempt=attempt,
        job_id=job_id,
        agent=AgentSpec(name=agent),
    )
    write_json_atomic(d / "config.json", config.model_dump_json(indent=2), fsync=False)
    start = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    n_turns = sum(m["role"] == "assistant" for m in messages or [])
    result = TrialResult(
        id=str(uuid.uuid4()),
        task_name=task,
        trial_name=trial_name,
        trial_uri=d.resolve().as_uri(),
        config=config,
        agent_info=AgentInfo(
            name=agent,
            model_info=ModelInfoModel(name=model, provider=provider) if model else None,
        ),
        agent_result=AgentResultModel(
            n_input_tokens=1000 * n_turns,
            n_output_tokens=200 * n_turns,
            cost_usd=0.001 * n_turns,
            metadata={
                "n_episodes": n_turns,
                "task_complete": task_complete,
                "ended": "task_complete" if task_complete else "max_turns",
            },
        ),
        verifier_result=VerifierResult(rewards={"reward": reward}) if reward is not None else None,
        started_at=start,
        finished_at=start + timedelta(seconds=30),
        outcome=outcome,
        reward=reward,
        attempt=attempt,
        task_metadata=task_metadata or {},
    )
    if exception is not None:
        from ttgen.formats.trial import ExceptionInfo

        result.exception_info = ExceptionInfo(
            exception_type=exception[0], exception_message=exception[1]
        )
    if messages is not None:
        (d / "agent" / "messages.json").write_text(json.dumps(messages), encoding="utf-8")
    for i, ctx in enumerate(contexts or [], 1):
        (d / "agent" / f"messages.ctx-{i}.json").write_text(json.dumps(ctx), encoding="utf-8")
    write_json_atomic(d / "result.json", result.model_dump_json(indent=2), fsync=False)
    return d
