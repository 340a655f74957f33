"""Everything the report shows, gathered into one JSON-able dict.

This module finds the input and puts the report together; the figures of each stage folder
come from stages.py, the funnel from funnel.py, the trajectory viewer's data from
trajectories.py, and what they share (options, sampling, cutting texts) from common.py.

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

from pathlib import Path
from typing import Any

from ttgen import __version__
from ttgen.curate.trials import STAND_IN_AGENTS, _is_trial, find_trials
from ttgen.formats.trial import now
from ttgen.report.common import ReportError, ReportOptions, Sample, clip, read_json
from ttgen.report.funnel import funnel, not_rolled_out, stage_counts
from ttgen.report.stages import (
    collect_curated,
    collect_eval,
    collect_export,
    collect_rollouts,
    collect_tasks,
    collect_training,
    collect_validation,
    listed_tasks,
    root_tasks,
)
from ttgen.report.trajectories import build_trajectory, collect_trajectories, parse_assistant

__all__ = [
    "ReportError",
    "ReportOptions",
    "build_trajectory",
    "clip",
    "collect_report",
    "detect_kind",
    "parse_assistant",
]

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


def detect_kind(path: Path) -> str:
    """run | curated | validation | rollouts (see the module docstring); ReportError otherwise."""
    if not path.exists():
        raise ReportError(f"{path}: no such folder")
    if not path.is_dir():
        raise ReportError(f"{path}: not a folder (expected a run, rollout job or curated folder)")
    manifest = read_json(path / "run.json")
    if isinstance(manifest, dict) and manifest.get("kind") == "ttgen-run":
        return "run"
    if (path / "records.jsonl").is_file() or (path / "curate.json").is_file():
        return "curated"
    if (path / "validation.jsonl").is_file():
        return "validation"
    job = read_json(path / "config.json")
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


def collect_report(path: Path, options: ReportOptions | None = None) -> dict[str, Any]:
    """The report's data for `path` (see the module docstring)."""
    options = options or ReportOptions()
    path = Path(path)
    kind = detect_kind(path)
    manifest: dict[str, Any] = {}
    folders: dict[str, Path | None] = dict.fromkeys(STAGES)
    if kind == "run":
        m = read_json(path / "run.json")
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

    trial_sample = Sample(2 * options.max_trajectories)
    record_sample = Sample(options.max_trajectories)
    tasks = validation = rollouts = kept = export = training = evaluation = None
    # every task the validation stage saw (a `tasks:` source's folders lie outside the run)
    listed = listed_tasks(path, folders["validation"]) if kind == "run" else []
    if kind == "run":  # and the folders run.json says `tasks:` sources used in place
        listed = list({str(p.resolve()): p for p in [*listed, *root_tasks(manifest)]}.values())
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
    if (
        f is not None
        and f.is_dir()
        and ((f / "train.json").is_file() or (f / "metrics.jsonl").is_file())
    ):
        training = collect_training(f)
    f = folders["eval"]
    if f is not None and (f / "eval.json").is_file():
        evaluation = collect_eval(f)
    trajectories = collect_trajectories(record_sample.items(), trial_sample.items(), options)
    unrolled = None
    if kind == "run" and rollouts is not None:
        ro_counts = stage_counts(manifest, "rollouts")
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
        "funnel": funnel(manifest, tasks, validation, rollouts, kept, unrolled),
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
