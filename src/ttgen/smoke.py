"""`ttgen env smoke`: check, build, start and exec in every task's environment.

The quickest way to learn whether a set of tasks can run here at all, before spending model
tokens on them: every step's failure is reported per task and the batch goes on.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ttgen.check import check_task
from ttgen.errors import TtgenError
from ttgen.sandbox import SandboxBackend, open_backend
from ttgen.task import Task


@dataclass
class SmokeResult:
    task: str
    path: str
    check_ok: bool
    image: str | None = None
    image_source: str | None = None
    build_sec: float | None = None
    start_to_exec_ms: float | None = None
    exit_code: int | None = None
    output_head: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.check_ok and not self.error and self.exit_code == 0

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


async def smoke_one(
    backend: SandboxBackend, path: Path, command: str, force_build: bool
) -> SmokeResult:
    check = check_task(path)
    result = SmokeResult(task=check.name, path=str(path), check_ok=check.valid)
    if not check.valid:
        result.error = check.problems[0]
        return result
    try:
        task = Task.load(path)
        t0 = time.monotonic()
        image = await backend.ensure_image(task, force_build=force_build)
        result.image, result.image_source = image.tag, image.source
        result.build_sec = time.monotonic() - t0
        t1 = time.monotonic()
        sandbox = await backend.start(task, job="smoke", image=image)
        try:
            res = await sandbox.exec(command, timeout=60)
            result.start_to_exec_ms = (time.monotonic() - t1) * 1000
        finally:
            await sandbox.stop()
        result.exit_code = res.exit_code
        lines = [line for line in res.output.splitlines() if line.strip()]
        result.output_head = " | ".join(lines[:3])[:200]
        if res.timed_out:
            result.error = "command timed out after 60 s"
    except TtgenError as exc:
        result.error = str(exc).splitlines()[0]
    return result


async def smoke_tasks(
    paths: list[Path],
    *,
    command: str,
    concurrency: int = 2,
    force_build: bool = False,
    backend: str | None = None,
) -> list[SmokeResult]:
    """Smoke-test every task on the sandbox backend `backend` (None: the configured one)."""
    sem = asyncio.Semaphore(max(1, concurrency))
    async with open_backend(backend) as engine:
        await engine.ping()

        async def one(p: Path) -> SmokeResult:
            async with sem:
                return await smoke_one(engine, p, command, force_build)

        return list(await asyncio.gather(*(one(p) for p in paths)))
