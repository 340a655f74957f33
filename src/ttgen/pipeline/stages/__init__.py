"""The pipeline's stages: each declared once, in `PIPELINE`, in the order they run.

A declaration says everything the runner (pipeline/run.py) needs to know about a stage; the
runner knows no stage by name:

    name         the stage (run.json's key, `--until`, the `[name]` of the printed lines)
    inputs       the earlier stages whose outputs it reads; its fingerprint may chain on them
    outputs      what it writes under the run folder: a finished stage whose outputs are gone
                 runs again
    fingerprint  (config, {input: fingerprint}) -> the parts hashed into its fingerprint: the
                 settings and upstream fingerprints whose change makes it run again
    off          config -> why the config turns the stage off (it is then recorded as skipped
                 without importing its module), or None
    run          "module:function": `run(ctx: Context) -> StageResult`, imported when the stage
                 runs (a module per stage beside this file; its imports sit at its top)

Adding a stage is one entry in `PIPELINE` and one module with its `run`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ttgen.errors import TtgenError
from ttgen.formats.trial import write_json_atomic

if TYPE_CHECKING:
    from ttgen.pipeline.config import PipelineConfig


class PipelineError(TtgenError):
    """A stage cannot run (bad input, missing teacher, ...); the message says which and why."""


Log = Callable[[str], None]


@dataclass
class StageResult:
    status: str  # done | skipped | stopped (the stages after it do not run)
    outputs: dict[str, str] = field(default_factory=dict)  # name -> path relative to the run
    counts: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass
class Context:
    """What a stage's run function gets: the config, the run folder and the runner's services."""

    config: PipelineConfig
    run: Path
    stage: str
    fingerprint: str  # this stage's, as run.json will record it
    log: Log
    job_events: Callable[[str], Any] | None  # label -> JobEvents (the CLI's progress bar)
    entry: dict[str, Any]  # this stage's entry in run.json (status "running" while it runs)
    save: Callable[[], None]  # writes run.json

    def events(self, label: str) -> Any:
        return self.job_events(label) if self.job_events else None

    def set_aside(self, folder: str, why: str, what: str) -> Path:
        """Rename RUN/<folder> to <folder>.<time>/ (kept, not deleted) and say so."""
        path = self.run / folder
        aside = path.with_name(f"{folder}.{time.strftime('%Y%m%d-%H%M%S')}")
        path.rename(aside)
        self.log(f"[{self.stage}] {why}: {what} moved to {aside}")
        return aside

    def fresh_folder(self, folder: str, why: str, what: str) -> Path:
        """RUN/<folder> for this stage's fingerprint, never resumed from another: a non-empty
        folder made with another fingerprint (its `stage.json`) is set aside first."""
        path = self.run / folder
        marker = path / "stage.json"
        want = {"fingerprint": self.fingerprint}
        try:
            have = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            have = None
        if path.exists() and have != want and any(path.iterdir()):
            self.set_aside(folder, why, what)
        path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(marker, want)
        return path


Outputs = tuple[str, ...] | Callable[["PipelineConfig"], tuple[str, ...]]


@dataclass(frozen=True)
class Stage:
    """One stage's declaration (the fields: this module's docstring)."""

    name: str
    inputs: tuple[str, ...]
    outputs: Outputs
    fingerprint: Callable[[PipelineConfig, Mapping[str, str]], tuple[Any, ...]]
    run: str
    off: Callable[[PipelineConfig], str | None] = lambda config: None

    def output_paths(self, config: PipelineConfig) -> tuple[str, ...]:
        return self.outputs(config) if callable(self.outputs) else self.outputs

    def function(self) -> Callable[[Context], StageResult]:
        module, _, name = self.run.partition(":")
        return getattr(importlib.import_module(module), name)


# -- fingerprints -----------------------------------------------------------------------------

# Where and how fast a stage runs does not change what it produces: not part of fingerprints
# (moving rollouts to Ray, or raising concurrency, does not redo finished stages).
_PLACEMENT = {"executor", "address", "per_node", "concurrency"}


# Settings added after fingerprints existed: left out while at their default, so that run
# folders made before them are not redone after an upgrade.
_LATER_DEFAULTS: dict[str, Any] = {
    "verifier_isolation": "snapshot",
    "keep_tampered": False,
    "include_sources": [],
    "exclude_sources": [],
    "harbor": None,
}


def _settings(model: Any) -> dict[str, Any]:
    return {
        k: v
        for k, v in model.model_dump(mode="json").items()
        if k not in _PLACEMENT and not (k in _LATER_DEFAULTS and _LATER_DEFAULTS[k] == v)
    }


def _fingerprint(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _teacher(c: PipelineConfig) -> dict[str, Any]:
    return c.teacher.model_dump(mode="json")


def _section(model: Any) -> dict[str, Any] | None:
    """An optional section's settings (None when the section is absent)."""
    return _settings(model) if model is not None else None


# -- what each stage writes under RUN ---------------------------------------------------------


def _source_folders(c: PipelineConfig) -> tuple[str, ...]:
    """The task folders the sources write (a `tasks:` source is used in place; a synthesis
    source without a teacher writes nothing)."""
    return tuple(f"tasks/{s.folder_name}" for s in c.sources
                 if s.adapter or (s.synth and c.teacher.configured))  # fmt: skip


def _export_folder(c: PipelineConfig) -> tuple[str, ...]:
    e = c.export
    return ("export",) if e.corpus or e.sft is not None or e.harbor is not None else ()


# -- the stages -------------------------------------------------------------------------------

PIPELINE: tuple[Stage, ...] = (
    Stage(
        "sources",
        inputs=(),
        outputs=_source_folders,
        fingerprint=lambda c, fp: (
            [_settings(s) for s in c.sources],
            _teacher(c) if any(s.synth for s in c.sources) else None,
        ),
        run="ttgen.pipeline.stages.sources:run",
    ),
    Stage(
        "validation",
        inputs=("sources",),
        outputs=("validation/kept.txt",),
        fingerprint=lambda c, fp: (fp["sources"], _settings(c.validation)),
        run="ttgen.pipeline.stages.validation:run",
    ),
    Stage(
        "rollouts",
        inputs=("validation",),
        outputs=("rollouts",),
        fingerprint=lambda c, fp: (fp["validation"], _settings(c.rollouts), _teacher(c)),
        run="ttgen.pipeline.stages.rollouts:run",
    ),
    Stage(
        "curation",
        inputs=("rollouts",),
        outputs=("curated",),
        fingerprint=lambda c, fp: (fp["rollouts"], _settings(c.curation)),
        run="ttgen.pipeline.stages.curation:run",
    ),
    Stage(
        "export",
        inputs=("curation",),
        outputs=_export_folder,
        fingerprint=lambda c, fp: (fp["curation"], _settings(c.export)),
        run="ttgen.pipeline.stages.export:run",
    ),
    Stage(
        "train",
        inputs=("export",),
        outputs=("train",),
        fingerprint=lambda c, fp: (fp["export"], _section(c.train)),
        off=lambda c: None if c.train is not None else "no train section",
        run="ttgen.pipeline.stages.train:run",
    ),
    Stage(
        "eval",
        inputs=("train",),
        outputs=("eval/eval.json",),
        fingerprint=lambda c, fp: (fp["train"], _section(c.eval)),
        off=lambda c: None if c.eval is not None else "no eval section",
        run="ttgen.pipeline.stages.eval:run",
    ),
    Stage(
        "report",
        inputs=("sources", "validation", "rollouts", "curation", "export", "train", "eval"),
        outputs=("report/index.html",),
        # (chained on export without train/eval, as before they existed: old run folders keep
        # their report)
        fingerprint=lambda c, fp: (fp["eval"] if c.train or c.eval else fp["export"], c.report),
        off=lambda c: None if c.report else "report: false",
        run="ttgen.pipeline.stages.report:run",
    ),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in PIPELINE)
BY_NAME: dict[str, Stage] = {s.name: s for s in PIPELINE}


def _check(stages: tuple[Stage, ...]) -> None:
    """A declaration reads only what earlier stages wrote (a mistake fails at import)."""
    seen: set[str] = set()
    for s in stages:
        if s.name in seen:
            raise RuntimeError(f"pipeline stage {s.name!r} is declared twice")
        if late := [i for i in s.inputs if i not in seen]:
            raise RuntimeError(f"pipeline stage {s.name!r}: inputs {late} are not earlier stages")
        if not s.run.partition(":")[2]:
            raise RuntimeError(f"pipeline stage {s.name!r}: run must be 'module:function'")
        seen.add(s.name)


_check(PIPELINE)
