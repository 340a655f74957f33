"""`ttgen tasks check` on thousands of tasks, against the floor of reading the same files.

    python benchmarks/check.py [--tasks 5000]

Generates N task directories (90% valid, 10% with assorted problems) in a temporary folder and
times the `ttgen tasks check --json` command end to end (process start included), beside the
floor: a bare loop that only reads each task's files (task.toml, instruction.md, tests/test.sh,
environment/Dockerfile) in the same run. Target: 5,000 tasks in under 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOML = """version = "1.0"

[metadata]
author_name = "bench"
difficulty = "medium"
category = "software-engineering"
tags = ["bench", "n{i}"]

[verifier]
timeout_sec = 900.0

[agent]
timeout_sec = 900.0

[environment]
build_timeout_sec = 600.0
cpus = 1
memory = "4G"
storage = "10G"
"""


def generate(root: Path, n: int) -> None:
    for i in range(n):
        t = root / f"task-{i:05d}"
        (t / "environment").mkdir(parents=True)
        (t / "tests").mkdir()
        (t / "solution").mkdir()
        kind = i % 10
        (t / "task.toml").write_text(TOML.format(i=i) + ("cpus = [\n" if kind == 7 else ""))
        if kind != 8:
            (t / "instruction.md").write_text(f"Task {i}: do something useful in /app.\n" * 5)
        if kind != 9:
            (t / "tests" / "test.sh").write_text(
                "#!/bin/bash\npytest /tests && echo 1 > /logs/verifier/reward.txt\n"
            )
        (t / "tests" / "test_outputs.py").write_text("def test_ok():\n    assert True\n")
        (t / "environment" / "Dockerfile").write_text("FROM ubuntu:24.04\nWORKDIR /app\n")
        (t / "solution" / "solve.sh").write_text("#!/bin/bash\ntrue\n")


def floor(root: Path) -> float:
    t0 = time.perf_counter()
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        for rel in ("task.toml", "instruction.md", "tests/test.sh", "environment/Dockerfile"):
            try:
                with open(os.path.join(entry.path, rel), "rb") as f:
                    f.read()
            except OSError:
                pass
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tasks", type=int, default=5000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ttgen-check-bench-"))
    try:
        generate(tmp, args.tasks)
        floor(tmp)  # warm the page cache for both
        base = floor(tmp)
        ttgen = [sys.executable, "-m", "ttgen.cli"] if shutil.which("ttgen") is None else ["ttgen"]
        t0 = time.perf_counter()
        out = subprocess.run(
            [*ttgen, "tasks", "check", str(tmp), "--json"], capture_output=True, text=True
        )
        elapsed = time.perf_counter() - t0
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        invalid = sum(not r["valid"] for r in rows)
        expected_invalid = sum(1 for i in range(args.tasks) if i % 10 in (7, 8, 9))
        print(
            f"tasks: {len(rows)}   invalid: {invalid} (expected {expected_invalid})   exit code: {out.returncode}"
        )
        print(
            f"ttgen tasks check --json     {elapsed:6.2f} s   ({elapsed / args.tasks * 1e6:.0f} us/task)"
        )
        print(
            f"floor: read the same files   {base:6.2f} s   ({base / args.tasks * 1e6:.0f} us/task)"
        )
        print(f"ratio ttgen / floor          {elapsed / base:6.1f}")
        target = 10.0 * args.tasks / 5000
        ok = (
            elapsed < target
            and len(rows) == args.tasks
            and invalid == expected_invalid
            and out.returncode == 1
        )
        print(f"target < {target:.1f} s for {args.tasks} tasks: {'OK' if ok else 'MISSED'}")
        sys.exit(0 if ok else 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
