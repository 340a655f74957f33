"""Terminus 2 harness costs, with a scripted teacher (real sockets) and real containers.

    python benchmarks/terminus.py [--turns 20] [--trials 64] [--latency 1.0]

(a) harness overhead per turn: a turn's wall time minus the model's latency and the commanded
    waits (what the harness itself costs: parse, send-keys, capture, bookkeeping).
    Target: p50 < 50 ms.
(b) one scripted trajectory of N turns (`ls` with duration 1.0 each) with early completion and
    with strict timing; wall-time ratio, and the two message lists must be identical (up to the
    container's hostname in the prompt).
(c) M concurrent trials against a server answering after `latency` s, T turns each (default
    20, commands with duration 0.1): job wall time over the ideal (T x latency). Target < 1.10 (container start-up and verification are
    part of the measured time, not of the ideal).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import shutil
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from ttgen.rollout.job import Job, JobOptions, rollout_specs
from ttgen.rollout.models import AgentSpec, Outcome, read_trial_result
from ttgen.rollout.trial import Trial, TrialSpec
from ttgen.sandbox.docker import DockerBackend
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


def turn_overheads(tdir: Path) -> list[float]:
    traj = json.loads((tdir / "agent" / "trajectory.json").read_text())
    steps = traj["steps"]
    out = []
    for prev, step in itertools.pairwise(steps):
        wall = (
            datetime.fromisoformat(step["timestamp"]) - datetime.fromisoformat(prev["timestamp"])
        ).total_seconds()
        extra = step["metrics"]["extra"]
        if prev["source"] == "agent":  # the previous turn's commands ran before this call
            wall -= prev["metrics"]["extra"].get("command_wait_sec", 0.0)
        out.append(wall - extra["latency_sec"])
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--concurrent-turns", type=int, default=20)
    ap.add_argument("--latency", type=float, default=1.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ttgen-bench-terminus-"))
    try:
        task = make_task(tmp / "task")
        async with DockerBackend() as backend:
            # (a) + (b)
            async with ScriptedLLMServer([], default=teacher(args.turns)) as server:
                early_sec, early_dir = await one_trial(
                    backend, task, server.base_url, tmp / "early", strict=False
                )
            async with ScriptedLLMServer([], default=teacher(args.turns)) as server:
                strict_sec, strict_dir = await one_trial(
                    backend, task, server.base_url, tmp / "strict", strict=True
                )
            overhead = turn_overheads(early_dir)
            same = conversation(early_dir) == conversation(strict_dir)
            # (c)
            specs = rollout_specs([task], AgentSpec(name="terminus-2", kwargs={
                "model": "bench", "base_url": "", "api_key": "x"}), args.trials)  # fmt: skip
            async with ScriptedLLMServer(
                [], default=teacher(args.concurrent_turns, duration=0.1), latency_sec=args.latency
            ) as server:
                for s in specs:
                    s.agent.kwargs["base_url"] = server.base_url
                job_dir = tmp / "job"
                t0 = time.monotonic()
                await Job(job_dir, specs, JobOptions(n_concurrent=args.trials, retries=0),
                          backend=backend).run()  # fmt: skip
                job_sec = time.monotonic() - t0
                in_flight = server.max_in_flight
            outcomes = [read_trial_result(job_dir / s.trial_name) for s in specs]
            passed = sum(1 for r in outcomes if r and r.outcome == Outcome.PASSED)
        ideal = args.concurrent_turns * args.latency
        print(
            f"(a) harness overhead per turn ({len(overhead)} turns): "
            f"p50 {statistics.median(overhead) * 1000:.1f} ms, p90 {pct(overhead, 0.9) * 1000:.1f} ms"
            f"   target p50 < 50 ms   {'OK' if statistics.median(overhead) < 0.05 else 'MISSED'}"
        )
        print(
            f"(b) {args.turns}-turn trajectory: early completion {early_sec:.1f} s, "
            f"strict {strict_sec:.1f} s, ratio {early_sec / strict_sec:.3f}; "
            f"observations identical: {'yes' if same else 'NO'}"
        )
        print(f"(c) {args.trials} concurrent trials x {args.concurrent_turns} turns at "
              f"{args.latency:g} s latency: {job_sec:.1f} s vs ideal {ideal:.1f} s, ratio "
              f"{job_sec / ideal:.2f}   target < 1.10   "
              f"{'OK' if job_sec / ideal < 1.10 else 'MISSED'}; passed {passed}/{args.trials}, "
              f"max requests in flight {in_flight}")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
