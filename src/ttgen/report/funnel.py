"""The report's funnel: generated tasks → valid tasks → rolled-out trials → kept records, each
step with its count and why things left (see figures.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from ttgen.report.common import INFRA_OUTCOME_NAMES

# Curation drop reasons that the funnel shows at the rollout step (a trial that never gave data).
TRIAL_DROPS = ("infrastructure", "unfinished")


def stage_counts(manifest: dict[str, Any], stage: str) -> dict[str, Any]:
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


def funnel(
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
    src = stage_counts(manifest, "sources")
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
    vc = stage_counts(manifest, "validation")
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
    ro = stage_counts(manifest, "rollouts")
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
        cc = stage_counts(manifest, "curation")
        n = cc.get("kept") if isinstance(cc.get("kept"), int) else None
        by = cc.get("dropped_by") if isinstance(cc.get("dropped_by"), dict) else {}
        dropped = {k: v for k, v in by.items() if k not in TRIAL_DROPS}
        steps.append({"key": "kept", "label": "kept", "unit": "records", "count": n,
                      "from": "run.json" if n is not None else None, "drops": dropped,
                      "why": [_why("drop", k, v, "records") for k, v in dropped.items()]})  # fmt: skip
    return steps
