"""`oracle`: runs the task's reference solution. A valid task's verifier gives it 1.

As in Harbor: solution/ is uploaded to /solution (only for this agent), then solve.sh runs with
`[solution] env`, from the container's working directory, as the task's agent user; its output
goes to agent/oracle.txt.
"""

from __future__ import annotations

from typing import ClassVar

from ttgen import __version__
from ttgen.agents.base import AgentContext, ModelInfo
from ttgen.errors import AgentError
from ttgen.sandbox.base import Sandbox
from ttgen.sandbox.docker import resolve_env

SOLUTION_DIR = "/solution"


class OracleAgent:
    name: ClassVar[str] = "oracle"

    def __init__(self, **kwargs: object) -> None:
        if kwargs:
            raise TypeError(f"the oracle agent takes no options (got {', '.join(kwargs)})")

    def version(self) -> str:
        return __version__

    def model_info(self) -> ModelInfo | None:
        return None

    async def setup(self, sandbox: Sandbox, ctx: AgentContext) -> None:
        if ctx.task.solve_script is None:
            raise AgentError(f"{ctx.task.name}: no solution/solve.sh, so the oracle cannot run")
        assert ctx.task.path is not None
        await sandbox.upload_dir(ctx.task.path / "solution", SOLUTION_DIR)

    async def run(self, instruction: str, sandbox: Sandbox, ctx: AgentContext) -> None:
        env = resolve_env(ctx.task.config.solution.env)
        result = await sandbox.exec(
            f"chmod +x {SOLUTION_DIR}/solve.sh; exec 2>&1; bash {SOLUTION_DIR}/solve.sh",
            env=env,
            user=ctx.user,
            timeout=ctx.time_left(),
        )
        text = result.stdout
        if result.stdout_omitted_bytes:
            ctx.metadata["output_omitted_bytes"] = result.stdout_omitted_bytes
        (ctx.logs_dir / "oracle.txt").write_text(text, encoding="utf-8")
        ctx.metadata["exit_code"] = result.exit_code
        ctx.metadata["duration_sec"] = round(result.duration_sec, 3)
