"""Sandbox latency against the floor, measured in the same run.

    python benchmarks/sandbox.py [--image ttgen/base:bookworm] [--runs 20]

Prints, on a cached image:
  * start -> first exec (ttgen: create + start + exec `true`) beside `docker run --rm IMAGE true`;
  * one exec round trip (ttgen, `true` in a running container: through the in-container exec
    helper, which ttgen uses by default, and through one Engine API exec per command) beside
    `docker exec CID true`;
  * a second build of an unchanged task (must be a cache hit: same image, nothing rebuilt)
    beside `docker build` of the same context, which the engine answers from its layer cache.
Targets: start -> first exec no slower than `docker run --rm`; exec p50 under 30 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ttgen.sandbox.docker import DockerBackend
from ttgen.settings import Settings
from ttgen.task import Task


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def fmt(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:7.1f} ms   p90 {pct(values, 0.9) * 1000:7.1f} ms"


def cli(*args: str) -> None:
    subprocess.run(
        ["docker", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def make_task(root: Path, image: str) -> Task:
    task = root / "bench-task"
    (task / "environment").mkdir(parents=True)
    (task / "tests").mkdir()
    (task / "environment" / "Dockerfile").write_text(
        f"FROM {image}\nWORKDIR /app\nRUN echo {uuid.uuid4().hex} > /nonce && mkdir -p /data\nCOPY data.txt /data/\n"
    )
    (task / "environment" / "data.txt").write_text("payload\n" * 1000)
    (task / "instruction.md").write_text("benchmark task\n")
    (task / "task.toml").write_text(
        'schema_version = "1.2"\n[environment]\ncpus = 1\nmemory_mb = 512\n'
    )
    (task / "tests" / "test.sh").write_text("echo 1 > /logs/verifier/reward.txt\n")
    return Task.load(task)


async def bench(image: str, runs: int) -> int:
    settings = Settings(pull=False)
    tmp = Path(tempfile.mkdtemp(prefix="ttgen-bench-"))
    failures = 0
    try:
        task = make_task(tmp, image)
        async with DockerBackend(settings) as backend:
            await backend.ping()
            first = await backend.ensure_image(task)
            tag = first.tag
            # Warm both paths once.
            async with await backend.start(task, job="bench", image=first) as sb:
                await sb.exec(["true"])
            cli("run", "--rm", tag, "true")

            # start -> first exec
            ours: list[float] = []
            floor: list[float] = []
            for _ in range(runs):
                t0 = time.perf_counter()
                sb = await backend.start(task, job="bench", image=first)
                res = await sb.exec(["true"])
                ours.append(time.perf_counter() - t0)
                assert res.ok
                await sb.stop()
                t0 = time.perf_counter()
                cli("run", "--rm", tag, "true")
                floor.append(time.perf_counter() - t0)

            # exec round trip: through the exec helper (the default once the first exec has
            # started it) and through one `docker exec` API call per command
            ex_ours: list[float] = []
            ex_api: list[float] = []
            ex_floor: list[float] = []
            classic = DockerBackend(settings, exec_channel=False)
            async with (
                await backend.start(task, job="bench", image=first) as sb,
                await classic.start(task, job="bench", image=first) as sb_api,
            ):
                await sb.exec(["true"])
                await sb.exec(["true"])
                await asyncio.sleep(0.5)  # the helper starts in the background at the second exec
                assert sb._channel is not None and sb._channel.alive, "exec helper did not start"
                for _ in range(max(runs * 3, 30)):
                    t0 = time.perf_counter()
                    res = await sb.exec(["true"])
                    ex_ours.append(time.perf_counter() - t0)
                    assert res.ok
                    t0 = time.perf_counter()
                    res = await sb_api.exec(["true"])
                    ex_api.append(time.perf_counter() - t0)
                    assert res.ok
                    t0 = time.perf_counter()
                    cli("exec", sb.id, "true")
                    ex_floor.append(time.perf_counter() - t0)
            await classic.close()

            # second build of the unchanged task
            builds_before = backend.builds
            image_id = (await backend.image_exists(tag))["Id"]
            rebuild: list[float] = []
            for _ in range(5):
                t0 = time.perf_counter()
                ref = await backend.ensure_image(task)
                rebuild.append(time.perf_counter() - t0)
                assert ref.source == "cached" and ref.tag == tag
            fresh = DockerBackend(settings)  # as a new process would see it
            t0 = time.perf_counter()
            ref = await fresh.ensure_image(task)
            fresh_s = time.perf_counter() - t0
            await fresh.close()
            rebuilt = backend.builds - builds_before + fresh.builds
            same_image = (await backend.image_exists(tag))["Id"] == image_id

        # docker build of the same context: the engine's own cache-hit floor
        ctx = tmp / "ctx"
        shutil.copytree(task.environment_dir, ctx)
        cli("build", "-q", "-t", "ttgen-bench/cli:latest", str(ctx))
        cli_build: list[float] = []
        for _ in range(5):
            t0 = time.perf_counter()
            out = subprocess.run(
                ["docker", "build", "-t", "ttgen-bench/cli:latest", str(ctx)],
                capture_output=True,
                text=True,
                check=True,
            )
            cli_build.append(time.perf_counter() - t0)
        cli_rebuilt = sum(
            1 for line in out.stdout.splitlines() if line.strip().startswith("---> Running in")
        )
        subprocess.run(["docker", "rmi", "ttgen-bench/cli:latest"], capture_output=True)

        def ratio(a: list[float], b: list[float]) -> float:
            return statistics.median(a) / statistics.median(b)

        print(f"image: {image}   runs: {runs}   host: {sys.platform}")
        print()
        print("start -> first exec")
        print(f"  ttgen (create+start+exec)     {fmt(ours)}")
        print(f"  docker run --rm IMAGE true    {fmt(floor)}")
        r1 = ratio(ours, floor)
        ok1 = r1 <= 1.0
        print(
            f"  ratio ttgen / floor           {r1:5.2f}   target <= 1.00   {'OK' if ok1 else 'MISSED'}"
        )
        print()
        print("exec round trip")
        print(f"  ttgen exec (exec helper)      {fmt(ex_ours)}")
        print(f"  ttgen exec (docker exec API)  {fmt(ex_api)}")
        print(f"  docker exec CID true          {fmt(ex_floor)}")
        p50 = statistics.median(ex_ours) * 1000
        ok2 = p50 < 30
        print(
            f"  ratio ttgen / docker exec     {ratio(ex_ours, ex_floor):5.2f}   ttgen p50 {p50:.1f} ms, target < 30 ms   {'OK' if ok2 else 'MISSED'}"
        )
        print()
        print("second build of an unchanged task")
        print(f"  ttgen ensure_image (cached)   {fmt(rebuild)}")
        print(f"  ttgen, fresh backend          {fresh_s * 1000:7.1f} ms")
        print(f"  docker build (layer cache)    {fmt(cli_build)}   steps re-run: {cli_rebuilt}")
        print(f"  ratio ttgen / docker build    {ratio(rebuild, cli_build):5.2f}")
        ok3 = rebuilt == 0 and same_image
        print(
            f"  images rebuilt: {rebuilt}, image id unchanged: {same_image}   {'OK' if ok3 else 'MISSED'}"
        )
        failures = [ok1, ok2, ok3].count(False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return failures


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--image", default="ttgen/base:bookworm")
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    missed = asyncio.run(bench(args.image, args.runs))
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
