"""The agent registry: built-in names, entry-point plugins, import paths, clear errors."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

import ttgen.agents as agents
from ttgen.agents import Agent, agent_class, create_agent
from ttgen.agents.nop import NopAgent
from ttgen.agents.oracle import OracleAgent
from ttgen.errors import ConfigError


def test_builtin_agents_implement_the_interface():
    for name, cls in (("nop", NopAgent), ("oracle", OracleAgent)):
        agent = create_agent(name)
        assert isinstance(agent, cls) and isinstance(agent, Agent)
        assert agent.name == name and agent.model_info() is None


def test_import_path_and_entry_point_plugins(monkeypatch):
    assert agent_class("ttgen.agents.nop:NopAgent") is NopAgent
    plugin = EntryPoint(name="my-agent", value="ttgen.agents.oracle:OracleAgent",
                        group="ttgen.agents")  # fmt: skip
    monkeypatch.setattr(
        agents, "entry_points", lambda group: [plugin] if group == "ttgen.agents" else []
    )
    assert agent_class("my-agent") is OracleAgent


def test_unknown_agent_and_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match=r"unknown agent 'terminus-9'.*nop, oracle"):
        agent_class("terminus-9")
    with pytest.raises(ConfigError, match="cannot load agent"):
        agent_class("no.such.module:Agent")
    with pytest.raises(ConfigError, match=r"takes only `transcript` \(got temperature"):
        create_agent("oracle", temperature=0.7)
