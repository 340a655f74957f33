"""The `ttgen` command line: version, help for every command, and the `env` commands on Docker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

import ttgen
from conftest import BASE_IMAGE, job_containers
from ttgen.cli import app
from ttgen.llm import PREFLIGHT_PROMPT
from ttgen.sandbox.base import LABEL_JOB, LABEL_OWNER, owner_id
from ttgen.sandbox.engine_client import EngineClient
from ttgen.task import Task
from ttgen.testing import Error, Reply, ScriptedLLMServer

PREBUILT_TOML = f'[environment]\ndocker_image = "{BASE_IMAGE}"\n'
WIDE = {"COLUMNS": "400"}


@pytest.fixture
def runner(tmp_path, monkeypatch) -> CliRunner:
    # The CLI reads ./ttgen.toml; keep the repository's out of these tests.
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def write_task(
    root: Path,
    *,
    toml: str = PREBUILT_TOML,
    dockerfile: str | None = None,
    instruction: str | None = "Do the thing.\n",
) -> Path:
    root.mkdir(parents=True)
    (root / "task.toml").write_text(toml)
    if instruction is not None:
        (root / "instruction.md").write_text(instruction)
    (root / "environment").mkdir()
    if dockerfile is not None:
        (root / "environment" / "Dockerfile").write_text(dockerfile)
    (root / "tests").mkdir()
    (root / "tests" / "test.sh").write_text("#!/bin/sh\necho 1 > /logs/verifier/reward.txt\n")
    return root


def my_containers(job: str) -> list[str]:
    """Containers of `job` started by this process (other sessions may share the engine)."""

    async def go() -> list[str]:
        async with EngineClient() as d:
            found = await d.containers.list(
                all=True, filters={"label": [f"{LABEL_JOB}={job}", f"{LABEL_OWNER}={owner_id()}"]}
            )
            return [c.id for c in found]

    return asyncio.run(go())


# -- version and help -----------------------------------------------------------------------------


def test_version(runner):
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == f"ttgen {ttgen.__version__}"


def test_version_matches_the_installed_package():
    from importlib.metadata import version

    assert version("terminal-task-gen") == ttgen.__version__


def command_paths() -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []

    # Typer >= 0.2x vendors its own click, so groups are recognised by their `commands`.
    def walk(cmd, prefix: tuple[str, ...]) -> None:
        paths.append(prefix)
        subcommands = getattr(cmd, "commands", None) or {}
        for name, sub in sorted(subcommands.items()):
            if not getattr(sub, "hidden", False):
                walk(sub, (*prefix, name))

    walk(typer.main.get_command(app), ())
    return paths


def test_command_tree_is_walked():
    paths = set(command_paths())
    expected = {
        (),
        ("tasks",),
        ("tasks", "check"),
        ("tasks", "import-tb1"),
        ("images",),
        ("images", "build"),
        ("images", "bootstrap"),
        ("env",),
        ("env", "exec"),
        ("env", "shell"),
        ("env", "smoke"),
        ("env", "gc"),
    }
    assert expected <= paths


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "ttgen")
def test_help(runner, path):
    res = runner.invoke(app, [*path, "--help"], env=WIDE)
    assert res.exit_code == 0, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert "Usage:" in res.stdout
    usage = next(line for line in res.stdout.splitlines() if "Usage:" in line)
    for word in path:
        assert word in usage, (word, usage)
    # Something beyond the usage line: a description or options.
    assert len(res.stdout.strip().splitlines()) > 2


def test_no_arguments_shows_help(runner):
    res = runner.invoke(app, [])
    assert "Usage:" in res.output
    assert "tasks" in res.output and "env" in res.output


def test_a_command_imports_only_its_own_module():
    """`ttgen rollout ...` as a process loads the rollout module and none of the other
    commands' (train, synth, report...): a single trial's process does not pay for them, and
    every command is still reachable by name. What the imports made is out of the garbage
    collector's walks (frozen), and everything is when the process exits."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from ttgen.cli import main\n"
        "sys.argv = ['ttgen'] + sys.argv[1:]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "import gc\n"
        "print(gc.get_freeze_count(), len(gc.get_objects()))\n"
        "print(sorted(m for m in sys.modules if m.startswith('ttgen.cli.')))\n"
    )
    for argv, loaded, absent in (
        (["rollout", "--help"], {"jobs"}, {"train", "synth", "pipeline", "data", "evaluation"}),
        (["serve", "--help"], {"train"}, {"jobs", "synth", "pipeline", "data"}),
        (["--version"], set(), {"jobs", "train", "synth"}),
    ):
        done = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        lines = done.stdout.strip().splitlines()
        modules = {m.removeprefix("ttgen.cli.") for m in eval(lines[-1])}
        frozen, walked = (int(x) for x in lines[-2].split())
        assert frozen > 10_000 and walked < 1_000, (argv, frozen, walked)
        assert loaded <= modules and not (absent & modules), (argv, modules)
        assert "Usage:" in done.stdout or "ttgen" in done.stdout


# -- env exec ---------------------------------------------------------------------------------------


def test_env_exec_prints_output_and_exits_with_the_command_code(docker_ready, runner, tmp_path):
    task = write_task(tmp_path / "exec-task")
    res = runner.invoke(
        app, ["env", "exec", str(task), "--", "sh", "-c", "echo hi; echo oops >&2; exit 3"]
    )
    assert res.exit_code == 3, res.output
    assert res.stdout.strip() == "hi"
    assert "oops" in res.stderr
    assert my_containers("env-exec") == []


def test_env_exec_runs_in_the_image_workdir(docker_ready, runner, tmp_path):
    task = write_task(tmp_path / "wd", dockerfile=f"FROM {BASE_IMAGE}\nWORKDIR /srv/app\n", toml="")
    res = runner.invoke(app, ["env", "exec", str(task), "--", "pwd"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == "/srv/app"
    assert my_containers("env-exec") == []


def test_env_exec_timeout_exits_124(docker_ready, runner, tmp_path):
    task = write_task(tmp_path / "slow")
    t0 = time.monotonic()
    res = runner.invoke(app, ["env", "exec", "--timeout", "1", str(task), "--", "sleep", "30"])
    elapsed = time.monotonic() - t0
    assert res.exit_code == 124, res.output
    assert elapsed < 10, elapsed
    assert "timed out" in res.stderr
    assert my_containers("env-exec") == []


def test_env_exec_missing_task_exits_2_naming_the_path(runner, tmp_path):
    missing = tmp_path / "no-such-task"
    res = runner.invoke(app, ["env", "exec", str(missing), "--", "true"])
    assert res.exit_code == 2
    assert "error" in res.stderr
    assert str(missing) in res.stderr


def test_errors_show_bracketed_paths_and_table_names_literally(runner, tmp_path):
    # Rich markup must not eat "[x]" in a path or "[verifier]" in a task.toml problem.
    missing = tmp_path / "[x]" / "no-such-task"
    res = runner.invoke(app, ["env", "exec", str(missing), "--", "true"], env=WIDE)
    assert res.exit_code == 2
    assert f"{missing}: not a directory" in res.stderr
    task = write_task(tmp_path / "[wip] task", toml='[verifier]\ntimeout_sec = "soon"\n')
    res = runner.invoke(app, ["env", "exec", str(task), "--", "true"], env=WIDE)
    assert res.exit_code == 2
    assert f"{task / 'task.toml'}: [verifier] timeout_sec:" in res.stderr


def test_async_errors_are_printed_literally(capsys):
    # A build error carries Docker's log, whose lines look like markup ("[internal] load ...").
    import typer

    from ttgen.cli import _run
    from ttgen.errors import ImageBuildError

    async def build() -> None:
        raise ImageBuildError("build of [wip] task failed", "#1 [internal] load build definition")

    with pytest.raises(typer.Exit):
        _run(build())
    err = capsys.readouterr().err
    assert "error: build of [wip] task failed" in err
    assert "#1 [internal] load build definition" in err


def test_env_exec_invalid_task_exits_2_naming_the_file(runner, tmp_path):
    task = write_task(tmp_path / "broken", instruction=None)
    res = runner.invoke(app, ["env", "exec", str(task), "--", "true"])
    assert res.exit_code == 2
    assert str(task / "instruction.md") in res.stderr


def test_env_exec_build_failure_exits_2_with_the_build_error(docker_ready, runner, tmp_path):
    task = write_task(
        tmp_path / "nobuild",
        toml="",
        dockerfile=f"FROM {BASE_IMAGE}\nRUN echo boom-marker && exit 1\n",
    )
    res = runner.invoke(app, ["env", "exec", str(task), "--", "true"])
    assert res.exit_code == 2, res.output
    assert "build failed" in res.stderr
    assert "boom-marker" in res.stderr  # the tail of the build log
    assert my_containers("env-exec") == []


# -- env smoke --------------------------------------------------------------------------------------


@pytest.fixture
def smoke_suite(tmp_path: Path) -> Path:
    suite = tmp_path / "suite"
    write_task(suite / "good", toml="", dockerfile=f"FROM {BASE_IMAGE}\nWORKDIR /app\n")
    write_task(suite / "nobuild", toml="", dockerfile=f"FROM {BASE_IMAGE}\nRUN exit 1\n")
    write_task(suite / "invalid", instruction=None)
    return suite


def test_env_smoke_table(docker_ready, runner, smoke_suite):
    res = runner.invoke(app, ["env", "smoke", str(smoke_suite)], env=WIDE)
    assert res.exit_code == 1, res.output
    rows = {}
    for line in res.stdout.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if cells and cells[0] in ("good", "nobuild", "invalid"):
            rows[cells[0]] = cells
    assert set(rows) == {"good", "nobuild", "invalid"}, res.stdout
    assert rows["good"][1] == "ok" and rows["good"][5] == "0"
    assert rows["good"][6].endswith("| /app")  # the default command's output: uname, OS, pwd
    assert rows["nobuild"][1] == "ok" and "build" in rows["nobuild"][6]
    assert rows["invalid"][1] == "invalid" and "instruction.md" in rows["invalid"][6]
    assert "1/3 tasks passed" in res.stdout
    assert my_containers("smoke") == []


def test_env_smoke_json(docker_ready, runner, smoke_suite):
    res = runner.invoke(app, ["env", "smoke", "--json", str(smoke_suite)])
    assert res.exit_code == 1, res.output
    objs = {o["task"]: o for o in map(json.loads, res.stdout.splitlines())}
    assert set(objs) == {"good", "nobuild", "invalid"}
    assert objs["good"]["ok"] is True
    assert objs["good"]["exit_code"] == 0 and objs["good"]["error"] == ""
    assert objs["good"]["image_source"] in ("built", "cached")
    assert objs["nobuild"]["ok"] is False
    assert objs["nobuild"]["check_ok"] is True
    assert "build failed" in objs["nobuild"]["error"]
    assert objs["invalid"]["ok"] is False and objs["invalid"]["check_ok"] is False
    assert "instruction.md" in objs["invalid"]["error"]
    assert my_containers("smoke") == []


def test_env_smoke_all_good_exits_0(docker_ready, runner, tmp_path):
    write_task(tmp_path / "s" / "a")
    res = runner.invoke(app, ["env", "smoke", "--json", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    (obj,) = map(json.loads, res.stdout.splitlines())
    assert obj["ok"] is True and obj["image_source"] == "prebuilt"


# -- env gc ---------------------------------------------------------------------------------------


async def test_env_gc_removes_the_jobs_containers(backend, job_name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    task = Task.load(write_task(tmp_path / "gc-task"))
    sandbox = await backend.start(task, job=job_name)
    other = await backend.start(task, job=f"{job_name}-other")
    try:
        assert await job_containers(job_name) == [sandbox.id]
        # The CLI runs its own event loop, so it goes to a thread.
        res = await asyncio.to_thread(
            CliRunner().invoke, app, ["env", "gc", "--job", job_name], env=WIDE
        )
        assert res.exit_code == 0, res.output
        assert f"removed container {sandbox.name}" in res.stdout
        assert await job_containers(job_name) == []
        # Other jobs are left alone.
        assert await job_containers(f"{job_name}-other") == [other.id]
    finally:
        await other.stop()
        await sandbox.stop()


# -- rollout and validate ---------------------------------------------------------------------


def test_rollout_json_and_exit_code(docker_ready, runner, tmp_path):
    task = write_task(tmp_path / "tasks" / "one")
    (task / "solution").mkdir()
    (task / "solution" / "solve.sh").write_text("#!/bin/sh\necho done\n")
    out = tmp_path / "job"
    res = runner.invoke(
        app, ["rollout", str(tmp_path / "tasks"), "-a", "oracle", "-k", "2", "--out", str(out),
              "--json"], env=WIDE,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["stats"]["outcomes"] == {"passed": 2}
    assert data["stats"]["pass_at_k"] == {"1": 1.0, "2": 1.0}
    assert (out / "one__1" / "agent" / "oracle.txt").read_text() == "done\n"


def test_rollout_without_solution_is_an_agent_error_and_exits_1(docker_ready, runner, tmp_path):
    task = write_task(tmp_path / "nosol")
    out = tmp_path / "job"
    res = runner.invoke(
        app, ["rollout", str(task), "-a", "oracle", "--out", str(out), "--retries", "0"], env=WIDE
    )
    assert res.exit_code == 1, res.output
    assert "agent_error" in res.stdout
    exc = (out / "nosol__0" / "exception.txt").read_text()
    assert "no solution/solve.sh" in exc


def test_rollout_rejects_unknown_agent_and_bad_options(runner, tmp_path):
    task = write_task(tmp_path / "t")
    res = runner.invoke(app, ["rollout", str(task), "-a", "nosuch", "--out", str(tmp_path / "j")])
    assert res.exit_code == 2
    assert "unknown agent 'nosuch'" in res.stderr
    res = runner.invoke(
        app, ["rollout", str(task), "-a", "oracle", "--out", str(tmp_path / "j"), "--ak", "x"]
    )
    assert res.exit_code == 2
    assert "expected KEY=VALUE" in res.stderr
    res = runner.invoke(
        app, ["validate", str(task), "--out", str(tmp_path / "v"), "--keep", "good"]
    )
    assert res.exit_code == 2
    assert "unknown verdict" in res.stderr


def test_rollout_skips_invalid_tasks_naming_the_file(docker_ready, runner, tmp_path):
    write_task(tmp_path / "tasks" / "ok")
    write_task(tmp_path / "tasks" / "broken", toml="[environment\n")
    res = runner.invoke(
        app, ["rollout", str(tmp_path / "tasks"), "-a", "nop", "--out", str(tmp_path / "j")],
        env=WIDE,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "skipped" in res.stderr and "broken/task.toml" in res.stderr
    assert json.loads((tmp_path / "j" / "result.json").read_text())["skipped_tasks"][0][
        "path"
    ].endswith("broken")


def test_rollout_terminus_2_needs_a_model_and_endpoint(runner, tmp_path):
    task = write_task(tmp_path / "t")
    res = runner.invoke(
        app, ["rollout", str(task), "-a", "terminus-2", "--out", str(tmp_path / "j")]
    )
    assert res.exit_code == 2
    assert "model" in res.stderr
    res = runner.invoke(
        app, ["rollout", str(task), "-a", "terminus-2", "--model", "m", "--base-url", "localhost",
              "--out", str(tmp_path / "j")],
    )  # fmt: skip
    assert res.exit_code == 2
    assert "base_url" in res.stderr or "http" in res.stderr
    assert not (tmp_path / "j").exists()  # nothing started


@contextlib.contextmanager
def scripted_server(script=(), **kwargs):
    """A ScriptedLLMServer on a loop of its own (the CLI runs asyncio.run itself)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = ScriptedLLMServer(script, **kwargs)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_rollout_checks_the_model_endpoint_before_starting_anything(runner, tmp_path):
    task = write_task(tmp_path / "t")
    refused = Error(404, "The model `nope` does not exist.")
    with scripted_server([refused]) as server:
        res = runner.invoke(
            app, ["rollout", str(task), "-a", "terminus-2", "--model", "nope",
                  "--base-url", server.base_url, "--out", str(tmp_path / "j")], env=WIDE,
        )  # fmt: skip
        assert len(server.requests) == 1  # one test request, not retried (a 404 will not change)
        sent = server.requests[0].body
    assert res.exit_code == 2, res.output
    assert "failed a test request, so nothing was started" in res.stderr
    assert "does not exist" in res.stderr and "--model" in res.stderr
    assert not (tmp_path / "j").exists()
    # the request trials will send: the agent's sampling settings, one short user message
    assert sent["model"] == "nope" and sent["temperature"] == 0.7
    assert sent["messages"] == [{"role": "user", "content": PREFLIGHT_PROMPT}]


def test_rollout_preflight_passes_then_runs_and_can_be_skipped(runner, tmp_path):
    task = write_task(tmp_path / "t")
    done = Reply(json.dumps({"analysis": "a", "plan": "p", "commands": [], "task_complete": True}))
    with scripted_server([Reply("OK"), done, done]) as server:
        res = runner.invoke(
            app, ["rollout", str(task), "-a", "terminus-2", "--model", "m",
                  "--base-url", server.base_url, "--out", str(tmp_path / "j")], env=WIDE,
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert "ok: " in res.stderr and "/v1/chat/completions answered as m in" in res.stderr
        first_trial_request = server.requests[1].body["messages"][0]["content"]
        assert first_trial_request.startswith("You are an AI assistant tasked with solving")
        assert server.remaining == 0
    with scripted_server([done, done]) as server:
        res = runner.invoke(
            app, ["rollout", str(task), "-a", "terminus-2", "--model", "m", "--no-preflight",
                  "--base-url", server.base_url, "--out", str(tmp_path / "j2")], env=WIDE,
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert "checking" not in res.stderr
        assert server.requests[0].body["messages"][0]["content"].startswith("You are an AI")
    trial = next(p for p in (tmp_path / "j2").iterdir() if (p / "result.json").exists())
    assert json.loads((trial / "result.json").read_text())["outcome"] == "passed"
