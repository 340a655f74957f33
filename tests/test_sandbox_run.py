"""Containers against the real engines: limits, network, exec, timeouts, files, cleanup.

Every test runs on both sandbox backends (Docker and Podman) and, where it uses the `backend`
fixture, through both exec transports; the shared-bridge tests are Docker's own (Podman gives
each container its own user-mode network instead)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BACKENDS_UNDER_TEST, BASE_IMAGE, job_containers, unique_dockerfile
from ttgen.errors import SandboxError
from ttgen.sandbox import open_backend
from ttgen.sandbox.base import LABEL_JOB, LABEL_MANAGED, LABEL_OWNER, TREE_DIGEST_CMD
from ttgen.sandbox.docker import NETWORK_NAME
from ttgen.sandbox.engine_client import DockerError, EngineClient
from ttgen.task import Task

DOCKER_ONLY = pytest.mark.parametrize("backend_name", ["docker"])


@pytest.fixture(params=BACKENDS_UNDER_TEST)
def backend_name(request) -> str:
    return request.param


@pytest.fixture(params=["eager", False], ids=["exec-helper", "docker-exec"])
async def backend(request, engine_ready, backend_name, settings, job_name):
    """Every test here runs twice per backend: through the in-container exec helper and through
    the engine's exec (`docker exec`)."""
    b = open_backend(backend_name, settings, exec_channel=request.param)
    yield b
    try:
        await b.gc(job=job_name)
    finally:
        await b.close()


PREBUILT = f'[environment]\ndocker_image = "{BASE_IMAGE}"\n'


def prebuilt(extra: str = "") -> str:
    return PREBUILT + extra


async def test_container_has_limits_labels_and_no_privileges(backend, make_task, job_name):
    task = Task.load(make_task(dockerfile=None, toml=prebuilt("cpus = 1.5\nmemory_mb = 300\n")))
    async with await backend.start(task, job=job_name) as sb:
        info = await sb.container.show()
        hc = info["HostConfig"]
        assert hc["NanoCpus"] == 1_500_000_000
        assert hc["Memory"] == 300 * 1024 * 1024
        assert hc["MemorySwap"] == hc["Memory"]
        assert hc["PidsLimit"] == 256
        assert hc["Privileged"] is False
        # Docker says "no-new-privileges:true", Podman "no-new-privileges"; the kernel agrees
        assert any(o.startswith("no-new-privileges") for o in hc["SecurityOpt"])
        assert (await sb.exec("grep NoNewPrivs /proc/self/status")).stdout.split() == [
            "NoNewPrivs:",
            "1",
        ]
        assert hc["Init"] is True
        labels = info["Config"]["Labels"]
        assert labels[LABEL_JOB] == job_name and labels[LABEL_MANAGED] == "true"
        assert labels[LABEL_OWNER].endswith(f":{os.getpid()}")
        assert not any(
            "docker.sock" in m.get("Source", "") or "podman.sock" in m.get("Source", "")
            for m in info.get("Mounts") or []
        )
        assert sb.workdir == "/app"
    assert await job_containers(job_name) == []


async def test_defaults_apply_when_task_sets_no_resources(backend, make_task, job_name):
    task = Task.load(make_task(dockerfile=None, toml=PREBUILT))
    async with await backend.start(task, job=job_name) as sb:
        hc = (await sb.container.show())["HostConfig"]
    assert hc["NanoCpus"] == 1_000_000_000 and hc["Memory"] == 2048 * 1024 * 1024


async def test_memory_limit_kills_the_hog_not_the_host(backend, make_task, job_name):
    task = Task.load(make_task(dockerfile=None, toml=prebuilt("memory_mb = 128\n")))
    async with await backend.start(task, job=job_name) as sb:
        res = await sb.exec(
            ["python3", "-c", "x = bytearray(512 * 1024 * 1024); print('survived')"], timeout=60
        )
        assert res.exit_code == 137 and "survived" not in res.stdout
        assert (await sb.exec("echo still-alive")).stdout.strip() == "still-alive"


async def test_pids_limit_stops_a_fork_bomb(backend, make_task, job_name):
    task = Task.load(make_task(dockerfile=None, toml=PREBUILT))
    async with await backend.start(task, job=job_name) as sb:
        bomb = "for i in $(seq 1000); do sleep 30 & done 2>/tmp/err; wait"
        res = await sb.exec(["bash", "-c", bomb], timeout=8)
        count = await sb.exec("ps -e --no-headers | wc -l")
        assert int(count.stdout) <= 256
        assert "Resource temporarily unavailable" in (await sb.exec("cat /tmp/err")).stdout
        assert res.timed_out  # the surviving sleeps kept it busy until the timeout killed them
        left = await sb.exec("ps -eo args= | grep -c '^sleep 30$' || true")
        assert int(left.stdout.strip() or 0) == 0


@pytest.mark.parametrize("key", ['network_mode = "no-network"', "allow_internet = false"])
async def test_no_network_when_internet_is_off(backend, make_task, job_name, key):
    # Harbor's network_mode, and the allow_internet it deprecates
    task = Task.load(make_task(dockerfile=None, toml=prebuilt(f"{key}\n")))
    async with await backend.start(task, job=job_name) as sb:
        info = await sb.container.show()
        assert info["HostConfig"]["NetworkMode"] == "none"
        ifaces = await sb.exec("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '")
        assert ifaces.stdout.split() == ["lo"]


@DOCKER_ONLY
async def test_internet_tasks_get_the_isolated_bridge(backend, make_task, job_name):
    task = Task.load(make_task(dockerfile=None, toml=PREBUILT))
    async with await backend.start(task, job=job_name) as sb:
        info = await sb.container.show()
        ifaces = await sb.exec("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '")
        assert "eth0" in ifaces.stdout.split()
    async with EngineClient() as d:
        net = await (await d.networks.get(NETWORK_NAME)).show()
    # by id: a name that two processes created at once would be ambiguous to the engine
    assert info["HostConfig"]["NetworkMode"] == net["Id"]
    # Containers of different trials on this bridge cannot talk to each other.
    assert net["Options"]["com.docker.network.bridge.enable_icc"] == "false"


@pytest.mark.parametrize("backend_name", ["podman"])
async def test_podman_containers_get_their_own_user_mode_network(backend, make_task, job_name):
    task = Task.load(make_task(dockerfile=None, toml=PREBUILT))
    async with await backend.start(task, job=job_name) as sb:
        info = await sb.container.show()
        ifaces = await sb.exec("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '")
    assert info["HostConfig"]["NetworkMode"] == "slirp4netns"
    assert "tap0" in ifaces.stdout.split()


# A server on every address of the container, and a client that tries every address it is told.
_SERVE = "python3 -m http.server 8765 --bind 0.0.0.0 >/dev/null 2>&1 &"
_ADDRS = "hostname -I 2>/dev/null || awk '/32 host/ {print f} {f=$2}' /proc/net/fib_trie"
_CONNECT = """
import socket, sys
for a in sys.argv[1:]:
    try:
        socket.create_connection((a, 8765), timeout=2).close()
        print("reached", a)
    except OSError:
        pass
"""


async def test_containers_of_different_trials_cannot_reach_each_other(
    backend, make_task, job_name
):
    task = Task.load(make_task(dockerfile=None, toml=PREBUILT))
    async with await backend.start(task, job=job_name) as a, await backend.start(
        task, job=job_name
    ) as b:
        await a.exec(_SERVE)
        addrs = sorted(
            {x for x in (await a.exec(_ADDRS)).stdout.split() if not x.startswith("127.")}
        )
        assert addrs, "the container has an address"
        await asyncio.sleep(1)
        assert "reached" in (await a.exec(["python3", "-c", _CONNECT, "127.0.0.1"])).stdout
        tried = await b.exec(["python3", "-c", _CONNECT, *addrs], timeout=60)
        assert tried.ok and "reached" not in tried.stdout, (addrs, tried.stdout)


async def test_exec_results_cwd_env_user_stdin(backend, make_task, job_name):
    toml = prebuilt(
        '[environment.env]\nGREETING = "hi"\nFROM_HOST = "${TTGEN_TEST_HOST_VAR:-fallback}"\n'
    )
    task = Task.load(make_task(dockerfile=None, toml=toml))
    async with await backend.start(task, job=job_name) as sb:
        res = await sb.exec("echo out; echo err >&2; exit 7")
        assert (res.exit_code, res.stdout, res.stderr, res.ok) == (7, "out\n", "err\n", False)
        assert (await sb.exec("pwd")).stdout == "/app\n"
        assert (await sb.exec("pwd", cwd="/tmp")).stdout == "/tmp\n"
        assert (await sb.exec(["printenv", "GREETING"])).stdout == "hi\n"
        assert (await sb.exec(["printenv", "FROM_HOST"])).stdout == "fallback\n"
        assert (await sb.exec(["printenv", "X"], env={"X": "y z"})).stdout == "y z\n"
        assert (await sb.exec(["id", "-u"], user="nobody")).stdout == "65534\n"
        assert (await sb.exec(["wc", "-c"], stdin=b"x" * 100_000)).stdout.strip() == "100000"
        missing = await sb.exec(["no-such-binary"])
        assert missing.exit_code not in (0, None)


async def test_exec_timeout_kills_the_whole_tree(backend, make_task, job_name):
    task = Task.load(make_task(dockerfile=None, toml=PREBUILT))
    async with await backend.start(task, job=job_name) as sb:
        t0 = time.monotonic()
        cmd = "sleep 300 & (setsid sleep 301 &) ; nohup sleep 302 >/dev/null 2>&1 & sleep 303"
        res = await sb.exec(cmd, timeout=1.5)
        elapsed = time.monotonic() - t0
        assert res.timed_out and res.exit_code is None and not res.ok
        assert elapsed < 8
        ps = await sb.exec("ps -eo args= | grep '^sleep 30' || true")
        assert ps.stdout.strip() == ""


async def test_exec_output_is_capped_but_the_command_finishes(backend, make_task, job_name):
    task = Task.load(make_task(dockerfile=None, toml=PREBUILT))
    async with await backend.start(task, job=job_name) as sb:
        res = await sb.exec(
            "head -c 60000000 /dev/zero | tr '\\0' 'a'; echo; echo THE-END",
            max_output_bytes=1_000_000,
            timeout=120,
        )
        assert res.exit_code == 0
        assert res.stdout_omitted_bytes > 58_000_000
        assert len(res.stdout) < 1_100_000
        assert res.stdout.startswith("aaaa") and res.stdout.rstrip().endswith("THE-END")
        assert "bytes omitted by ttgen" in res.stdout


async def test_a_command_streaming_nonstop_does_not_hold_up_the_others(
    backend, make_task, job_name
):
    """An agent's command that prints without pause (`yes`) shares the exec channel with the
    harness's own short commands: those still come back at once, whole and in order."""
    task = Task.load(make_task(dockerfile=None, toml=PREBUILT))
    async with await backend.start(task, job=job_name) as sb:
        noisy = asyncio.ensure_future(sb.exec("timeout 4 yes", max_output_bytes=4096, timeout=30))
        await asyncio.sleep(0.5)  # streaming by now
        times = []
        for i in range(10):
            res = await sb.exec(["sh", "-c", f"echo out-{i}; echo err-{i} >&2; exit {i}"])
            times.append(res.duration_sec)
            assert (res.exit_code, res.stdout, res.stderr) == (i, f"out-{i}\n", f"err-{i}\n")
        assert not noisy.done() and max(times) < 1.0, times
        res = await noisy
        assert res.exit_code == 124 and res.stdout_omitted_bytes > 1_000_000, res


async def test_upload_and_download_files_and_folders(backend, make_task, job_name, tmp_path):
    task = Task.load(make_task(dockerfile=None, toml=PREBUILT))
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (src / "sub" / "run.sh").chmod(0o755)
    (src / "sub" / "deeper" / "blob.bin").write_bytes(bytes(range(256)) * 1000)
    async with await backend.start(task, job=job_name) as sb:
        await sb.upload_dir(src, "/opt/new/place")
        assert (await sb.exec("/opt/new/place/sub/run.sh")).stdout == "ran\n"
        assert (await sb.exec("stat -c %U /opt/new/place/a.txt")).stdout == "root\n"
        await sb.upload_file(src / "a.txt", "/not/yet/there/copy.txt")
        assert await sb.read_file("/not/yet/there/copy.txt") == b"alpha\n"
        await sb.write_file("relative.txt", "in workdir")
        assert (await sb.exec("cat /app/relative.txt")).stdout == "in workdir"
        await sb.exec(
            "mkdir -p /out/x && echo made > /out/x/f.txt && ln -s /etc/passwd /out/escape"
        )
        dest = await sb.download_dir("/out", tmp_path / "back")
        assert (dest / "x" / "f.txt").read_text() == "made\n"
        assert not (dest / "escape").exists()  # a link leaving the folder is not followed
        back = await sb.download_dir("/opt/new/place", tmp_path / "roundtrip")
        assert (back / "sub" / "deeper" / "blob.bin").read_bytes() == (
            src / "sub" / "deeper" / "blob.bin"
        ).read_bytes()
        assert os.access(back / "sub" / "run.sh", os.X_OK)
        assert (
            await sb.download_file("/opt/new/place/a.txt", tmp_path / "one" / "a.txt")
        ).read_text() == "alpha\n"
        with pytest.raises(FileNotFoundError):
            await sb.read_file("/does/not/exist")


async def test_folder_copies_and_test_digests_need_no_program_in_the_container(
    backend, make_task, job_name, tmp_path
):
    """What the verifier does after every trial (copy /logs out, list /tests by sha256) gives
    what `tar` and `find | sha256sum | sort` give; through the exec helper it needs none of
    those programs (nor the engine's archive API): the helper does it in-process."""
    task = Task.load(make_task(dockerfile=None, toml=PREBUILT))
    async with await backend.start(task, job=job_name) as sb:
        made = await sb.exec(
            "mkdir -p /d/sub/__pycache__ /d/.pytest_cache /d/empty && cd /d && printf a > a && "
            "printf 'b\\n' > 'sp ace' && printf c > \"$(printf 'new\\nline')\" && "
            "printf d > 'back\\slash' && ln -s a link && ln -s sub sublink && mkfifo fifo && "
            "printf x > sub/__pycache__/x.pyc && printf y > .pytest_cache/y && printf z > sub/z && "
            "head -c 300000 /dev/urandom > big && chmod 600 big",
            user="root",
        )
        assert made.ok, made.output
        shell = (await sb.exec(f"cd /d && {TREE_DIGEST_CMD}", user="root")).stdout
        helper = sb._channel is not None
        if helper:  # from here on only the helper itself can do it
            hide = "for p in tar find sha256sum sort base64; do mv $(command -v $p) /root/; done"
            assert (await sb.exec(hide, user="root")).ok

            async def no_api(*a, **k):
                raise AssertionError("the archive API was used")

            sb.container.get_archive = no_api
        rows = shell.splitlines()
        assert len(rows) == 6 and all(len(r.split()[0].lstrip("\\")) == 64 for r in rows), shell
        assert [r.split("  ", 1)[1] for r in rows] == [
            "./a", "./back\\\\slash", "./big", "./new\\nline", "./sp ace", "./sub/z"
        ]  # fmt: skip
        assert await sb.tree_digest("/d") == shell
        assert await sb.tree_digest("/d/") == shell
        assert await sb.tree_digest("/not/there") == ""
        back = await sb.download_dir("/d", tmp_path / "back")
        big = hashlib.sha256((back / "big").read_bytes()).hexdigest()
        assert f"{big}  ./big" in rows and (back / "big").stat().st_size == 300000
        assert (back / "new\nline").read_text() == "c" and (back / "back\\slash").read_text() == "d"
        assert (back / "sub" / "__pycache__" / "x.pyc").read_text() == "x"
        assert (back / "link").is_symlink() and os.readlink(back / "link") == "a"
        assert (back / "empty").is_dir() and not (back / "fifo").exists()
        with pytest.raises(FileNotFoundError):
            await sb.download_dir("/not/there", tmp_path / "none")
        if helper:
            assert sb._channel.alive  # nothing fell back to a command


async def test_stop_removes_the_container_and_is_idempotent(backend, make_task, job_name):
    task = Task.load(make_task(dockerfile=None, toml=PREBUILT))
    sb = await backend.start(task, job=job_name)
    assert len(await job_containers(job_name)) == 1
    t0 = time.monotonic()
    await sb.stop()
    assert time.monotonic() - t0 < 3  # init process: no 10 s SIGTERM grace
    await sb.stop()
    assert await job_containers(job_name) == []


async def test_cancelled_exec_leaves_nothing_running(backend, make_task, job_name):
    task = Task.load(make_task(dockerfile=None, toml=PREBUILT))
    async with await backend.start(task, job=job_name) as sb:
        pending = asyncio.ensure_future(sb.exec("sleep 200"))
        await asyncio.sleep(1)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        ps = await sb.exec("ps -eo args= | grep '^sleep 200' || true")
        assert ps.stdout.strip() == ""


async def test_gc_removes_orphans_but_not_live_containers(
    engine_ready, backend_name, settings, make_task, job_name
):
    task = Task.load(make_task(dockerfile=None, toml=PREBUILT))
    async with open_backend(backend_name, settings) as b:
        live = await b.start(task, job=job_name)
        orphan = await b.start(
            task, job=job_name, labels={LABEL_OWNER: f"{os.uname().nodename}:999999999"}
        )
        # an owner that ended but was not collected yet (a Ray worker that died waits for its
        # raylet): a zombie uses nothing
        zombie = subprocess.Popen(["true"])
        stat = Path(f"/proc/{zombie.pid}/stat")
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)
        of_zombie = await b.start(
            task, job=job_name, labels={LABEL_OWNER: f"{os.uname().nodename}:{zombie.pid}"}
        )
        removed = await b.gc()
        zombie.wait()
        assert orphan.name in removed["containers"]
        assert of_zombie.name in removed["containers"]
        assert live.name not in removed["containers"]
        assert await job_containers(job_name) == [live.id]
        removed = await b.gc(job=job_name)
        assert removed["containers"] == [live.name]
        assert await job_containers(job_name) == []


async def test_commands_run_as_the_image_user(backend, make_task, job_name):
    df = unique_dockerfile("RUN useradd -m -u 1234 agent\nUSER agent\n")
    task = Task.load(make_task(dockerfile=df))
    async with await backend.start(task, job=job_name) as sb:
        assert (await sb.exec("id -un; echo $HOME")).stdout == "agent\n/home/agent\n"
        assert (await sb.exec("id -u", user="root")).stdout == "0\n"
        assert (await sb.exec(["id", "-u"], user="1234")).stdout == "1234\n"
        if sb._channel is not None:
            # The helper (the container's own command, as root) switches users itself: none
            # of these needed a `docker exec`.
            assert sb._channel.alive and sb._channel_can_switch_user
            assert not (await sb.container.show())["ExecIDs"]


async def test_the_exec_helper_ignores_modules_an_agent_could_plant(
    engine_ready, backend_name, settings, make_task, job_name
):
    """PYTHONPATH and the working directory hold files a task or an agent controls: a json.py
    there must not be what the helper imports (python3 -I)."""
    df = unique_dockerfile(
        "RUN echo 'raise SystemExit(\"planted\")' > /app/json.py\n"
        "RUN cp /app/json.py /app/select.py\n"
        "ENV PYTHONPATH=/app\n"
    )
    task = Task.load(make_task(dockerfile=df))
    async with open_backend(backend_name, settings, exec_channel="eager") as b:
        async with await b.start(task, job=job_name) as sb:
            if (await sb.exec("command -v python3")).exit_code != 0:
                pytest.fail("the test image has no python3: the helper cannot be tested")
            assert sb._channel is not None and sb._channel.alive
            res = await sb.exec("python3 -c 'import json' 2>&1; echo $PYTHONPATH")
            assert "planted" in res.stdout and res.stdout.endswith("/app\n")
        await b.gc(job=job_name)


async def test_the_exec_helper_is_used_and_survives_being_killed(
    engine_ready, backend_name, settings, make_task, job_name
):
    task = Task.load(make_task(dockerfile=None, toml=PREBUILT))
    async with open_backend(backend_name, settings, exec_channel="eager") as b:
        async with await b.start(task, job=job_name) as sb:
            assert sb._channel is not None and sb._channel.alive
            times = []
            for _ in range(10):
                res = await sb.exec(["true"])
                times.append(res.duration_sec)
            assert min(times) < 0.02  # no runc exec per command
            # A command that kills the helper (say a careless pkill) fails as an
            # infrastructure error; later commands still run, through docker exec.
            pid = sb._channel.pid
            assert pid > 1
            # The helper is the container's own command: no exec was needed for it.
            assert not (await sb.container.show())["ExecIDs"]
            with pytest.raises(SandboxError, match="helper"):
                await sb.exec(f"kill -9 {pid}; sleep 2", timeout=30)
            assert not sb._channel.alive
            assert (await sb.exec("echo fine")).stdout == "fine\n"
            # What keeps the container alive now is still ttgen's own, not the agent's: once
            # the killing command's sleep is over, nothing foreign runs.
            for _ in range(50):
                left = await sb.foreign_processes()
                if left == []:
                    break
                await asyncio.sleep(0.1)
            assert left == []
        await b.gc(job=job_name)


async def test_lazy_helper_starts_from_the_second_exec(
    engine_ready, backend_name, settings, make_task, job_name
):
    task = Task.load(make_task(dockerfile=None, toml=PREBUILT))
    async with open_backend(backend_name, settings) as b:
        async with await b.start(task, job=job_name) as sb:
            assert sb._channel is None
            assert (await sb.exec("echo first")).stdout == "first\n"
            await asyncio.sleep(0.5)
            assert sb._channel is None  # one-command containers never start it
            assert (await sb.exec("echo again")).stdout == "again\n"
            for _ in range(100):
                if sb._channel is not None:
                    break
                await asyncio.sleep(0.05)
            assert sb._channel is not None and sb._channel.alive
            assert (await sb.exec("echo second")).stdout == "second\n"
        await b.gc(job=job_name)


async def test_images_without_python_keep_using_docker_exec(
    engine_ready, backend_name, settings, make_task, job_name
):
    df = unique_dockerfile("RUN rm -f /usr/bin/python3*\n")
    task = Task.load(make_task(dockerfile=df))
    async with open_backend(backend_name, settings, exec_channel="eager") as b:
        async with await b.start(task, job=job_name) as sb:
            assert sb._channel is None
            res = await sb.exec("echo works; exit 4")
            assert (res.stdout, res.exit_code) == ("works\n", 4)
        await b.gc(job=job_name)


@DOCKER_ONLY
async def test_a_network_removed_by_another_process_is_made_again(backend, make_task, job_name):
    task = Task.load(make_task())
    first = await backend.start(task, job=job_name)
    await first.stop()
    # Another ttgen process's gc removes the shared network while it is unused ...
    async with EngineClient() as d:
        net = await d.networks.get(NETWORK_NAME)
        if not (await net.show()).get("Containers"):
            await net.delete()
    # ... and this backend, which has it cached as ready, still starts containers.
    sandbox = await backend.start(task, job=job_name)
    try:
        assert (await sandbox.exec("echo ok")).stdout.strip() == "ok"
    finally:
        await sandbox.stop()


@DOCKER_ONLY
async def test_a_network_created_twice_at_once_is_settled_on_one(backend, make_task, job_name):
    """Two processes starting together can both create the shared network (the engine allows
    two of one name, then calls the name ambiguous): the oldest is used, the others removed."""
    async with EngineClient() as d:
        for n in await d.networks.list(filters={"name": [NETWORK_NAME]}):
            if n["Name"] == NETWORK_NAME and not (await (await d.networks.get(n["Id"])).show())[
                "Containers"
            ]:
                await (await d.networks.get(n["Id"])).delete()
        config = {"Name": NETWORK_NAME, "Driver": "bridge", "Labels": {LABEL_MANAGED: "true"},
                  "Options": {"com.docker.network.bridge.enable_icc": "false"}}  # fmt: skip
        first = await d.networks.create(config)
        second = await d.networks.create(config)
        try:
            backend._network_ready = None
            task = Task.load(make_task(dockerfile=None, toml=PREBUILT))
            async with await backend.start(task, job=job_name) as sb:
                assert (await sb.exec("true")).ok
                info = await sb.container.show()
            names = [n for n in await d.networks.list() if n["Name"] == NETWORK_NAME]
            assert len(names) == 1
            assert info["HostConfig"]["NetworkMode"] == names[0]["Id"]
        finally:
            for net in (first, second):
                with contextlib.suppress(DockerError):
                    if not (await net.show())["Containers"]:
                        await net.delete()
            backend._network_ready = None
