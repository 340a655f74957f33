"""Static checks of task directories (`ttgen tasks check`).

`check_task` never raises on a bad task: every problem becomes a one-line reason naming the file.
Problems make a task invalid; warnings do not. It reads a handful of small files per task and
nothing else, so thousands of tasks check in seconds (see benchmarks/check.py).

Warnings include the task.toml keys Harbor deprecates (`ttgen.task.deprecated_keys`), each with
its replacement, and tasks without tests (by design, or written before ttgen gave them the
no-tests tests/test.sh that Harbor needs).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ttgen.errors import TaskError
from ttgen.task import (
    COMPOSE_FILES,
    DOCKERFILE,
    ENVIRONMENT_DIR,
    SOLUTION_DIR,
    TESTS_DIR,
    Task,
    deprecated_keys,
    is_no_tests_script,
    read_instruction,
    unknown_keys,
)

_FROM_RE = re.compile(r"^\s*FROM\s+\S", re.IGNORECASE | re.MULTILINE)
_REWARD_RE = re.compile(r"reward\.(txt|json)")


@dataclass
class CheckResult:
    path: str
    name: str
    valid: bool
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def check_task(path: str | os.PathLike[str]) -> CheckResult:
    """Check one task directory. Never raises: errors become problems."""
    root = Path(path)
    try:
        return _check(root)
    except Exception as exc:  # a check must never crash a batch
        return CheckResult(str(root), root.name, False, [f"{root}: unexpected error: {exc!r}"])


def _check(root: Path) -> CheckResult:
    problems: list[str] = []
    warnings: list[str] = []
    name = root.absolute().name
    task: Task | None = None

    try:
        task = Task.load(root)
        name = task.name
    except TaskError as exc:
        problems.append(f"{_rel(exc.path, root)}: {exc.problem}")
        # Keep checking the rest of the layout so one run reports everything.
        if exc.path.name == "task.toml" and (root / "instruction.md").exists():
            try:
                read_instruction(root / "instruction.md")
            except TaskError as exc2:
                problems.append(f"{_rel(exc2.path, root)}: {exc2.problem}")

    tests = root / TESTS_DIR
    test_sh = tests / "test.sh"
    has_tests = True
    if not tests.exists():
        has_tests = False
        warnings.append(
            f"{TESTS_DIR}/: none, so nothing can score the task (rollouts keep its trajectories "
            "unscored, as the paper's adapter tasks); Harbor refuses a task without "
            f"{TESTS_DIR}/test.sh: give it one that writes {{}} to /logs/verifier/reward.json "
            "(no reward; `ttgen adapt` writes it)"
        )
    elif not test_sh.is_file():
        problems.append(f"{TESTS_DIR}/test.sh: missing (the verifier's entry point)")
    else:
        text: str | None
        try:
            text = test_sh.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            problems.append(f"{TESTS_DIR}/test.sh: cannot read: {exc.strerror}")
            text = None
        if text is not None and not text.strip():
            problems.append(f"{TESTS_DIR}/test.sh: empty")
        elif text and is_no_tests_script(text):
            has_tests = False
            warnings.append(
                f"{TESTS_DIR}/test.sh: no tests, by design (it writes {{}} to "
                "/logs/verifier/reward.json), so nothing can score the task: Harbor records its "
                "trials without a reward; ttgen does not run it (outcome unverified)"
            )
        elif text and not _REWARD_RE.search(text) and not _any_file_mentions_reward(tests):
            warnings.append(
                f"{TESTS_DIR}/: nothing mentions reward.txt or reward.json; the verifier must "
                "write /logs/verifier/reward.txt (or reward.json)"
            )

    env_dir = root / ENVIRONMENT_DIR
    dockerfile = env_dir / DOCKERFILE
    docker_image = task.config.environment.docker_image if task else None
    has_dockerfile = dockerfile.is_file()
    if has_dockerfile:
        try:
            text = dockerfile.read_text(encoding="utf-8", errors="replace")
            if not _FROM_RE.search(text):
                problems.append(f"{ENVIRONMENT_DIR}/{DOCKERFILE}: no FROM instruction")
        except OSError as exc:
            problems.append(f"{ENVIRONMENT_DIR}/{DOCKERFILE}: cannot read: {exc.strerror}")
    has_compose = any((env_dir / c).is_file() for c in COMPOSE_FILES)
    if not has_dockerfile and not docker_image:
        if has_compose:
            problems.append(
                f"{ENVIRONMENT_DIR}/: only a docker-compose file; ttgen's sandbox runs one "
                "container per task and needs environment/Dockerfile or [environment] docker_image"
            )
        elif task is not None or (root / "task.toml").is_file():
            problems.append(
                f"{ENVIRONMENT_DIR}/{DOCKERFILE}: missing, and task.toml sets no "
                "[environment] docker_image"
            )
    elif has_compose:
        warnings.append(
            f"{ENVIRONMENT_DIR}/docker-compose.yaml: ignored; ttgen runs the main image only"
        )

    solution = root / SOLUTION_DIR
    if solution.is_dir() and not (solution / "solve.sh").is_file():
        warnings.append(f"{SOLUTION_DIR}/: no solve.sh, so the oracle cannot run")

    if task is not None:
        warnings.extend(f"task.toml: {line}" for line in _deprecated(root))
        warnings.extend(f"task.toml: {line}" for line in unknown_keys(task.config))
        env = task.config.environment
        if env.os != "linux":
            problems.append(f"task.toml: [environment] os = {env.os!r} is not supported")
        if env.gpus:
            warnings.append("task.toml: [environment] gpus > 0; GPU tasks need a GPU host")
        if env.network_mode == "allowlist":
            warnings.append(
                'task.toml: [environment] network_mode = "allowlist": ttgen\'s sandbox cannot '
                "limit the network to allowed_hosts; its containers get the whole network"
            )
        said = task.config.metadata.get("has_tests")
        settled = test_sh.is_file() or not tests.exists()  # else test.sh's absence is a problem
        if isinstance(said, bool) and said != has_tests and settled:
            warnings.append(
                f"task.toml: [metadata] has_tests = {str(said).lower()}, but the task "
                + ("has no tests (nothing scores it)" if said else
                   f"has tests ({TESTS_DIR}/test.sh scores it)")
            )  # fmt: skip

    return CheckResult(str(root), name, not problems, problems, warnings)


def _deprecated(root: Path) -> list[str]:
    """The deprecated keys of task.toml as written (loading it already succeeded)."""
    try:
        data = tomllib.loads((root / "task.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    return deprecated_keys(data)


def _any_file_mentions_reward(tests: Path) -> bool:
    for dirpath, _dirs, files in os.walk(tests):
        for f in files:
            p = Path(dirpath, f)
            try:
                if p.stat().st_size > 1_000_000:
                    continue
                if _REWARD_RE.search(p.read_text(encoding="utf-8", errors="ignore")):
                    return True
            except OSError:
                continue
    return False


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)


def check_many(paths: Iterable[Path], workers: int | None = None) -> Iterator[CheckResult]:
    """Check tasks in order; large batches are spread over processes."""
    paths = list(paths)
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    if workers <= 1 or len(paths) < 500:
        yield from map(check_task, paths)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(check_task, paths, chunksize=64)
