"""Agents: who attempts a task. `create_agent(name, **kwargs)` builds one by name or import path."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from ttgen.agents.base import Agent, AgentContext, ModelInfo
from ttgen.errors import ConfigError

# name -> "module:Class"; loaded lazily so heavy agents cost nothing until used.
AGENTS: dict[str, str] = {
    "nop": "ttgen.agents.nop:NopAgent",
    "oracle": "ttgen.agents.oracle:OracleAgent",
    "terminus-2": "ttgen.agents.terminus2.agent:Terminus2Agent",
}


ENTRY_POINT_GROUP = "ttgen.agents"


def _plugin_target(name: str) -> str | None:
    """Agents other packages register under the `ttgen.agents` entry-point group."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.value
    return None


def agent_class(name: str) -> type:
    """The class for a registered agent name (built in, or a `ttgen.agents` entry point), or for
    an import path `package.module:Class`."""
    target = AGENTS.get(name) or _plugin_target(name) or name
    if ":" not in target:
        known = ", ".join(sorted(AGENTS))
        raise ConfigError(f"unknown agent {name!r}: use one of {known}, or module:Class")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load agent {name!r} from {target}: {exc}") from exc
    return cls


def create_agent(name: str, **kwargs: Any) -> Agent:
    cls = agent_class(name)
    try:
        agent = cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"agent {name!r}: {exc}") from exc
    if not isinstance(agent, Agent):
        raise ConfigError(f"{name!r} does not implement the agent interface (setup, run, ...)")
    return agent


__all__ = ["AGENTS", "Agent", "AgentContext", "ModelInfo", "agent_class", "create_agent"]
