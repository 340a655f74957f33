"""What a new user runs into first: refused commands that must not touch a finished job, files
others can read, empty results that are errors, builds retried only for infrastructure, and
TLS interception explained (issue 16's "data and state")."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from conftest import BASE_IMAGE, unique_dockerfile
from ttgen.cli import app
from ttgen.export.writers import RowWriter
from ttgen.fileio import write_json_atomic
from ttgen.formats.trial import AgentSpec, Outcome
from ttgen.rollout.job import Job, JobOptions, rollout_specs
from ttgen.task import Task
from ttgen.testing.trials import conversation, terminus_turn, write_trial

# CLI tests run outside the repository (no ttgen.toml): map the examples' base image here.
WIDE = {"COLUMNS": "400", "TTGEN_IMAGE_ALIASES": f"ubuntu:*={BASE_IMAGE}"}
PASS_IF_ANSWER = """#!/bin/bash
if [ "$(cat /app/answer.txt 2>/dev/null)" = "42" ]; then echo 1; else echo 0; fi \
  > /logs/verifier/reward.txt
"""
SOLVE = "#!/bin/bash\necho 42 > /app/answer.txt\n"
TLS_LINE = (
    "ERROR: Could not install packages: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
    "failed: unable to get local issuer certificate"
)


@pytest.fixture
def runner(tmp_path, monkeypatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # no repository ttgen.toml: only what the test sets
    return CliRunner()


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder` (the lock file aside): content and modification time."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


# -- a refused or failed start leaves the job as it was ------------------------------------------


def test_a_refused_or_failed_start_leaves_a_finished_job_untouched(
    docker_ready, runner, make_task, tmp_path
):
    make_task("t", test_sh=PASS_IF_ANSWER, solve_sh=SOLVE, parent=tmp_path / "tasks")
    job = tmp_path / "runs" / "oracle"
    res = runner.invoke(app, ["rollout", str(tmp_path / "tasks"), "--agent", "oracle",
                              "--out", str(job)], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    before = snapshot(job)
    assert json.loads(before["result.json"][0])["stats"]["outcomes"] == {"passed": 1}

    # another agent in the same folder: refused, naming the agents as a user does
    res = runner.invoke(app, ["rollout", str(tmp_path / "tasks"), "--agent", "nop",
                              "--out", str(job)], env=WIDE)  # fmt: skip
    assert res.exit_code == 2
    assert "was run with agent oracle; this command asks for agent nop" in res.output
    assert "kwargs" not in res.output
    assert snapshot(job) == before

    # the engine is unreachable: the start fails, the job stays as it was
    dead = {**WIDE, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    res = runner.invoke(app, ["rollout", str(tmp_path / "tasks"), "--agent", "oracle",
                              "--out", str(job), "-k", "2"], env=dead)  # fmt: skip
    assert res.exit_code == 2, res.output
    assert snapshot(job) == before
    # ... and a new job folder is not left behind half-made
    fresh = tmp_path / "runs" / "fresh"
    res = runner.invoke(app, ["rollout", str(tmp_path / "tasks"), "--agent", "oracle",
                              "--out", str(fresh)], env=dead)  # fmt: skip
    assert res.exit_code == 2 and not fresh.exists()

    # the oracle's job gives no conversation: curate says how to get one, and writes nothing
    data = tmp_path / "data"
    res = runner.invoke(app, ["curate", str(job), "--out", str(data), "--no-decontam"], env=WIDE)
    assert res.exit_code == 1
    assert "no record kept from 1 trial(s)" in res.output
    assert "--ak transcript=true" in res.output
    assert not data.exists()
    # doing what it says gives records
    job2 = tmp_path / "runs" / "oracle-transcript"
    res = runner.invoke(app, ["rollout", str(tmp_path / "tasks"), "--agent", "oracle",
                              "--ak", "transcript=true", "--out", str(job2)], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["curate", str(job2), "--out", str(data), "--no-decontam"], env=WIDE)
    assert res.exit_code == 0, res.output
    assert len((data / "records.jsonl").read_text().splitlines()) == 1


# -- modes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_atomic_writes_give_the_mode_a_plain_write_gives(tmp_path, mask):
    old = os.umask(mask)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        want = plain.stat().st_mode & 0o777
        write_json_atomic(tmp_path / "run.json", {"a": 1})
        w = RowWriter(tmp_path / "rows.parquet", schema=pa.schema([("a", pa.int64())]))
        w.write({"a": 1})
        w.close()
        w = RowWriter(tmp_path / "rows.jsonl.gz")
        w.write({"a": 1})
        w.close()
        for name in ("run.json", "rows.parquet", "rows.jsonl.gz"):
            assert (tmp_path / name).stat().st_mode & 0o777 == want, name
    finally:
        os.umask(old)


def test_saved_tasks_and_curated_folders_are_readable_by_others(tmp_path, umask_022):
    task = Task.load(Path(__file__).resolve().parents[1] / "examples" / "tasks" / "hello-world")
    task.save(tmp_path / "copy")
    assert (tmp_path / "copy").stat().st_mode & 0o777 == 0o755
    job = tmp_path / "job"
    write_trial(
        job,
        "a__0",
        task="a",
        messages=conversation("Say hi.", [terminus_turn("echo hi", complete=True)]),
    )
    res = CliRunner().invoke(
        app, ["curate", str(job), "--out", str(tmp_path / "d"), "--no-decontam"]
    )
    assert res.exit_code == 0, res.output
    for name in ("records.jsonl", "dropped.jsonl", "curate.json"):
        assert (tmp_path / "d" / name).stat().st_mode & 0o777 == 0o644, name


# -- empty where data was expected ---------------------------------------------------------------


def test_curate_on_task_folders_says_they_are_tasks_not_rollouts(runner, make_task, tmp_path):
    for name in ("a", "b"):
        make_task(name, parent=tmp_path / "tasks")
    res = runner.invoke(app, ["curate", str(tmp_path / "tasks"), "--out", str(tmp_path / "d"),
                              "--no-decontam"], env=WIDE)  # fmt: skip
    assert res.exit_code == 2
    assert "holds 2 task folder(s) (task.toml), not rollouts" in res.output
    assert "ttgen rollout" in res.output
    assert not (tmp_path / "d").exists()


def test_curation_that_keeps_nothing_fails_and_keeps_the_previous_output(runner, tmp_path):
    job = tmp_path / "job"
    for i in range(3):
        write_trial(job, f"t{i}__0", task=f"t{i}", messages=None, agent="nop")
    data = tmp_path / "d"
    data.mkdir()
    (data / "records.jsonl").write_text('{"old": 1}\n')
    res = runner.invoke(app, ["curate", str(job), "--out", str(data), "--no-decontam"], env=WIDE)
    assert res.exit_code == 1
    assert "no record kept from 3 trial(s)" in res.output
    assert "no_conversation 3" in res.output and "nop agent does nothing" in res.output
    assert (data / "records.jsonl").read_text() == '{"old": 1}\n'
    assert sorted(p.name for p in data.iterdir()) == ["records.jsonl"]


def test_export_of_an_empty_curated_folder_is_an_error_that_says_why(runner, tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    (data / "records.jsonl").write_text("")
    (data / "curate.json").write_text(json.dumps({
        "kind": "curate", "counts": {"trials": 4, "records_in": 4, "kept": 0},
        "dropped": {"decontamination": 4}}))  # fmt: skip
    out = tmp_path / "corpus.parquet"
    res = runner.invoke(app, ["export", str(data), "--out", str(out)], env=WIDE)
    assert res.exit_code == 2
    assert "would have 0 rows" in res.output
    assert (
        "curation kept 0 of 4 conversation(s) from 4 trial(s) (dropped: decontamination 4)"
        in res.output
    )
    assert not out.exists() and not list(tmp_path.glob("*.export.json"))


def test_a_curriculum_whose_first_stage_is_empty_is_an_error(runner, tmp_path):
    job = tmp_path / "job"
    write_trial(job, "t__0", task="t", task_metadata={"source": "skill_synth"},
                messages=conversation("Do it.", [terminus_turn("ls", complete=True)]))  # fmt: skip
    data = tmp_path / "d"
    assert (
        runner.invoke(app, ["curate", str(job), "--out", str(data), "--no-decontam"]).exit_code == 0
    )
    out = tmp_path / "c.jsonl"
    res = runner.invoke(app, ["export", str(data), "--out", str(out), "--mix", "curriculum"],
                        env=WIDE)  # fmt: skip
    assert res.exit_code == 2
    assert "c.stage1.jsonl would have 0 rows" in res.output
    assert "no record of subsets dataset_adapters for stage 1" in res.output
    assert not list(tmp_path.glob("c.*"))


def test_a_pipeline_input_that_does_not_exist_is_named_with_the_file(runner, tmp_path):
    cfg = tmp_path / "conf" / "p.yaml"
    cfg.parent.mkdir()
    cfg.write_text("sources:\n  - adapter: math\n    input: nothere.jsonl\n")
    for extra in (["--dry-run"], []):
        res = runner.invoke(app, ["run", str(cfg), *extra], env=WIDE)
        assert res.exit_code == 2, res.output
        text = " ".join(res.output.split())
        assert f"{cfg}: sources[0].input: 'nothere.jsonl' does not exist" in text
        assert f"resolved to {tmp_path / 'conf' / 'nothere.jsonl'}" in text
        assert "tasks planned" not in text


# -- builds: retried only for infrastructure; TLS interception named -----------------------------


def _job(out: Path, tasks: list[Path], retries: int = 2) -> Job:
    specs = rollout_specs([Task.load(t) for t in tasks], AgentSpec(name="oracle"), 1)
    opts = JobOptions(n_concurrent=2, retries=retries, retry_min_wait_sec=0.05,
                      retry_max_wait_sec=0.1)  # fmt: skip
    return Job(out, specs, opts)


async def test_a_broken_dockerfile_is_built_once_and_an_infrastructure_failure_retried(
    docker_ready, make_task, tmp_path
):
    broken = make_task("broken", dockerfile=unique_dockerfile("RUN exit 7\n"), solve_sh=SOLVE)
    flaky = make_task("dns", solve_sh=SOLVE, dockerfile=unique_dockerfile(
        "RUN echo \"W: Failed to fetch http://deb.debian.org/x  Temporary failure resolving "
        "'deb.debian.org'\" && exit 100\n"))  # fmt: skip
    out = tmp_path / "job"
    await _job(out, [broken, flaky]).run()
    b = json.loads((out / "broken__0" / "result.json").read_text())
    assert b["outcome"] == Outcome.BUILD_ERROR and b["retries"] == []
    assert (
        "the task's own environment failed to build: not retried"
        in b["exception_info"]["exception_message"]
    )
    d = json.loads((out / "dns__0" / "result.json").read_text())
    assert d["outcome"] == Outcome.BUILD_ERROR and len(d["retries"]) == 2
    assert (
        "looks like infrastructure, will be retried: a name did not resolve"
        in d["exception_info"]["exception_message"]
    )
    log = (out / "job.log").read_text()
    assert (
        "broken__0: build_error of the task's own environment (deterministic): not retried" in log
    )


def test_tls_interception_names_the_setting_that_fixes_it(
    docker_ready, runner, make_task, tmp_path
):
    # a build step that meets an intercepting proxy (pip's own words), not retried
    task = make_task("tls", solve_sh=SOLVE,
                     dockerfile=unique_dockerfile(f"RUN echo '{TLS_LINE}' && exit 1\n"))  # fmt: skip
    out = tmp_path / "job"
    res = runner.invoke(app, ["validate", str(task), "--out", str(out)], env=WIDE)
    text = " ".join(res.output.split())
    assert "TTGEN_EXTRA_CA_CERT=host" in text, res.output
    nop = json.loads((out / "tls__nop" / "result.json").read_text())
    assert (
        nop["retries"] == [] and "TTGEN_EXTRA_CA_CERT" in nop["exception_info"]["exception_message"]
    )
    # a command in a container that fails the same way
    ok = make_task("ok", dockerfile="FROM ubuntu:24.04\nWORKDIR /app\n")
    res = runner.invoke(app, ["env", "exec", str(ok), "--", "sh", "-c",
                              f"echo \"{TLS_LINE}\" >&2; exit 1"], env=WIDE)  # fmt: skip
    assert res.exit_code == 1
    assert "hint:" in res.output and "TTGEN_EXTRA_CA_CERT" in res.output
    # a verifier that cannot install its test tools: the oracle's verdict says why
    vt = make_task("verifier-tls", solve_sh=SOLVE, dockerfile="FROM ubuntu:24.04\nWORKDIR /app\n",
                   test_sh=f"#!/bin/bash\necho \"{TLS_LINE}\"\necho 0 > /logs/verifier/reward.txt\n")  # fmt: skip
    res = runner.invoke(app, ["validate", str(vt), "--out", str(tmp_path / "v2"), "--json"],
                        env=WIDE)  # fmt: skip
    text = " ".join(res.output.split())
    assert "oracle_failed" in text and "TTGEN_EXTRA_CA_CERT=host" in text, res.output


# -- progress lines agree with the result --------------------------------------------------------


@pytest.mark.parametrize("log_sec", [None, 0.0])
def test_curate_progress_never_leaves_a_stale_count_above_the_table(
    runner, tmp_path, monkeypatch, log_sec
):
    import ttgen.cli

    if log_sec is not None:  # a long run in a log: a line per interval, the last one final
        monkeypatch.setattr(ttgen.cli._Ticker, "LOG_SEC", log_sec)
    job = tmp_path / "job"
    for i in range(9):
        msgs = conversation(
            f"Task number {i}: print {i}.", [terminus_turn(f"echo {i}", complete=True)]
        )
        write_trial(job, f"t{i}__0", task=f"t{i}", messages=None if i < 2 else msgs,
                    agent="nop" if i < 2 else "terminus-2")  # fmt: skip
    res = runner.invoke(app, ["curate", str(job), "--out", str(tmp_path / "d"), "--no-decontam",
                              "--no-dedup"], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    lines = [x for x in res.output.splitlines() if " trials: " in x]
    if log_sec is None:
        assert lines == []  # a short run prints no progress at all
    else:
        assert lines and lines[-1] == "9 trials: 7 kept, 2 dropped"


def test_adapting_an_empty_input_is_an_error_and_writes_nothing(runner, tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    res = runner.invoke(app, ["adapt", "math", "--input", str(tmp_path / "empty.jsonl"),
                              "--out", str(tmp_path / "tasks")], env=WIDE)  # fmt: skip
    assert res.exit_code == 2
    assert "empty.jsonl: no records (empty input); nothing was written" in res.output
    assert not (tmp_path / "tasks").exists()


def test_stats_say_adapter_records_have_no_difficulty_instead_of_a_dash(runner, tmp_path):
    job = tmp_path / "job"
    for name, meta in (("m", {"source": "adapter"}), ("s", {"source": "skill_synth",
                                                            "difficulty": "hard"})):  # fmt: skip
        msgs = conversation(f"Task {name}: count the files.", [terminus_turn("ls", complete=True)])
        write_trial(job, f"{name}__0", task=name, task_metadata=meta, messages=msgs)
    data = tmp_path / "d"
    assert (
        runner.invoke(app, ["curate", str(job), "--out", str(data), "--no-decontam"]).exit_code == 0
    )
    res = runner.invoke(app, ["stats", str(data), "--json"], env=WIDE)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["by_difficulty"] == {"n/a (adapter)": 1, "hard": 1}
