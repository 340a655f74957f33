"""Shared fixtures. The tests use a real Docker engine and the locally bootstrapped base image.

`scripts/test.sh` (the README's test command) installs and starts the engine and builds the base
image first; run from elsewhere, a missing engine fails these tests loudly instead of skipping.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import aiodocker
import pytest

from harbor_support import harbor  # noqa: F401  (the `harbor` fixture: Harbor's own code)
from ttgen.sandbox.docker import LABEL_JOB, DockerBackend
from ttgen.settings import ImageAlias, Settings, host_ca_bundle

BASE_IMAGE = os.environ.get("TTGEN_TEST_BASE_IMAGE", "ttgen/base:bookworm")


def _engine_state() -> str | None:
    async def probe() -> str | None:
        try:
            async with aiodocker.Docker() as d:
                await d.version()
                try:
                    await d.images.inspect(BASE_IMAGE)
                except aiodocker.DockerError:
                    return f"base image {BASE_IMAGE} is missing: run `ttgen images bootstrap` (scripts/test.sh does)"
        except Exception as exc:
            return f"no Docker engine: {exc}. Run the tests with scripts/test.sh, which starts one."
        return None

    return asyncio.run(probe())


@pytest.fixture(scope="session")
def docker_ready() -> None:
    problem = _engine_state()
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture
def job_name() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings() -> Settings:
    return Settings(
        aliases=[
            ImageAlias("ubuntu:*", BASE_IMAGE, "tests"),
            ImageAlias("debian:*", BASE_IMAGE, "tests"),
        ],
        pull=False,
        pids_limit=256,
    )


@pytest.fixture
def ca_settings() -> Settings:
    """Settings for builds that install from PyPI (domain images), which needs the host's CA
    bundle where HTTPS is intercepted. Override `settings` with it to use it in `backend`."""
    return Settings(
        aliases=[
            ImageAlias("ubuntu:*", BASE_IMAGE, "tests"),
            ImageAlias("debian:*", BASE_IMAGE, "tests"),
        ],
        extra_ca_cert=host_ca_bundle(),
        pull=False,
        pids_limit=512,
    )


@pytest.fixture
async def backend(docker_ready: None, settings: Settings, job_name: str):
    b = DockerBackend(settings)
    yield b
    # Whatever a test left running under its job label goes away.
    try:
        await b.gc(job=job_name)
    finally:
        await b.close()


async def job_containers(job: str) -> list[str]:
    async with aiodocker.Docker() as d:
        found = await d.containers.list(all=True, filters={"label": [f"{LABEL_JOB}={job}"]})
        return [c.id for c in found]


TaskFactory = Callable[..., Path]


@pytest.fixture
def make_task(tmp_path: Path) -> TaskFactory:
    """Write a task directory; every argument has a working default."""

    def make(
        name: str = "t",
        *,
        dockerfile: str | None = "FROM ubuntu:24.04\nWORKDIR /app\n",
        toml: str = 'schema_version = "1.2"\n',
        instruction: str = "Do the thing.\n",
        test_sh: str | None = "#!/bin/bash\necho 1 > /logs/verifier/reward.txt\n",
        solve_sh: str | None = None,
        env_files: dict[str, str | bytes] | None = None,
        parent: Path | None = None,
    ) -> Path:
        root = (parent or tmp_path) / name
        (root / "environment").mkdir(parents=True)
        if dockerfile is not None:
            (root / "environment" / "Dockerfile").write_text(dockerfile)
        for rel, content in (env_files or {}).items():
            p = root / "environment" / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content)
        (root / "task.toml").write_text(toml)
        (root / "instruction.md").write_text(instruction)
        if test_sh is not None:
            (root / "tests").mkdir()
            (root / "tests" / "test.sh").write_text(test_sh)
        if solve_sh is not None:
            (root / "solution").mkdir()
            (root / "solution" / "solve.sh").write_text(solve_sh)
        return root

    return make


def unique_dockerfile(extra: str = "") -> str:
    """A Dockerfile whose content (and so image tag) no earlier test run has built."""
    return f"FROM ubuntu:24.04\nWORKDIR /app\nLABEL test.nonce={uuid.uuid4().hex}\n{extra}"


@pytest.fixture
def umask_022():
    """The usual umask of a shared machine for one test (files 0644, folders 0755)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)
