"""Dataset adapters: prompt datasets → Harbor task directories, no LLM in the loop (paper §4.1).

Each record's prompt becomes the instruction, followed by the paper's suffix for its kind,
character for character (Figures 8-10):

* math: ``MATH_SUFFIX`` (answer in /app/solution.txt)
* code: ``CODE_SUFFIX`` (code in /app/solution.py)
* swe: ``SWE_SUFFIX`` (patch in /app/solution.patch); every code file shown in the prompt is
  also put in the environment at /app/<path> (see `ttgen.sources.swe_files`)
* generic: the prompt plus an optional user-given suffix, and optional files from a record field

Beyond the paper (whose adapter tasks have no tests): a math record with a reference answer and
a code record with test cases also get tests/ (test.sh + a standard-library checker from
`ttgen.sources.verifiers` + the reference data) and, where the record has a reference answer or
solution, solution/solve.sh, so `ttgen validate` can check them. Every other task has no tests,
as in the paper, and gets `ttgen.task.NO_TESTS_SCRIPT` as tests/test.sh (Harbor refuses a task
without one): it gives no reward, which Harbor records as such; ttgen does not run it (trials end
`unverified`, validation says `no_tests`). task.toml's ``[metadata] has_tests`` says which.

`adapt()` reads a source with `ttgen.sources.records.iter_records`, drops duplicate prompts,
records bad records and goes on, and writes one task per record under the output folder plus
``adapt.jsonl`` (one line per record: its task, or why it was skipped). Running it again on the
same folder resumes: a task whose files would be the same is not rewritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ttgen.errors import TtgenError
from ttgen.sources.records import (
    MISSING,
    BadRecord,
    FieldMap,
    Record,
    SourceError,
    iter_records,
    normalized_key,
)
from ttgen.sources.swe_files import check_path, parse_code_files
from ttgen.task import (
    CONFIG_FILE,
    INSTRUCTION_FILE,
    NO_TESTS_SCRIPT,
    AgentConfig,
    EnvironmentConfig,
    Task,
    TaskConfig,
    VerifierConfig,
)

KINDS = ("math", "code", "swe", "generic")

MATH_SUFFIX = "\n\nPlease place your final answer in a file named '/app/solution.txt'."
CODE_SUFFIX = (
    "\n\nWrite Python code to solve the problem. Please place the solution code in a file named "
    "`/app/solution.py`."
)
SWE_SUFFIX = (
    "\n\nPlease first localize the bug based on the issue statement, generate *SEARCH/REPLACE* "
    "edits to fix the issue, and save the diff to a file named `/app/solution.patch`."
)
SUFFIXES = {"math": MATH_SUFFIX, "code": CODE_SUFFIX, "swe": SWE_SUFFIX}

DEFAULT_IMAGE = "ttgen/domain:general"
DEFAULT_AGENT_TIMEOUT_SEC = 900.0
DEFAULT_VERIFIER_TIMEOUT_SEC = 120.0
DEFAULT_CPUS = 1
DEFAULT_MEMORY_MB = 2048
DEFAULT_CASE_TIMEOUT_SEC = 10.0
CASE_TIMEOUT_MARGIN_SEC = 30.0  # python start-up and the checker itself, on top of the cases
MANIFEST = "adapt.jsonl"
MAX_BAD_KEPT = 1000  # bad records kept in the summary; the manifest lists all of them
NO_FILES = "no code files found"

PROMPT_ALIASES = ("prompt", "question", "problem", "instruction", "input")
ID_ALIASES = ("id", "problem_id", "instance_id", "task_id", "question_id", "unique_id", "uuid")
FIELD_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "math": {
        "prompt": PROMPT_ALIASES,
        "id": ID_ALIASES,
        "answer": ("answer", "expected_answer", "final_answer", "gt_answer", "ground_truth"),
        "solution": ("solution",),  # a worked solution: its last \boxed{} is the answer
    },
    "code": {
        "prompt": PROMPT_ALIASES,
        "id": ID_ALIASES,
        "tests": ("tests", "test_cases", "input_output", "public_tests", "public_test_cases"),
        "solution": ("solution", "solutions", "reference_solution", "canonical_solution"),
        "fn_name": ("fn_name", "func_name"),
    },
    # SWE-bench's oracle/BM25 sets keep issue + files in "text".
    "swe": {"prompt": (*PROMPT_ALIASES, "text"), "id": ID_ALIASES},
    "generic": {"prompt": PROMPT_ALIASES, "id": ID_ALIASES, "files": ("files",)},
}

_VERIFIERS = Path(__file__).parent / "verifiers"


class AdaptError(TtgenError):
    """The adapter cannot run as asked (an unknown kind, an option that does not apply)."""


class RecordError(Exception):
    """One record cannot become a task; the message says why (the batch goes on)."""


@dataclass
class AdaptOptions:
    """How records become tasks; every field has the documented default."""

    image: str = DEFAULT_IMAGE
    fields: dict[str, str] = field(default_factory=dict)
    limit: int | None = None
    config: str | None = None
    split: str | None = None
    suffix: str | None = None
    allow_no_files: bool = False
    agent_timeout_sec: float = DEFAULT_AGENT_TIMEOUT_SEC
    verifier_timeout_sec: float = DEFAULT_VERIFIER_TIMEOUT_SEC
    cpus: float = DEFAULT_CPUS
    memory_mb: int = DEFAULT_MEMORY_MB
    case_timeout_sec: float = DEFAULT_CASE_TIMEOUT_SEC


@dataclass
class AdaptSummary:
    """What one `adapt()` run did."""

    kind: str
    dataset: str
    out: str
    read: int = 0  # entries read from the source, bad ones included
    written: int = 0  # tasks written (new, or changed since the last run)
    unchanged: int = 0  # tasks already in the folder with the same content
    duplicates: int = 0
    no_files: int = 0  # swe records without code files (skipped)
    with_tests: int = 0  # tasks (written or unchanged) that have tests/
    n_bad: int = 0
    bad: list[BadRecord] = field(default_factory=list)  # the first MAX_BAD_KEPT
    elapsed_sec: float = 0.0

    @property
    def tasks(self) -> int:
        return self.written + self.unchanged

    @property
    def manifest(self) -> str:
        return str(Path(self.out) / MANIFEST)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dataset": self.dataset,
            "out": self.out,
            "read": self.read,
            "tasks": self.tasks,
            "written": self.written,
            "unchanged": self.unchanged,
            "duplicates": self.duplicates,
            "no_files": self.no_files,
            "with_tests": self.with_tests,
            "bad": self.n_bad,
            "bad_records": [{"origin": b.origin, "problem": b.problem} for b in self.bad],
            "manifest": self.manifest,
            "elapsed_sec": round(self.elapsed_sec, 3),
        }


@dataclass
class _Built:
    """A record turned into task content, before it has a name."""

    instruction: str
    files: dict[str, str] = field(default_factory=dict)  # task-relative path → content
    env_files: dict[str, str] = field(default_factory=dict)  # path under /app → content
    has_tests: bool = False
    verifier_timeout_sec: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


# -- the run --------------------------------------------------------------------------------------


def adapt(
    kind: str,
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    options: AdaptOptions | None = None,
    *,
    progress: Callable[[AdaptSummary], None] | None = None,
) -> AdaptSummary:
    """Turn every record of `source` into a task folder under `out`; see the module docstring.

    Raises `AdaptError` / `SourceError` when the run cannot start (unknown kind or field, an
    unreadable source); a bad record is counted, listed and skipped. `progress` is called after
    every record with the summary so far.
    """
    options = options or AdaptOptions()
    _check_options(kind, options)
    fields = FieldMap(FIELD_ALIASES[kind], options.fields)
    dataset = os.fspath(source)
    out_dir = Path(out)
    summary = AdaptSummary(kind=kind, dataset=dataset, out=str(out_dir))
    started = time.perf_counter()
    entries = iter_records(source, config=options.config, split=options.split)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    seen: dict[bytes, str] = {}  # prompt key → origin of its first record
    names: set[str] = set()
    manifest_tmp = out_dir / f".{MANIFEST}.tmp-{os.getpid()}"
    done = False
    try:
        with manifest_tmp.open("w", encoding="utf-8") as manifest:

            def note(line: dict[str, Any]) -> None:
                manifest.write(json.dumps(line, ensure_ascii=False) + "\n")

            for index, entry in enumerate(entries):
                summary.read += 1
                if isinstance(entry, BadRecord):
                    _bad(summary, entry)
                    note({"origin": entry.origin, "skipped": "bad record", "reason": entry.problem})
                else:
                    _one(kind, index, entry, fields, options, dataset, out_dir, seen, names,
                         summary, note)  # fmt: skip
                if progress is not None:
                    progress(summary)
                if options.limit is not None and summary.tasks >= options.limit:
                    break
            manifest.flush()
            os.fsync(manifest.fileno())
        if summary.read == 0:  # an empty input is no run: nothing is written
            raise AdaptError(f"{dataset}: no records (empty input); nothing was written")
        os.replace(manifest_tmp, out_dir / MANIFEST)
        done = True
    finally:
        if not done:
            manifest_tmp.unlink(missing_ok=True)
            if created:
                with contextlib.suppress(OSError):
                    out_dir.rmdir()  # only if still empty
    summary.elapsed_sec = time.perf_counter() - started
    return summary


def _check_options(kind: str, options: AdaptOptions) -> None:
    if kind not in KINDS:
        raise AdaptError(f"unknown adapter {kind!r}; use one of {', '.join(KINDS)}")
    if options.suffix is not None and kind != "generic":
        raise AdaptError(f"--suffix applies only to the generic adapter; {kind} uses the paper's")
    if options.allow_no_files and kind != "swe":
        raise AdaptError("--allow-no-files applies only to the swe adapter")
    if options.limit is not None and options.limit < 1:
        raise AdaptError(f"--limit must be at least 1 (got {options.limit})")
    for name, value in (
        ("agent timeout", options.agent_timeout_sec),
        ("verifier timeout", options.verifier_timeout_sec),
        ("case timeout", options.case_timeout_sec),
        ("cpus", options.cpus),
        ("memory_mb", options.memory_mb),
    ):
        if value <= 0:
            raise AdaptError(f"{name} must be positive (got {value:g})")
    if not options.image.strip() or any(c.isspace() for c in options.image.strip()):
        raise AdaptError(f"--image {options.image!r} is not an image reference")


def _bad(summary: AdaptSummary, bad: BadRecord) -> None:
    summary.n_bad += 1
    if len(summary.bad) < MAX_BAD_KEPT:
        summary.bad.append(bad)


def _one(
    kind: str,
    index: int,
    record: Record,
    fields: FieldMap,
    options: AdaptOptions,
    dataset: str,
    out_dir: Path,
    seen: dict[bytes, str],
    names: set[str],
    summary: AdaptSummary,
    note: Callable[[dict[str, Any]], None],
) -> None:
    origin = record.origin
    try:
        prompt = fields.prompt(record.data)
        if prompt is not None and not isinstance(prompt, str):
            raise RecordError(
                f"prompt ({fields.describe('prompt')}) is {type(prompt).__name__}, not text"
            )
        if prompt is None or not prompt.strip():
            raise RecordError(
                f"no prompt (looked for {fields.describe('prompt')}"
                + ("" if "prompt" in fields.overrides else ", messages, conversations")
                + "; map one with --field prompt=NAME)"
            )
        key = normalized_key(prompt)
        if key in seen:
            summary.duplicates += 1
            note({"origin": origin, "skipped": "duplicate", "duplicate_of": seen[key]})
            return
        built = _BUILDERS[kind](record, prompt, fields, options)
    except RecordError as exc:
        _bad(summary, BadRecord(origin, str(exc)))
        note({"origin": origin, "skipped": "bad record", "reason": str(exc)})
        return
    seen[key] = origin
    if built is None:
        summary.no_files += 1
        note({"origin": origin, "skipped": "no files", "reason": NO_FILES})
        return
    record_id = fields.get(record.data, "id")
    record_id = None if record_id is MISSING else str(record_id)
    name = _task_name(kind, record_id, index, origin, names)
    task = _assemble(kind, name, built, origin, record_id, dataset, options)
    status = _write(task, out_dir / name)
    if status == "written":
        summary.written += 1
    else:
        summary.unchanged += 1
    if built.has_tests:
        summary.with_tests += 1
    note({"origin": origin, "task": name, "status": status, "has_tests": built.has_tests})


# -- names and writing ------------------------------------------------------------------------


def slugify(text: str, max_len: int = 80) -> str:
    """Lower-case letters, digits and single dashes; long ids keep a hash of the whole id."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if len(slug) > max_len:
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
        slug = slug[: max_len - 9].rstrip("-") + "-" + digest
    return slug


def _task_name(kind: str, record_id: str | None, index: int, origin: str, names: set[str]) -> str:
    """``<kind>-<id>`` or ``<kind>-<index>``; a name already taken gets a hash of the origin."""
    slug = slugify(record_id) if record_id else ""
    name = f"{kind}-{slug}" if slug else f"{kind}-{index:06d}"
    if name in names:
        base = f"{name}-{hashlib.sha1(origin.encode('utf-8')).hexdigest()[:8]}"
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
    names.add(name)
    return name


def _assemble(
    kind: str,
    name: str,
    built: _Built,
    origin: str,
    record_id: str | None,
    dataset: str,
    options: AdaptOptions,
) -> Task:
    metadata: dict[str, Any] = {
        "source": "adapter",
        "adapter": kind,
        "dataset": dataset,
        "origin": origin,
    }
    if options.config:
        metadata["config"] = options.config
    if options.split:
        metadata["split"] = options.split
    if record_id is not None:
        metadata["record_id"] = record_id
    metadata["has_tests"] = built.has_tests
    metadata.update(built.metadata)
    verifier_timeout = built.verifier_timeout_sec or options.verifier_timeout_sec
    config = TaskConfig(
        schema_version="1.2",
        metadata=metadata,
        verifier=VerifierConfig(timeout_sec=float(verifier_timeout)),
        agent=AgentConfig(timeout_sec=float(options.agent_timeout_sec)),
        environment=EnvironmentConfig(cpus=_whole(options.cpus), memory_mb=options.memory_mb),
    )
    dockerfile = f"FROM {options.image}\nWORKDIR /app\n"
    files: dict[str, bytes | str] = dict(built.files)
    if not built.has_tests:
        files["tests/test.sh"] = NO_TESTS_SCRIPT  # no tests by design; Harbor needs the file
    if built.env_files:
        dockerfile += "COPY files/ /app/\n"
        for path, content in built.env_files.items():
            files[f"environment/files/{path}"] = content
    files["environment/Dockerfile"] = dockerfile
    return Task(name=name, instruction=built.instruction, config=config, files=files)


def _whole(x: float) -> int | float:
    """2.0 → 2, so task.toml says ``cpus = 2`` as people write it."""
    return int(x) if float(x).is_integer() else x


def _write(task: Task, dest: Path) -> str:
    """Save the task unless `dest` already holds exactly these files: "written" / "unchanged"."""
    wanted: dict[str, bytes] = {
        INSTRUCTION_FILE: task.instruction.encode("utf-8"),
        CONFIG_FILE: task.config.to_toml().encode("utf-8"),
    }
    for rel, content in task.files.items():
        wanted[rel] = content.encode("utf-8") if isinstance(content, str) else content
    if dest.is_dir() and _same_files(dest, wanted):
        return "unchanged"
    task.save(dest, overwrite=True)
    return "written"


def _same_files(root: Path, wanted: Mapping[str, bytes]) -> bool:
    found: list[str] = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            found.append(Path(dirpath, f).relative_to(root).as_posix())
            if len(found) > len(wanted):
                return False
    if set(found) != set(wanted):
        return False
    for rel, content in wanted.items():
        p = root / rel
        try:
            if p.stat().st_size != len(content) or p.read_bytes() != content:
                return False
        except OSError:
            return False
    return True


# -- scripts shared by the tasks --------------------------------------------------------------


@cache
def verifier_source(name: str) -> str:
    """The text of a checker script shipped in ttgen/sources/verifiers/."""
    return (_VERIFIERS / name).read_text(encoding="utf-8")


def _heredoc_script(comment: str, dest: str, content: str) -> str:
    """A solve.sh writing `content` to `dest` verbatim (quoted heredoc: nothing expands)."""
    delimiter, n = "TTGEN_EOF", 0
    lines = set(content.split("\n"))
    while delimiter in lines:
        n += 1
        delimiter = f"TTGEN_EOF_{n}"
    body = content if content.endswith("\n") else content + "\n"
    return (
        f"#!/bin/bash\n# {comment}\nset -e\nmkdir -p {os.path.dirname(dest)}\n"
        f"cat > {dest} <<'{delimiter}'\n{body}{delimiter}\n"
    )


_TEST_SH = """\
#!/bin/bash
# Verifier of a `ttgen adapt {kind}` task: {what}
# It always leaves a reward in /logs/verifier/reward.txt: 1 on success, else 0 (a missing
# solution file or a crashing checker included), and says why on stdout.
mkdir -p /logs/verifier
echo 0 > /logs/verifier/reward.txt
if [ ! -f {solution} ]; then
  echo "FAIL: {solution} does not exist"
  echo "reward: 0"
  exit 0
fi
python3 /tests/{checker} {args}
status=$?
if [ "$status" -eq 0 ]; then
  echo 1 > /logs/verifier/reward.txt
  echo "reward: 1"
else
  if [ "$status" -ne 3 ]; then
    echo "the checker could not run (exit $status; is python3 in the image?), so the reward is 0"
  fi
  echo "reward: 0"
fi
exit 0
"""


def _test_sh(kind: str, what: str, solution: str, checker: str, args: str) -> str:
    return _TEST_SH.format(kind=kind, what=what, solution=solution, checker=checker, args=args)


# -- math -------------------------------------------------------------------------------------


def _scalar_text(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RecordError(f"{what}: expected text or a number, got {type(value).__name__}")
    return value.strip() if isinstance(value, str) else str(value)


def _build_math(record: Record, prompt: str, fields: FieldMap, options: AdaptOptions) -> _Built:
    from ttgen.sources.verifiers.verify_math import last_boxed, normalize

    built = _Built(instruction=prompt + MATH_SUFFIX)
    answer = fields.get(record.data, "answer")
    if answer is MISSING and "answer" not in fields.overrides:
        worked = fields.get(record.data, "solution")
        if isinstance(worked, str):
            answer = last_boxed(worked) or MISSING
    if answer is MISSING:
        return built
    text = _scalar_text(answer, f"answer ({fields.describe('answer')})")
    if not normalize(text):
        raise RecordError(f"answer {text!r} is empty once normalized")
    built.has_tests = True
    built.files = {
        "tests/test.sh": _test_sh(
            "math",
            "compares /app/solution.txt with the reference\n"
            "# answer (tests/expected_answer.txt) after normalization, numbers with a tolerance.",
            "/app/solution.txt",
            "verify_math.py",
            "/tests/expected_answer.txt /app/solution.txt",
        ),
        "tests/verify_math.py": verifier_source("verify_math.py"),
        "tests/expected_answer.txt": text + "\n",
        "solution/solve.sh": _heredoc_script(
            "The reference answer of this task.", "/app/solution.txt", text
        ),
    }
    return built


# -- code -------------------------------------------------------------------------------------


def _maybe_json(value: Any, what: str) -> Any:
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise RecordError(f"{what}: not valid JSON ({exc})") from None
    return value


def _stdio_text(value: Any, what: str) -> str:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n".join(value) + "\n"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise RecordError(f"{what}: expected text, got {type(value).__name__}")


def parse_tests(value: Any, fn_name: str | None, what: str = "tests") -> dict[str, Any] | None:
    """Test cases in a record, as ``{"mode", "fn_name", "cases"}``; None when there are none.

    Accepted: APPS ``{"inputs": [...], "outputs": [...], "fn_name"?}`` (also as JSON text),
    CodeContests ``{"input": [...], "output": [...]}``, and lists of ``{"input", "output"}``
    (or ``stdin``/``stdout``; LiveCodeBench's ``testtype: "functional"`` cases hold one JSON
    argument per line).
    """
    value = _maybe_json(value, what)
    pairs: list[tuple[Any, Any]] = []
    functional = False
    if isinstance(value, Mapping) and not value:
        return None
    if isinstance(value, Mapping):
        fn_name = value.get("fn_name") or fn_name
        ins = value.get("inputs", value.get("input"))
        outs = value.get("outputs", value.get("output"))
        if ins is None or outs is None:
            raise RecordError(f"{what}: expected 'inputs' and 'outputs' (got keys {sorted(value)})")
        if not isinstance(ins, list) or not isinstance(outs, list):
            raise RecordError(f"{what}: 'inputs' and 'outputs' must be lists")
        if len(ins) != len(outs):
            raise RecordError(f"{what}: {len(ins)} inputs but {len(outs)} outputs")
        pairs = list(zip(ins, outs, strict=True))
    elif isinstance(value, list):
        for k, case in enumerate(value):
            if not isinstance(case, Mapping):
                raise RecordError(f"{what}[{k}]: expected an object with input and output")
            inp = case.get("input", case.get("stdin"))
            outp = case.get("output", case.get("stdout", case.get("expected_output")))
            if inp is None or outp is None:
                raise RecordError(f"{what}[{k}]: needs 'input' and 'output'")
            if case.get("testtype") == "functional":
                functional = True
            pairs.append((inp, outp))
    else:
        raise RecordError(f"{what}: expected a list of cases or an inputs/outputs object")
    if not pairs:
        return None
    if functional:
        cases = []
        for k, (inp, outp) in enumerate(pairs):
            try:
                args = [json.loads(line) for line in str(inp).split("\n") if line.strip()]
                expected = json.loads(outp) if isinstance(outp, str) else outp
            except ValueError as exc:
                raise RecordError(f"{what}[{k}]: functional case is not JSON ({exc})") from None
            cases.append({"input": args, "output": expected})
        if not fn_name:
            raise RecordError(f"{what}: functional test cases need the function name (fn_name)")
        return {"mode": "call", "fn_name": fn_name, "cases": cases}
    if fn_name:
        cases = [
            {"input": inp if isinstance(inp, list) else [inp], "output": outp}
            for inp, outp in pairs
        ]
        return {"mode": "call", "fn_name": fn_name, "cases": cases}
    cases = [
        {"input": _stdio_text(inp, f"{what}[{k}] input"),
         "output": _stdio_text(outp, f"{what}[{k}] output")}
        for k, (inp, outp) in enumerate(pairs)
    ]  # fmt: skip
    return {"mode": "stdio", "fn_name": None, "cases": cases}


_FENCE_RE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def reference_code(value: Any, what: str = "solution") -> str | None:
    """A reference solution: text, the first of a list (APPS ``solutions``), or a fenced block."""
    if isinstance(value, str) and value.startswith("["):
        # APPS keeps its solutions as a JSON list in a string; code may start with "[" too.
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
        if value is None:
            return None
    if not isinstance(value, str):
        raise RecordError(f"{what}: expected code as text, got {type(value).__name__}")
    if "```" in value:
        m = _FENCE_RE.search(value)
        if m is None:
            raise RecordError(f"{what}: has a ``` fence but no python code block")
        value = m.group(1)
    return value if value.strip() else None


def _build_code(record: Record, prompt: str, fields: FieldMap, options: AdaptOptions) -> _Built:
    built = _Built(instruction=prompt + CODE_SUFFIX)
    raw_tests = fields.get(record.data, "tests")
    if raw_tests is MISSING:
        return built
    fn = fields.get(record.data, "fn_name")
    fn_name = None if fn is MISSING else _scalar_text(fn, "fn_name")
    spec = parse_tests(raw_tests, fn_name, f"tests ({fields.describe('tests')})")
    if spec is None:
        return built
    if spec["mode"] == "call" and not re.fullmatch(r"[A-Za-z_]\w*", spec["fn_name"] or ""):
        raise RecordError(f"fn_name {spec['fn_name']!r} is not a Python identifier")
    spec["case_timeout_sec"] = options.case_timeout_sec
    n = len(spec["cases"])
    built.has_tests = True
    built.verifier_timeout_sec = max(
        options.verifier_timeout_sec, n * options.case_timeout_sec + CASE_TIMEOUT_MARGIN_SEC
    )
    built.metadata = {"test_cases": n, "test_mode": spec["mode"]}
    built.files = {
        "tests/test.sh": _test_sh(
            "code",
            f"runs /app/solution.py on {n} test case(s)\n"
            "# (tests/cases.json) with verify_code.py; every case must pass.",
            "/app/solution.py",
            "verify_code.py",
            "/tests/cases.json /app/solution.py",
        ),
        "tests/verify_code.py": verifier_source("verify_code.py"),
        "tests/cases.json": json.dumps(spec, ensure_ascii=False, indent=1) + "\n",
    }
    raw_solution = fields.get(record.data, "solution")
    if raw_solution is not MISSING:
        code = reference_code(raw_solution, f"solution ({fields.describe('solution')})")
        if code is not None:
            built.files["solution/solve.sh"] = _heredoc_script(
                "The reference solution of this task.", "/app/solution.py", code
            )
    return built


# -- swe and generic ------------------------------------------------------------------------------


def _check_tree(paths: list[str]) -> None:
    """No path may be both a file and a folder of another path (a.py and a.py/x)."""
    files = set(paths)
    for p in paths:
        parts = p.split("/")
        for k in range(1, len(parts)):
            prefix = "/".join(parts[:k])
            if prefix in files:
                raise RecordError(f"file {prefix!r} is also the folder of {p!r}")


def _build_swe(
    record: Record, prompt: str, fields: FieldMap, options: AdaptOptions
) -> _Built | None:
    parsed = parse_code_files(prompt)
    if parsed.problems:
        raise RecordError("; ".join(parsed.problems))
    if not parsed.files and not options.allow_no_files:
        return None
    _check_tree(list(parsed.files))
    built = _Built(instruction=prompt + SWE_SUFFIX, env_files=dict(parsed.files))
    built.metadata = {"files": len(parsed.files)}
    return built


def _generic_files(value: Any, what: str) -> dict[str, str]:
    value = _maybe_json(value, what)
    items: list[tuple[Any, Any]]
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list):
        items = []
        for k, item in enumerate(value):
            if not isinstance(item, Mapping) or "path" not in item or "content" not in item:
                raise RecordError(f"{what}[{k}]: expected an object with 'path' and 'content'")
            items.append((item["path"], item["content"]))
    else:
        raise RecordError(
            f"{what}: expected an object of path → content, got {type(value).__name__}"
        )
    files: dict[str, str] = {}
    for raw, content in items:
        if not isinstance(raw, str):
            raise RecordError(f"{what}: file path {raw!r} is not text")
        path, problem = check_path(raw)
        if problem:
            raise RecordError(f"{what}: {problem}")
        if not isinstance(content, str):
            raise RecordError(f"{what}: content of {raw!r} is {type(content).__name__}, not text")
        assert path is not None
        files[path] = content
    _check_tree(list(files))
    return files


def _build_generic(record: Record, prompt: str, fields: FieldMap, options: AdaptOptions) -> _Built:
    built = _Built(instruction=prompt + (options.suffix or ""))
    raw_files = fields.get(record.data, "files")
    if raw_files is not MISSING:
        built.env_files = _generic_files(raw_files, f"files ({fields.describe('files')})")
        built.metadata = {"files": len(built.env_files)}
    return built


_BUILDERS: dict[str, Callable[[Record, str, FieldMap, AdaptOptions], _Built | None]] = {
    "math": _build_math,
    "code": _build_code,
    "swe": _build_swe,
    "generic": _build_generic,
}

__all__ = [
    "CODE_SUFFIX",
    "KINDS",
    "MATH_SUFFIX",
    "SWE_SUFFIX",
    "AdaptError",
    "AdaptOptions",
    "AdaptSummary",
    "SourceError",
    "adapt",
    "parse_tests",
    "reference_code",
    "slugify",
]
