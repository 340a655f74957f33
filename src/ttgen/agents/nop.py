"""`nop`: does nothing. A task's verifier must give it 0, or the task checks nothing."""

from __future__ import annotations

from typing import ClassVar

from ttgen import __version__
from ttgen.agents.base import AgentContext, ModelInfo
from ttgen.sandbox.base import Sandbox


class NopAgent:
    name: ClassVar[str] = "nop"

    def __init__(self, **kwargs: object) -> None:
        if kwargs:
            raise TypeError(f"the nop agent takes no options (got {', '.join(kwargs)})")

    def version(self) -> str:
        return __version__

    def model_info(self) -> ModelInfo | None:
        return None

    async def setup(self, sandbox: Sandbox, ctx: AgentContext) -> None:
        return None

    async def run(self, instruction: str, sandbox: Sandbox, ctx: AgentContext) -> None:
        return None
