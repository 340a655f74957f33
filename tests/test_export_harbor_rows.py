"""Harbor-style rows (`ttgen export --format harbor`): what `harbor traces export` makes of trials.

The first tests run a real job: a scripted teacher drives Terminus 2 in containers over three
tasks (one passes, one fails, one is planted in the benchmark so curation decontaminates it),
`ttgen curate` judges it, and `ttgen export --format harbor` writes the rows. The expected rows
are written out here by hand from Harbor's rules (episodes, think + message + tool-call blocks,
observations, columns). The rest build ATIF trajectories for the rules a short run does not reach
(summarization steps, copied context, tool definitions, continuations, job stats, exceptions,
optional columns, filters).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import BASE_IMAGE
from test_cli import scripted_server
from ttgen.cli import app
from ttgen.curate.curator import read_records
from ttgen.export.harbor import (
    HarborOptions,
    HarborRowError,
    harbor_schema,
    rows_for_records,
    rows_for_trials,
    trial_rows,
)
from ttgen.formats.trial import Outcome
from ttgen.testing import Reply
from ttgen.testing.trials import conversation, terminus_turn, write_trial

WIDE = {"COLUMNS": "400"}
TEACHER = "deepseek-ai/DeepSeek-V3.2"
COLUMNS = ["conversations", "agent", "model", "model_provider", "date", "task", "episode",
           "run_id", "trial_name", "result"]  # fmt: skip
# 14 words of the leak task's instruction, planted in the benchmark
PLANTED = "write the word leak into the file at the path slash app slash leak dot txt"
CHECK = """#!/bin/bash
if [ "$(cat /app/hello.txt 2>/dev/null)" = "Hello" ]; then echo 1; else echo 0; fi \\
  > /logs/verifier/reward.txt
"""
INSTRUCTIONS = {
    "hello": "Create /app/hello.txt containing the word Hello.\n",
    "wrong": "Also create /app/hello.txt containing the word Hello, please.\n",
    "leak": f"Please {PLANTED} and nothing more.\n",
}


def action(commands: list[tuple[str, float]], complete: bool = False) -> str:
    return json.dumps({
        "analysis": "Looking at the terminal.",
        "plan": "Run the next commands.",
        "commands": [{"keystrokes": k, "duration": d} for k, d in commands],
        "task_complete": complete,
    })  # fmt: skip


# What the teacher answers, per task and turn (the raw responses are the ATIF messages).
HELLO = [
    Reply(
        action([("mkdir -p /app && cd /app\n", 0.1), ("echo Hello > hello.txt\n", 0.5)]),
        reasoning="The file does not exist yet.",
    ),
    Reply("I think that is it."),  # no JSON: a parse error, nothing runs
    Reply(action([("cat hello.txt\n", 0.1)], complete=True), reasoning="Check, then finish."),
    Reply(action([], complete=True), reasoning="Confirmed."),
]
WRONG = [
    Reply(action([("echo nope\n", 0.1)], complete=True), reasoning="A guess."),
    Reply(action([], complete=True)),  # no reasoning: no think block
]
LEAK = [
    Reply(action([("echo leak > /app/leak.txt\n", 0.1)], complete=True), reasoning="Easy."),
    Reply(action([], complete=True), reasoning="Sure."),
]


def _teacher(body: dict) -> Reply:
    msgs = body["messages"]
    first = msgs[0]["content"]
    turn = sum(m["role"] == "assistant" for m in msgs)
    for name, script in (("hello", HELLO), ("wrong", WRONG), ("leak", LEAK)):
        if INSTRUCTIONS[name] in first:
            return script[turn]
    return Reply("ok")  # the pre-flight request


@pytest.fixture(scope="module")
def job(docker_ready, tmp_path_factory) -> dict[str, Path]:
    """A real job of three trials, its curated folder and the benchmark."""
    root = tmp_path_factory.mktemp("harbor-rows")
    tasks = root / "tasks"
    for name, instruction in INSTRUCTIONS.items():
        t = tasks / name
        (t / "environment").mkdir(parents=True)
        (t / "tests").mkdir()
        (t / "task.toml").write_text(  # (no network: none is needed)
            f'[metadata]\ncategory = "file-operations"\n\n[environment]\n'
            f'docker_image = "{BASE_IMAGE}"\nnetwork_mode = "no-network"\n'
        )
        (t / "instruction.md").write_text(instruction)
        (t / "tests" / "test.sh").write_text(CHECK)
    runner = CliRunner()
    out = root / "job"
    with scripted_server([], default=_teacher) as server:
        res = runner.invoke(app, ["rollout", str(tasks), "-a", "terminus-2", "--model", TEACHER,
                                  "--base-url", server.base_url, "-n", "3", "--out", str(out)],
                            env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    bench = root / "tb2" / "leaky"
    bench.mkdir(parents=True)
    (bench / "instruction.md").write_text(f"Some benchmark task: {PLANTED}.\n")
    data = root / "data"
    res = runner.invoke(app, ["curate", str(out), "--out", str(data), "--benchmark",
                              f"tb2={bench.parent}", "--json"], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    trials = {json.loads(p.read_text())["task_name"]: p.parent for p in out.glob("*/result.json")}
    return {"root": root, "job": out, "data": data, **{f"trial_{k}": v for k, v in trials.items()}}


def _steps(trial: Path) -> list[dict]:
    return json.loads((trial / "agent" / "trajectory.json").read_text())["steps"]


def _block(name: str, arguments: dict) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def test_a_real_terminus_2_run_gives_one_row_per_episode_with_tool_call_blocks(job):
    trial = job["trial_hello"]
    rows = trial_rows(trial)
    steps = _steps(trial)
    assert [s["source"] for s in steps] == ["user", "agent", "agent", "agent", "agent"]
    prompt = steps[0]["message"]
    assert "Task Description:\n" + INSTRUCTIONS["hello"] in prompt
    obs = [s["observation"]["results"][0]["content"] for s in steps[1:4]]
    assert obs[0].startswith("New Terminal Output:") and "echo Hello > hello.txt" in obs[0]
    assert obs[1].startswith("Previous response had parsing errors:")
    assert "Are you sure you want to mark the task as complete?" in obs[2]

    # the assistant turns, exactly: <think>reasoning</think>, the raw response, one block a call
    a0 = (
        "<think>The file does not exist yet.</think>\n" + HELLO[0].content + "\n"
        + _block("bash_command", {"keystrokes": "mkdir -p /app && cd /app\n", "duration": 0.1})
        + "\n"
        + _block("bash_command", {"keystrokes": "echo Hello > hello.txt\n", "duration": 0.5})
    )  # fmt: skip
    assert '{"name": "bash_command", "arguments": {"keystrokes": "mkdir -p /app && cd /app\\n", ' \
        '"duration": 0.1}}' in a0  # fmt: skip
    a1 = "I think that is it."  # a parse error: no reasoning, no call
    a2 = (
        "<think>Check, then finish.</think>\n" + HELLO[2].content + "\n"
        + _block("bash_command", {"keystrokes": "cat hello.txt\n", "duration": 0.1}) + "\n"
        + '<tool_call>\n{"name": "mark_task_complete", "arguments": {}}\n</tool_call>'
    )  # fmt: skip
    a3 = (
        "<think>Confirmed.</think>\n" + HELLO[3].content + "\n"
        + '<tool_call>\n{"name": "mark_task_complete", "arguments": {}}\n</tool_call>'
    )  # fmt: skip
    u = lambda text: {"role": "user", "content": text}  # noqa: E731
    a = lambda text: {"role": "assistant", "content": text}  # noqa: E731
    expected = [
        [u(prompt), a(a0)],
        [u(prompt), a(a0), u(obs[0]), a(a1)],
        [u(prompt), a(a0), u(obs[0]), a(a1), u(obs[1]), a(a2)],
        [u(prompt), a(a0), u(obs[0]), a(a1), u(obs[1]), a(a2), u(obs[2]), a(a3)],
    ]
    assert [r["conversations"] for r in rows] == expected
    assert [r["episode"] for r in rows] == ["episode-0", "episode-1", "episode-2", "episode-3"]

    result = json.loads((trial / "result.json").read_text())
    for r in rows:
        assert list(r) == COLUMNS
        assert r["agent"] == "terminus-2" and r["model"] == TEACHER
        assert r["model_provider"] == "unknown-provider"  # ttgen knows none; Harbor's default
        assert r["date"] == result["started_at"] and r["date"].endswith("Z")
        assert r["run_id"] == result["config"]["job_id"] != ""
        assert (r["task"], r["trial_name"]) == (result["task_name"], result["trial_name"])
        assert r["result"] == "1.0"
    # the Terminal-Corpus record of the same trial: one row, the conversation as the model saw it
    rec = next(x for x in read_records(job["data"]) if x["trial_dir"] == str(trial))
    assert len(rec["messages"]) == 8 and rec["model_provider"] is None


def test_a_failed_trial_has_result_0_0_and_no_think_block_without_reasoning(job):
    rows = trial_rows(job["trial_wrong"])
    assert [r["result"] for r in rows] == ["0.0", "0.0"]
    assert rows[1]["conversations"][-1]["content"] == (
        WRONG[1].content + '\n<tool_call>\n{"name": "mark_task_complete", "arguments": {}}\n'
        "</tool_call>"
    )


def test_export_writes_the_kept_trials_only_in_parquet_and_jsonl(job, tmp_path):
    runner = CliRunner()
    out = tmp_path / "harbor.parquet"
    res = runner.invoke(app, ["export", str(job["data"]), "--format", "harbor", "--out", str(out),
                              "--json"], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["trials"] == 2 and summary["outputs"]["default"]["rows"] == 6
    assert summary["options"]["harbor"] == {"episodes": "all", "filter": "all",
                                            "columns": COLUMNS}  # fmt: skip
    table = pq.read_table(out)
    assert table.schema.names == COLUMNS
    rows = table.to_pylist()
    # the decontaminated trial is not there; the others are, every episode
    dropped = [json.loads(x) for x in (job["data"] / "dropped.jsonl").read_text().splitlines()]
    assert [d["reason"] for d in dropped] == ["decontamination"]
    assert dropped[0]["task"].endswith("leak")
    kept = {job["trial_hello"].name, job["trial_wrong"].name}
    assert {r["trial_name"] for r in rows} == kept
    leak_trial = job["trial_leak"].name
    assert leak_trial not in {r["trial_name"] for r in rows}
    # the raw job, as `harbor traces export --path JOB` reads it: every trial, the leak too
    raw = rows_for_trials([job["job"]])
    assert len(raw) == 8 and leak_trial in {r["trial_name"] for r in raw}
    expected = rows_for_trials([job["trial_hello"], job["trial_wrong"]])
    key = lambda r: (r["trial_name"], r["episode"])  # noqa: E731
    assert sorted(rows, key=key) == sorted(expected, key=key)

    # --episodes last: each trial's last episode; JSON Lines as well
    last = tmp_path / "last.jsonl"
    res = runner.invoke(app, ["export", str(job["data"]), "--format", "harbor", "--episodes",
                              "last", "--out", str(last)], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "2 trial(s) exported" in res.stdout
    got = [json.loads(x) for x in last.read_text().splitlines()]
    last_of = {r["trial_name"]: r for r in expected}  # each trial's last row
    assert sorted(got, key=key) == sorted(last_of.values(), key=key)
    assert sorted(r["episode"] for r in got) == ["episode-1", "episode-3"]
    assert [list(r) for r in got] == [COLUMNS, COLUMNS]

    # the same from the records, as a function
    records = list(read_records(job["data"]))
    pairs = list(rows_for_records(records, HarborOptions(episodes="last")))
    assert [len(r) for _, r in pairs] == [1, 1]

    # usage errors
    res = runner.invoke(app, ["export", str(job["data"]), "--episodes", "last", "--out",
                              str(tmp_path / "x.parquet")], env=WIDE)  # fmt: skip
    assert res.exit_code == 2 and "--episodes is for --format harbor" in res.output
    res = runner.invoke(app, ["export", str(job["data"]), "--format", "harbor", "--episodes",
                              "first", "--out", str(tmp_path / "x.parquet")], env=WIDE)  # fmt: skip
    assert res.exit_code == 2 and "all or last" in res.output


def test_corpus_rows_and_harbor_rows_of_the_same_trials_line_up(job, tmp_path):
    from ttgen.export.corpus import corpus_row

    records = list(read_records(job["data"]))
    last = {r["trial_name"]: r for _, rows in rows_for_records(records) for r in rows or []}
    assert len(records) == len(last) == 2
    for rec in records:
        corpus, harbor = corpus_row(rec), last[rec["trial_name"]]
        same = ("agent", "model", "date", "task", "episode", "run_id", "trial_name")
        assert {k: corpus[k] for k in same} == {k: harbor[k] for k in same}
        assert corpus["date"].endswith("Z")
        # unknown provider: empty in the corpus, Harbor's placeholder in its rows
        assert (corpus["model_provider"], harbor["model_provider"]) == ("", "unknown-provider")
        # the same turns; the user turns are the same text, the assistant turns differ in form
        c, h = corpus["conversations"], harbor["conversations"]
        assert [m["role"] for m in c] == [m["role"] for m in h]
        assert [m for m in c if m["role"] == "user"] == [m for m in h if m["role"] == "user"]
        think = [m["content"] for m in c if m["content"].startswith("<think>\n")]
        assert think and all("<tool_call>" not in m["content"] for m in c)
        assert any("<tool_call>" in m["content"] for m in h)


# -- rules a short run does not reach: hand-made ATIF trajectories ------------------------------


def _trial(job_dir: Path, name: str, steps: list[dict], **kwargs) -> Path:
    extra = kwargs.pop("extra", {})
    d = write_trial(job_dir, name, task=kwargs.pop("task", name.split("__")[0]),
                    messages=conversation("Do it.", [terminus_turn("ls", think="t")]),
                    **kwargs)  # fmt: skip
    traj = {"schema_version": "ATIF-v1.5", "session_id": name, "trajectory_id": "x",
            "agent": {"name": "terminus-2", "version": "2", "model_name": "teacher-m"},
            "steps": steps}  # fmt: skip
    traj.update(extra)
    (d / "agent" / "trajectory.json").write_text(json.dumps(traj))
    return d


def _agent(message: str, obs: str | None = None, **extra) -> dict:
    step = {"source": "agent", "message": message, **extra}
    if obs is not None:
        step["observation"] = {"results": [{"content": obs}]}
    return step


def test_summarization_and_copied_context_steps(tmp_path):
    steps = [
        {"source": "user", "message": "\n PROMPT  \n"},
        _agent("r1", "out1", reasoning_content="think1"),
        {"source": "system", "message": "Performed context summarization and handoff to "
         "continue task.", "observation": {"results": [{"content": "proactive summarization 1",
                                                        "subagent_trajectory_ref": []}]}},
        _agent("copied", "out-copied", is_copied_context=True),
        _agent("pre</think>post", "out2"),  # orphaned </think>: gets its <think> back
    ]
    d = _trial(tmp_path / "job", "t__1", steps)
    rows = trial_rows(d)
    assert [r["episode"] for r in rows] == ["episode-0", "episode-1"]
    assert rows[0]["conversations"] == [
        {"role": "user", "content": "\n PROMPT  \n"},
        {"role": "assistant", "content": "<think>think1</think>\nr1"},
    ]
    assert rows[1]["conversations"] == [
        {"role": "user", "content": "\n PROMPT  \n"},
        {"role": "assistant", "content": "<think>think1</think>\nr1"},
        {"role": "user", "content": "out1"},
        {"role": "user", "content": "Performed context summarization and handoff to continue "
         "task."},
        {"role": "assistant", "content": "copied"},  # copied context: a turn, not an episode
        {"role": "user", "content": "out-copied"},
        {"role": "assistant", "content": "<think>pre</think>post"},
    ]  # fmt: skip
    assert rows[0]["model"] == "teacher-m"  # the trajectory's model name first
    assert trial_rows(d, HarborOptions(instruction=True))[0]["instruction"] == "PROMPT"


def test_tool_definitions_continuations_and_optional_columns(tmp_path):
    tools = [{"type": "function", "function": {"name": "bash_command"}}]
    steps = [
        {"source": "system", "message": "SYS"},
        {"source": "user", "message": "  PROMPT \n"},
        _agent("a", "o1", tool_calls=[{"tool_call_id": "c", "function_name": "bash_command",
                                       "arguments": {"keystrokes": "é\n", "duration": 1.0}}]),
    ]  # fmt: skip
    d = _trial(tmp_path / "job", "t__2", steps, provider="hosted_vllm",
               extra={"continued_trajectory_ref": "trajectory.cont-1.json"})  # fmt: skip
    traj = json.loads((d / "agent" / "trajectory.json").read_text())
    traj["agent"]["tool_definitions"] = tools
    (d / "agent" / "trajectory.json").write_text(json.dumps(traj))
    cont = {"agent": {"name": "terminus-2"},
            "steps": [{"source": "user", "message": "AGAIN"}, _agent("b")]}  # fmt: skip
    (d / "agent" / "trajectory.cont-1.json").write_text(json.dumps(cont))
    (d / "verifier").mkdir()
    (d / "verifier" / "test-stdout.txt").write_text("PASSED\n")
    (d / "verifier" / "test-stderr.txt").write_text("warn\n")
    opts = HarborOptions(instruction=True, verifier_output=True, sharegpt=True)
    rows = trial_rows(d, opts)
    assert [r["episode"] for r in rows] == ["episode-0", "episode-1"]
    first = rows[0]
    listing = json.dumps(tools, ensure_ascii=False, indent=2)
    assert first["conversations"][0] == {"role": "user",
                                         "content": f"<tools>\n{listing}\n</tools>\n\nSYS"}
    assert first["conversations"][2]["content"] == (
        'a\n<tool_call>\n{"name": "bash_command", "arguments": {"keystrokes": "é\\n", '
        '"duration": 1.0}}\n</tool_call>'
    )  # fmt: skip
    assert list(first) == [*COLUMNS[:9], "tool_definitions", "result", "instruction",
                           "verifier_output", "conversations_sharegpt"]  # fmt: skip
    assert first["model_provider"] == "hosted_vllm"
    # the first non-empty message of the first file by name, stripped: Harbor sorts the names,
    # and trajectory.cont-1.json comes before trajectory.json
    assert first["instruction"] == "AGAIN"
    (d / "agent" / "trajectory.cont-1.json").unlink()
    assert trial_rows(d, opts)[0]["instruction"] == "SYS"
    assert first["verifier_output"] == "PASSED\nwarn\n"
    assert [m["from"] for m in first["conversations_sharegpt"]] == ["human", "human", "gpt"]
    # the continuation: its own conversation (no tools there), numbered on
    assert rows[1]["conversations"] == [{"role": "user", "content": "AGAIN"},
                                        {"role": "assistant", "content": "b"}]  # fmt: skip
    assert "tool_definitions" not in rows[1]
    assert harbor_schema(opts).names == [*COLUMNS, "instruction", "verifier_output",
                                         "conversations_sharegpt"]  # fmt: skip


def test_result_column_and_success_filter(tmp_path):
    steps = [{"source": "user", "message": "P"}, _agent("a")]
    job_dir = tmp_path / "job"
    ok = _trial(job_dir, "ok__1", steps, reward=1.0)
    half = _trial(job_dir, "half__1", steps, reward=0.5, outcome=Outcome.FAILED)
    timeout = _trial(job_dir, "slow__1", steps, reward=0.0, outcome=Outcome.AGENT_TIMEOUT,
                     exception=("AgentTimeoutError", "ran out of time"))  # fmt: skip
    unscored = _trial(job_dir, "free__1", steps, reward=None, outcome=Outcome.UNVERIFIED)
    assert [trial_rows(d)[0]["result"] for d in (ok, half, timeout, unscored)] == [
        "1.0", "0.5", "AgentTimeoutError", None
    ]  # fmt: skip
    success = HarborOptions(filter="success")
    failure = HarborOptions(filter="failure")
    assert [bool(trial_rows(d, success)) for d in (ok, half, timeout, unscored)] == [
        True, True, False, False
    ]  # fmt: skip
    assert [bool(trial_rows(d, failure)) for d in (ok, half, timeout, unscored)] == [
        False, False, True, True
    ]  # fmt: skip
    # the job's result.json stats, when they list the trial, come first (Harbor reads them so)
    (job_dir / "result.json").write_text(json.dumps({"stats": {"evals": {"terminus-2__m": {
        "exception_stats": {"VerifierTimeoutError": ["half__1"]},
        "reward_stats": {"reward": {"1": ["ok__1"]}},
    }}}}))  # fmt: skip
    assert [trial_rows(d)[0]["result"] for d in (ok, half)] == ["1.0", "VerifierTimeoutError"]


def test_trials_that_give_no_rows_and_partly_curated_trials(tmp_path):
    job_dir = tmp_path / "job"
    bare = write_trial(job_dir, "bare__1", task="bare",
                       messages=conversation("Do it.", [terminus_turn("ls")]))  # fmt: skip
    with pytest.raises(HarborRowError, match=r"no agent/trajectory\.json"):
        trial_rows(bare)
    image = _trial(job_dir, "img__1", [
        {"source": "user", "message": [{"type": "image", "source": {"path": "x.png"}}]},
        _agent("a"),
    ])  # fmt: skip
    with pytest.raises(HarborRowError, match="images or audio"):
        trial_rows(image)
    # records: a trial whose summarized context curation dropped gives no rows; whole ones do
    good = _trial(job_dir, "good__1", [{"source": "user", "message": "P"}, _agent("a")])
    part = _trial(job_dir, "part__1", [{"source": "user", "message": "P"}, _agent("a")])
    records = [
        {"id": "j/good__1#ctx1", "trial_dir": str(good), "context": 0, "n_contexts": 2},
        {"id": "j/good__1", "trial_dir": str(good), "context": 1, "n_contexts": 2},
        {"id": "j/part__1", "trial_dir": str(part), "context": 1, "n_contexts": 2},
        {"id": "j/bare__1", "trial_dir": str(bare), "context": 0, "n_contexts": 1},
    ]
    problems: list[str] = []
    got = [(g[-1]["id"], rows) for g, rows in rows_for_records(records, problems=problems)]
    assert [(i, None if r is None else len(r)) for i, r in got] == [("j/good__1", 1),
                                                                    ("j/part__1", None)]
    assert problems == [f"j/bare__1: {bare}: no agent/trajectory.json (Harbor exports ATIF only)"]


def test_the_pipeline_export_stage_writes_harbor_rows_when_asked(job, tmp_path):
    from ttgen.pipeline.config import Export, load_pipeline
    from ttgen.pipeline.run import Runner
    from ttgen.pipeline.stages import _settings

    src = tmp_path / "tasks"
    src.mkdir()
    path = tmp_path / "p.yaml"
    path.write_text(f"sources: [{{tasks: {src}}}]\nexport: {{harbor: {{episodes: last}}}}\n")
    config = load_pipeline(path)
    assert config.export.harbor is not None
    assert (config.export.harbor.file, config.export.harbor.episodes) == ("harbor.parquet", "last")
    run = tmp_path / "run"
    shutil.copytree(job["data"], run / "curated")
    result = Runner(config, run, log=lambda *a, **k: None).run_stage("export")
    assert result.outputs == {"corpus": "export/corpus.parquet", "harbor": "export/harbor.parquet"}
    assert result.counts == {"corpus_rows": 2, "harbor_rows": 2}
    rows = pq.read_table(run / "export" / "harbor.parquet").to_pylist()
    assert sorted(r["episode"] for r in rows) == ["episode-1", "episode-3"]
    # without the section: none, and run folders made before it keep their fingerprint
    path.write_text(f"sources: [{{tasks: {src}}}]\n")
    assert load_pipeline(path).export.harbor is None
    assert "harbor" not in _settings(Export())


def test_copy_of_the_trial_folder_is_read_where_the_record_points(tmp_path):
    # rows come from the trial folder the record names: moved rollouts are a reported problem
    d = _trial(tmp_path / "job", "mv__1", [{"source": "user", "message": "P"}, _agent("a")])
    moved = tmp_path / "elsewhere"
    shutil.move(str(d), moved)
    problems: list[str] = []
    rec = {"id": "j/mv__1", "trial_dir": str(d), "context": 0, "n_contexts": 1}
    assert list(rows_for_records([rec], problems=problems)) == []
    assert problems == [f"j/mv__1: {d}: no valid result.json"]
