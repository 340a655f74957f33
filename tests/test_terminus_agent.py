"""Terminus 2 end to end: a scripted teacher over real sockets drives tmux in a real container."""

from __future__ import annotations

import json

from conftest import BASE_IMAGE, job_containers
from ttgen.agents.terminus2.prompts import template_text
from ttgen.rollout.models import AgentSpec, Outcome
from ttgen.rollout.trial import Trial, TrialSpec
from ttgen.task import Task
from ttgen.testing import Error, Reply, ScriptedLLMServer

CHECK = """#!/bin/bash
if [ "$(cat /app/hello.txt 2>/dev/null)" = "Hello" ]; then echo 1; else echo 0; fi \
  > /logs/verifier/reward.txt
"""


def action(commands: list[tuple[str, float]], complete: bool = False, **extra) -> str:
    return json.dumps({
        "analysis": "Looking at the terminal.",
        "plan": "Run the next commands.",
        "commands": [{"keystrokes": k, "duration": d} for k, d in commands],
        "task_complete": complete,
        **extra,
    })  # fmt: skip


def hello_task(make_task):
    return Task.load(make_task(
        "hello", dockerfile=None, toml=f'[environment]\ndocker_image = "{BASE_IMAGE}"\n',
        instruction="Create /app/hello.txt containing the word Hello.\n", test_sh=CHECK,
    ))  # fmt: skip


async def test_scripted_teacher_solves_a_task_through_terminus_2(
    backend, job_name, make_task, tmp_path
):
    script = [
        Reply(
            action([("mkdir -p /app && cd /app\n", 0.1), ("echo Hello > hello.txt\n", 5)]),
            reasoning="The file does not exist yet.",
        ),
        "I believe the task is done.",  # no JSON: parse error, nothing runs
        Error(503, "overloaded"),  # retried by the client, invisible to the conversation
        action([("cat hello.txt\n", 0.1)], complete=True),
        action([], complete=True),
    ]
    async with ScriptedLLMServer(script) as server:
        spec = TrialSpec(
            task=hello_task(make_task),
            trial_name="hello__0",
            agent=AgentSpec(
                name="terminus-2",
                kwargs={"model": "teacher", "base_url": server.base_url, "api_key": "k"},
            ),
        )
        result = await Trial(spec, backend, tmp_path / "t", job_id=job_name).run()
    assert result.outcome == Outcome.PASSED, result.exception_info
    assert result.agent_info.name == "terminus-2"
    assert result.agent_info.model_info.name == "teacher"
    meta = result.agent_result.metadata
    assert meta["n_episodes"] == 4 and meta["ended"] == "task_complete"
    assert result.agent_result.n_input_tokens > 0

    messages = json.loads((tmp_path / "t" / "agent" / "messages.json").read_text())
    roles = [m["role"] for m in messages]
    assert roles == ["user", "assistant"] * 4
    first = messages[0]["content"]
    assert first.startswith(template_text().split("{instruction}")[0])  # the paper's template
    assert "Task Description:\nCreate /app/hello.txt containing the word Hello.\n" in first
    assert "Current terminal state:\nCurrent Terminal Screen:\n" in first
    assert messages[1]["content"].startswith("<think>")
    assert "The file does not exist yet." in messages[1]["content"]
    assert messages[2]["content"].startswith("New Terminal Output:\n")
    assert "echo Hello > hello.txt" in messages[2]["content"]
    assert messages[4]["content"].startswith(
        "Previous response had parsing errors:\nERROR: No valid JSON found in response"
    )
    assert messages[6]["content"].startswith("Current terminal state:\n")
    assert "Hello" in messages[6]["content"]
    assert "Are you sure you want to mark the task as complete?" in messages[6]["content"]

    # Early completion: the 5 s duration of `echo` did not cost 5 s.
    traj = json.loads((tmp_path / "t" / "agent" / "trajectory.json").read_text())
    assert traj["steps"][1]["metrics"]["extra"]["command_wait_sec"] < 2
    assert [s["source"] for s in traj["steps"]] == ["user"] + ["agent"] * 4
    assert traj["steps"][1]["tool_calls"][1]["arguments"] == {
        "keystrokes": "echo Hello > hello.txt\n", "duration": 5
    }  # fmt: skip
    assert traj["steps"][4]["tool_calls"][-1]["function_name"] == "mark_task_complete"

    # What was sent: explicit temperature, the model name, no reasoning in the history.
    bodies = [r.body for r in server.requests if r.body.get("messages")]
    assert bodies[0]["temperature"] == 0.7 and bodies[0]["model"] == "teacher"
    assert all("<think>" not in m["content"] for b in bodies for m in b["messages"])
    assert len(bodies[-1]["messages"]) == 7
    assert await job_containers(job_name) == []


async def test_llm_outage_is_an_llm_error_not_a_model_failure(
    backend, job_name, make_task, tmp_path
):
    async with ScriptedLLMServer([], default=Error(500, "down")) as server:
        spec = TrialSpec(
            task=hello_task(make_task),
            trial_name="hello__0",
            agent=AgentSpec(name="terminus-2", kwargs={
                "model": "teacher", "base_url": server.base_url, "api_key": "k", "max_retries": 1,
            }),
        )  # fmt: skip
        result = await Trial(spec, backend, tmp_path / "t", job_id=job_name).run()
    assert result.outcome == Outcome.LLM_ERROR
    assert result.verifier_result is None
    assert await job_containers(job_name) == []


async def test_xml_template_end_to_end(backend, job_name, make_task, tmp_path):
    def xml(keys: str, complete: bool = False) -> str:
        cmds = f'<keystrokes duration="0.5">{keys}</keystrokes>\n' if keys else ""
        done = "<task_complete>true</task_complete>\n" if complete else ""
        return (f"<response>\n<analysis>a</analysis>\n<plan>p</plan>\n<commands>\n{cmds}"
                f"</commands>\n{done}</response>")  # fmt: skip

    script = [xml("echo Hello > /app/hello.txt && echo '<ok>'\n"), "nonsense",
              xml("", complete=True), xml("", complete=True)]  # fmt: skip
    async with ScriptedLLMServer(script) as server:
        spec = TrialSpec(
            task=hello_task(make_task),
            trial_name="xml__0",
            agent=AgentSpec(name="terminus-2", kwargs={
                "model": "teacher", "base_url": server.base_url, "api_key": "k",
                "template": "xml", "temperature": None,
            }),
        )  # fmt: skip
        result = await Trial(spec, backend, tmp_path / "t", job_id=job_name).run()
    assert result.outcome == Outcome.PASSED, result.exception_info
    messages = json.loads((tmp_path / "t" / "agent" / "messages.json").read_text())
    assert messages[0]["content"].startswith(template_text("xml").split("{instruction}")[0])
    assert "<ok>" in messages[2]["content"]  # keystrokes were sent raw
    assert messages[4]["content"] == (
        "Previous response had parsing errors:\nERROR: No <response> tag found\n\n"
        "Please fix these issues and provide a proper response."
    )
    assert "temperature" not in server.requests[0].body  # None = the server's default
