"""A Ray cluster whose two nodes drive two different Docker engines, as on a real multi-node
cluster: the head node uses this machine's engine, the worker node a second dockerd started here
(its own socket, data root, containerd and address pool; the worker's raylet has DOCKER_HOST
pointing at it, and the second engine starts with nothing but the base image).

Each node builds the task images on its own engine, trials from both come back into one job
folder, and neither engine keeps containers of the job.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from conftest import BASE_IMAGE
from ttgen.formats.trial import AgentSpec
from ttgen.rollout.executors import RayExecutor
from ttgen.rollout.job import Job, JobOptions, rollout_specs
from ttgen.sandbox.base import LABEL_JOB
from ttgen.task import Task

ray = pytest.importorskip("ray")

PASS_IF_ANSWER = """#!/bin/bash
if [ "$(cat /app/answer.txt 2>/dev/null)" = "42" ]; then echo 1; else echo 0; fi \
  > /logs/verifier/reward.txt
"""


def _docker(host: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "-H", host, *args], capture_output=True, text=True, timeout=300, **kwargs
    )


@pytest.fixture(scope="module")
def engine2(docker_ready):
    """A second Docker engine on this machine, with the tests' base image loaded."""
    dockerd = shutil.which("dockerd")
    if dockerd is None or shutil.which("docker") is None or shutil.which("ip") is None:
        pytest.fail(
            "dockerd, the docker CLI and ip are needed (apt-get install docker.io iproute2)"
        )
    run = Path(tempfile.mkdtemp(prefix="ttgen-e2-", dir="/run"))  # short: socket paths
    data = Path(tempfile.mkdtemp(prefix="ttgen-engine2-", dir="/var/tmp"))
    host = f"unix://{run}/docker.sock"
    # Its own bridge (docker0 is the first engine's): image builds run their steps on it.
    bridge = f"ttgen-e2-{uuid.uuid4().hex[:5]}"
    for cmd in (
        ["link", "add", "name", bridge, "type", "bridge"],
        ["addr", "add", "10.214.0.1/24", "dev", bridge],
        ["link", "set", bridge, "up"],
    ):
        made = subprocess.run(["ip", *cmd], capture_output=True, text=True)
        assert made.returncode == 0, f"ip {' '.join(cmd)}: {made.stderr}"
    log = (run / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        [dockerd, "--host", host, "--data-root", str(data), "--exec-root", str(run / "exec"),
         "--pidfile", str(run / "docker.pid"), "--bridge", bridge, "--iptables=false",
         "--ip-masq=false", "--containerd-namespace", "ttgen-e2",
         "--containerd-plugins-namespace", "ttgen-e2-plugins",
         "--default-address-pool", "base=10.213.0.0/16,size=24"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while _docker(host, "info").returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (run / "dockerd.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"the second dockerd did not start:\n{tail}")
            time.sleep(1)
        saved = subprocess.Popen(["docker", "save", BASE_IMAGE], stdout=subprocess.PIPE)
        loaded = _docker(host, "load", stdin=saved.stdout)
        saved.wait(timeout=300)
        assert loaded.returncode == 0 and saved.returncode == 0, loaded.stderr
        yield host
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(engine2):
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    worker = c.add_node(num_cpus=2, env_vars={"DOCKER_HOST": engine2})
    try:
        yield c, worker.node_id
    finally:
        c.shutdown()


def test_each_node_builds_and_runs_on_its_own_engine(cluster, engine2, make_task, tmp_path,
                                                      settings):  # fmt: skip
    c, worker_id = cluster
    nonce = uuid.uuid4().hex
    dockerfile = (
        f"FROM ubuntu:24.04\nWORKDIR /app\nRUN echo built > /built\nLABEL test.nonce={nonce}\n"
    )
    tasks = [
        Task.load(make_task(name, dockerfile=dockerfile, test_sh=PASS_IF_ANSWER,
                            solve_sh=f"#!/bin/bash\necho {answer} > /app/answer.txt\n"))
        for name, answer in (("good", 42), ("bad", 41))
    ]  # fmt: skip
    out = tmp_path / "job"
    executor = RayExecutor(address=c.address, per_node=2, settings=settings)
    job = Job(
        out,
        rollout_specs(tasks, AgentSpec(name="oracle"), 3),
        JobOptions(n_concurrent=4, executor="ray"),
        executor=executor,
    )
    result = asyncio.run(job.run())
    assert not ray.is_initialized()  # the executor connected by address, and let go

    assert result["stats"]["outcomes"] == {"passed": 3, "failed": 3}
    trials = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/result.json")}
    assert len(trials) == 6
    assert {t["reward"] for n, t in trials.items() if n.startswith("good")} == {1.0}
    nodes = {t["environment"]["node"]["node_id"] for t in trials.values()}
    assert len(nodes) == 2 and worker_id in nodes  # both nodes ran trials
    # The image was built on both engines: the second one had only the base image before.
    for host in ("unix:///var/run/docker.sock", engine2):
        images = _docker(host, "images", "-q", "--filter", f"label=test.nonce={nonce}")
        assert images.returncode == 0 and images.stdout.split(), host
        left = _docker(host, "ps", "-aq", "--filter", f"label={LABEL_JOB}={result['id']}")
        assert left.returncode == 0 and left.stdout.split() == [], host
