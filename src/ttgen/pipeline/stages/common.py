"""What several stages' run functions share: where the tasks are, the job options of a stage's
settings, a job run with its progress events, a list file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ttgen.pipeline.config import PipelineConfig
from ttgen.rollout.job import JobOptions, job_options


def task_roots(config: PipelineConfig, run: Path) -> list[Path]:
    """Each source's tasks: RUN/tasks/<source>/, or a `tasks:` folder used in place."""
    return [config.path(s.tasks) if s.tasks else run / "tasks" / s.folder_name
            for s in config.sources]  # fmt: skip


def stage_job_options(stage: Any) -> JobOptions:
    """A stage section's job settings (validation, rollouts, eval: named as the CLI's flags)
    through the one translation, `ttgen.rollout.job.job_options`."""
    return job_options(
        concurrency=stage.concurrency,
        executor=getattr(stage, "executor", "local"),
        address=getattr(stage, "address", None),
        per_node=getattr(stage, "per_node", None),
        verifier_isolation=stage.verifier_isolation,
    )


async def with_events(events: Any, coro: Any) -> Any:
    if events is None:
        return await coro
    with events:
        return await coro


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    tmp.replace(path)
