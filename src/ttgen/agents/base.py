"""The agent interface: what the trial runner needs from anything that attempts a task.

An agent is set up once per trial (`setup`, under the setup timeout), then `run` acts on the
sandbox until it is done or the trial's agent timeout cancels it; an optional `finish` runs on the
host once the container's /logs/agent has been copied out. It writes its logs under
`ctx.logs_dir` (the trial's agent/ folder on the host) and reports token usage and anything else
worth keeping through the context. Agents never see tests/: the verifier uploads them afterwards.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ttgen.sandbox.base import ExecResult, Sandbox
    from ttgen.task import Task


@dataclass
class ModelInfo:
    name: str
    provider: str | None = None


@dataclass
class AgentContext:
    """Everything a trial gives an agent and takes back from it."""

    task: Task
    logs_dir: Path  # host folder (the trial's agent/); created before setup
    trial_name: str = ""
    deadline: float | None = None  # time.monotonic() at which the agent timeout fires
    user: str | None = None  # [agent] user of the task, for the agent's commands
    # Filled in by the agent:
    n_input_tokens: int = 0  # including cached tokens
    n_cache_tokens: int = 0
    n_output_tokens: int = 0
    cost_usd: float | None = None
    rollout_details: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def time_left(self) -> float | None:
        """Seconds until the agent timeout, or None when there is none."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def add_usage(
        self,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_tokens: int = 0,
        cost_usd: float | None = None,
    ) -> None:
        self.n_input_tokens += input_tokens
        self.n_output_tokens += output_tokens
        self.n_cache_tokens += cache_tokens
        if cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + cost_usd


@runtime_checkable
class Agent(Protocol):
    """An agent. Construct with keyword arguments (the job's `--ak key=value` pairs)."""

    name: ClassVar[str]

    def version(self) -> str: ...

    def model_info(self) -> ModelInfo | None: ...

    async def setup(self, sandbox: Sandbox, ctx: AgentContext) -> None: ...

    async def run(self, instruction: str, sandbox: Sandbox, ctx: AgentContext) -> None: ...

    # Optional: ``async def preflight(self) -> str``, called once by `ttgen rollout` before any
    # container starts: one cheap check of what every trial will need (an LLM agent sends one
    # request with its settings). It raises to stop the job before it starts, else returns a
    # line for the user.
    #
    # Optional: ``def finish(self, ctx: AgentContext) -> None``, called on the host after the
    # container's /logs/agent was copied into ctx.logs_dir (also after a timeout or an error),
    # for work on the copied logs (Terminus 2 merges its keystrokes into the recording there).


async def exec_until_exit(
    sandbox: Sandbox,
    script: str,
    *,
    env: dict[str, str] | None = None,
    user: str | None = None,
    timeout: float | None = None,
) -> ExecResult:
    """Run `script` (sh syntax) and return as soon as it exits, as Harbor's exec-based agents do.

    A plain exec waits until every process holding its output pipe is gone, so a service that a
    solution leaves running (`nohup python3 -m http.server &`) would keep it waiting until the
    agent timeout, then be killed. Here the script's output goes to a file in the container and
    is read back by the same command: background processes hold the file, not the pipe, and keep
    running for the verifier. stdout holds stdout and stderr together, in order."""
    log = f"/tmp/.ttgen-exec-{uuid.uuid4().hex[:12]}.log"
    command = (
        f"( {script}\n) >{log} 2>&1 </dev/null; rc=$?; cat {log} 2>/dev/null; rm -f {log}; exit $rc"
    )
    return await sandbox.exec(command, env=env, user=user, timeout=timeout)
