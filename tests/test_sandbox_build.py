"""Image builds against the real engines: once per content, cache hits, failures, aliases.

Every test runs on both sandbox backends (Docker and Podman, each with its own image store)."""

from __future__ import annotations

import asyncio
import time

import pytest

from conftest import BACKENDS_UNDER_TEST, BASE_IMAGE, unique_dockerfile
from ttgen.errors import ImageBuildError, ImageNotFoundError, TaskError
from ttgen.sandbox import open_backend
from ttgen.settings import ImageAlias, Settings, load_settings
from ttgen.task import Task


@pytest.fixture(params=BACKENDS_UNDER_TEST)
def backend_name(request) -> str:
    return request.param


async def test_concurrent_requests_build_one_image(backend, make_task):
    task = Task.load(make_task(dockerfile=unique_dockerfile("RUN echo built > /built.txt\n")))
    refs = await asyncio.gather(*(backend.ensure_image(task) for _ in range(5)))
    assert {r.tag for r in refs} == {refs[0].tag}
    assert backend.builds == 1
    assert sorted(r.source for r in refs) == ["built"] + ["cached"] * 4


async def test_identical_environments_share_one_image(backend, make_task, tmp_path):
    df = unique_dockerfile()
    a = Task.load(make_task("a", dockerfile=df, env_files={"data.txt": "same"}))
    b = Task.load(make_task("b", dockerfile=df, env_files={"data.txt": "same"}))
    ra = await backend.ensure_image(a)
    rb = await backend.ensure_image(b)
    assert ra.tag == rb.tag and backend.builds == 1


async def test_second_build_is_a_cache_hit_even_in_a_new_process(
    backend, backend_name, make_task, settings
):
    task = Task.load(make_task(dockerfile=unique_dockerfile("RUN echo x > /x\n")))
    first = await backend.ensure_image(task)
    assert first.source == "built"
    async with open_backend(backend_name, settings) as other:  # as a new process would have it
        again = await other.ensure_image(task)
        assert again.source == "cached" and again.tag == first.tag and other.builds == 0


async def test_content_changes_change_the_tag_but_ignored_files_do_not(backend, make_task):
    df = unique_dockerfile("COPY . /ctx/\n")
    root = make_task(
        dockerfile=df, env_files={"a.txt": "1", ".dockerignore": "scratch/\n*.log\n!keep.log\n"}
    )
    task = Task.load(root)
    t1 = (await backend.ensure_image(task)).tag
    (root / "environment" / "scratch").mkdir()
    (root / "environment" / "scratch" / "junk.bin").write_bytes(b"x" * 1000)
    (root / "environment" / "debug.log").write_text("noise")
    assert (await backend.ensure_image(task)).tag == t1
    (root / "environment" / "keep.log").write_text("kept")
    t2 = (await backend.ensure_image(task)).tag
    assert t2 != t1
    (root / "environment" / "a.txt").write_text("2")
    t3 = (await backend.ensure_image(task)).tag
    assert t3 not in (t1, t2)
    async with await backend.start(task, job="ignored") as sb:
        res = await sb.exec("ls -A /ctx | sort | tr '\\n' ' '")
    assert res.stdout.split() == [".dockerignore", "Dockerfile", "a.txt", "keep.log"]


async def test_executable_bit_in_context_changes_tag(backend, make_task):
    root = make_task(
        dockerfile=unique_dockerfile("COPY run.sh /run.sh\n"), env_files={"run.sh": "echo hi\n"}
    )
    task = Task.load(root)
    t1 = (await backend.ensure_image(task)).tag
    (root / "environment" / "run.sh").chmod(0o755)
    assert (await backend.ensure_image(task)).tag != t1


async def test_build_failure_reports_the_log_tail(backend, make_task):
    task = Task.load(
        make_task("broken", dockerfile=unique_dockerfile("RUN echo boom-marker-4711 && exit 3\n"))
    )
    with pytest.raises(ImageBuildError) as info:
        await backend.ensure_image(task)
    text = str(info.value)
    assert "broken" in text
    assert "boom-marker-4711" in info.value.log_tail
    assert not info.value.timed_out


async def test_build_timeout_is_honoured(backend, make_task):
    toml = 'schema_version = "1.2"\n[environment]\nbuild_timeout_sec = 2.0\n'
    task = Task.load(make_task(toml=toml, dockerfile=unique_dockerfile("RUN sleep 60\n")))
    t0 = time.monotonic()
    with pytest.raises(ImageBuildError) as info:
        await backend.ensure_image(task)
    assert info.value.timed_out
    assert "build_timeout_sec=2" in str(info.value)
    assert time.monotonic() - t0 < 20


async def test_force_build_rebuilds(backend, make_task):
    task = Task.load(make_task(dockerfile=unique_dockerfile("RUN date +%s%N > /stamp\n")))
    first = await backend.ensure_image(task)
    async with await backend.start(task, job="fb", image=first) as sb:
        stamp1 = (await sb.exec("cat /stamp")).stdout
    forced = await backend.ensure_image(task, force_build=True)
    assert forced.source == "built" and backend.builds == 2
    async with await backend.start(task, job="fb", image=forced) as sb:
        stamp2 = (await sb.exec("cat /stamp")).stdout
    assert stamp1 != stamp2  # no layer cache on a forced build


async def test_missing_base_image_says_how_to_alias_it(engine_ready, backend_name, make_task):
    task = Task.load(make_task(dockerfile="FROM registry.invalid/nothing-here:1\nRUN true\n"))
    async with open_backend(backend_name, Settings(pull=False)) as b:
        with pytest.raises(ImageBuildError) as info:
            await b.ensure_image(task)
    assert "registry.invalid/nothing-here:1" in str(info.value)
    assert "TTGEN_IMAGE_ALIASES" in str(info.value)


async def test_aliases_from_the_environment_variable(
    engine_ready, backend_name, make_task, tmp_path
):
    settings = load_settings(
        cwd=tmp_path, environ={"TTGEN_IMAGE_ALIASES": f"corp.example/img/*={BASE_IMAGE}"}
    )
    settings.pull = False
    df = f"ARG BASE=corp.example/img/py:3.12\nFROM $BASE AS build\nRUN echo {time.time_ns()} > /n\nFROM build\n"
    task = Task.load(make_task(dockerfile=df))
    async with open_backend(backend_name, settings) as b:
        ref = await b.ensure_image(task)
        async with await b.start(task, job="alias") as sb:
            assert (await sb.exec("cat /etc/debian_version")).ok
    assert ref.source == "built"


async def test_docker_image_is_used_when_present_and_dockerfile_is_the_fallback(backend, make_task):
    prebuilt = Task.load(
        make_task("pre", dockerfile=None, toml=f'[environment]\ndocker_image = "{BASE_IMAGE}"\n')
    )
    ref = await backend.ensure_image(prebuilt)
    assert ref.source == "prebuilt" and ref.tag == BASE_IMAGE and backend.builds == 0

    toml = '[environment]\ndocker_image = "registry.invalid/task-image:20251031"\n'
    fallback = Task.load(make_task("fallback", toml=toml, dockerfile=unique_dockerfile()))
    assert (await backend.ensure_image(fallback)).source == "built"

    nothing = Task.load(make_task("nothing", toml=toml, dockerfile=None))
    with pytest.raises(ImageNotFoundError, match=r"registry\.invalid/task-image:20251031"):
        await backend.ensure_image(nothing)


async def test_aliased_docker_image(engine_ready, backend_name, make_task):
    settings = Settings(aliases=[ImageAlias("alexgshaw/*", BASE_IMAGE)], pull=False)
    task = Task.load(
        make_task(
            dockerfile=None,
            toml='[environment]\ndocker_image = "alexgshaw/gpt2-codegolf:20251031"\n',
        )
    )
    async with open_backend(backend_name, settings) as b:
        ref = await b.ensure_image(task)
    assert ref.tag == BASE_IMAGE and ref.source == "prebuilt"


async def test_unreadable_dockerfile_is_a_task_error(backend, make_task):
    root = make_task("bad-bytes", dockerfile=None)
    (root / "environment" / "Dockerfile").write_bytes(b"FROM ubuntu:24.04\n\xff\xfe\n")
    with pytest.raises(TaskError, match="bad-bytes/environment"):
        await backend.ensure_image(Task.load(root))
