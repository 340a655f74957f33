"""The report's figures of each stage folder: tasks, validation verdicts, rollout trials,
curated records, export files, training curve and evaluation (see figures.py)."""

from __future__ import annotations

import json
import tomllib
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ttgen.curate.data_stats import (
    TOKEN_BIN,
    TOKEN_BINS,
    TURN_BIN,
    TURN_BINS,
    compute_stats,
    histogram,
    no_difficulty,
)
from ttgen.curate.trials import STAND_IN_AGENTS, _provenance, find_trials
from ttgen.formats.trial import Outcome, read_trial_result
from ttgen.report.common import (
    INFRA_OUTCOME_NAMES,
    MODEL_OUTCOMES,
    Sample,
    json_objects,
    read_json,
    sample_key,
    top,
)

# Points of the loss curve the page draws at most (evenly thinned, first and last kept).
MAX_CURVE_POINTS = 600


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


def listed_tasks(run: Path, validation: Path | None) -> list[Path]:
    """Task folders named by the validation stage (kept.txt, validation.jsonl): every task of
    every source, those of a `tasks:` source (bundled tasks, outside the run folder) included."""
    if validation is None:
        return []
    paths: list[str] = []
    kept = validation / "kept.txt"
    if kept.is_file():
        paths += [x.strip() for x in kept.read_text(encoding="utf-8").splitlines() if x.strip()]
    for v in json_objects(validation / "validation.jsonl"):
        if isinstance(v.get("path"), str):
            paths.append(v["path"])
    out: dict[str, Path] = {}
    for p in paths:
        path = Path(p) if Path(p).is_absolute() else run / p
        if (path / "task.toml").is_file():
            out.setdefault(str(path.resolve()), path)
    return list(out.values())


def root_tasks(manifest: dict[str, Any]) -> list[Path]:
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
        "reasons": {v: top(c, 5) for v, c in reasons.items()},
        "problems": problems[:50],
    }


# -- rollouts -------------------------------------------------------------------------------------


def collect_rollouts(
    folder: Path, sample: Sample, task_paths: set[str] | None = None
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
            sample.offer(sample_key(ident), {
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
    job = read_json(folder / "result.json")
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
        "infra_reasons": top(infra_reasons, 10),
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


def collect_curated(folder: Path, sample: Sample) -> dict[str, Any]:
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
                sample.offer(sample_key(ident), (str(records), at))
    dropped_examples: dict[str, list[dict[str, Any]]] = {}
    for d in json_objects(folder / "dropped.jsonl"):
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
        m = read_json(p)
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
    config = read_json(folder / "train.json")
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
    e = read_json(folder / "eval.json")
    if not isinstance(e, dict):
        return None
    keys = ("agent", "model", "checkpoint", "k", "n_tasks", "n_trials", "n_passed", "accuracy",
            "accuracy_se", "pass_at_k", "n_missing", "outcomes", "infra", "unverified",
            "categories", "tasks", "served_by")  # fmt: skip
    return {"path": str(folder), **{k: e.get(k) for k in keys}}
