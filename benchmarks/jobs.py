"""Job runner throughput and per-trial latency against the plain-Docker floor, in the same run.

    python benchmarks/jobs.py [--trials 200] [-n 16] [--rounds 2]

One small Harbor task (solution/solve.sh writes /app/answer.txt, tests/test.sh checks it), its
image built once up front, so neither side pays for the build. Each round runs N trials at
concurrency n twice, floor first, then ttgen (rounds alternate to spread noise):
  * floor: raw Engine API calls (ttgen's bare Engine API client, no ttgen logic), the minimum a trial needs: create (Init, 1 CPU,
    2 GiB, `sleep infinity`), start, put_archive solution/, exec solve.sh, put_archive tests/,
    exec test.sh, read reward.txt, delete;
  * ttgen: the same trials through `ttgen.rollout.job.Job` (oracle agent, retries 0), with the
    verifier in a snapshot of the agent's container (the default: rewards cannot be forged);
  * ttgen shared: the same, the verifier in the agent's container itself (Harbor's way), to
    show what unforgeable rewards cost per trial: the tamper check, and the verifier in place
    (nothing of the agent runs) or in a snapshot;
  * ttgen snapshot: the default again, on a variant of the task whose solution leaves a
    process running (a service would), so that every verifier runs in a snapshot.
Prints trials/min (median over rounds) and their ratio, per-trial latency p50/p90 (floor: wall
time of the trial; ttgen: result.json finished_at - started_at) and per-phase medians side by
side, so the overhead can be placed. Also checks that every ttgen trial passed and that no
container of a job is left behind.
Targets: throughput ttgen / floor >= 0.90; median per-trial overhead < 150 ms.

Then (`--single K`, default 7; 0 skips it) one trial as a whole process, image cached, K times
each, alternating: `ttgen rollout TASK --agent oracle -k 1 --out NEW` against the plain `docker`
CLI doing the same steps (run with the same limits and network, exec, cp solution/, exec
solve.sh, cp tests/, exec test.sh, read the reward, rm -f). Prints the medians and their
difference. Target: ttgen <= 1.0 s. The first run of each (not counted) warms the caches, ttgen's
bytecode included: PYTHONDONTWRITEBYTECODE is left out of ttgen's environment, as an installed
ttgen has its .pyc files (pip writes them at install; an editable checkout on its first run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

from ttgen.formats.trial import AgentSpec, Outcome, read_trial_result
from ttgen.rollout.job import Job, JobOptions, rollout_specs
from ttgen.sandbox.docker import LABEL_JOB, DockerBackend
from ttgen.sandbox.engine_client import Container, DockerError, EngineClient
from ttgen.task import Task

PHASES = ["environment_setup", "agent_setup", "agent_execution", "verifier", "remainder"]
FLOOR_LABEL = "ttgen-bench.floor"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def fmt(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:7.1f} ms   p90 {pct(values, 0.9) * 1000:7.1f} ms"


def make_task(root: Path, background: bool = False) -> Task:
    """The benchmark task; `background`: its solution also leaves a process running (as a
    service would), so the verifier must run in a snapshot of the container."""
    task = root / ("bench-job-task-bg" if background else "bench-job-task")
    for d in ("environment", "solution", "tests"):
        (task / d).mkdir(parents=True)
    (task / "environment" / "Dockerfile").write_text("FROM ttgen/base:bookworm\nWORKDIR /app\n")
    (task / "instruction.md").write_text("Write 42 to /app/answer.txt.\n")
    (task / "task.toml").write_text(
        'schema_version = "1.2"\n[agent]\ntimeout_sec = 60\n[verifier]\ntimeout_sec = 60\n'
    )
    solve = task / "solution" / "solve.sh"
    solve.write_text(
        "#!/bin/bash\necho 42 > /app/answer.txt\n"
        + ("nohup sleep 600 >/dev/null 2>&1 &\n" if background else "")
    )
    test = task / "tests" / "test.sh"
    test.write_text(
        "#!/bin/bash\n"
        'if [ "$(cat /app/answer.txt 2>/dev/null)" = 42 ]; then r=1; else r=0; fi\n'
        "echo $r > /logs/verifier/reward.txt\n"
    )
    solve.chmod(0o755)
    test.chmod(0o755)
    return Task.load(task)


def tar_dir(src: Path, arcname: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(src, arcname=arcname)
    return buf.getvalue()


# -- floor: raw Engine API ------------------------------------------------------------------------


async def run_exec(container: Container, cmd: list[str]) -> int:
    ex = await container.exec(cmd)
    async with ex.attach() as stream:
        while await stream.read_out() is not None:
            pass
    return (await ex.inspect())["ExitCode"]


async def floor_trial(
    docker: EngineClient, tag: str, tars: dict[str, bytes], run_id: str
) -> tuple[float, dict[str, float]]:
    t0 = time.perf_counter()
    marks = [t0]
    container = await docker.containers.create(
        {
            "Image": tag,
            "Cmd": ["sh", "-c", "sleep infinity"],
            "Labels": {FLOOR_LABEL: run_id},
            "HostConfig": {"Init": True, "NanoCpus": 1_000_000_000, "Memory": 2 << 30},
        }
    )
    try:
        await container.start()
        marks.append(time.perf_counter())
        await container.put_archive("/", tars["solution"])
        marks.append(time.perf_counter())
        await run_exec(container, ["bash", "/solution/solve.sh"])
        marks.append(time.perf_counter())
        await container.put_archive("/", tars["tests"])
        await run_exec(container, ["sh", "-c", "mkdir -p /logs/verifier && /tests/test.sh"])
        resp = await container.get_archive("/logs/verifier/reward.txt")
        with tarfile.open(fileobj=io.BytesIO(await resp.read())) as tar:
            f = tar.extractfile(tar.getmembers()[0])
            reward = f.read().strip() if f is not None else b""
        marks.append(time.perf_counter())
    finally:
        with contextlib.suppress(DockerError):  # the final sweep catches leftovers
            await container.delete(force=True)
    if reward != b"1":
        raise ValueError(f"reward {reward!r}")
    total = time.perf_counter() - t0
    phases = {p: b - a for p, a, b in zip(PHASES, marks, marks[1:], strict=False)}
    phases["remainder"] = total - sum(phases.values())
    return total, phases


async def floor_round(tag: str, tars: dict[str, bytes], trials: int, n: int, run_id: str):
    sem = asyncio.Semaphore(n)
    async with EngineClient() as docker:

        async def one() -> tuple[float, dict[str, float]] | str:
            async with sem:
                try:
                    return await floor_trial(docker, tag, tars, run_id)
                except (DockerError, ValueError) as exc:
                    return f"{type(exc).__name__}: {exc}"

        t0 = time.perf_counter()
        out = await asyncio.gather(*(one() for _ in range(trials)))
        wall = time.perf_counter() - t0
    return wall, [r for r in out if not isinstance(r, str)], [r for r in out if isinstance(r, str)]


# -- ttgen: the job runner ------------------------------------------------------------------------


async def ttgen_round(
    task: Task, trials: int, n: int, out: Path, job_ids: list[str], isolation: str = "snapshot"
):
    specs = rollout_specs([task], AgentSpec(name="oracle"), attempts=trials)
    async with DockerBackend() as backend:
        opts = JobOptions(n_concurrent=n, retries=0, verifier_isolation=isolation)
        job = Job(out, specs, opts, backend=backend)
        t0 = time.perf_counter()
        try:
            await job.run()
        finally:
            if job.job_id:
                job_ids.append(job.job_id)
        wall = time.perf_counter() - t0
        left = await backend.docker.containers.list(
            all=True, filters={"label": [f"{LABEL_JOB}={job.job_id}"]}
        )
    rows, failed = [], []
    for spec in specs:
        res = read_trial_result(out / spec.trial_name)
        if res is None or res.outcome != Outcome.PASSED:
            failed.append(f"{spec.trial_name}: {res.outcome.value if res else 'no result.json'}")
            continue
        total = res.duration_sec or 0.0
        phases = {p: getattr(res, p).seconds or 0.0 for p in PHASES[:-1]}
        phases["remainder"] = total - sum(phases.values())
        rows.append((total, phases))
    return wall, rows, failed, len(left)


async def remove_labelled(labels: list[str]) -> None:
    async with EngineClient() as docker:
        for label in labels:
            for c in await docker.containers.list(all=True, filters={"label": [label]}):
                with contextlib.suppress(DockerError):
                    await c.delete(force=True)


# -- the benchmark --------------------------------------------------------------------------------


async def bench(trials: int, n: int, rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ttgen-bench-jobs-"))
    run_id = uuid.uuid4().hex[:12]
    job_ids: list[str] = []
    try:
        task = make_task(tmp)
        bg_task = make_task(tmp, background=True)
        assert task.path is not None
        async with DockerBackend() as backend:
            await backend.ping()
            image = await backend.ensure_image(task)
        tars = {d: tar_dir(task.path / d, d) for d in ("solution", "tests")}

        # Warm both paths once (first-use costs: network, imports), results discarded.
        await floor_round(image.tag, tars, 1, 1, run_id)
        await ttgen_round(task, 1, 1, tmp / "job-warmup", job_ids)

        f_walls, t_walls, f_rows, t_rows, f_fails, fails, leftovers = [], [], [], [], [], [], []
        s_walls: list[float] = []
        s_rows: list[tuple[float, dict[str, float]]] = []
        b_walls: list[float] = []
        b_rows: list[tuple[float, dict[str, float]]] = []
        for r in range(rounds):
            wall, rows, failed = await floor_round(image.tag, tars, trials, n, run_id)
            f_walls.append(wall)
            f_rows += rows
            f_fails += failed
            print(f"round {r + 1}/{rounds}: floor {wall:6.1f} s", end="", flush=True)
            # the default, Harbor's way, and the default where a process is left running
            variants = (
                ("ttgen", task, "snapshot", t_walls, t_rows),
                ("ttgen shared", task, "shared", s_walls, s_rows),
                ("ttgen snapshot", bg_task, "snapshot", b_walls, b_rows),
            )
            for label, t, isolation, walls, trows in variants:
                folder = tmp / f"job-{label.replace(' ', '-')}-{r}"
                wall, rows, failed, left = await ttgen_round(
                    t, trials, n, folder, job_ids, isolation=isolation
                )
                walls.append(wall)
                trows += rows
                fails += failed
                if left:
                    leftovers.append(f"job {job_ids[-1]}: {left} container(s) left")
                print(f"   {label} {wall:6.1f} s", end="", flush=True)
            print(flush=True)

        checks = [f"FAIL: {line}" for line in leftovers]
        if fails:
            checks.append(f"FAIL: {len(fails)} ttgen trial(s) did not pass, e.g. {fails[:3]}")
        if f_fails:
            checks.append(f"FAIL: {len(f_fails)} floor trial(s) broke, e.g. {f_fails[:2]}")
        if not (f_rows and t_rows):
            print("\n".join(checks))
            return
        f_lat = [row[0] for row in f_rows]
        t_lat = [row[0] for row in t_rows]
        f_tpm = statistics.median(trials / w * 60 for w in f_walls)
        t_tpm = statistics.median(trials / w * 60 for w in t_walls)

        print()
        print(f"image: {image.tag}   trials: {trials} x {rounds} rounds   concurrency: {n}")
        print()
        print("throughput (median over rounds)")
        print(f"  floor (raw Engine API)        {f_tpm:7.1f} trials/min")
        print(f"  ttgen Job                     {t_tpm:7.1f} trials/min")
        r1 = t_tpm / f_tpm
        print(
            f"  ratio ttgen / floor           {r1:5.2f}   target >= 0.90   "
            f"{'OK' if r1 >= 0.9 else 'MISSED'}"
        )
        print()
        print("per-trial latency")
        print(f"  floor                         {fmt(f_lat)}")
        print(f"  ttgen (result.json)           {fmt(t_lat)}")
        over = (statistics.median(t_lat) - statistics.median(f_lat)) * 1000
        print(
            f"  overhead p50 ttgen - floor    {over:7.1f} ms   target < 150 ms   "
            f"{'OK' if over < 150 else 'MISSED'}"
        )
        print()
        print("per-phase p50                     floor      ttgen      ttgen - floor")
        for p in PHASES:
            fp = statistics.median(row[1][p] for row in f_rows) * 1000
            tp = statistics.median(row[1][p] for row in t_rows) * 1000
            print(f"  {p:<28}{fp:7.1f} ms {tp:7.1f} ms    {tp - fp:+8.1f} ms")
        print()
        if s_rows:
            s_tpm = statistics.median(trials / w * 60 for w in s_walls)
            s_lat = [row[0] for row in s_rows]
            s_ver = statistics.median(row[1]["verifier"] for row in s_rows)
            t_ver = statistics.median(row[1]["verifier"] for row in t_rows)
            f_ver = statistics.median(row[1]["verifier"] for row in f_rows)
            b_tpm = statistics.median(trials / w * 60 for w in b_walls)
            b_lat = [row[0] for row in b_rows]
            b_ver = statistics.median(row[1]["verifier"] for row in b_rows)
            f_p50 = statistics.median(f_lat)
            cost = statistics.median(t_lat) - statistics.median(s_lat)
            b_cost = statistics.median(b_lat) - statistics.median(s_lat)
            print("what unforgeable rewards cost (vs the verifier in the agent's container)")
            print(f"  ttgen shared                  {s_tpm:7.1f} trials/min   "
                  f"ratio to floor {s_tpm / f_tpm:5.2f}   latency {fmt(s_lat)}")  # fmt: skip
            print(f"  ttgen snapshot (background)   {b_tpm:7.1f} trials/min   "
                  f"ratio to floor {b_tpm / f_tpm:5.2f}   latency {fmt(b_lat)}")  # fmt: skip
            print(f"  verifier phase p50            floor {f_ver * 1000:6.1f} ms   shared "
                  f"{s_ver * 1000:6.1f} ms   default (in place) {t_ver * 1000:6.1f} ms   "
                  f"snapshot {b_ver * 1000:6.1f} ms")  # fmt: skip
            print(f"  per-trial cost p50, in place  {cost * 1000:+7.1f} ms = "
                  f"{cost / f_p50:.2f} x the floor's whole trial")  # fmt: skip
            print(f"  per-trial cost p50, snapshot  {b_cost * 1000:+7.1f} ms = "
                  f"{b_cost / f_p50:.2f} x the floor's whole trial")  # fmt: skip
            print()
        print(
            "\n".join(checks)
            or f"checks: all {len(t_rows) + len(s_rows) + len(b_rows)} ttgen trials passed; "
            "no job containers left   OK"
        )
    finally:
        await remove_labelled([f"{FLOOR_LABEL}={run_id}", *(f"{LABEL_JOB}={j}" for j in job_ids)])
        shutil.rmtree(tmp, ignore_errors=True)


SINGLE_FLOOR = """set -e
c=$(docker run -d --init --cpus 1 -m 2g --memory-swap 2g --pids-limit 4096 \
    --security-opt no-new-privileges:true --network ttgen-isolated --label {label} {image} \
    sh -c 'sleep infinity')
docker exec "$c" mkdir -p /logs/agent /logs/verifier /solution /tests
docker cp -q {task}/solution/. "$c":/solution
docker exec "$c" bash /solution/solve.sh
docker cp -q {task}/tests/. "$c":/tests
docker exec "$c" bash /tests/test.sh
test "$(docker exec "$c" cat /logs/verifier/reward.txt)" = 1
docker rm -f "$c" >/dev/null
"""


def single_trial(k: int) -> None:
    """`ttgen rollout TASK --agent oracle -k 1` as a whole process vs the docker CLI floor."""
    import subprocess

    tmp = Path(tempfile.mkdtemp(prefix="ttgen-bench-single-"))
    try:
        task = make_task(tmp)

        async def prepare() -> str:
            async with DockerBackend() as backend:
                await backend._isolated_network()
                return (await backend.ensure_image(task)).tag

        image = asyncio.run(prepare())
        script = SINGLE_FLOOR.format(label=f"{FLOOR_LABEL}=single", image=image, task=task.path)
        ttgen = [sys.executable, "-m", "ttgen.cli", "rollout", str(task.path), "--agent",
                 "oracle", "-k", "1", "--out"]  # fmt: skip

        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

        def timed(cmd: list[str]) -> float:
            t0 = time.monotonic()
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            sec = time.monotonic() - t0
            if done.returncode != 0:
                raise SystemExit(f"{cmd[:3]} failed: {done.stdout[-500:]}{done.stderr[-500:]}")
            return sec

        floor, ours = [], []
        for i in range(k + 1):  # the first of each warms caches: not counted
            f = timed(["bash", "-c", script])
            t = timed([*ttgen, str(tmp / f"job-{i}")])
            if i:
                floor.append(f)
                ours.append(t)
        fm, tm = statistics.median(floor), statistics.median(ours)
        print(
            f"single trial as a whole process ({k} runs each, medians): docker CLI floor "
            f"{fm:.2f} s; ttgen rollout --agent oracle -k 1 {tm:.2f} s (+{tm - fm:.2f} s, "
            f"{tm / fm:.2f} x the floor)   target <= 1.0 s   {'OK' if tm <= 1.0 else 'MISSED'}"
        )
        print(f"    ttgen runs: {', '.join(f'{x:.2f}' for x in ours)}")
    finally:
        asyncio.run(remove_labelled([f"{FLOOR_LABEL}=single"]))
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trials", type=int, default=200, help="trials per side per round")
    ap.add_argument("-n", "--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2, help="floor/ttgen alternations")
    ap.add_argument("--single", type=int, default=7, help="single-trial runs per side (0: none)")
    args = ap.parse_args()
    try:
        if args.trials:
            asyncio.run(bench(args.trials, args.concurrency, args.rounds))
        if args.single:
            single_trial(args.single)
    except KeyboardInterrupt:
        print("\ninterrupted; containers and temp files removed", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
