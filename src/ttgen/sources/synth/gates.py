"""Quality gates for generated tasks. Each gate returns a list of problems, phrased so that they
can be sent back to the generator in a repair round.

    static    the task folder passes `ttgen tasks check`; tests compile and define at least
              MIN_TESTS test functions; every weight names a test; the instruction is
              substantial and names the paths it is about; the setup script parses
    leak      the instruction holds no test code, no expected values the tests check (long
              numbers or hex/base64 tokens that the tests assert and no input file contains),
              no program that does the work, and nothing of the reference solution (seeds)
    files     every /app path the instruction mentions is an input file (or a folder of them),
              is created by the setup script, or is checked by the tests (an output)
    collect   in Docker: the task's image builds (setup included) and pytest collects the tests
              there, every weighted test among them (needs the domain image)
    validate  in Docker, only with --validate: an agent that does nothing scores 0 and the
              verifier writes a reward

Host gates run first; the Docker gates run only when they pass (no image is built for a task
that is already known to be broken), on this machine's engine or, with a RayExecutor, on the
nodes of a Ray cluster. An infrastructure failure in a Docker gate raises `GateInfraError`: the
item is recorded as an error and retried by the next run, never dropped.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ttgen.check import check_task
from ttgen.errors import TtgenError
from ttgen.formats.trial import AgentSpec
from ttgen.rollout.validate import judge
from ttgen.sources.synth.answer import TaskDraft, test_functions
from ttgen.task import Task

if TYPE_CHECKING:
    from ttgen.rollout.executors import RayExecutor
    from ttgen.sandbox import SandboxBackend

HOST_GATES = ("static", "leak", "files")
DOCKER_GATES = ("collect", "validate")
ALL_GATES = HOST_GATES + DOCKER_GATES
DEFAULT_GATES = ("static", "leak", "files", "collect")

MIN_TESTS = 3
MIN_INSTRUCTION_CHARS = 200
MAX_INSTRUCTION_PROGRAM_LINES = 12
COLLECT_TIMEOUT_SEC = 120.0

_PATH_RE = re.compile(r"(?<![\w.~-])(/app(?:/[\w.+@%=-]+)*/?)")
_NUMBER_RE = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.]*\w)")
_TOKEN_RE = re.compile(r"\b(?:[0-9a-f]{16,}|[A-Za-z0-9+/]{24,}={0,2})\b")
_FENCE_BLOCK_RE = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)
_CODE_HINT_RE = re.compile(r"^\s*(def |class |for |while |import |from \w+ import |if __name__)")


class GateInfraError(TtgenError):
    """A Docker gate could not run (engine, build infrastructure): not the task's fault."""


@dataclass
class GateResult:
    gate: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "ok": self.ok,
            "problems": self.problems,
            "seconds": self.seconds,
        }


# -- host gates ---------------------------------------------------------------------------------


def gate_static(draft: TaskDraft, task_dir: Path) -> list[str]:
    problems: list[str] = []
    result = check_task(task_dir)
    problems.extend(result.problems)
    try:
        compile(draft.tests, "test_outputs.py", "exec")
    except SyntaxError as exc:
        problems.append(f"the tests do not compile: {exc.msg} at line {exc.lineno}")
    names = test_functions(draft.tests)
    if len(names) < MIN_TESTS:
        problems.append(
            f"the tests define {len(names)} test function(s); write at least {MIN_TESTS} "
            "focused tests so that partial progress earns partial credit"
        )
    unknown = sorted(set(draft.weights) - set(names))
    if unknown:
        problems.append(
            "<weights> names tests that do not exist (they would always count as failed): "
            + ", ".join(unknown)
        )
    if len(draft.instruction.strip()) < MIN_INSTRUCTION_CHARS:
        problems.append(
            f"the instruction is only {len(draft.instruction.strip())} characters; describe the "
            "inputs, the outputs and their exact format"
        )
    if not re.search(r"(?<![\w.])/[a-z]+/", draft.instruction):
        problems.append("the instruction names no absolute path (inputs and outputs under /app)")
    if draft.setup.strip():
        bash = shutil.which("bash")
        if bash:
            proc = subprocess.run(
                [bash, "-n"], input=draft.setup, capture_output=True, text=True, timeout=30
            )
            if proc.returncode != 0:
                problems.append(f"<setup> is not valid bash: {proc.stderr.strip()[:300]}")
    return problems


def _significant_digits(number: str) -> int:
    mantissa = re.split(r"[eE]", number.lstrip("-"))[0]
    digits = mantissa.replace(".", "").lstrip("0")
    if "." not in mantissa:
        digits = digits.rstrip("0")
    return len(digits)


def _asserted_literals(tests: str) -> set[str]:
    """Numbers with >= 4 significant digits and long hex/base64 tokens in assert lines and in
    module-level constants of the tests: the values a leak would give away."""
    out: set[str] = set()
    for line in tests.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "assert" in stripped or "==" in stripped or re.match(r"^[A-Z_][A-Z0-9_]*\s*=", stripped):
            for num in _NUMBER_RE.findall(stripped):
                if _significant_digits(num) >= 4:
                    out.add(num.lstrip("-"))
            out.update(_TOKEN_RE.findall(stripped))
    return out


def _program_blocks(instruction: str) -> list[int]:
    """Line counts of fenced code blocks in the instruction that look like programs."""
    sizes = []
    for block in _FENCE_BLOCK_RE.findall(instruction):
        lines = [ln for ln in block.splitlines() if ln.strip()]
        if sum(1 for ln in lines if _CODE_HINT_RE.match(ln)) >= 2:
            sizes.append(len(lines))
    return sizes


def _code_lines(code: str, min_chars: int = 25) -> list[str]:
    out = []
    for line in code.splitlines():
        s = line.strip()
        if len(s) < min_chars or s.startswith(("#", "import ", "from ", '"""', "'''")):
            continue
        out.append(s)
    return out


def gate_leak(draft: TaskDraft, reference_solution: str | None = None) -> list[str]:
    problems: list[str] = []
    instruction = draft.instruction
    if re.search(r"\bdef test_\w*\s*\(", instruction) or "import pytest" in instruction:
        problems.append("the instruction contains test code; the tests must stay hidden")
    else:
        shared = [line for line in _code_lines(draft.tests, 30) if line in instruction]
        if shared:
            problems.append(
                f"the instruction repeats {len(shared)} line(s) of the tests, e.g. "
                f"{shared[0][:120]!r}; the tests must stay hidden"
            )
    inputs = "\n".join(draft.files.values()) + "\n" + draft.setup
    leaked = sorted(
        v
        for v in _asserted_literals(draft.tests)
        if v not in inputs and re.search(rf"(?<![\w.]){re.escape(v)}(?![\w]|\.\d)", instruction)
    )
    if leaked:
        problems.append(
            "the instruction gives away expected values the tests check: "
            + ", ".join(leaked[:8])
            + "; describe the required format with made-up values instead"
        )
    programs = [n for n in _program_blocks(instruction) if n > MAX_INSTRUCTION_PROGRAM_LINES]
    if programs:
        problems.append(
            f"the instruction contains a {max(programs)}-line program; say what to achieve, do "
            "not give code that does the work (put code the agent must fix or use in an input file)"
        )
    if reference_solution and reference_solution.strip():
        copied = [line for line in _code_lines(reference_solution) if line in instruction]
        if copied:
            problems.append(
                f"the instruction contains {len(copied)} line(s) of the reference solution, e.g. "
                f"{copied[0][:120]!r}; the reference solution must never be shown to the agent"
            )
    return problems


def _mentioned_paths(text: str) -> set[str]:
    out = set()
    for m in _PATH_RE.finditer(text):
        p = m.group(1).rstrip(".,;:)")
        if p not in ("/app", "/app/"):
            out.add(p.rstrip("/") if p.endswith("/") else p)
    return out


def gate_files(draft: TaskDraft) -> list[str]:
    """Every /app path the instruction mentions must be accounted for."""
    provided = set(draft.files)
    dirs = {str(Path(p).parent) for p in provided}
    for p in list(dirs):
        while p not in ("/", "/app"):
            p = str(Path(p).parent)
            dirs.add(p)
    missing = []
    for path in sorted(_mentioned_paths(draft.instruction)):
        name = Path(path).name
        if path in provided or path in dirs:
            continue
        if "*" in path or "{" in path or "<" in path:
            continue
        if path in draft.tests or name in draft.tests or (name and name in draft.setup):
            continue  # an output the tests check, or an input the setup script creates
        missing.append(path)
    if missing:
        return [
            "the instruction mentions "
            + ", ".join(missing[:10])
            + ", which is neither an input file in <files> (nor made by <setup>) nor an output "
            "the tests check; provide the file, or fix the path"
        ]
    return []


# -- Docker gates ------------------------------------------------------------------------------


def _tail(text: str, n: int = 25) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


async def collect_on_node(
    backend: SandboxBackend, task_dir: Path, job_id: str, weights: list[str]
) -> dict[str, Any]:
    """The collect gate as a Ray node runs it (`RayExecutor.run_on_node`): {"problems": [...]}
    (the task's faults) or {"infra": message} (ours)."""
    try:
        return {"problems": await gate_collect(backend, task_dir, weights, job_id)}
    except GateInfraError as exc:
        return {"infra": str(exc)}


async def gate_collect(
    backend: SandboxBackend, task_dir: Path, weighted: Iterable[str], job: str
) -> list[str]:
    """Build the task's image and let pytest collect the tests inside a container of it; every
    test in `weighted` must be collected."""
    from ttgen.errors import ImageBuildError, SandboxError

    task = Task.load(task_dir)
    try:
        sandbox = await backend.start(task, job=job, name=f"ttgen-gate-{uuid.uuid4().hex[:12]}")
    except ImageBuildError as exc:
        return [f"the environment image does not build: {_tail(str(exc), 20)}"]
    except SandboxError as exc:
        raise GateInfraError(f"collect gate: cannot start a container: {exc}") from exc
    try:
        await sandbox.upload_dir(str(task_dir / "tests"), "/tests")
        result = await sandbox.exec(
            "cd /app 2>/dev/null || cd /; python3 -m pytest --collect-only -q -p no:cacheprovider "
            "-c /tests/pytest.ini --rootdir=/tests --confcutdir=/tests /tests/test_outputs.py",
            timeout=COLLECT_TIMEOUT_SEC,
            user="root",
        )
    except SandboxError as exc:
        raise GateInfraError(f"collect gate: {exc}") from exc
    finally:
        await sandbox.stop()
    output = (result.stdout or "") + (result.stderr or "")
    if result.timed_out:
        return [f"collecting the tests took over {COLLECT_TIMEOUT_SEC:g} s (work at import time?)"]
    if "No module named pytest" in output:
        raise GateInfraError("collect gate: pytest is not installed in the task's image")
    if result.exit_code != 0:
        return [
            "pytest cannot collect the tests in the task's image (before the agent has run; "
            "read outputs inside the test functions, import only installed packages):\n"
            + _tail(output)
        ]
    collected = {line.split("::")[-1].split("[")[0] for line in output.splitlines() if "::" in line}
    not_collected = sorted(set(weighted) - collected)
    if not_collected:
        return ["pytest does not collect these weighted tests: " + ", ".join(not_collected)]
    return []


async def gate_validate(
    backend: SandboxBackend, task_dir: Path, work_dir: Path, job: str
) -> list[str]:
    """Run the nop agent: the verifier must write a reward, and it must be 0."""
    from ttgen.rollout.trial import Trial, TrialSpec

    task = Task.load(task_dir)
    spec = TrialSpec(task=task, trial_name="nop", agent=AgentSpec(name="nop"))
    trial_dir = work_dir / "validate-nop"
    if trial_dir.exists():
        shutil.rmtree(trial_dir)
    result = await Trial(spec, backend, trial_dir, job_id=job).run()
    return judge_nop(result)


def judge_nop(result: Any) -> list[str]:
    """The validate gate's verdict on a finished do-nothing trial (local or on a Ray node):
    `ttgen validate`'s own judgement (`judge` with no oracle), told to the model that wrote the
    task in a gate's words; infrastructure is ours, not the task's (GateInfraError)."""
    verdict, _ = judge(result, None)
    if verdict == "infra_error":
        raise GateInfraError(f"validate gate: {result.outcome.value}: {_first_error(result)}")
    if verdict == "build_failed":
        return [f"the environment image does not build: {_first_error(result)}"]
    if verdict == "verifier_broken":
        return [
            f"with no work done, the verifier fails ({result.outcome.value}): "
            f"{_first_error(result)}"
        ]
    if verdict == "trivial":
        return [
            f"an agent that does nothing already scores {result.reward:g}: some tests pass "
            "without any work (e.g. they check input files, or accept a missing output)"
        ]
    return []  # no_solution (nop scores 0) or no_tests


def _first_error(result: Any) -> str:
    exc = getattr(result, "exception_info", None)
    if exc is not None:
        message = getattr(exc, "exception_message", "") or str(exc)
        return message.strip().splitlines()[0][:300] if message.strip() else "no details"
    return "no details"


# -- running them ------------------------------------------------------------------------------


class GateRunner:
    """Runs the configured gates on a staged task folder.

    The Docker gates run against `backend` (this machine's engine, at most one per core at a
    time), or with `executor` (a started RayExecutor) on the nodes of a Ray cluster: the
    staged folder travels to a node with a free slot, which builds the image and runs the
    container against its own engine; the LLM calls and the novelty index stay here."""

    def __init__(
        self,
        gates: tuple[str, ...],
        backend: SandboxBackend | None = None,
        job: str = "synth",
        *,
        executor: RayExecutor | None = None,
    ) -> None:
        unknown = sorted(set(gates) - set(ALL_GATES))
        if unknown:
            raise ValueError(f"unknown gate(s) {', '.join(unknown)}; known: {', '.join(ALL_GATES)}")
        if backend is None and executor is None and any(g in DOCKER_GATES for g in gates):
            raise ValueError("the collect and validate gates need a Docker backend or executor")
        self.gates = tuple(g for g in ALL_GATES if g in gates)
        self.backend = backend
        self.executor = executor
        self.job = job
        # Image builds and containers: at most one Docker gate per core at a time.
        self._docker_slots = asyncio.Semaphore(max(1, os.cpu_count() or 2))

    async def run(
        self,
        draft: TaskDraft,
        task_dir: Path,
        work_dir: Path,
        *,
        reference_solution: str | None = None,
    ) -> list[GateResult]:
        loop = asyncio.get_running_loop()
        results: list[GateResult] = []
        for gate in self.gates:
            if gate in DOCKER_GATES and any(not r.ok for r in results):
                break  # no image for a task already known to be broken
            t0 = loop.time()
            if gate == "static":
                problems = await asyncio.to_thread(gate_static, draft, task_dir)
            elif gate == "leak":
                problems = gate_leak(draft, reference_solution)
            elif gate == "files":
                problems = gate_files(draft)
            elif self.executor is not None:
                problems = await self._remote(gate, draft, task_dir, work_dir)
            elif gate == "collect":
                async with self._docker_slots:
                    problems = await gate_collect(self.backend, task_dir, draft.weights, self.job)
            else:
                async with self._docker_slots:
                    problems = await gate_validate(self.backend, task_dir, work_dir, self.job)
            results.append(GateResult(gate, not problems, problems, round(loop.time() - t0, 3)))
        return results

    async def _remote(
        self, gate: str, draft: TaskDraft, task_dir: Path, work_dir: Path
    ) -> list[str]:
        """A Docker gate on a Ray node (the executor picks one with a free slot)."""
        from ttgen.rollout.executors import NodeCallError

        if gate == "collect":
            try:
                out, node = await self.executor.run_on_node(
                    f"{__name__}:collect_on_node", task_dir, {"weights": sorted(draft.weights)}
                )
            except NodeCallError as exc:
                raise GateInfraError(f"collect gate: {exc}") from None
            if "infra" in out:
                raise GateInfraError(f"{out['infra']} (on Ray node {node.get('host')})")
            return list(out["problems"])
        from ttgen.rollout.job import JobOptions
        from ttgen.rollout.trial import TrialSpec

        spec = TrialSpec(task=Task.load(task_dir), trial_name="nop", agent=AgentSpec(name="nop"))
        trial_dir = work_dir / "validate-nop"
        if trial_dir.exists():
            shutil.rmtree(trial_dir)
        result = await self.executor.run_trial(
            spec,
            trial_dir,
            job_id=self.job,
            options=JobOptions(),
            history=[],
            known_build_error=None,
        )
        return judge_nop(result)


def parse_gate_list(spec: str | None, *, validate: bool) -> tuple[str, ...]:
    """``--gates`` value (comma list, "all" or "none") plus ``--validate``."""
    if spec is None:
        gates = list(DEFAULT_GATES)
    elif spec.strip().lower() == "none":
        gates = []
    elif spec.strip().lower() == "all":
        gates = list(ALL_GATES)
    else:
        gates = [g.strip() for g in spec.split(",") if g.strip()]
    if validate and "validate" not in gates:
        gates.append("validate")
    unknown = sorted(set(gates) - set(ALL_GATES))
    if unknown:
        raise ValueError(f"unknown gate(s) {', '.join(unknown)}; known: {', '.join(ALL_GATES)}")
    return tuple(g for g in ALL_GATES if g in gates)
