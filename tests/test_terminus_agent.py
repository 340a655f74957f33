"""Terminus 2 end to end: a scripted teacher over real sockets drives tmux in a real container."""

from __future__ import annotations

import json
import threading
import time

import pytest

from conftest import BASE_IMAGE, job_containers
from ttgen.agents.terminus2.prompts import template_text
from ttgen.formats.trial import AgentSpec, Outcome
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


@pytest.mark.parametrize("tmux_control", [True, False], ids=["control-clients", "exec-calls"])
async def test_scripted_teacher_solves_a_task_through_terminus_2(
    backend, job_name, make_task, tmp_path, tmux_control
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
                kwargs={"model": "teacher", "base_url": server.base_url, "api_key": "k",
                        "tmux_control": tmux_control},
            ),
        )
        result = await Trial(spec, backend, tmp_path / "t", job_id=job_name).run()
    assert result.outcome == Outcome.PASSED, result.exception_info
    assert result.agent_info.name == "terminus-2"
    assert result.agent_info.model_info.name == "teacher"
    meta = result.agent_result.metadata
    assert meta["n_episodes"] == 4 and meta["ended"] == "task_complete"
    assert result.agent_result.n_input_tokens > 0
    # the instruction the agent was given, recorded with the trial (curation reads it)
    recorded = json.loads((tmp_path / "t" / "result.json").read_text())["instruction"]
    assert recorded == result.instruction == "Create /app/hello.txt containing the word Hello.\n"

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

    # The terminal recording: asciinema v2, the pane's output with the keystrokes merged in.
    cast = (tmp_path / "t" / "agent" / "recording.cast").read_text().splitlines()
    header = json.loads(cast[0])
    assert header["version"] == 2 and (header["width"], header["height"]) == (160, 40)
    events = [json.loads(line) for line in cast[1:]]
    assert [e[0] for e in events] == sorted(e[0] for e in events)
    inputs = [e[2] for e in events if e[1] == "i"]
    assert inputs == ["mkdir -p /app && cd /app\n", "echo Hello > hello.txt\n", "cat hello.txt\n"]
    output = "".join(e[2] for e in events if e[1] == "o")
    assert "cat hello.txt\r\n" in output and "Hello\r\n" in output
    assert next(e[2] for e in events if e[1] == "m") == "Episode 0: 2 commands"
    assert "Hello" in (tmp_path / "t" / "agent" / "terminus_2.pane").read_text()
    assert meta["recording"] is True


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


async def test_truncated_response_executes_nothing_and_is_asked_again(
    backend, job_name, make_task, tmp_path
):
    check = (
        "#!/bin/bash\n"
        'if [ "$(cat /app/hello.txt)" = Hello ] && [ ! -e /app/cut ]; then echo 1; else echo 0; fi'
        " > /logs/verifier/reward.txt\n"
    )
    task = Task.load(make_task(
        "cut", dockerfile=None, toml=f'[environment]\ndocker_image = "{BASE_IMAGE}"\n',
        instruction="Create /app/hello.txt containing the word Hello.\n", test_sh=check,
    ))  # fmt: skip
    script = [
        # A whole, valid action, but cut at the output limit: Harbor executes none of it.
        Reply(action([("mkdir -p /app; touch /app/cut\n", 0.1)]), finish_reason="length"),
        Reply('{"analysis": "I will write the fi', finish_reason="length"),
        action([("mkdir -p /app; echo Hello > /app/hello.txt\n", 1)], complete=True),
        action([], complete=True),
    ]
    async with ScriptedLLMServer(script) as server:
        spec = TrialSpec(task=task, trial_name="cut__0",
                         agent=terminus(server, max_tokens=256))  # fmt: skip
        result = await Trial(spec, backend, tmp_path / "t", job_id=job_name).run()
    assert result.outcome == Outcome.PASSED, result.exception_info  # /app/cut never made
    meta = result.agent_result.metadata
    assert meta["n_episodes"] == 2 and meta["output_length_errors"] == 2
    messages = json.loads((tmp_path / "t" / "agent" / "messages.json").read_text())
    error = (
        "ERROR!! NONE of the actions you just requested were performed because you exceeded "
        "256 tokens. Your outputs must be less than 256 tokens. Re-issue this request, breaking "
        "it into chunks each of which is less than 256 tokens."
    )
    assert messages[2]["content"] == error
    assert messages[3]["content"] == '{"analysis": "I will write the fi'
    # What the parser made of the cut JSON is passed on, as Harbor does.
    assert messages[4]["content"] == (
        error + "\n\nParser warnings from your truncated response:\n- No valid JSON object found"
    )
    assert [m["role"] for m in messages] == ["user", "assistant"] * 4
    traj = json.loads((tmp_path / "t" / "agent" / "trajectory.json").read_text())
    assert traj["steps"][1]["metrics"]["extra"]["finish_reason"] == "length"
    assert "tool_calls" not in traj["steps"][1]


async def test_xml_truncated_response_is_salvaged(backend, job_name, make_task, tmp_path):
    whole = (
        "<response>\n<analysis>a</analysis>\n<plan>p</plan>\n<commands>\n"
        '<keystrokes duration="0.5">mkdir -p /app; echo Hello > /app/hello.txt\n</keystrokes>\n'
        "</commands>\n<task_complete>true</task_complete>\n</response>"
    )
    script = [Reply(whole + "\n<response>\n<analysis>and then", finish_reason="length"), whole]
    async with ScriptedLLMServer(script) as server:
        spec = TrialSpec(task=hello_task(make_task), trial_name="xcut__0",
                         agent=terminus(server, template="xml"))  # fmt: skip
        result = await Trial(spec, backend, tmp_path / "t", job_id=job_name).run()
    assert result.outcome == Outcome.PASSED, result.exception_info
    messages = json.loads((tmp_path / "t" / "agent" / "messages.json").read_text())
    assert messages[1]["content"] == whole  # the complete response before the cut
    assert messages[2]["content"].startswith("Current terminal state:\n")
    assert result.agent_result.metadata["output_length_errors"] == 0


async def test_newer_json_template_and_rollout_details(backend, job_name, make_task, tmp_path):
    script = [
        action([("mkdir -p /app; echo Hello > /app/hello.txt\n", 1)], complete=True),
        action([], complete=True),
    ]
    async with ScriptedLLMServer(script) as server:
        spec = TrialSpec(task=hello_task(make_task), trial_name="new__0", agent=terminus(
            server, template="json", collect_rollout_details=True))  # fmt: skip
        result = await Trial(spec, backend, tmp_path / "t", job_id=job_name).run()
    assert result.outcome == Outcome.PASSED, result.exception_info
    messages = json.loads((tmp_path / "t" / "agent" / "messages.json").read_text())
    first = messages[0]["content"]
    assert first.startswith(template_text("json").split("{instruction}")[0])
    assert "You must end every command with a newline (\\n) or it will not execute." in first
    assert "Most bash commands should end with a newline" not in first
    body = server.requests[0].body
    assert body["logprobs"] is True and body["return_token_ids"] is True
    (details,) = result.agent_result.rollout_details
    assert len(details["completion_token_ids"]) == len(details["logprobs"]) == 2
    assert len(details["prompt_token_ids"]) == 2
    assert len(details["prompt_token_ids"][1]) > len(details["prompt_token_ids"][0])
    assert [len(x) for x in details["completion_token_ids"]] == [
        len(x) for x in details["logprobs"]
    ]
    traj = json.loads((tmp_path / "t" / "agent" / "trajectory.json").read_text())
    assert traj["steps"][1]["metrics"]["logprobs"] == details["logprobs"][0]


# -- context summarization ------------------------------------------------------------------


def terminus(server, **kwargs) -> AgentSpec:
    return AgentSpec(name="terminus-2", kwargs={
        "model": "teacher", "base_url": server.base_url, "api_key": "k", **kwargs,
    })  # fmt: skip


async def test_passive_summarization_on_context_overflow(backend, job_name, make_task, tmp_path):
    script = [
        action([("echo Hello > /app/hello.txt\n", 0.5)]),
        Error.vllm_context_length(),  # the next prompt does not fit
        "SUMMARY: wrote the file.",
        "Q1: is the file there?",
        "A1: yes.",
        action([], complete=True),
        action([], complete=True),
    ]
    async with ScriptedLLMServer(script) as server:
        spec = TrialSpec(task=hello_task(make_task), trial_name="p", agent=terminus(server))
        result = await Trial(spec, backend, tmp_path / "t", job_id=job_name).run()
        bodies = [r.body["messages"] for r in server.requests]
    assert result.outcome == Outcome.PASSED, result.exception_info
    assert result.agent_result.metadata["summarization_count"] == 1
    # the three handoff calls, as Harbor makes them
    assert bodies[2][-1]["content"].startswith(
        "You are about to hand off your work to another AI agent.\n"
        "            Please provide a comprehensive summary"
    )
    assert len(bodies[3]) == 1 and bodies[3][0]["content"].startswith(
        "You are picking up work from a previous AI agent on this task:\n\n**Original Task:** "
        "Create /app/hello.txt"
    )
    assert "**Summary from Previous Agent:**\nSUMMARY: wrote the file." in bodies[3][0]["content"]
    assert bodies[4][-1]["content"] == (
        "The next agent has a few questions for you, please answer each of them one by one in "
        "detail:\n\nQ1: is the file there?"
    )
    assert bodies[4][-2] == {"role": "assistant", "content": "SUMMARY: wrote the file."}
    # the new main context: first prompt, questions, then the handoff
    assert [m["role"] for m in bodies[5]] == ["user", "user", "assistant", "user"]
    assert bodies[5][3]["content"] == (
        "Here are the answers the other agent provided.\n\nA1: yes.\n\nContinue working on this "
        "task from where the previous agent left off. You can no longer ask questions. Please "
        "follow the spec to interact with the terminal."
    )
    agent_dir = tmp_path / "t" / "agent"
    messages = json.loads((agent_dir / "messages.json").read_text())
    assert messages[:4] == [dict(m) for m in bodies[5]]
    assert len(json.loads((agent_dir / "messages.ctx-1.json").read_text())) >= 2
    for name in ("summary", "questions", "answers"):
        assert (agent_dir / f"summarization-1-{name}.json").is_file()
    traj = json.loads((agent_dir / "trajectory.json").read_text())
    assert any(s["source"] == "system" for s in traj["steps"])


async def test_proactive_summarization_below_the_free_token_threshold(
    backend, job_name, make_task, tmp_path
):
    usage = {"prompt_tokens": 2900, "completion_tokens": 50, "total_tokens": 2950}
    script = [
        Reply(action([("echo Hello > /app/hello.txt\n", 0.5)]), usage=usage),
        "SUMMARY", "QUESTIONS", "ANSWERS",
        action([], complete=True), action([], complete=True),
    ]  # fmt: skip
    async with ScriptedLLMServer(script) as server:
        spec = TrialSpec(task=hello_task(make_task), trial_name="p", agent=terminus(
            server, context_window=4000, proactive_summarization_threshold=2000))  # fmt: skip
        result = await Trial(spec, backend, tmp_path / "t", job_id=job_name).run()
        bodies = [r.body["messages"] for r in server.requests]
    assert result.outcome == Outcome.PASSED, result.exception_info
    assert result.agent_result.metadata["summarization_count"] == 1
    assert bodies[1][-1]["content"].startswith("You are about to hand off your work")
    assert bodies[4][-1]["content"].startswith("Here are the answers the other agent provided.")


async def test_context_overflow_without_summarization_ends_the_run_and_still_scores(
    backend, job_name, make_task, tmp_path
):
    script = [action([("echo Hello > /app/hello.txt\n", 0.5)]), Error.openai_context_length()]
    async with ScriptedLLMServer(script) as server:
        spec = TrialSpec(task=hello_task(make_task), trial_name="p",
                         agent=terminus(server, enable_summarize=False))  # fmt: skip
        result = await Trial(spec, backend, tmp_path / "t", job_id=job_name).run()
    assert result.outcome == Outcome.PASSED  # the verifier scored the work done before
    assert result.agent_result.metadata["ended"] == "context_length_exceeded"
    assert len(server.requests) == 2  # a context-length error is never retried


def test_scripted_teacher_solves_the_bundled_examples(docker_ready, monkeypatch, tmp_path):
    """The bundled examples end to end: the teacher types each task's reference solution as a
    heredoc into the terminal, confirms twice, and the verifiers score 1."""
    import asyncio
    from pathlib import Path

    from ttgen.rollout.job import Job, JobOptions, load_tasks, rollout_specs
    from ttgen.task import find_tasks

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)  # the repository's ttgen.toml maps the examples' base images
    tasks, bad = load_tasks(find_tasks([repo / "examples" / "tasks"]))
    assert len(tasks) == 3 and not bad

    def teacher(body: dict) -> str:
        msgs = body["messages"]
        task = next(t for t in tasks if t.instruction.strip() in msgs[0]["content"])
        if sum(m["role"] == "assistant" for m in msgs) == 0:
            solve = task.solve_script.read_text()
            return action([
                (f"cat > /tmp/solve.sh <<'TTGEN_EOF'\n{solve}TTGEN_EOF\n", 0.5),
                ("bash /tmp/solve.sh; echo exit=$?\n", 30),
            ])  # fmt: skip
        return action([], complete=True)

    async def go():
        async with ScriptedLLMServer([], default=teacher) as server:
            spec = terminus(server)
            job = Job(tmp_path / "job", rollout_specs(tasks, spec, 1), JobOptions(n_concurrent=3))
            return await job.run()

    result = asyncio.run(go())
    assert result["stats"]["outcomes"] == {"passed": 3}, result["stats"]
    for t in ("hello-world", "csv-report", "fix-offline-repo"):
        messages = json.loads(
            (tmp_path / "job" / f"{t}__0" / "agent" / "messages.json").read_text()
        )
        assert "exit=0" in messages[2]["content"]
        assert [m["role"] for m in messages] == ["user", "assistant"] * 3


async def test_max_turns_and_agent_timeout_end_the_loop(backend, job_name, make_task, tmp_path):
    never_done = action([("echo still working\n", 0.1)])
    async with ScriptedLLMServer([], default=never_done) as server:
        spec = TrialSpec(task=hello_task(make_task), trial_name="m",
                         agent=terminus(server, max_turns=3))  # fmt: skip
        result = await Trial(spec, backend, tmp_path / "m", job_id=job_name).run()
    assert result.outcome == Outcome.FAILED
    assert result.agent_result.metadata["ended"] == "max_turns"
    assert result.agent_result.metadata["n_episodes"] == 3

    slow = action([("sleep 100\n", 60)])
    task = Task.load(make_task(
        "slow", dockerfile=None,
        toml=f'[environment]\ndocker_image = "{BASE_IMAGE}"\n[agent]\ntimeout_sec = 3.0\n',
        test_sh=CHECK,
    ))  # fmt: skip
    async with ScriptedLLMServer([], default=slow) as server:
        spec = TrialSpec(task=task, trial_name="s", agent=terminus(server))
        t0 = time.monotonic()
        result = await Trial(spec, backend, tmp_path / "s", job_id=job_name).run()
        elapsed = time.monotonic() - t0
    assert result.outcome == Outcome.AGENT_TIMEOUT
    assert elapsed < 20
    messages = json.loads((tmp_path / "s" / "agent" / "messages.json").read_text())
    assert messages[-1]["role"] == "assistant" and "sleep 100" in messages[-1]["content"]
    assert result.agent_result.n_input_tokens > 0  # usage kept even though the run was cut
    assert await job_containers(job_name) == []


async def test_history_files_are_rewritten_at_most_every_few_seconds(
    backend, job_name, make_task, tmp_path, monkeypatch
):
    """Each write of messages.json and trajectory.json encodes the whole history again: with
    fast turns they are written at most every FLUSH_EVERY_SEC while the agent runs (a write per
    turn makes a long trial's cost grow with the square of its turns), and in full at the
    end. The writes while it runs happen in the file writer thread, not on the event loop all
    trials share; the last one, indented, is on disk when the agent returns."""
    from ttgen.agents.terminus2 import agent as t2

    writes: list[tuple[float, str]] = []
    threads: set[str] = set()
    real, real_texts = t2._write, t2._write_texts

    def counting(path, data) -> None:
        writes.append((time.monotonic(), path.name))
        real(path, data)

    def counting_texts(files) -> None:
        threads.add(threading.current_thread().name)
        for path, _ in files:
            writes.append((time.monotonic(), path.name))
        real_texts(files)

    monkeypatch.setattr(t2, "_write", counting)
    monkeypatch.setattr(t2, "_write_texts", counting_texts)
    async with ScriptedLLMServer([], default=action([("echo turn\n", 0.1)])) as server:
        spec = TrialSpec(task=hello_task(make_task), trial_name="f",
                         agent=terminus(server, max_turns=12))  # fmt: skip
        result = await Trial(spec, backend, tmp_path / "f", job_id=job_name).run()
    assert result.agent_result.metadata["n_episodes"] == 12
    times = [t for t, name in writes if name == "messages.json"]
    assert len(times) <= 2 + (times[-1] - times[0]) / t2.FLUSH_EVERY_SEC, writes
    assert len(times) < 12
    assert len(times) >= 2 and all(n.startswith("ttgen-trial-files") for n in threads), threads
    text = (tmp_path / "f" / "agent" / "messages.json").read_text()
    assert text.startswith("[\n  {")  # the final write, indented
    messages = json.loads(text)
    assert sum(m["role"] == "assistant" for m in messages) == 12
    steps = json.loads((tmp_path / "f" / "agent" / "trajectory.json").read_text())["steps"]
    assert sum(s["source"] == "agent" for s in steps) == 12
