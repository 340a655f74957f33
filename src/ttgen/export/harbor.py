"""Harbor-style rows: the rows `harbor traces export` (Harbor 0.24.0) makes from the same trials.

Terminal-Corpus rows (corpus.py) hold one trajectory each: the conversation as the model saw it
(messages.json). Harbor's exporter builds its rows from the trial's ATIF trajectory
(agent/trajectory.json) instead, one row per *episode*:

* every agent step is an episode (a parse error or an answer cut at the output limit included;
  steps marked ``is_copied_context`` are no episode); episode k's conversation is every step up
  to and including its agent step;
* user steps are user turns; system steps are user turns too (the first one gets the agent's
  ``tool_definitions`` as ``<tools>\\n{json, indent 2}\\n</tools>\\n\\n`` in front when the
  trajectory declares tools);
* an agent step is one assistant turn: ``<think>{reasoning_content}</think>``, the message (an
  orphaned ``</think>`` gets its ``<think>`` back) and one
  ``<tool_call>\\n{"name": …, "arguments": {…}}\\n</tool_call>`` per tool call, joined by "\\n";
* each agent step's observation (its results' contents joined by "\\n") is the next user turn,
  except after the episode's own agent step: the row ends with the assistant;
* ``continued_trajectory_ref`` chains continuation files; their episodes are numbered on;
* ``--episodes last`` keeps a trial's last episode only.

Columns, in Harbor's order: ``conversations, agent, model, model_provider, date, task, episode,
run_id, trial_name, [tool_definitions], result, [instruction], [verifier_output]``
(+ ``conversations_sharegpt`` with the ShareGPT option). ``agent`` and ``model`` come from the
trajectory (else result.json); ``model_provider`` is the model's provider, else
"unknown-provider"; ``date`` is result.json's ``started_at`` as written (UTC with ``Z``);
``run_id`` the job id; ``result`` the exception type of a trial that raised one, else the reward
as a float string ("1.0", "0.0"), else none (looked up first in the job's result.json stats
when they list the trial, as Harbor does). ``instruction`` (optional) is the first step's message,
stripped: for Terminus 2 the whole first prompt. ``verifier_output`` (optional) is
verifier/test-stdout.txt + test-stderr.txt.

ttgen's Terminus 2 declares no tools (its actions are JSON in the message, as Harbor's Terminus 2)
and keeps its summarization calls as plain message files, not ``trajectory.*.json`` sub-agent
trajectories: so its trials give neither a ``tool_definitions`` column nor sub-agent rows, as
with Harbor. (Rows of trajectories that do declare tools carry ``tool_definitions``; JSONL keeps
the column, the parquet schema does not.)

Metadata is read through ttgen's `TrialResult` model (its JSON form is the file's), so the rules
follow result.json as it is written. `trial_rows` takes one trial folder; `rows_for_trials` many;
`rows_for_records` takes curated records (decontamination and filters applied) and exports the
trials they came from.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ttgen.export.corpus import TRACE_FIELDS
from ttgen.formats.trial import TrialResult, read_trial_result

EPISODES = ("all", "last")
FILTERS = ("all", "success", "failure")
TRAJECTORY = "trajectory.json"
SHAREGPT_ROLES = {"user": "human", "assistant": "gpt", "system": "system"}
SHAREGPT_TYPE = pa.struct([("from", pa.string()), ("value", pa.string())])


class HarborRowError(ValueError):
    """A trial that gives no Harbor rows (no trajectory, media content, no result.json, ...)."""


@dataclass(frozen=True)
class HarborOptions:
    """The options of `harbor traces export` that shape rows (same defaults)."""

    episodes: str = "all"  # --episodes all|last
    instruction: bool = False  # --instruction-metadata
    verifier_output: bool = False  # --verifier-metadata
    sharegpt: bool = False  # --sharegpt: a conversations_sharegpt column
    filter: str = "all"  # --filter success|failure|all (success: result is a number > 0)
    embed_tools: bool = True  # tool definitions in front of the first system turn

    def check(self) -> None:
        if self.episodes not in EPISODES:
            raise ValueError(f"episodes must be all or last, got {self.episodes!r}")
        if self.filter not in FILTERS:
            raise ValueError(f"filter must be success, failure or all, got {self.filter!r}")


def harbor_schema(options: HarborOptions | None = None) -> pa.Schema:
    """The parquet schema of the rows (the optional columns as the options ask)."""
    o = options or HarborOptions()
    fields = [*TRACE_FIELDS, ("result", pa.string())]
    if o.instruction:
        fields.append(("instruction", pa.string()))
    if o.verifier_output:
        fields.append(("verifier_output", pa.string()))
    if o.sharegpt:
        fields.append(("conversations_sharegpt", pa.list_(SHAREGPT_TYPE)))
    return pa.schema(fields)


# -- metadata -----------------------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def run_metadata(result: TrialResult | dict[str, Any]) -> dict[str, Any]:
    """agent, model, model_provider, date, run_id, task and trial_name of a trial, by Harbor's
    rules (each field's first non-empty source, else Harbor's placeholder)."""
    raw = (
        result.model_dump(mode="json", by_alias=True) if isinstance(result, TrialResult) else result
    )
    config = _dict(raw.get("config"))
    agent_cfg: dict[str, Any] = {}
    if isinstance(config.get("agent"), dict):
        agent_cfg = config["agent"]
    elif isinstance(config.get("agents"), list) and config["agents"]:
        agent_cfg = _dict(config["agents"][0])
    agent_info = _dict(raw.get("agent_info"))
    model_info = _dict(agent_info.get("model_info"))
    agent = (
        agent_cfg.get("name")
        or agent_info.get("name")
        or config.get("agent_name")
        or raw.get("agent_name")
    )
    if not agent:
        raise HarborRowError("result.json names no agent")
    return {
        "agent": agent,
        "model": model_info.get("name")
        or agent_cfg.get("model_name")
        or agent_info.get("model_name")
        or config.get("engine")
        or "unknown-model",
        "model_provider": model_info.get("provider")
        or agent_cfg.get("provider")
        or agent_info.get("provider")
        or config.get("engine")
        or "unknown-provider",
        "date": raw.get("started_at") or raw.get("startedAt") or "",
        "run_id": config.get("job_id")
        or config.get("job_name")
        or raw.get("job_id")
        or raw.get("run_id")
        or raw.get("trial_name")
        or "unknown-run",
        "task": raw.get("task_name") or config.get("task_name") or "unknown-task",
        "trial_name": raw.get("trial_name") or config.get("trial_name") or "unknown-trial",
    }


def _reward_text(value: Any) -> Any:
    try:
        return str(float(value))
    except (TypeError, ValueError):
        return value


@dataclass
class JobCache:
    """Job-level result.json files read during one export (each at most once)."""

    files: dict[Path, Any] = field(default_factory=dict)

    def read(self, path: Path) -> Any:
        key = path.resolve()
        if key not in self.files:
            try:
                self.files[key] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self.files[key] = None
        return self.files[key]

    def job_stats(self, trial_dir: Path) -> dict[str, Any] | None:
        """The first result.json with stats above the trial folder (the job's)."""
        cur = trial_dir.parent
        for _ in range(6):
            candidate = cur / "result.json"
            if candidate.exists():
                data = self.read(candidate)
                if isinstance(data, dict) and "stats" in data:
                    return data
            if cur.parent == cur:
                break
            cur = cur.parent
        return None


def result_value(
    trial_dir: Path, result: TrialResult, trial_name: str, cache: JobCache | None = None
) -> str | None:
    """The `result` column: the job stats' exception or reward bucket naming the trial, else
    the trial's exception type, else its ``reward`` as a float string, else None."""
    job = (cache or JobCache()).job_stats(trial_dir)
    evals = _dict(_dict(job.get("stats")).get("evals")) if job else {}
    for block in evals.values():
        if not isinstance(block, dict):
            continue
        for name, trials in _dict(block.get("exception_stats")).items():
            if isinstance(trials, list) and trial_name in trials:
                return name
        rewards = _dict(_dict(block.get("reward_stats")).get("reward"))
        for value, trials in rewards.items():
            if isinstance(trials, list) and trial_name in trials:
                return str(_reward_text(value))
    info = result.exception_info
    if info is not None and info.exception_type:
        return str(info.exception_type)
    rewards = result.verifier_result.rewards if result.verifier_result else {}
    if rewards.get("reward") is not None:
        return str(_reward_text(rewards["reward"]))
    return None


def _is_success(value: str | None) -> bool:
    try:
        return value is not None and float(value) > 0.0
    except ValueError:
        return False


# -- conversations ------------------------------------------------------------------------------


def text_of(content: Any) -> str:
    """Harbor's text of a message or observation: a string as is, the first part's text of a
    content-part list, anything else as JSON."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        first = content[0]
        if isinstance(first, dict) and "text" in first:
            value = first.get("text")
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    try:
        return json.dumps(content, ensure_ascii=False)
    except TypeError:
        return str(content)


def _has_media(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(p, dict) and p.get("type") in ("image", "audio") for p in content
    )


def _check_text_only(trajectory: dict[str, Any], name: str) -> None:
    for step in trajectory.get("steps", []):
        results = _dict(step.get("observation")).get("results") or []
        if _has_media(step.get("message")) or any(
            _has_media(r.get("content")) for r in results if isinstance(r, dict)
        ):
            raise HarborRowError(f"{name} holds images or audio (Harbor exports text only)")


def assistant_content(step: dict[str, Any]) -> str:
    """An agent step as one assistant turn: think block, message, tool-call blocks."""
    parts = []
    reasoning = step.get("reasoning_content")
    if reasoning:
        parts.append(f"<think>{reasoning}</think>")
    message = step.get("message", "")
    if message:
        if isinstance(message, str) and "</think>" in message and "<think>" not in message:
            message = "<think>" + message
        parts.append(message)
    for call in step.get("tool_calls") or []:
        block = {"name": call.get("function_name"), "arguments": call.get("arguments", {})}
        parts.append(f"<tool_call>\n{json.dumps(block, ensure_ascii=False)}\n</tool_call>")
    return "\n".join(parts) if parts else ""


def _observation_text(step: dict[str, Any]) -> str | None:
    observation = step.get("observation")
    if not observation or not isinstance(observation, dict):
        return None
    texts = [
        text_of(r["content"])
        for r in observation.get("results", []) or []
        if isinstance(r, dict) and "content" in r
    ]
    return "\n".join(texts) if texts else None


def _episode_conversation(
    steps: list[dict[str, Any]], tools: Any, embed_tools: bool
) -> list[dict[str, Any]]:
    """The conversation of the episode whose agent step is the last of `steps`."""
    last_agent = max(i for i, s in enumerate(steps) if s.get("source") == "agent")
    out: list[dict[str, Any]] = []
    tools_added = False
    for i, step in enumerate(steps):
        source = step.get("source")
        message = step.get("message", "")
        if source == "system":
            content = message
            if embed_tools and not tools_added and tools:
                listing = json.dumps(tools, ensure_ascii=False, indent=2)
                content = f"<tools>\n{listing}\n</tools>\n\n{message}"
                tools_added = True
            out.append({"role": "user", "content": content})
        elif source == "user":
            out.append({"role": "user", "content": message})
        elif source == "agent":
            out.append({"role": "assistant", "content": assistant_content(step)})
            if i != last_agent:
                text = _observation_text(step)
                if text is not None:
                    out.append({"role": "user", "content": text})
    return out


def episode_rows(
    trajectory: dict[str, Any], meta: dict[str, Any], *, embed_tools: bool = True
) -> list[dict[str, Any]]:
    """One row per episode of an ATIF trajectory (episodes numbered from 0; `task`,
    `trial_name` and `result` are filled in by the caller)."""
    steps = trajectory.get("steps", [])
    agent = _dict(trajectory.get("agent"))
    tools = agent.get("tool_definitions")
    ends = [
        i
        for i, s in enumerate(steps)
        if s.get("source") == "agent" and not s.get("is_copied_context")
    ]
    rows = []
    for n, end in enumerate(ends):
        row: dict[str, Any] = {
            "conversations": _episode_conversation(steps[: end + 1], tools, embed_tools),
            "agent": agent.get("name") or meta["agent"],
            "model": agent.get("model_name") or meta["model"],
            "model_provider": meta["model_provider"],
            "date": meta["date"],
            "task": None,
            "episode": f"episode-{n}",
            "run_id": meta["run_id"],
            "trial_name": None,
        }
        if tools:
            row["tool_definitions"] = tools
        rows.append(row)
    return rows


# -- trials -------------------------------------------------------------------------------------


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _instruction(agent_dir: Path) -> str | None:
    """Harbor's instruction column: the first non-empty message of the first trajectory file
    (sub-agent summarization files left out), stripped."""
    paths = sorted(p for p in agent_dir.glob("trajectory*.json") if ".summarization" not in p.name)
    data = _load(paths[0]) if paths else None
    steps = data.get("steps") if isinstance(data, dict) else None
    for step in steps if isinstance(steps, list) else []:
        message = step.get("message") if isinstance(step, dict) else None
        if isinstance(message, str) and message.strip():
            return message.strip()
    return None


def _verifier_output(trial_dir: Path) -> str | None:
    parts = []
    for name in ("test-stdout.txt", "test-stderr.txt"):
        path = trial_dir / "verifier" / name
        try:
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
    return "".join(parts) if parts else None


def sharegpt(conversations: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The ShareGPT form of a conversation (roles human / gpt / system; others left out)."""
    return [
        {"from": SHAREGPT_ROLES[m["role"]], "value": text_of(m.get("content"))}
        for m in conversations
        if m.get("role") in SHAREGPT_ROLES
    ]


def trial_rows(
    trial_dir: Path,
    options: HarborOptions | None = None,
    *,
    result: TrialResult | None = None,
    cache: JobCache | None = None,
) -> list[dict[str, Any]]:
    """The rows of one trial folder, as `harbor traces export` writes them. [] when the
    success/failure filter leaves the trial out; HarborRowError when it gives no rows."""
    o = options or HarborOptions()
    o.check()
    trial_dir = Path(trial_dir)
    cache = cache or JobCache()
    if result is None:
        result = read_trial_result(trial_dir)
        if result is None:
            raise HarborRowError(f"{trial_dir}: no valid result.json")
    meta = run_metadata(result)
    if o.filter != "all":
        # (Harbor names the trial by its folder here, by its result.json elsewhere)
        ok = _is_success(result_value(trial_dir, result, trial_dir.name, cache))
        if ok != (o.filter == "success"):
            return []
    agent_dir = trial_dir / "agent"
    path = agent_dir / TRAJECTORY
    if not path.is_file():
        raise HarborRowError(f"{trial_dir}: no agent/{TRAJECTORY} (Harbor exports ATIF only)")
    rows: list[dict[str, Any]] = []
    seen: set[Path] = set()
    while path.resolve() not in seen:
        seen.add(path.resolve())
        trajectory = _load(path)
        if not isinstance(trajectory, dict):
            if path.name == TRAJECTORY:
                raise HarborRowError(f"{path}: not a JSON trajectory")
            break
        _check_text_only(trajectory, str(path))
        for row in episode_rows(trajectory, meta, embed_tools=o.embed_tools):
            row["episode"] = f"episode-{len(rows)}"
            rows.append(row)
        ref = trajectory.get("continued_trajectory_ref")
        if not ref or not (agent_dir / ref).exists():
            break
        path = agent_dir / ref
    if not rows:
        raise HarborRowError(f"{path}: no agent step")
    if o.episodes == "last":
        rows = rows[-1:]
    value = result_value(trial_dir, result, meta["trial_name"], cache)
    instruction = _instruction(agent_dir) if o.instruction else None
    verifier = _verifier_output(trial_dir) if o.verifier_output else None
    for row in rows:
        row["task"] = meta["task"]
        row["trial_name"] = meta["trial_name"]
        row["result"] = value
        if o.instruction:
            row["instruction"] = instruction
        if o.verifier_output:
            row["verifier_output"] = verifier
        if o.sharegpt:
            row["conversations_sharegpt"] = sharegpt(row["conversations"])
    return rows


def rows_for_trials(
    paths: Iterable[Path], options: HarborOptions | None = None, *, skip: bool = False
) -> list[dict[str, Any]]:
    """The rows of trial folders (or of the trials in job folders), trials in sorted order. Raw
    trials, no curation: what `harbor traces export --path` gives for them (in another order).
    A trial without rows raises HarborRowError, or with `skip` is left out, as Harbor does."""
    from ttgen.curate.trials import find_trials

    cache = JobCache()
    rows: list[dict[str, Any]] = []
    for trial in find_trials([Path(p) for p in paths]):
        try:
            rows.extend(trial_rows(trial, options, cache=cache))
        except HarborRowError:
            if not skip:
                raise
    return rows


# -- curated records ----------------------------------------------------------------------------


def trial_key(record: dict[str, Any]) -> str:
    return str(record.get("trial_dir") or f"{record.get('run_id')}/{record.get('trial_name')}")


def group_trials(records: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Consecutive records of one trial together (curation writes a trial's conversations, its
    summarized contexts then the final one, one after the other)."""
    group: list[dict[str, Any]] = []
    for rec in records:
        if group and trial_key(rec) != trial_key(group[-1]):
            yield group
            group = []
        group.append(rec)
    if group:
        yield group


def whole_trial(group: list[dict[str, Any]]) -> bool:
    """Whether curation kept every conversation of the trial. Harbor's episodes run over the
    whole trajectory, summarized contexts included: a trial one of whose conversations was
    dropped (a filter hit it) would bring the dropped text back, so it is not exported."""
    final = group[-1]
    n = final.get("n_contexts")
    if not isinstance(n, int):
        return True  # records from before contexts were counted: one conversation per trial
    return {r.get("context") for r in group} == set(range(n))


def rows_for_records(
    records: Iterable[dict[str, Any]],
    options: HarborOptions | None = None,
    problems: list[str] | None = None,
) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]] | None]]:
    """For each trial of the curated `records`: (its records, its Harbor rows), rows None when
    curation dropped part of the trial (see `whole_trial`). A trial that gives no rows is
    reported into `problems` ("id: why") and left out (raised when no list is given)."""
    cache = JobCache()
    for group in group_trials(records):
        if not whole_trial(group):
            yield group, None
            continue
        final = group[-1]
        try:
            if not final.get("trial_dir"):
                raise HarborRowError("the record names no trial folder")
            rows = trial_rows(Path(final["trial_dir"]), options, cache=cache)
        except HarborRowError as exc:
            if problems is None:
                raise
            problems.append(f"{final.get('id', '?')}: {exc}")
            continue
        yield group, rows
