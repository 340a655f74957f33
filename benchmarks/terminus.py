"""Terminus 2 harness costs, with a scripted teacher (real sockets) and real containers.

    python benchmarks/terminus.py [--turns 20] [--trials 64] [--latency 1.0]

(a) harness overhead per turn: a turn's wall time minus the model's latency and the command
    waits (parse, bookkeeping, the model call's own overhead). Target: p50 < 50 ms. Also printed
    with the command waits counted: for `ls /`, which early completion ends at the prompt, that
    is everything but the model (keys, the command, the prompt signal, the capture).
(b) one scripted trajectory of N turns (`ls` with duration 1.0 each) with early completion and
    with strict timing; wall-time ratio, and the two message lists must be identical (up to the
    container's hostname in the prompt).
(c) M concurrent trials against a server answering after `latency` s (in a process of its own,
    as a real endpoint is), T turns each (default 20, commands `ls /` with duration 0.1): job
    wall time over the ideal (T x latency), target < 1.10. Also printed: each trial's agent phase over the ideal, and the job time over
    (floor + ideal), where the floor is the engine starting M containers at once with the same
    network and limits (raw API, measured in the same run): container start-up is part of the
    measured time but no harness can avoid it. `--parts c --trials 16` shows the same at a
    concurrency a 2-core machine is not saturated by.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import re
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

from ttgen.formats.trial import AgentSpec, Outcome, read_trial_result
from ttgen.rollout.job import Job, JobOptions, rollout_specs
from ttgen.rollout.trial import Trial, TrialSpec
from ttgen.sandbox.docker import DockerBackend
from ttgen.sandbox.engine_client import DockerError, EngineClient
from ttgen.task import Task
from ttgen.testing import ScriptedLLMServer

BASE = "ttgen/base:bookworm"


def make_task(root: Path) -> Task:
    (root / "environment").mkdir(parents=True)
    (root / "task.toml").write_text(f'[environment]\ndocker_image = "{BASE}"\n')
    (root / "instruction.md").write_text("List the files in /app, then say you are done.\n")
    (root / "tests").mkdir()
    (root / "tests" / "test.sh").write_text("#!/bin/sh\necho 1 > /logs/verifier/reward.txt\n")
    return Task.load(root)


def teacher(turns: int, command: str = "ls /\n", duration: float = 1.0):
    """A reply function: `turns - 2` command turns, then task_complete twice."""

    def reply(body: dict) -> str:
        n = sum(1 for m in body["messages"] if m["role"] == "assistant")
        done = n >= turns - 2
        return json.dumps({
            "analysis": f"turn {n}", "plan": "continue",
            "commands": [] if done else [{"keystrokes": command, "duration": duration}],
            "task_complete": done,
        })  # fmt: skip

    return reply


def conversation(tdir: Path) -> str:
    """The message list with the container's hostname (its id, in the prompt) masked."""
    text = (tdir / "agent" / "messages.json").read_text()
    return re.sub(r"@[0-9a-f]{12}:", "@HOST:", text)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def one_trial(backend, task, base_url, tdir: Path, strict: bool) -> tuple[float, Path]:
    kwargs = {"model": "bench", "base_url": base_url, "api_key": "x", "strict_timing": strict}
    spec = TrialSpec(
        task=task, trial_name=tdir.name, agent=AgentSpec(name="terminus-2", kwargs=kwargs)
    )
    t0 = time.monotonic()
    result = await Trial(spec, backend, tdir, job_id="bench-terminus").run()
    if result.outcome != Outcome.PASSED:
        print(f"FAIL {tdir.name}: {result.outcome} {result.exception_info}")
    return time.monotonic() - t0, tdir


def turn_times(steps: list[dict]) -> list[tuple[float, float, float]]:
    """Per turn, from one step of the trajectory to the next (a step's timestamp is when its
    model answer came): (that time, the turn's wall time minus the next call's latency, the
    command waits in it). The second is everything but the model; minus the third, the
    harness's own cost."""
    out = []
    for prev, step in itertools.pairwise(steps):
        t0 = datetime.fromisoformat(prev["timestamp"]).timestamp()
        wall = datetime.fromisoformat(step["timestamp"]).timestamp() - t0
        over = wall - step["metrics"]["extra"]["latency_sec"]
        wait = prev["metrics"]["extra"].get("command_wait_sec", 0.0) if "metrics" in prev else 0.0
        out.append((t0, over, wait))
    return out


def phase_breakdown(results) -> str:
    """Median seconds per trial phase, and the agent phase over all trials as one span."""
    names = ("environment_setup", "agent_setup", "agent_execution", "verifier")
    med = {n: statistics.median(getattr(r, n).seconds or 0.0 for r in results) for n in names}
    starts = [r.agent_execution.started_at for r in results]
    ends = [r.agent_execution.finished_at for r in results]
    span = (max(ends) - min(starts)).total_seconds()
    return (
        "median per trial: "
        + ", ".join(f"{n} {v:.2f} s" for n, v in med.items())
        + f"; agent phase of all trials, first start to last end: {span:.1f} s"
    )


async def part_ab(backend, task, tmp: Path, args) -> None:
    async with ScriptedLLMServer([], default=teacher(args.turns)) as server:
        early_sec, early_dir = await one_trial(
            backend, task, server.base_url, tmp / "early", strict=False
        )
    async with ScriptedLLMServer([], default=teacher(args.turns)) as server:
        strict_sec, strict_dir = await one_trial(
            backend, task, server.base_url, tmp / "strict", strict=True
        )
    traj = json.loads((early_dir / "agent" / "trajectory.json").read_text())
    times = turn_times(traj["steps"])
    overhead = [over - wait for _, over, wait in times]
    whole = [over for _, over, _ in times[1:]]  # turns that ran commands (not the first call)
    same = conversation(early_dir) == conversation(strict_dir)
    print(
        f"(a) harness overhead per turn ({len(overhead)} turns): "
        f"p50 {statistics.median(overhead) * 1000:.1f} ms, p90 {pct(overhead, 0.9) * 1000:.1f} ms"
        f"   target p50 < 50 ms   {'OK' if statistics.median(overhead) < 0.05 else 'MISSED'}"
    )
    print(
        "    the same with the command waits counted (keys, `ls /` itself, the prompt signal, "
        f"the capture): p50 {statistics.median(whole) * 1000:.1f} ms, "
        f"p90 {pct(whole, 0.9) * 1000:.1f} ms"
    )
    print(
        f"(b) {args.turns}-turn trajectory: early completion {early_sec:.1f} s, "
        f"strict {strict_sec:.1f} s, ratio {early_sec / strict_sec:.3f}; "
        f"observations identical: {'yes' if same else 'NO'}"
    )


async def floor_start(n: int, host_config: dict, on_ready=None) -> float:
    """The engine's floor for starting `n` containers at once: raw API create + start + one exec
    (`true`) each, all concurrently, until the last is ready. Seconds. `host_config` is what a
    trial's container gets (network, limits), so the floor pays for the same isolation."""
    label = f"ttgen.bench.floor={uuid.uuid4().hex[:8]}"
    key, value = label.split("=")

    async def one(docker: EngineClient) -> None:
        container = await docker.containers.create({
            "Image": BASE, "Cmd": ["sleep", "infinity"], "Labels": {key: value},
            "HostConfig": {**host_config, "Init": True},
        })  # fmt: skip
        await container.start()
        ex = await container.exec(["true"])
        async with ex.attach() as stream:
            while await stream.read_out() is not None:
                pass

    async with EngineClient() as docker:
        t0 = time.monotonic()
        try:
            await asyncio.gather(*(one(docker) for _ in range(n)))
            sec = time.monotonic() - t0
            if on_ready is not None:  # before the removals
                on_ready()
            return sec
        finally:
            for c in await docker.containers.list(all=True, filters={"label": [label]}):
                with contextlib.suppress(DockerError):
                    await c.delete(force=True)


def _serve(turns: int, duration: float, latency: float, conn) -> None:
    """The scripted teacher in a process of its own (as a real endpoint is): sends its URL, runs
    until told to stop, then sends the most requests it had in flight."""

    async def run() -> None:
        async with ScriptedLLMServer(
            [], default=teacher(turns, duration=duration), latency_sec=latency
        ) as server:
            conn.send(server.base_url)
            await asyncio.get_running_loop().run_in_executor(None, conn.recv)
            conn.send(server.max_in_flight)

    asyncio.run(run())


@contextlib.contextmanager
def server_process(turns: int, duration: float, latency: float):
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(turns, duration, latency, child), daemon=True)
    proc.start()
    stats: dict[str, int] = {"pid": proc.pid}
    try:
        deadline = time.monotonic() + 60
        while not parent.poll(0.2):
            if not proc.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the scripted teacher's process did not start (exit {proc.exitcode})"
                )
        yield parent.recv(), stats
        parent.send("stop")
        stats["max_in_flight"] = parent.recv()
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()


async def part_c(backend, task, tmp: Path, args) -> None:
    network = await backend._isolated_network()
    floor = await floor_start(args.trials, {
        "NanoCpus": 1_000_000_000, "Memory": 2 << 30, "MemorySwap": 2 << 30,
        "PidsLimit": backend.settings.pids_limit, "SecurityOpt": ["no-new-privileges:true"],
        "NetworkMode": network,
    })  # fmt: skip
    specs = rollout_specs([task], AgentSpec(name="terminus-2", kwargs={
        "model": "bench", "base_url": "", "api_key": "x"}), args.trials)  # fmt: skip
    with server_process(args.concurrent_turns, args.duration, args.latency) as (
        base_url,
        server_stats,
    ):
        for s in specs:
            s.agent.kwargs["base_url"] = base_url
        job_dir = tmp / "job"
        t0 = time.monotonic()
        await Job(job_dir, specs, JobOptions(n_concurrent=args.trials, retries=0),
                  backend=backend).run()  # fmt: skip
        job_sec = time.monotonic() - t0
    in_flight = server_stats["max_in_flight"]
    outcomes = [read_trial_result(job_dir / s.trial_name) for s in specs]
    passed = sum(1 for r in outcomes if r and r.outcome == Outcome.PASSED)
    phases = phase_breakdown([r for r in outcomes if r is not None])
    llm, waits = [], []
    n_early = early_no_prompt = n_full = 0
    each_wait: list[float] = []
    per_turn: list[float] = []
    for spec in specs:
        steps = json.loads((job_dir / spec.trial_name / "agent" / "trajectory.json").read_text())
        agent_steps = [st for st in steps["steps"] if st["source"] == "agent"]
        # An observation after a wait that ended early (prompt back) must end at that prompt:
        # the capture came after bash drew it, as a fixed wait would have shown it.
        for st in agent_steps:
            calls = [c for c in st.get("tool_calls", []) if c["function_name"] == "bash_command"]
            if not calls or "observation" not in st:
                continue
            if not st["metrics"]["extra"].get("commands_ended_early"):
                n_full += 1
                continue
            n_early += 1
            rows = [r for r in st["observation"]["results"][0]["content"].split("\n") if r.strip()]
            early_no_prompt += not (rows and re.fullmatch(r"root@[0-9a-f]{12}:/app#", rows[-1]))
        llm.append(sum(st["metrics"]["extra"]["latency_sec"] for st in agent_steps))
        waits.append(sum(st["metrics"]["extra"].get("command_wait_sec", 0) for st in agent_steps))
        each_wait += [st["metrics"]["extra"]["command_wait_sec"] for st in agent_steps
                      if "command_wait_sec" in st["metrics"]["extra"]]  # fmt: skip
        per_turn += [(t, over) for t, over, _ in turn_times(agent_steps)]
    ideal = args.concurrent_turns * args.latency
    print(f"(c) {args.trials} concurrent trials x {args.concurrent_turns} turns at "
          f"{args.latency:g} s latency: {job_sec:.1f} s vs ideal {ideal:.1f} s, ratio "
          f"{job_sec / ideal:.2f}   target < 1.10   "
          f"{'OK' if job_sec / ideal < 1.10 else 'MISSED'}; passed {passed}/{args.trials}, "
          f"max requests in flight {in_flight}")  # fmt: skip
    print("    " + phases)
    print(
        f"    command waits ended early (prompt back): {n_early}, of which observations without "
        f"the prompt: {early_no_prompt} (must be 0); waits that ran their full duration: {n_full}"
    )
    print(
        f"    per trial, median: model calls {statistics.median(llm):.2f} s (as the client saw "
        f"them), command waits {statistics.median(waits):.2f} s"
    )
    # Turns taken while other trials' containers were still being started compete with the
    # engine for the CPU; after the last trial's agent began, only the trials do.
    all_started = max(r.agent_execution.started_at for r in outcomes if r).timestamp()
    during = [o for t, o in per_turn if t < all_started]
    after = [o for t, o in per_turn if t >= all_started]

    def ms(values: list[float]) -> str:
        if not values:
            return "none"
        return (f"p50 {statistics.median(values) * 1000:.0f} ms, p90 {pct(values, 0.9) * 1000:.0f} "
                f"ms, mean {statistics.mean(values) * 1000:.0f} ms ({len(values)} turns)")  # fmt: skip

    print(
        f"    each command wait: p50 {statistics.median(each_wait) * 1000:.0f} ms, "
        f"p90 {pct(each_wait, 0.9) * 1000:.0f} ms"
    )
    print(f"    each turn's time besides the model's latency (waits included): while containers "
          f"were still starting: {ms(during)}; after all had started: {ms(after)}")  # fmt: skip
    agent = sorted((r.agent_execution.seconds or 0.0) / ideal for r in outcomes if r)
    print(f"    agent phase per trial over the ideal: p50 {statistics.median(agent):.3f}, "
          f"max {agent[-1]:.3f}   target < 1.10   "
          f"{'OK' if statistics.median(agent) < 1.10 else 'MISSED'}")  # fmt: skip
    print(
        f"    engine floor for starting {args.trials} containers at once (raw API, same run): "
        f"{floor:.1f} s; job time over (floor + ideal): {job_sec / (floor + ideal):.2f}"
    )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--concurrent-turns", type=int, default=20)
    ap.add_argument("--duration", type=float, default=0.1, help="(c): each command's duration")
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--parts", default="abc", help="which measurements to run (default abc)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ttgen-bench-terminus-"))
    try:
        task = make_task(tmp / "task")
        async with DockerBackend() as backend:
            if "a" in args.parts or "b" in args.parts:
                await part_ab(backend, task, tmp, args)
            if "c" in args.parts:
                await part_c(backend, task, tmp, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
