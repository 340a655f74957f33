"""The Podman backend end to end (validation and a rollout job on Podman's engine), choosing a
backend by name (settings, TTGEN_BACKEND, JobOptions), and the image operations that differ
between the engines (import, copying the base image across)."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from pathlib import Path

import pytest

from conftest import BACKENDS_UNDER_TEST, job_containers, unique_dockerfile
from ttgen.errors import ConfigError, EngineUnavailableError
from ttgen.formats.trial import AgentSpec
from ttgen.rollout.job import Job, JobOptions, job_options, rollout_specs
from ttgen.rollout.validate import validate_tasks
from ttgen.sandbox import SandboxBackend, open_backend
from ttgen.sandbox.podman import PodmanBackend
from ttgen.settings import Settings, load_settings
from ttgen.task import Task

CHECK = """#!/bin/bash
if [ "$(cat /app/answer.txt 2>/dev/null)" = "42" ]; then echo 1; else echo 0; fi \
  > /logs/verifier/reward.txt
"""
SOLVE = "#!/bin/bash\necho 42 > /app/answer.txt\n"
# leaves a process running: the verifier gets a snapshot (commit + a container in its netns)
SOLVE_AND_SERVE = (
    "#!/bin/bash\necho 42 > /app/answer.txt\n"
    "nohup sleep 600 >/dev/null 2>&1 &\n"
)


def _results(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/result.json"))}


# -- choosing a backend (no engine needed) ------------------------------------------------------


def test_the_backend_setting_comes_from_the_file_or_the_environment(tmp_path):
    assert load_settings(cwd=tmp_path, environ={}).backend == "docker"
    (tmp_path / "ttgen.toml").write_text('backend = "podman"\n[images]\npull = false\n')
    assert load_settings(cwd=tmp_path, environ={}).backend == "podman"
    (tmp_path / "ttgen.toml").write_text('[sandbox]\nbackend = "Podman"\n')
    assert load_settings(cwd=tmp_path, environ={}).backend == "podman"
    env = {"TTGEN_BACKEND": "docker"}
    assert load_settings(cwd=tmp_path, environ=env).backend == "docker"
    with pytest.raises(ConfigError, match="TTGEN_BACKEND"):
        load_settings(cwd=tmp_path, environ={"TTGEN_BACKEND": "docker; rm -rf /"})


def test_unknown_backends_and_unreachable_engines_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown sandbox backend 'lxc': use one of docker, podman"):
        open_backend("lxc", Settings())
    with pytest.raises(ConfigError, match="unknown sandbox backend"):
        job_options(backend="lxc")
    dead = f"unix://{tmp_path}/no-engine.sock"
    with pytest.raises(EngineUnavailableError, match=r"podman backend.*no such socket") as info:
        open_backend("podman", Settings(), url=dead)
    assert "podman system service" in str(info.value)
    assert isinstance(info.value, ConfigError)
    with pytest.raises(EngineUnavailableError, match="docker backend"):
        open_backend("docker", Settings(), url=dead)
    b = open_backend("podman", Settings(backend="podman"), check=False, url=dead)
    assert isinstance(b, PodmanBackend) and isinstance(b, SandboxBackend)
    assert open_backend(None, Settings(backend="podman"), check=False).name == "podman"


# -- images -------------------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS_UNDER_TEST)
def backend_name(request) -> str:
    return request.param


async def test_a_root_file_system_imports_under_its_tag(backend, backend_name):
    """`images bootstrap` imports its rootfs through the engine's import (Podman 4 ignores the
    tag there and names the image :latest; the tag is set afterwards)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))

    async def chunks():
        yield buf.getvalue()

    tag = f"ttgen-test/import-{backend_name}:{uuid.uuid4().hex[:8]}"
    image_id = await backend.import_rootfs(chunks(), tag, ["WORKDIR /app", "ENV LANG=C.UTF-8"])
    try:
        found = await backend.image_exists(tag)
        assert found is not None and found["Id"] == image_id
        assert found["Config"]["WorkingDir"] == "/app"
        assert "LANG=C.UTF-8" in found["Config"]["Env"]
    finally:
        await backend.docker.images.delete(tag, force=True)


async def test_an_image_copies_from_docker_into_podman(
    docker_ready, podman_ready, settings, make_task
):
    async with (
        open_backend("docker", settings) as docker,
        open_backend("podman", settings) as podman,
    ):
        assert isinstance(podman, PodmanBackend)
        task = Task.load(make_task(dockerfile=unique_dockerfile("RUN echo copied > /copied\n")))
        ref = await docker.ensure_image(task)
        assert await podman.image_exists(ref.tag) is None
        await podman.load_image_from(docker, ref.tag)
        try:
            again = await podman.ensure_image(task)
            assert again.source == "cached" and podman.builds == 0
            async with await podman.start(task, job="copy", image=again) as sb:
                assert (await sb.exec("cat /copied")).stdout == "copied\n"
        finally:
            await podman.docker.images.delete(ref.tag, force=True)
            await docker.docker.images.delete(ref.tag, force=True)


# -- end to end on Podman ----------------------------------------------------------------------


async def test_validation_and_a_rollout_job_on_podman(podman_ready, docker_ready, make_task, tmp_path):
    """The same machinery as on Docker, with the backend chosen by name in the job's options:
    a valid task, passed and failed oracle trials (one verified in a snapshot), nothing left."""
    nonce = f"RUN echo {uuid.uuid4().hex} > /nonce\n"
    good = make_task("good", test_sh=CHECK, solve_sh=SOLVE, dockerfile=unique_dockerfile(nonce))
    served = make_task("served", test_sh=CHECK, solve_sh=SOLVE_AND_SERVE)
    bad = make_task("bad", test_sh=CHECK, solve_sh="#!/bin/bash\necho 41 > /app/answer.txt\n")
    opts = JobOptions(n_concurrent=3, retries=0, backend="podman")

    verdicts = await validate_tasks([good], tmp_path / "val", opts)
    assert [(v.verdict, v.rewards) for v in verdicts] == [("valid", {"nop": 0, "oracle": 1})]

    tasks = [Task.load(p) for p in (good, served, bad)]
    out = tmp_path / "job"
    result = await Job(out, rollout_specs(tasks, AgentSpec(name="oracle"), 1), opts).run()
    assert result["stats"]["outcomes"] == {"passed": 2, "failed": 1}
    rows = _results(out)
    assert {n: r["outcome"] for n, r in rows.items()} == {
        "bad__0": "failed",
        "good__0": "passed",
        "served__0": "passed",
    }
    assert rows["served__0"]["verifier_isolation"] == "snapshot"
    assert rows["good__0"]["verifier_isolation"] == "in_place"
    config = json.loads((out / "config.json").read_text())
    assert config["runs"][-1]["options"]["backend"] == "podman"
    assert await job_containers(config["job_id"]) == []
    # the trials ran on Podman's engine: the task's image was built in its store, not Docker's
    image = rows["good__0"]["environment"]["image"]
    async with open_backend("podman") as podman, open_backend("docker") as docker:
        assert await podman.image_exists(image) is not None
        assert await docker.image_exists(image) is None


def test_the_cli_runs_a_rollout_and_a_shell_command_on_podman(docker_ready, tmp_path):
    """`--backend podman` through the CLI, as a user types it: the example task's oracle
    rollout passes on Podman's engine and leaves no container there."""
    import asyncio

    from typer.testing import CliRunner

    from ttgen.cli import app

    repo = Path(__file__).resolve().parents[1]
    task = repo / "examples" / "tasks" / "hello-world"
    runner = CliRunner()
    r = runner.invoke(app, ["env", "exec", "--backend", "podman", str(task), "--",
                            "sh", "-c", "echo on-podman"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "on-podman" in r.output
    out = tmp_path / "job"
    r = runner.invoke(app, ["rollout", str(task), "--agent", "oracle", "--backend", "podman",
                            "--out", str(out)])  # fmt: skip
    assert r.exit_code == 0, r.output
    (result,) = _results(out).values()
    assert result["outcome"] == "passed"
    job = json.loads((out / "config.json").read_text())["job_id"]

    async def left() -> list[str]:
        async with open_backend("podman") as backend:
            return await backend.containers(job=job)

    assert asyncio.run(left()) == []
