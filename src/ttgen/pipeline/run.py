"""`ttgen run PIPELINE.yaml`: every stage of the pipeline into one run folder.

    RUN/
      run.json          the manifest: the config, each stage's status, times, outputs, counts
      tasks/<source>/   tasks written by adapters and synthesis (task sources used in place)
      validation/       the validation job + validation.jsonl; kept.txt lists the kept tasks
      rollouts/         the rollout job (one folder per trial)
      curated/          records.jsonl, dropped.jsonl, curate.json
      export/           corpus / SFT files (+ .export.json)
      train/            the trained model (with a train section)
      eval/             its evaluation (with an eval section)
      report/           index.html

The stages are declared in `ttgen.pipeline.stages.PIPELINE` (name, inputs, outputs, fingerprint,
run function; one module each under stages/) and this runner knows none of them by name: it
goes down the list. Each stage runs the same code as its own command (`ttgen adapt`, `synth`,
`validate`, `rollout`, `curate`, `export`, `train`, `eval`, `report`) and is resumable the same
way. A stage that finished is skipped when its fingerprint in run.json (its settings and
everything upstream) is unchanged and its outputs are there; otherwise it runs again (the
resumable ones keep their finished work). ``until`` stops after a stage; `plan` gives what would
run and an LLM cost estimate without running anything. An error that does not name its stage
is raised as `PipelineError("<stage>: ...")`.

Without a teacher (no model/base_url) synthesis sources are skipped and, by default, the rollouts
use the oracle agent as a *stand-in*: the reference solution typed into the terminal, on tasks
that have one. Its records say ``stand_in: true`` and ``agent: oracle`` all the way to the
exported rows: data to see the pipeline work, not teacher data.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ttgen import __version__
from ttgen.errors import TtgenError
from ttgen.formats.trial import now, write_json_atomic
from ttgen.pipeline.config import PipelineConfig
from ttgen.pipeline.stages import (
    BY_NAME,
    PIPELINE,
    STAGE_NAMES,
    Context,
    Log,
    PipelineError,
    Stage,
    StageResult,
    _fingerprint,
)
from ttgen.task import find_tasks

__all__ = ["MANIFEST", "PipelineError", "Runner", "StageResult"]

MANIFEST = "run.json"


class Runner:
    def __init__(
        self,
        config: PipelineConfig,
        run_dir: Path,
        *,
        log: Log = print,
        job_events: Callable[[str], Any] | None = None,
    ) -> None:
        self.config = config
        self.run = Path(run_dir)
        self.log = log
        self.job_events = job_events  # label -> JobEvents (the CLI's progress bar)
        self.manifest = self._load_manifest()

    # -- manifest ---------------------------------------------------------------------------

    def _load_manifest(self) -> dict[str, Any]:
        try:
            data = json.loads((self.run / MANIFEST).read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("kind") == "ttgen-run":
                return data
        except (OSError, ValueError):
            pass
        return {
            "kind": "ttgen-run",
            "name": self.config.name,
            "created_at": now().isoformat(),
            "stages": {},
        }

    def _save(self) -> None:
        self.manifest.update(
            name=self.config.name,
            updated_at=now().isoformat(),
            ttgen_version=__version__,
            config=self.config.model_dump(mode="json"),
            teacher=self._teacher_label(),
        )
        write_json_atomic(self.run / MANIFEST, self.manifest)

    def _teacher_label(self) -> str:
        t = self.config.teacher
        if t.configured:
            return f"{t.model} @ {t.base_url}"
        if self.config.rollouts.stand_in == "oracle":
            return "none: the oracle agent stands in (reference solutions, labelled stand_in)"
        return "none"

    def fingerprints(self) -> dict[str, str]:
        """Each stage's fingerprint: a hash of what its declaration names (settings, and the
        fingerprints of the inputs it chains on)."""
        out: dict[str, str] = {}
        for stage in PIPELINE:
            upstream = {name: out[name] for name in stage.inputs}
            out[stage.name] = _fingerprint(*stage.fingerprint(self.config, upstream))
        return out

    def stage_state(self, stage: str, fingerprints: dict[str, str]) -> str:
        """done: finished (or skipped) with this fingerprint, its outputs still there."""
        entry = self.manifest.get("stages", {}).get(stage) or {}
        if (
            entry.get("status") in ("done", "skipped")
            and entry.get("fingerprint") == fingerprints[stage]
            and self._outputs_exist(BY_NAME[stage])
        ):
            return "done"
        return "pending"

    def _outputs_exist(self, stage: Stage) -> bool:
        if stage.off(self.config) is not None:
            return True  # off: it wrote nothing
        return all((self.run / p).exists() for p in stage.output_paths(self.config))

    # -- running ----------------------------------------------------------------------------

    def execute(self, until: str | None = None) -> dict[str, Any]:
        """Run the stages in order (up to `until`), skipping the finished ones."""
        if until is not None and until not in STAGE_NAMES:
            raise PipelineError(f"unknown stage {until!r} (stages: {', '.join(STAGE_NAMES)})")
        self.run.mkdir(parents=True, exist_ok=True)
        prints = self.fingerprints()
        self.manifest.setdefault("stages", {})
        for stage in PIPELINE:
            if self.stage_state(stage.name, prints) == "done":
                self.log(f"[{stage.name}] done earlier: skipped")
            elif self._execute_stage(stage, prints[stage.name]).status == "stopped":
                break
            if stage.name == until:
                break
        return self.manifest

    def _execute_stage(self, stage: Stage, fingerprint: str) -> StageResult:
        """One stage, with its run.json entry: running, then its result (or failed)."""
        name = stage.name
        entry: dict[str, Any] = {"status": "running", "started_at": now().isoformat()}
        self.manifest["stages"][name] = entry
        self._save()
        t0 = time.monotonic()
        self.log(f"[{name}] running")
        try:
            res = self._call(stage, entry, fingerprint)
        except BaseException as exc:
            entry.update(status="failed", finished_at=now().isoformat(),
                         error=f"{type(exc).__name__}: {exc}"[:2000])  # fmt: skip
            self._save()
            if isinstance(exc, (TtgenError, ValueError, OSError)) and not re.match(
                rf"{re.escape(name)}\b", str(exc)
            ):
                raise PipelineError(f"{name}: {exc}") from exc
            raise
        entry.update(
            status=res.status,
            finished_at=now().isoformat(),
            elapsed_sec=round(time.monotonic() - t0, 2),
            outputs=res.outputs,
            counts=res.counts,
            fingerprint=fingerprint,
        )
        if res.note:
            entry["note"] = res.note
        self._save()
        self.log(
            f"[{name}] {res.status}"
            + (f": {brief}" if (brief := _brief(res.counts)) else "")
            + (f" ({res.note})" if res.note else "")
        )
        return res

    def _call(self, stage: Stage, entry: dict[str, Any], fingerprint: str) -> StageResult:
        if (why := stage.off(self.config)) is not None:
            return StageResult("skipped", {}, {}, why)
        ctx = Context(config=self.config, run=self.run, stage=stage.name,
                      fingerprint=fingerprint, log=self.log, job_events=self.job_events,
                      entry=entry, save=self._save)  # fmt: skip
        return stage.function()(ctx)

    def run_stage(self, name: str) -> StageResult:
        """One stage's run function now, without execute's skipping and result bookkeeping."""
        entry = self.manifest.setdefault("stages", {}).setdefault(name, {})
        return self._call(BY_NAME[name], entry, self.fingerprints()[name])

    # -- plan -------------------------------------------------------------------------------

    def plan(self) -> dict[str, Any]:
        """What `execute` would do, and an estimate of the LLM tokens and cost."""
        prints = self.fingerprints()
        c = self.config
        n_tasks, n_synth = self._count_planned_tasks()
        est = c.estimate
        teacher = c.teacher.configured
        trials = n_tasks * c.rollouts.attempts
        roll_in = trials * est.turns_per_trial * est.final_context_tokens / 2 if teacher else 0
        roll_out = trials * est.turns_per_trial * est.output_tokens_per_turn if teacher else 0
        syn_in = n_synth * est.synth_input_tokens if teacher else 0
        syn_out = n_synth * est.synth_output_tokens if teacher else 0
        cost = None
        if (
            teacher
            and c.teacher.price_input_per_mtok is not None
            and c.teacher.price_output_per_mtok is not None
        ):
            cost = ((roll_in + syn_in) * c.teacher.price_input_per_mtok
                    + (roll_out + syn_out) * c.teacher.price_output_per_mtok) / 1e6  # fmt: skip
        stages = [{"stage": s, "state": self.stage_state(s, prints)} for s in STAGE_NAMES]
        return {
            "run": str(self.run),
            "teacher": self._teacher_label(),
            "stages": stages,
            "tasks_planned": n_tasks,
            "synthesis_items": n_synth,
            "trials_planned": trials,
            "estimate": {
                "input_tokens": round(roll_in + syn_in),
                "output_tokens": round(roll_out + syn_out),
                "cost_usd": round(cost, 2) if cost is not None else None,
                "assumptions": est.model_dump(),
            },
        }

    def _count_planned_tasks(self) -> tuple[int, int]:
        n = synth = 0
        for s in self.config.sources:
            if s.tasks:
                p = self.config.path(s.tasks)
                n += len(find_tasks([p])) if p.exists() else 0
            elif s.adapter:
                p = self.config.path(s.input or "")
                lines = _count_lines(p) if p.is_file() else (s.limit or 0)
                n += min(lines, s.limit) if s.limit else lines
            elif s.synth == "skills":
                k = s.n * (11 if s.domains == ["all"] else len(s.domains))
                synth += k
                n += k if self.config.teacher.configured else 0
            elif s.synth == "seeds":
                p = self.config.path(s.seeds or "")
                k = _count_lines(p) if p.is_file() else 0
                k = min(k, s.limit) if s.limit else k
                synth += k
                n += k if self.config.teacher.configured else 0
        return n, synth


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def _brief(counts: dict[str, Any]) -> str:
    parts = []
    for k, v in counts.items():
        if v is None or k == "task_roots":  # nothing to say / paths (in run.json)
            continue
        if isinstance(v, dict):
            if not v:
                continue  # e.g. nothing left out
            v = ", ".join(f"{a} {b}" for a, b in v.items()) or "-"
            parts.append(f"{k}: {v}")
        else:
            parts.append(f"{k} {v}")
    return "; ".join(parts)
