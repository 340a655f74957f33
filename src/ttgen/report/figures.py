"""Everything the report shows, gathered into one JSON-able dict.

The input is one of (``detect_kind``):

* ``run``: a pipeline run folder (``run.json`` of kind ``ttgen-run``, or at least one of the stage
  folders ``tasks/``, ``validation/``, ``rollouts/``, ``curated/``, ``export/``);
* ``rollouts``: a rollout job folder (trial folders);
* ``curated``: a curated DATA folder (``records.jsonl``, ``dropped.jsonl``, ``curate.json``);
* ``validation``: a validate job folder (``validation.jsonl``).

Sections (each None when its stage is missing; ``missing`` says which and why):

* ``funnel``: generated tasks → valid tasks → rolled-out trials → kept records, each step with its
  count, unit, ``drops`` and ``why``: lines saying where the count comes from and why things left
  (tasks per pipeline source and why a source made none; verdicts kept and dropped with the
  validator's reasons; kept tasks not rolled out and why, from run.json's ``left_out`` or the
  task folders; infrastructure outcomes; curation drops with an example; the stand-in share);
* ``tasks`` (every task of the run: the run's tasks/ and the task folders of a ``tasks:`` source
  that the validation stage lists; by pipeline source, subset, domain and difficulty: a task
  without a difficulty is no bucket, it is counted in ``no_difficulty`` with why, e.g.
  "n/a (adapter)"), ``validation`` (verdicts),
  ``rollouts`` (outcomes by type with infrastructure outcomes apart, pass rates by domain and by
  agent, cost and tokens), ``kept`` (``ttgen stats`` of the curated records, plus what of it
  comes from a stand-in agent), ``export`` (rows per exported file);
* ``trajectories``: a deterministic sample (smallest blake2b of the id) of at most
  ``max_trajectories`` conversations, kept records first, then rollout trials that are not among
  them; every assistant turn split into reasoning (``<think>``) and the parsed Terminus 2 action
  (JSON or XML: analysis, plan, commands with keystrokes and duration, task_complete), followed by
  the next user message (the terminal output as the model saw it). Long texts are cut (head and
  tail kept, a note in the middle) and long trajectories lose middle turns until each one fits
  ``trajectory_bytes``, so a report of a 100k-trajectory run stays small.

Stand-in agents (oracle, nop: no teacher) are counted and flagged wherever they appear.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import tomllib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ttgen import __version__
from ttgen.curate.data_stats import (
    TOKEN_BIN,
    TOKEN_BINS,
    TURN_BIN,
    TURN_BINS,
    compute_stats,
    histogram,
    no_difficulty,
)
from ttgen.curate.trials import STAND_IN_AGENTS, _is_trial, _provenance, find_trials
from ttgen.formats.trial import INFRA_OUTCOMES, Outcome, now, read_trial_result

STAGES = ("sources", "validation", "rollouts", "curation", "export", "train", "eval")
STAGE_DIRS = {
    "sources": "tasks",
    "validation": "validation",
    "rollouts": "rollouts",
    "curation": "curated",
    "export": "export",
    "train": "train",
    "eval": "eval",
}
# Points of the loss curve the page draws at most (evenly thinned, first and last kept).
MAX_CURVE_POINTS = 600
MODEL_OUTCOMES = tuple(o.value for o in Outcome if o not in INFRA_OUTCOMES)
INFRA_OUTCOME_NAMES = tuple(o.value for o in Outcome if o in INFRA_OUTCOMES)
# Curation drop reasons that the funnel shows at the rollout step (a trial that never gave data).
TRIAL_DROPS = ("infrastructure", "unfinished")


class ReportError(Exception):
    """The input is not something a report can be made of."""


@dataclass
class ReportOptions:
    max_trajectories: int = 200
    max_chars: int = 4000  # per text field of a turn (reasoning, analysis, output, ...)
    max_turns: int = 60  # per trajectory (first and last turns kept)
    trajectory_bytes: int = 64_000  # JSON size one trajectory may take


# -- input ----------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def detect_kind(path: Path) -> str:
    """run | curated | validation | rollouts (see the module docstring); ReportError otherwise."""
    if not path.exists():
        raise ReportError(f"{path}: no such folder")
    if not path.is_dir():
        raise ReportError(f"{path}: not a folder (expected a run, rollout job or curated folder)")
    manifest = _read_json(path / "run.json")
    if isinstance(manifest, dict) and manifest.get("kind") == "ttgen-run":
        return "run"
    if (path / "records.jsonl").is_file() or (path / "curate.json").is_file():
        return "curated"
    if (path / "validation.jsonl").is_file():
        return "validation"
    job = _read_json(path / "config.json")
    if isinstance(job, dict) and isinstance(job.get("identity"), dict):
        return "rollouts"
    if any((path / d).is_dir() for d in STAGE_DIRS.values()) and not _is_trial(path):
        return "run"
    if next(iter(find_trials([path])), None) is not None:
        return "rollouts"
    raise ReportError(
        f"{path}: not a run folder (run.json), a rollout job folder (trial folders) or a curated "
        "folder (records.jsonl)"
    )


def _stage_path(run: Path, manifest: dict[str, Any], stage: str) -> Path:
    default = run / STAGE_DIRS[stage]
    if default.exists():
        return default
    info = (manifest.get("stages") or {}).get(stage) or {}
    outputs = info.get("outputs") if isinstance(info, dict) else None
    for rel in (outputs or {}).values():
        if not isinstance(rel, str) or not rel:
            continue
        p = run / rel
        if p.is_dir():
            return p
        if p.is_file() and p.parent != run:
            return p.parent
    return default


# -- sampling and text --------------------------------------------------------------------------


def _key(ident: str) -> int:
    return int.from_bytes(hashlib.blake2b(ident.encode("utf-8"), digest_size=8).digest(), "big")


class _Sample:
    """The k items with the smallest keys (deterministic, independent of input order)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self._heap: list[tuple[int, int, Any]] = []
        self._tie = itertools.count()

    def offer(self, key: int, item: Any) -> None:
        if self.k <= 0:
            return
        entry = (-key, next(self._tie), item)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, entry)
        elif -self._heap[0][0] > key:
            heapq.heapreplace(self._heap, entry)

    def items(self) -> list[Any]:
        return [item for _, _, item in sorted(self._heap, key=lambda e: (-e[0], e[1]))]


def clip(text: str, limit: int) -> tuple[str, int]:
    """`text` cut to about `limit` characters (head and tail kept, a note in the middle) and the
    number of characters cut."""
    if len(text) <= limit:
        return text, 0
    head = limit * 2 // 3
    tail = limit - head
    cut = len(text) - head - tail
    note = f"\n[… {cut:,} characters cut by the report …]\n"
    return text[:head] + note + (text[-tail:] if tail else ""), cut


def _top(counter: Counter[str], n: int) -> list[list[Any]]:
    return [[k, v] for k, v in counter.most_common(n)]


# -- tasks ------------------------------------------------------------------------------------------


def _task_provenance(meta: dict[str, Any]) -> dict[str, Any]:
    # The same derivation as curation's (subset, domain, difficulty, source) from [metadata].
    fake = SimpleNamespace(task_metadata=meta, source=None, config=SimpleNamespace(task_path=""))
    return _provenance(fake)  # type: ignore[arg-type]


def _task_dirs(root: Path) -> list[Path]:
    def children(p: Path) -> list[Path]:
        try:
            return sorted(c for c in p.iterdir() if c.is_dir() and not c.name.startswith("."))
        except OSError:
            return []

    out = []
    for d in children(root):
        if (d / "task.toml").is_file():
            out.append(d)
        else:
            out += [dd for dd in children(d) if (dd / "task.toml").is_file()]
    return out


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (OSError, ValueError):
        return False


def _listed_tasks(run: Path, validation: Path | None) -> list[Path]:
    """Task folders named by the validation stage (kept.txt, validation.jsonl): every task of
    every source, those of a `tasks:` source (bundled tasks, outside the run folder) included."""
    if validation is None:
        return []
    paths: list[str] = []
    kept = validation / "kept.txt"
    if kept.is_file():
        paths += [x.strip() for x in kept.read_text(encoding="utf-8").splitlines() if x.strip()]
    for v in _json_objects(validation / "validation.jsonl"):
        if isinstance(v.get("path"), str):
            paths.append(v["path"])
    out: dict[str, Path] = {}
    for p in paths:
        path = Path(p) if Path(p).is_absolute() else run / p
        if (path / "task.toml").is_file():
            out.setdefault(str(path.resolve()), path)
    return list(out.values())


def _json_objects(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSONL file, skipping lines that are not one (a report shows what it
    can read); nothing when the file is missing."""
    if not path.is_file():
        return
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                yield obj


def _root_tasks(manifest: dict[str, Any]) -> list[Path]:
    """Task folders of the `tasks:` sources as run.json's sources stage recorded them
    (`counts.task_roots`), so they count even when validation never ran."""
    from ttgen.task import find_tasks

    stage = (manifest.get("stages") or {}).get("sources") or {}
    roots = (stage.get("counts") or {}).get("task_roots") or {}
    found: list[Path] = []
    for root in roots.values() if isinstance(roots, dict) else []:
        try:
            found += find_tasks([Path(str(root))])
        except Exception:  # a root since moved or removed: the validation lists still count
            continue
    return found


def _tasks_source_name(path: Path, manifest: dict[str, Any]) -> str:
    """The pipeline source (its folder name, as run.json's by_source says) of a task folder
    outside the run's tasks/: the `tasks:` source whose path ends the task's parent folders."""
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    sources = [s for s in config.get("sources") or [] if isinstance(s, dict) and s.get("tasks")]
    names = [str(s.get("name") or "tasks") for s in sources]
    if len(names) == 1:
        return names[0]
    parents = path.resolve().parts
    for s, name in zip(sources, names, strict=True):
        want = tuple(x for x in Path(str(s["tasks"])).parts if x not in (".", "..", "/"))
        for end in (len(parents) - 1, len(parents)):
            if want and parents[:end][-len(want) :] == want:
                return name
    return "outside the run folder"


def collect_tasks(
    root: Path, extra: list[Path] | None = None, manifest: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Subset, domain, difficulty and pipeline source of the task folders under `root` (the run's
    tasks/<source>/<task>) and of `extra` task folders (outside `root`: a `tasks:` source)."""
    by = {k: Counter() for k in ("subset", "domain", "difficulty", "source", "origin")}
    missing_difficulty: Counter[str] = Counter()
    unreadable = 0
    dirs = [(d, d.parent.name if d.parent != root else root.name) for d in _task_dirs(root)]
    # a run folder copied or moved still lists its tasks where they were: the same task
    inside = {(d.parent.name, d.name) for d, _ in dirs}
    outside = [
        p for p in extra or [] if not _inside(p, root) and (p.parent.name, p.name) not in inside
    ]
    dirs += [(p, _tasks_source_name(p, manifest or {})) for p in outside]
    for d, origin in dirs:
        try:
            data = tomllib.loads((d / "task.toml").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            unreadable += 1
            data = {}
        meta = data.get("metadata")
        prov = _task_provenance(meta if isinstance(meta, dict) else {})
        for k in ("subset", "domain", "source"):
            by[k][prov[k] or "-"] += 1
        by["origin"][origin] += 1
        if prov["difficulty"]:
            by["difficulty"][prov["difficulty"]] += 1
        else:
            missing_difficulty[no_difficulty(prov["subset"])] += 1
    return {
        "path": str(root),
        "count": len(dirs),
        "in_run_folder": len(dirs) - len(outside),
        "outside_run_folder": len(outside),
        "outside_by_origin": dict(Counter(o for _, o in dirs[len(dirs) - len(outside) :])),
        "unreadable": unreadable,
        **{f"by_{k}": dict(v.most_common()) for k, v in by.items()},
        "no_difficulty": dict(missing_difficulty.most_common()),
    }


# -- validation -----------------------------------------------------------------------------------


def collect_validation(folder: Path) -> dict[str, Any]:
    from ttgen.rollout.validate import GOOD_VERDICTS, VERDICTS

    path = folder / "validation.jsonl"
    verdicts: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = {}
    problems: list[str] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                v = json.loads(line)
                verdict = str(v["verdict"])
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(f"{path}:{n}: {exc}")
                continue
            verdicts[verdict] += 1
            for r in v.get("reasons") or []:
                reasons.setdefault(verdict, Counter())[str(r)[:200]] += 1
    order = [v for v in VERDICTS if v in verdicts] + sorted(set(verdicts) - set(VERDICTS))
    return {
        "path": str(folder),
        "tasks": sum(verdicts.values()),
        "verdicts": {v: verdicts[v] for v in order},
        "good": sum(verdicts[v] for v in GOOD_VERDICTS),
        "good_verdicts": list(GOOD_VERDICTS),
        "reasons": {v: _top(c, 5) for v, c in reasons.items()},
        "problems": problems[:50],
    }


# -- rollouts -------------------------------------------------------------------------------------


def collect_rollouts(
    folder: Path, sample: _Sample, task_paths: set[str] | None = None
) -> dict[str, Any]:
    """Outcomes, pass rates by domain and agent, cost of a rollout job's trials; trials with a
    conversation are offered to `sample`; the trials' task folders are added to `task_paths`."""
    outcomes: Counter[str] = Counter()
    stand_in_outcomes: Counter[str] = Counter()
    infra_reasons: Counter[str] = Counter()
    domains: dict[tuple[bool, str, str], dict[str, Any]] = {}
    agents: dict[str, dict[str, Any]] = {}
    tasks: set[str] = set()
    trials = unfinished = 0
    cost = 0.0
    n_cost = tok_in = tok_out = tok_cache = with_conversation = 0
    for trial_dir in find_trials([folder]):
        trials += 1
        r = read_trial_result(trial_dir)
        if r is None:
            unfinished += 1
            continue
        outcome = r.outcome.value
        agent = r.agent_info.name
        stand_in = agent in STAND_IN_AGENTS
        outcomes[outcome] += 1
        if stand_in:
            stand_in_outcomes[outcome] += 1
        tasks.add(r.task_name)
        if task_paths is not None and r.config.task_path:
            task_paths.add(str(Path(r.config.task_path).resolve()))
        prov = _provenance(r)
        scored = not r.is_infra and r.outcome != Outcome.UNVERIFIED
        passed = scored and r.reward is not None and r.reward >= 1
        dkey = (stand_in, prov["subset"], prov["domain"] or "-")
        row = domains.setdefault(dkey, {
            "subset": prov["subset"], "domain": prov["domain"] or "-", "stand_in": stand_in,
            "agents": Counter(), "trials": 0, "infra": 0, "scored": 0, "passed": 0,
            "unverified": 0,
        })  # fmt: skip
        arow = agents.setdefault(agent, {
            "agent": agent, "stand_in": stand_in, "trials": 0, "infra": 0, "scored": 0,
            "passed": 0, "unverified": 0, "models": Counter(),
        })  # fmt: skip
        model = r.agent_info.model_info.name if r.agent_info.model_info else None
        if model:
            arow["models"][model] += 1
        row["agents"][agent] += 1
        for rw in (row, arow):
            rw["trials"] += 1
            rw["infra"] += r.is_infra
            rw["scored"] += scored
            rw["passed"] += passed
            rw["unverified"] += r.outcome == Outcome.UNVERIFIED
        if r.is_infra:
            info = r.exception_info
            infra_reasons[f"{outcome}: {info.exception_type if info else '-'}"] += 1
        ar = r.agent_result
        if ar is not None:
            if ar.cost_usd is not None:
                cost += ar.cost_usd
                n_cost += 1
            tok_in += ar.n_input_tokens or 0
            tok_out += ar.n_output_tokens or 0
            tok_cache += ar.n_cache_tokens or 0
        if (trial_dir / "agent" / "messages.json").is_file():
            with_conversation += 1
            run_id = r.config.job_id or trial_dir.parent.name
            ident = f"{run_id}/{r.trial_name}"
            info = r.exception_info
            meta = (ar.metadata if ar else None) or {}
            sample.offer(_key(ident), {
                "id": ident, "kind": "trial", "dir": str(trial_dir), "task": r.task_name,
                **prov, "agent": agent, "stand_in": stand_in, "model": model,
                "outcome": outcome, "reward": r.reward, "passed": passed,
                "completed": bool(meta.get("task_complete")), "trial_name": r.trial_name,
                "attempt": r.attempt,
                "exception": f"{info.exception_type}: {info.exception_message}"[:300]
                if info else None,
            })  # fmt: skip

    def rate(row: dict[str, Any]) -> dict[str, Any]:
        row["pass_rate"] = round(row["passed"] / row["scored"], 4) if row["scored"] else None
        return row

    by_domain = []
    for _, row in sorted(domains.items()):
        row["agents"] = sorted(row["agents"])
        by_domain.append(rate(row))
    by_agent = []
    for _, row in sorted(agents.items()):
        row["models"] = dict(row["models"].most_common())
        by_agent.append(rate(row))
    model_total = sum(outcomes[o] for o in MODEL_OUTCOMES)
    infra_total = sum(outcomes[o] for o in INFRA_OUTCOME_NAMES)
    scored = sum(r["scored"] for r in by_domain)
    passed = sum(r["passed"] for r in by_domain)
    t_scored = sum(r["scored"] for r in by_domain if not r["stand_in"])
    t_passed = sum(r["passed"] for r in by_domain if not r["stand_in"])
    known = [*MODEL_OUTCOMES, *INFRA_OUTCOME_NAMES]
    table = [
        {"outcome": o, "infra": o in INFRA_OUTCOME_NAMES, "trials": outcomes[o],
         "stand_in": stand_in_outcomes[o]}
        for o in known if outcomes[o]
    ]  # fmt: skip
    if unfinished:
        table.append({"outcome": "unfinished", "infra": True, "trials": unfinished, "stand_in": 0})
    job = _read_json(folder / "result.json")
    job_stats = job.get("stats") if isinstance(job, dict) else None
    return {
        "path": str(folder),
        "trials": trials,
        "finished": trials - unfinished,
        "unfinished": unfinished,
        "model_outcome_trials": model_total,
        "infra_trials": infra_total,
        "tasks": len(tasks),
        "with_conversation": with_conversation,
        "outcomes": dict(outcomes),
        "outcome_table": table,
        "infra_reasons": _top(infra_reasons, 10),
        "scored": scored,
        "passed": passed,
        "pass_rate": round(passed / scored, 4) if scored else None,
        # the same without stand-in agents (oracle, nop): what the teacher models scored
        "teacher_scored": t_scored,
        "teacher_passed": t_passed,
        "teacher_pass_rate": round(t_passed / t_scored, 4) if t_scored else None,
        "by_domain": by_domain,
        "by_agent": by_agent,
        "stand_in_trials": sum(stand_in_outcomes.values()),
        "stand_in_model_outcome_trials": sum(stand_in_outcomes[o] for o in MODEL_OUTCOMES),
        "stand_in_agents": sorted({a for a, row in agents.items() if row["stand_in"]}),
        "cost": {
            "cost_usd": round(cost, 6) if n_cost else None,
            "trials_with_cost": n_cost,
            "per_trial_usd": round(cost / n_cost, 6) if n_cost else None,
            "n_input_tokens": tok_in,
            "n_output_tokens": tok_out,
            "n_cache_tokens": tok_cache,
        },
        "job": {
            k: job_stats.get(k)
            for k in ("mean_reward", "pass_at_k", "median_trial_sec", "wall_sec", "n_retries")
        }
        if isinstance(job_stats, dict)
        else None,
    }


# -- curated records ----------------------------------------------------------------------------


def _record_head(line: bytes) -> dict[str, Any] | None:
    """A records.jsonl line's provenance without parsing its messages (curation writes the two big
    fields, instruction and messages, last); the whole line when that does not work."""
    text = line.decode("utf-8", errors="replace")
    cut = text.find(', "instruction": ')
    if cut > 0:
        try:
            head = json.loads(text[:cut] + "}")
            if isinstance(head, dict):
                return head
        except ValueError:
            pass
    try:
        rec = json.loads(text)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


def collect_curated(folder: Path, sample: _Sample) -> dict[str, Any]:
    """`ttgen stats` of the curated records, what comes from stand-in agents, drop examples;
    records are offered to `sample` as (file, offset)."""
    stats = compute_stats(folder)
    records = folder / "records.jsonl"
    stand_in: Counter[str] = Counter()
    stand_in_domain: Counter[str] = Counter()
    stand_in_subset: Counter[str] = Counter()
    stand_in_difficulty: Counter[str] = Counter()
    difficulty: Counter[str] = Counter()
    missing_difficulty: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    agents: Counter[str] = Counter()
    si_tokens: list[int] = []
    si_turns: list[int] = []
    if records.is_file():
        with records.open("rb") as f:
            offset = 0
            for line in f:
                at, offset = offset, offset + len(line)
                if not line.strip():
                    continue
                head = _record_head(line)
                if head is None:
                    continue
                agents[str(head.get("agent") or "-")] += 1
                outcomes[str(head.get("outcome") or "-")] += 1
                level = str(head.get("difficulty") or "")
                if level:
                    difficulty[level] += 1
                else:
                    missing_difficulty[no_difficulty(head.get("subset"))] += 1
                if head.get("stand_in"):
                    stand_in[str(head.get("agent") or "-")] += 1
                    stand_in_domain[str(head.get("domain") or "-")] += 1
                    stand_in_subset[str(head.get("subset") or "-")] += 1
                    if level:
                        stand_in_difficulty[level] += 1
                    if head.get("n_tokens") is not None:
                        si_tokens.append(int(head["n_tokens"]))
                    if head.get("n_turns") is not None:
                        si_turns.append(int(head["n_turns"]))
                ident = str(head.get("id") or f"{records}:{at}")
                sample.offer(_key(ident), (str(records), at))
    dropped_examples: dict[str, list[dict[str, Any]]] = {}
    for d in _json_objects(folder / "dropped.jsonl"):
        ex = dropped_examples.setdefault(str(d.get("reason")), [])
        item = {k: str(d.get(k) or "")[:300] for k in ("id", "task", "detail")}
        # examples of different tasks or details (attempts of one task repeat them)
        if len(ex) < 3 and all(
            (e["task"], e["detail"]) != (item["task"], item["detail"]) for e in ex
        ):
            ex.append(item)
    keys = ("records", "by_subset", "by_source", "by_domain", "by_difficulty", "tokens",
            "tokens_counted_by", "turns", "token_bins", "turn_bins", "completion_rate",
            "success_rate", "verified", "truncated", "per_subset", "problems")  # fmt: skip
    out = {"path": str(folder), **{k: stats.get(k) for k in keys}}
    out["problems"] = (out["problems"] or [])[:50]
    out["by_outcome"] = dict(outcomes.most_common())
    out["by_agent"] = dict(agents.most_common())
    # a record without a difficulty is no difficulty bucket ("-"): said apart, with why
    out["by_difficulty"] = dict(difficulty.most_common())
    out["no_difficulty"] = dict(missing_difficulty.most_common())
    out["stand_in"] = {
        "records": sum(stand_in.values()),
        "agents": dict(stand_in.most_common()),
        "by_domain": dict(stand_in_domain.most_common()),
        "by_subset": dict(stand_in_subset.most_common()),
        "by_difficulty": dict(stand_in_difficulty.most_common()),
        "tokens_histogram": histogram(np.asarray(si_tokens, dtype=np.int64), TOKEN_BIN, TOKEN_BINS),
        "turns_histogram": histogram(np.asarray(si_turns, dtype=np.int64), TURN_BIN, TURN_BINS),
    }
    out["curation"] = stats.get("curation")
    out["dropped_examples"] = dropped_examples
    return out


# -- export -----------------------------------------------------------------------------------------


def collect_export(folder: Path) -> dict[str, Any]:
    files = []
    summarized: set[str] = set()
    for p in sorted(folder.glob("*.export.json")):
        m = _read_json(p)
        if not isinstance(m, dict):
            continue
        for name, o in (m.get("outputs") or {}).items():
            if not isinstance(o, dict):
                continue
            file = Path(str(o.get("path") or name)).name
            summarized.add(file)
            files.append({
                "file": file, "format": m.get("format"), "stage": o.get("stage"),
                "fraction": o.get("fraction"), "rows": o.get("rows"), "tokens": o.get("tokens"),
                "trained_tokens": o.get("trained_tokens"), "truncated": o.get("truncated"),
                "skipped": m.get("skipped"),
            })  # fmt: skip
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        if p.is_file() and not p.name.endswith(".export.json") and p.name not in summarized:
            if p.name.startswith("."):
                continue
            files.append({"file": p.name, "format": None, "rows": None, "bytes": p.stat().st_size})
    return {"path": str(folder), "files": files}


def _thin(points: list[Any], limit: int) -> list[Any]:
    if len(points) <= limit:
        return points
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def collect_training(folder: Path) -> dict[str, Any]:
    """A `ttgen train` run folder: its settings (train.json) and the loss curve (metrics.jsonl:
    one line per optimizer step)."""
    config = _read_json(folder / "train.json")
    config = config if isinstance(config, dict) else {}
    points: list[list[Any]] = []
    problems: list[str] = []
    tokens_per_sec: list[float] = []
    metrics = folder / "metrics.jsonl"
    if metrics.is_file():
        for i, line in enumerate(metrics.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                m = json.loads(line)
                step, loss = int(m["step"]), float(m["loss"])
            except (ValueError, KeyError, TypeError):
                problems.append(f"{metrics}: line {i} is not a metrics record")
                continue
            lr = m.get("learning_rate", m.get("lr"))
            points.append([step, loss, lr if isinstance(lr, int | float) else None])
            tps = m.get("tokens_per_s", m.get("tokens_per_sec"))
            if isinstance(tps, int | float):
                tokens_per_sec.append(float(tps))
    else:
        problems.append(f"{folder}: no metrics.jsonl")
    losses = [p[1] for p in points]
    head = max(1, min(10, len(losses) // 4 or 1))
    recipe = config.get("config") if isinstance(config.get("config"), dict) else {}
    model_dir = folder / "model"
    return {
        "path": str(folder),
        "preset": recipe.get("preset"),
        "backend": config.get("backend"),
        "model": recipe.get("model"),
        "status": config.get("status"),
        "steps": len(points),
        "first_loss": _mean(losses[:head]),
        "last_loss": _mean(losses[-head:]),
        "window": head,
        "tokens_per_sec": _mean(tokens_per_sec),
        "final_model": str(model_dir) if (model_dir / "config.json").is_file() else None,
        "curve": _thin(points, MAX_CURVE_POINTS),
        "problems": problems,
    }


def collect_eval(folder: Path) -> dict[str, Any] | None:
    """An eval folder (eval.json from `ttgen eval` or the pipeline's eval stage)."""
    e = _read_json(folder / "eval.json")
    if not isinstance(e, dict):
        return None
    keys = ("agent", "model", "checkpoint", "k", "n_tasks", "n_trials", "n_passed", "accuracy",
            "accuracy_se", "pass_at_k", "n_missing", "outcomes", "infra", "unverified",
            "categories", "tasks", "served_by")  # fmt: skip
    return {"path": str(folder), **{k: e.get(k) for k in keys}}


# -- trajectories -----------------------------------------------------------------------------------


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


# -- the report -------------------------------------------------------------------------------------


def _stage_counts(manifest: dict[str, Any], stage: str) -> dict[str, Any]:
    info = (manifest.get("stages") or {}).get(stage)
    counts = info.get("counts") if isinstance(info, dict) else None
    return counts if isinstance(counts, dict) else {}


def _why(kind: str, what: str, n: int | None, unit: str, detail: str | None = None) -> dict:
    """One line of a funnel step: why tasks (trials, records) are there or left.
    kind: source (tasks per pipeline source), kept (kept verdicts), drop (left at this step),
    not_rolled_out (kept tasks without a trial), stand_in (of the step's count), note."""
    return {"kind": kind, "what": what, "n": n, "unit": unit, "detail": detail}


def _stage_note(manifest: dict[str, Any], stage: str) -> str:
    info = (manifest.get("stages") or {}).get(stage)
    note = info.get("note") if isinstance(info, dict) else None
    return note if isinstance(note, str) else ""


def _keep_verdicts(manifest: dict[str, Any], validation: dict[str, Any]) -> set[str]:
    """The verdicts the run kept (its validation.keep), else the default good verdicts."""
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    v = config.get("validation") if isinstance(config.get("validation"), dict) else {}
    keep = v.get("keep")
    if isinstance(keep, list) and keep:
        return {str(k) for k in keep}
    return set(validation["good_verdicts"])


def _reasons_text(pairs: list[list[Any]] | None, total: int, n: int = 2) -> str | None:
    """The most common reasons, with their counts unless one reason covers them all."""
    if not pairs:
        return None
    if len(pairs) == 1 and pairs[0][1] == total:
        return str(pairs[0][0])
    return "; ".join(f"{r} ({c})" for r, c in pairs[:n])


def not_rolled_out(
    run: Path,
    validation_folder: Path | None,
    task_paths: set[str],
    stand_in_agents: list[str],
) -> list[dict[str, Any]] | None:
    """Tasks that validation kept but no rollout trial ran, grouped by why (None when that cannot
    be told: no kept list, or trials that do not name their task folder)."""
    if validation_folder is None or not task_paths:
        return None
    kept_file = validation_folder / "kept.txt"
    if not kept_file.is_file():
        return None
    verdicts: dict[str, str] = {}
    rows = validation_folder / "validation.jsonl"
    if rows.is_file():
        for line in rows.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                v = json.loads(line)
                verdicts[str(Path(v["path"]).resolve())] = str(v["verdict"])
            except (ValueError, KeyError, TypeError):
                continue
    groups: dict[str, Counter[str]] = {}
    for line in kept_file.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        path = Path(line.strip()) if Path(line.strip()).is_absolute() else run / line.strip()
        key = str(path.resolve())
        if key in task_paths:
            continue
        if not (path / "task.toml").is_file():
            why = "unreadable task"
        elif stand_in_agents and not (path / "solution" / "solve.sh").is_file():
            # the pipeline's own words (run.json rollouts.left_out)
            why = f"no reference solution for the {'/'.join(stand_in_agents)} stand-in"
        else:
            why = "no trial in the rollout job"
        groups.setdefault(why, Counter())[verdicts.get(key, "no verdict")] += 1
    out = []
    for why, by_verdict in sorted(groups.items(), key=lambda kv: -sum(kv[1].values())):
        detail = "verdict " + ", ".join(f"{v} {n}" for v, n in by_verdict.most_common())
        if why.startswith("no reference solution"):
            detail = (f"the stand-in agent ({', '.join(stand_in_agents)}) runs a task's reference "
                      f"solution (solution/solve.sh), so a task without one is not rolled out; "
                      f"{detail}")  # fmt: skip
        elif why == "unreadable task":
            detail += " (the task folder is gone or its task.toml cannot be read)"
        elif why.startswith("no trial"):
            detail += " (an unloadable task, or a job that stopped early)"
        out.append(_why("not_rolled_out", why, sum(by_verdict.values()), "tasks", detail))
    return out


def _funnel(
    manifest: dict[str, Any],
    tasks: dict[str, Any] | None,
    validation: dict[str, Any] | None,
    rollouts: dict[str, Any] | None,
    kept: dict[str, Any] | None,
    unrolled: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The four steps, each with its count, unit, `drops` (reason: count, in the step's unit)
    and `why`: every line that says where the step's count comes from and why things left."""
    steps = []
    # -- generated: tasks per pipeline source (run.json), rejected inputs
    src = _stage_counts(manifest, "sources")
    count, origin = None, None
    if isinstance(src.get("generated"), int):
        count, origin = src["generated"], "run.json"
    elif tasks is not None:
        count, origin = tasks["count"], "tasks/"
    elif validation is not None:
        count, origin = validation["tasks"], "validation.jsonl (tasks validated)"
    why = []
    notes = [n.strip() for n in _stage_note(manifest, "sources").split(";") if n.strip()]
    by_source = src.get("by_source") if isinstance(src.get("by_source"), dict) else None
    if by_source is None and tasks is not None:
        by_source = tasks["by_origin"]
    for name, n in (by_source or {}).items():
        said = [x for x in notes if x.startswith(f"{name} ")]
        notes = [x for x in notes if x not in said]
        outside = (tasks or {}).get("outside_by_origin", {}).get(name)
        if outside:
            said.append(f"{outside} task folder(s) outside the run folder, used where they are")
        detail = "; ".join(said) or None
        why.append(_why("source", str(name), n if isinstance(n, int) else None, "tasks", detail))
    drops = {}
    if src.get("bad"):
        drops["rejected by synthesis/adapter checks"] = src["bad"]
        why.append(_why("drop", "rejected by synthesis/adapter checks", src["bad"], "inputs",
                        "prompt records or synthesis items that made no task"))  # fmt: skip
    why += [_why("note", x, None, "") for x in notes]
    if tasks is not None and count is not None and tasks["count"] != count:
        why.append(_why("note", f"{tasks['count']} task folder(s) found (tasks/ and the "
                        "validation list) but run.json says {count}".format(count=count),
                        None, ""))  # fmt: skip
    steps.append({"key": "generated", "label": "generated", "unit": "tasks", "count": count,
                  "from": origin, "drops": drops, "why": why})  # fmt: skip
    # -- valid: verdicts kept / dropped, with the validator's reasons
    vc = _stage_counts(manifest, "validation")
    vstatus = ((manifest.get("stages") or {}).get("validation") or {}).get("status")
    if validation is not None:
        keep = _keep_verdicts(manifest, validation)
        why = []
        for v, n in validation["verdicts"].items():
            reasons = _reasons_text((validation.get("reasons") or {}).get(v), n)
            why.append(_why("kept" if v in keep else "drop", v, n, "tasks", reasons))
        steps.append({
            "key": "valid", "label": "valid", "unit": "tasks",
            "count": sum(n for v, n in validation["verdicts"].items() if v in keep),
            "from": "validation.jsonl",
            "drops": {v: n for v, n in validation["verdicts"].items() if v not in keep},
            "detail": {v: n for v, n in validation["verdicts"].items() if v in keep},
            "why": why,
        })  # fmt: skip
    elif vstatus == "skipped" and isinstance(vc.get("kept"), int):
        steps.append({"key": "valid", "label": "valid", "unit": "tasks", "count": vc["kept"],
                      "from": "run.json", "drops": {},
                      "why": [_why("note", "validation disabled: every task goes on", None, "")]})  # fmt: skip
    else:
        steps.append({"key": "valid", "label": "valid", "unit": "tasks", "count": None,
                      "from": None, "drops": {}, "why": []})  # fmt: skip
    # -- rolled out: trials with a model outcome; kept tasks not rolled out; infrastructure
    ro = _stage_counts(manifest, "rollouts")
    left = ro.get("left_out")
    if isinstance(left, dict):  # the pipeline's count of kept tasks it did not roll out
        derived = {w["what"]: w for w in unrolled or []}
        unrolled = [
            _why("not_rolled_out", str(k), v, "tasks", (derived.get(str(k)) or {}).get("detail"))
            for k, v in left.items()
            if v
        ]
    why = list(unrolled or [])
    if rollouts is not None:
        drops = {o: n for o, n in rollouts["outcomes"].items() if o in INFRA_OUTCOME_NAMES}
        if rollouts["unfinished"]:
            drops["unfinished"] = rollouts["unfinished"]
        infra = {}
        for text, n in rollouts.get("infra_reasons") or []:
            o, _, kind = str(text).partition(": ")
            infra.setdefault(o, []).append(f"{kind} ({n})")
        for o, n in drops.items():
            detail = "; ".join(infra.get(o, [])) or (
                "no result.json (still running, or killed)" if o == "unfinished" else None
            )
            why.append(_why("drop", o, n, "trials", (detail + "; " if detail else "") +
                            "an infrastructure outcome: no data, not the model's failure"))  # fmt: skip
        si = rollouts.get("stand_in_model_outcome_trials") or 0
        if si:
            agents = ", ".join(rollouts.get("stand_in_agents") or [])
            why.append(_why("stand_in", f"from a stand-in agent ({agents})", si, "trials",
                            "not a teacher model: shows the pipeline working, not teacher data"))  # fmt: skip
        steps.append({
            "key": "rolled_out", "label": "rolled out", "unit": "trials",
            "count": rollouts["model_outcome_trials"], "from": "rollout trials",
            "drops": drops, "tasks": rollouts["tasks"], "stand_in": si, "why": why,
        })  # fmt: skip
    else:
        n = ro.get("trials") if isinstance(ro.get("trials"), int) else None
        outs = ro.get("outcomes") if isinstance(ro.get("outcomes"), dict) else {}
        if n is not None and outs:
            n -= sum(v for k, v in outs.items() if k in INFRA_OUTCOME_NAMES)
        drops = {k: v for k, v in outs.items() if k in INFRA_OUTCOME_NAMES}
        why += [_why("drop", k, v, "trials", "an infrastructure outcome") for k, v in drops.items()]
        si = n if ro.get("stand_in") and n else 0
        if si:
            why.append(_why("stand_in", f"from a stand-in agent ({ro.get('agent')})", si,
                            "trials", "not a teacher model"))  # fmt: skip
        steps.append({
            "key": "rolled_out", "label": "rolled out", "unit": "trials", "count": n,
            "from": "run.json" if n is not None else None, "drops": drops, "stand_in": si,
            "why": why,
        })  # fmt: skip
    # -- kept: curation drops (the infrastructure ones are shown a step up)
    if kept is not None:
        cur = kept.get("curation") or {}
        dropped = {k: v for k, v in (cur.get("dropped") or {}).items() if k not in TRIAL_DROPS}
        why = []
        for reason, n in dropped.items():
            ex = (kept.get("dropped_examples") or {}).get(reason) or []
            detail = None
            if ex:
                x = ex[0]
                detail = "e.g. " + ": ".join(filter(None, [x.get("task") or x.get("id"),
                                                          x.get("detail")]))  # fmt: skip
            why.append(_why("drop", reason, n, "records", detail))
        si = (kept.get("stand_in") or {}).get("records") or 0
        if si:
            agents = ", ".join(sorted((kept.get("stand_in") or {}).get("agents") or {}))
            why.append(_why("stand_in", f"from a stand-in agent ({agents})", si, "records",
                            "labelled stand_in: not teacher data"))  # fmt: skip
        steps.append({"key": "kept", "label": "kept", "unit": "records", "count": kept["records"],
                      "from": "records.jsonl", "drops": dropped, "stand_in": si,
                      "why": why})  # fmt: skip
    else:
        cc = _stage_counts(manifest, "curation")
        n = cc.get("kept") if isinstance(cc.get("kept"), int) else None
        by = cc.get("dropped_by") if isinstance(cc.get("dropped_by"), dict) else {}
        dropped = {k: v for k, v in by.items() if k not in TRIAL_DROPS}
        steps.append({"key": "kept", "label": "kept", "unit": "records", "count": n,
                      "from": "run.json" if n is not None else None, "drops": dropped,
                      "why": [_why("drop", k, v, "records") for k, v in dropped.items()]})  # fmt: skip
    return steps


def collect_report(path: Path, options: ReportOptions | None = None) -> dict[str, Any]:
    """The report's data for `path` (see the module docstring)."""
    options = options or ReportOptions()
    path = Path(path)
    kind = detect_kind(path)
    manifest: dict[str, Any] = {}
    folders: dict[str, Path | None] = dict.fromkeys(STAGES)
    if kind == "run":
        m = _read_json(path / "run.json")
        manifest = m if isinstance(m, dict) else {}
        for stage in STAGES:
            folders[stage] = _stage_path(path, manifest, stage)
    else:
        folders[
            {"rollouts": "rollouts", "curated": "curation", "validation": "validation"}[kind]
        ] = path
    missing: list[dict[str, str]] = []
    stage_info = manifest.get("stages") or {}

    def absent(stage: str, what: str) -> None:
        info = stage_info.get(stage)
        status = info.get("status") if isinstance(info, dict) else None
        missing.append({"stage": stage, "what": what, "status": status or "not run"})

    trial_sample = _Sample(2 * options.max_trajectories)
    record_sample = _Sample(options.max_trajectories)
    tasks = validation = rollouts = kept = export = training = evaluation = None
    # every task the validation stage saw (a `tasks:` source's folders lie outside the run)
    listed = _listed_tasks(path, folders["validation"]) if kind == "run" else []
    if kind == "run":  # and the folders run.json says `tasks:` sources used in place
        listed = list({str(p.resolve()): p for p in [*listed, *_root_tasks(manifest)]}.values())
    f = folders["sources"]
    if f is not None:
        if f.is_dir() or listed:
            tasks = collect_tasks(f, listed, manifest)
        else:
            absent("sources", f"no task folder ({f.name}/)")
    f = folders["validation"]
    if f is not None:
        if (f / "validation.jsonl").is_file():
            validation = collect_validation(f)
        else:
            absent("validation", f"no {f.name}/validation.jsonl")
    f = folders["rollouts"]
    task_paths: set[str] = set()
    if f is not None:
        if f.is_dir():
            rollouts = collect_rollouts(f, trial_sample, task_paths)
        else:
            absent("rollouts", f"no rollout job folder ({f.name}/)")
    f = folders["curation"]
    if f is not None:
        if (f / "records.jsonl").is_file():
            kept = collect_curated(f, record_sample)
        else:
            absent("curation", f"no curated records ({f.name}/records.jsonl)")
    f = folders["export"]
    if f is not None:
        if f.is_dir():
            export = collect_export(f)
        else:
            absent("export", f"no export folder ({f.name}/)")
    f = folders["train"]
    if f is not None and f.is_dir() and ((f / "train.json").is_file() or (f / "metrics.jsonl").is_file()):
        training = collect_training(f)
    f = folders["eval"]
    if f is not None and (f / "eval.json").is_file():
        evaluation = collect_eval(f)
    trajectories = collect_trajectories(record_sample.items(), trial_sample.items(), options)
    unrolled = None
    if kind == "run" and rollouts is not None:
        ro_counts = _stage_counts(manifest, "rollouts")
        # the reason "no reference solution" holds when only stand-in agents rolled out
        only = rollouts["stand_in_trials"] == rollouts["finished"]
        agents = rollouts["stand_in_agents"] if only else []
        if not rollouts["finished"] and ro_counts.get("stand_in"):
            agents = [str(ro_counts.get("agent") or "oracle")]
        unrolled = not_rolled_out(path, folders["validation"], task_paths, agents)
    stand_in_records = kept["stand_in"]["records"] if kept else 0
    stand_in_trials = rollouts["stand_in_trials"] if rollouts else 0
    run = None
    if kind == "run":
        keys = ("status", "started_at", "finished_at", "counts", "outputs", "error", "note")
        stages = {
            s: {k: v for k, v in info.items() if k in keys}
            for s, info in stage_info.items()
            if isinstance(info, dict)
        }
        if not manifest:  # no run.json: the stages are the folders there are
            gone = {m["stage"] for m in missing}
            stages = {s: {"status": "missing" if s in gone else "found"} for s in STAGES
                      if s in gone or (folders[s] is not None and folders[s].exists())}  # fmt: skip
        run = {
            "name": manifest.get("name") or path.resolve().name,
            "created_at": manifest.get("created_at"),
            "ttgen_version": manifest.get("ttgen_version"),
            "config": manifest.get("config"),
            "manifest": bool(manifest),
            "stages": stages,
        }
    return {
        "kind": "ttgen-report",
        "version": 1,
        "generated_at": now().isoformat(),
        "ttgen_version": __version__,
        "input": {"path": str(path), "kind": kind, "name": (run or {}).get("name") or path.name},
        "run": run,
        "missing": missing,
        "funnel": _funnel(manifest, tasks, validation, rollouts, kept, unrolled),
        "tasks": tasks,
        "validation": validation,
        "rollouts": rollouts,
        "kept": kept,
        "export": export,
        "training": training,
        "eval": evaluation,
        "stand_in": {
            "records": stand_in_records,
            "trials": stand_in_trials,
            "agents": sorted(STAND_IN_AGENTS),
        },
        "trajectories": {
            "max": options.max_trajectories,
            "max_chars": options.max_chars,
            "max_turns": options.max_turns,
            "records_total": kept["records"] if kept else 0,
            "trials_with_conversation": rollouts["with_conversation"] if rollouts else 0,
            "shown": len(trajectories["items"]),
            "sample": "the ids with the smallest blake2b hashes",
            "problems": trajectories["problems"][:50],
            "items": trajectories["items"],
        },
    }
