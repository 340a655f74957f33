"""Shared fixtures. The tests use real engines (Docker, and Podman for the tests that run on both
sandbox backends) and the locally bootstrapped base image.

`scripts/test.sh` (the README's test command) installs and starts the engines and builds the base
image first; run from elsewhere, a missing engine fails these tests loudly instead of skipping.

`backend` is a sandbox backend opened by name (`backend_name`, "docker" unless a module
parametrizes it over BACKENDS_UNDER_TEST, as the sandbox tests do).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from harbor_support import harbor  # noqa: F401  (the `harbor` fixture: Harbor's own code)
from ttgen.sandbox import open_backend
from ttgen.sandbox.backends import probe
from ttgen.sandbox.base import LABEL_JOB
from ttgen.sandbox.engine_client import EngineClient
from ttgen.sandbox.podman import default_podman_url
from ttgen.settings import ImageAlias, Settings, host_ca_bundle

BASE_IMAGE = os.environ.get("TTGEN_TEST_BASE_IMAGE", "ttgen/base:bookworm")
BACKENDS_UNDER_TEST = ("docker", "podman")


def _engine_state(name: str = "docker") -> str | None:
    """None when backend `name`'s engine answers and has the base image, else what is wrong.
    Podman's store gets the base image copied from Docker's when only Docker has it."""

    async def check() -> str | None:
        try:
            async with open_backend(name, Settings(pull=False), check=False) as b:
                await b.ping()
                if await b.image_exists(BASE_IMAGE) is not None:
                    return None
                if name == "podman":
                    async with open_backend("docker", Settings(pull=False), check=False) as d:
                        if await d.image_exists(BASE_IMAGE) is not None:
                            await b.load_image_from(d, BASE_IMAGE)  # type: ignore[attr-defined]
                            return None
                return (
                    f"base image {BASE_IMAGE} is missing in {name}'s store: run "
                    "`ttgen images bootstrap` (scripts/test.sh does)"
                )
        except Exception as exc:
            return (
                f"no {name} engine: {exc}. Run the tests with scripts/test.sh, which starts one."
            )

    return asyncio.run(check())


@pytest.fixture(scope="session")
def docker_ready() -> None:
    problem = _engine_state("docker")
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def podman_ready() -> None:
    problem = _engine_state("podman")
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture
def backend_name() -> str:
    """The sandbox backend of `backend`; modules parametrize it over BACKENDS_UNDER_TEST."""
    return "docker"


@pytest.fixture
def engine_ready(request: pytest.FixtureRequest, backend_name: str) -> None:
    """The engine of `backend_name` answers and has the base image (else the test fails)."""
    request.getfixturevalue(f"{backend_name}_ready")


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
async def backend(engine_ready: None, backend_name: str, settings: Settings, job_name: str):
    b = open_backend(backend_name, settings)
    yield b
    # Whatever a test left running under its job label goes away.
    try:
        await b.gc(job=job_name)
    finally:
        await b.close()


def _engine_urls() -> list[str | None]:
    """Docker's (the client's default address) and, when its service answers, Podman's."""
    urls: list[str | None] = [None]
    podman = default_podman_url()
    if probe(podman, timeout=1) is None:
        urls.append(podman)
    return urls


async def job_containers(job: str) -> list[str]:
    """Ids of the containers labelled with `job` on every engine under test (job names are
    unique per test, so this is the job's containers whichever backend ran them)."""
    found: list[str] = []
    for url in _engine_urls():
        async with EngineClient(url) as d:
            got = await d.containers.list(all=True, filters={"label": [f"{LABEL_JOB}={job}"]})
            found += [c.id for c in got]
    return found


async def managed_images(label: str) -> list[str]:
    """Tags of images carrying `label` on every engine under test."""
    found: list[str] = []
    for url in _engine_urls():
        async with EngineClient(url) as d:
            for img in await d.images.list(filters={"label": [label]}):
                found += img.get("RepoTags") or [img["Id"]]
    return found



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
