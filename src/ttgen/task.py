"""The task: Harbor's task directory as one typed model.

A task is a directory::

    instruction.md        what the agent is asked to do
    task.toml             configuration and free-form metadata
    environment/          Docker build context (Dockerfile), or task.toml names a docker_image
    solution/solve.sh     reference solution (optional), uploaded only for the oracle agent
    tests/test.sh         verifier entry point, uploaded only after the agent has finished

`TaskConfig` accepts every task.toml form in use: Terminal-Bench 2.0's legacy ``version = "1.0"``
with ``memory = "4G"`` strings and ``allow_internet``, and Harbor's ``schema_version`` "1.1"/"1.2"
with ``[task]``, ``memory_mb``, ``network_mode`` and friends. Keys ttgen does not know are kept
(pydantic ``extra="allow"``) and written back, so load → save → load is lossless. Saving writes
only the keys the file had (or the caller set), in canonical form: the keys Harbor deprecates
(`deprecated_keys` lists them) are written as their replacements.

A task may have no tests by design (the paper's dataset-adapter tasks). Harbor (0.24) refuses a
task without tests/test.sh, so such a task carries `NO_TESTS_SCRIPT` as its tests/test.sh: it
writes ``{}`` to /logs/verifier/reward.json, which Harbor records as a trial without a reward
(not an error). `Task.has_tests` is False for it, and for an older task with no tests/ at all.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import tomllib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ttgen.errors import TaskError
from ttgen.fileio import make_dir_temp

INSTRUCTION_FILE = "instruction.md"
CONFIG_FILE = "task.toml"
ENVIRONMENT_DIR = "environment"
SOLUTION_DIR = "solution"
TESTS_DIR = "tests"
DOCKERFILE = "Dockerfile"
COMPOSE_FILES = ("docker-compose.yaml", "docker-compose.yml")

# Harbor's defaults (v0.9.0).
DEFAULT_SCHEMA_VERSION = "1.2"
DEFAULT_VERIFIER_TIMEOUT_SEC = 600.0
DEFAULT_BUILD_TIMEOUT_SEC = 600.0

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
_SIZE_FACTOR_MB = {"": 1.0, "K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0 * 1024.0}


def parse_size_mb(value: str | int | float) -> int:
    """Parse a legacy size such as ``"4G"``, ``"512M"``, ``"2048K"`` or ``"10GiB"`` into MB.

    A bare number is taken as MB, as Harbor does for its legacy fields.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}")
    if isinstance(value, int | float):
        return int(value)
    m = _SIZE_RE.match(value)
    if not m:
        raise ValueError(
            f"invalid size {value!r}: expected a number with a unit like '4G' or '512M'"
        )
    number, unit = float(m.group(1)), m.group(2).upper()
    return max(1, round(number * _SIZE_FACTOR_MB[unit]))


class _Table(BaseModel):
    """A task.toml table: typed known keys, unknown keys kept as they are."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, populate_by_name=True)


def _positive(v: float | None) -> float | None:
    if v is not None and v <= 0:
        raise ValueError(f"must be positive, got {v:g}")
    return v


class Author(_Table):
    name: str = ""
    email: str = ""


class TaskInfo(_Table):
    """The ``[task]`` table of registry-published tasks (schema 1.1+)."""

    name: str | None = None
    version: str | None = None  # the package's version (Harbor 0.24), not the schema's
    description: str = ""
    authors: list[Author] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)


class VerifierConfig(_Table):
    timeout_sec: float = DEFAULT_VERIFIER_TIMEOUT_SEC
    env: dict[str, str] = Field(default_factory=dict)
    user: str | None = None

    _timeout = field_validator("timeout_sec")(_positive)


class AgentConfig(_Table):
    timeout_sec: float | None = None
    user: str | None = None

    _timeout = field_validator("timeout_sec")(_positive)


class SolutionConfig(_Table):
    env: dict[str, str] = Field(default_factory=dict)


class HealthcheckConfig(_Table):
    command: str
    interval_sec: float = 5.0
    timeout_sec: float = 30.0
    start_period_sec: float = 0.0
    start_interval_sec: float = 5.0
    retries: int = 3


class EnvironmentConfig(_Table):
    build_timeout_sec: float = DEFAULT_BUILD_TIMEOUT_SEC
    docker_image: str | None = None
    os: Literal["linux", "windows"] = "linux"
    cpus: int | float | None = None
    memory_mb: int | None = None
    storage_mb: int | None = None
    gpus: int | None = None
    gpu_types: list[str] | None = None
    # Harbor's network policy (0.24); the legacy `allow_internet` is read into it (see below).
    network_mode: Literal["public", "no-network", "allowlist"] = "public"
    allowed_hosts: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    mcp_servers: list[dict[str, Any]] = Field(default_factory=list)
    skills_dir: str | None = None
    workdir: str | None = None
    healthcheck: HealthcheckConfig | None = None

    _timeout = field_validator("build_timeout_sec")(_positive)

    @model_validator(mode="before")
    @classmethod
    def _legacy_fields(cls, data: Any) -> Any:
        # TB2's released tasks say memory = "4G" / storage = "10G"; Harbor maps them to *_mb.
        # allow_internet (deprecated by Harbor 0.24) becomes network_mode, unless network_mode
        # or allowed_hosts is set, as in Harbor. Saving writes the modern keys.
        if isinstance(data, Mapping):
            data = dict(data)
            for legacy, modern in (("memory", "memory_mb"), ("storage", "storage_mb")):
                if legacy in data:
                    raw = data.pop(legacy)
                    if modern not in data:
                        try:
                            data[modern] = parse_size_mb(raw)
                        except ValueError as exc:
                            raise ValueError(f"{legacy}: {exc}") from None
            if "allow_internet" in data:
                raw = data.pop("allow_internet")
                if raw is not None:
                    allow = _legacy_bool(raw, "allow_internet")
                    if "network_mode" not in data and data.get("allowed_hosts") is None:
                        data["network_mode"] = "public" if allow else "no-network"
        return data

    @model_validator(mode="after")
    def _hosts_need_allowlist(self) -> EnvironmentConfig:
        if self.allowed_hosts and self.network_mode != "allowlist":
            raise ValueError('allowed_hosts is only valid with network_mode = "allowlist"')
        return self

    @property
    def allow_internet(self) -> bool:
        """Whether the container gets a network. ttgen's sandbox cannot limit it to
        `allowed_hosts`, so "allowlist" gets the network (`ttgen tasks check` warns)."""
        return self.network_mode != "no-network"

    @field_validator("cpus", "memory_mb", "storage_mb", "gpus")
    @classmethod
    def _non_negative(cls, v: int | float | None) -> int | float | None:
        if v is not None and v < 0:
            raise ValueError("must not be negative")
        return v


def _legacy_bool(raw: Any, key: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[raw.strip().lower()]
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    raise ValueError(f"{key}: expected true or false, got {raw!r}")


_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False,
               "1": True, "0": False}  # fmt: skip


class TaskConfig(_Table):
    """The whole task.toml."""

    schema_version: str = DEFAULT_SCHEMA_VERSION
    task: TaskInfo | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    verifier: VerifierConfig = Field(default_factory=VerifierConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    solution: SolutionConfig = Field(default_factory=SolutionConfig)
    environment: EnvironmentConfig = Field(default_factory=EnvironmentConfig)
    source: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_version(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "version" in data:
            data = dict(data)
            version = data.pop("version")
            data.setdefault("schema_version", str(version))
        return data

    # -- TOML -----------------------------------------------------------------------------

    @classmethod
    def from_toml(cls, text: str) -> TaskConfig:
        """Parse task.toml text. Raises `tomllib.TOMLDecodeError` or `ValidationError`."""
        return cls.model_validate(tomllib.loads(text))

    def to_dict(self) -> dict[str, Any]:
        """The keys this config was given or that differ from Harbor's defaults; no Nones."""
        return _dump_explicit(self)

    def to_toml(self) -> str:
        data = self.to_dict()
        # schema_version first, plain keys before tables (TOML needs that anyway).
        ordered: dict[str, Any] = {}
        if "schema_version" in data:
            ordered["schema_version"] = data.pop("schema_version")
        ordered.update(data)
        return tomli_w.dumps(ordered)


def _dump_explicit(model: BaseModel) -> dict[str, Any]:
    """Dump the fields that were given or changed, so defaults are not written out.

    A field is written when it was set (loaded from the file or assigned) or when its value
    differs from the default (e.g. a dict mutated in place). TOML has no null, so None is
    "not set" and never written. Unknown keys (extras) are always written back.
    """
    out: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None:
            continue
        if name not in model.model_fields_set and value == info.get_default(
            call_default_factory=True
        ):
            continue
        out[info.alias or name] = _plain(value)
    for key, value in (model.model_extra or {}).items():
        if value is not None:
            out[key] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return _dump_explicit(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value if v is not None]
    return value


_TABLES = frozenset(
    {"task", "metadata", "verifier", "agent", "solution", "environment", "healthcheck"}
)


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the key path as it is written in task.toml."""
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        where = ""
        if loc and loc[-1] in _TABLES:
            where = f"[{'.'.join(p for p in loc if not p.isdigit())}] "  # a table-level check
        elif loc:
            tables = [p for p in loc[:-1] if not p.isdigit()]
            key = loc[-1]
            where = (f"[{'.'.join(tables)}] " if tables else "") + f"{key}: "
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        parts.append(f"{where}{msg}")
    return "; ".join(parts)


def unknown_keys(config: TaskConfig) -> list[str]:
    """One line per key of task.toml that ttgen does not know, naming its table and, when one
    is close, the known key it may be a typo of::

        [verifier] unknown key "timeout" (kept); did you mean "timeout_sec"?

    Such keys are kept and written back (Harbor adds keys), but ttgen does not act on them, so
    a typo would silently fall back to the default. Free-form tables (metadata, env) have no
    unknown keys.
    """
    lines: list[str] = []
    _collect_unknown(config, "", lines)
    return list(dict.fromkeys(lines))  # [[task.authors]] may repeat the same line


def _collect_unknown(model: BaseModel, table: str, out: list[str]) -> None:
    fields = type(model).model_fields
    known = [info.alias or name for name, info in fields.items()]
    for key, value in (model.model_extra or {}).items():
        close = difflib.get_close_matches(key.lower(), known, n=1, cutoff=0.6)
        if isinstance(value, Mapping):
            where = f"{table}.{key}" if table else key
            line = f"unknown table [{where}] (kept)"
            if close:
                line += f"; did you mean [{f'{table}.{close[0]}' if table else close[0]}]?"
        else:
            line = (f"[{table}] " if table else "") + f'unknown key "{key}" (kept)'
            if close:
                line += f'; did you mean "{close[0]}"?'
        out.append(line)
    for name, info in fields.items():
        value = getattr(model, name)
        sub = f"{table}.{info.alias or name}" if table else info.alias or name
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, BaseModel):
                _collect_unknown(item, sub, out)


# -- keys Harbor deprecates ------------------------------------------------------------------

_SIZE_KEYS = (("memory", "memory_mb"), ("storage", "storage_mb"))


def deprecated_keys(data: Mapping[str, Any]) -> list[str]:
    """One line per key of a task.toml (its parsed TOML, as written) that Harbor 0.24 deprecates,
    naming its table, the replacement to write, and where Harbor reads it differently::

        version = "1.0" is deprecated by Harbor; write schema_version = "1.0"
        [environment] memory = "1G" is deprecated by Harbor; write memory_mb = 1024
        [environment] allow_internet = false is deprecated by Harbor; write network_mode = "no-network"

    Harbor 0.24 deprecates the top-level ``version`` (read as ``schema_version``) and, in every
    environment table (``[environment]``, ``[verifier.environment]`` and the verifier environment
    of each ``[[steps]]``), ``allow_internet`` (→ ``network_mode``), ``memory`` (→ ``memory_mb``)
    and ``storage`` (→ ``storage_mb``). ttgen reads them all and writes the replacements when it
    saves a task.
    """
    lines: list[str] = []
    if "version" in data:
        raw = data["version"]
        if "schema_version" in data:
            lines.append(
                f"version = {_toml_repr(raw)} is deprecated by Harbor and ignored, as "
                "schema_version is set; remove it"
            )
        else:
            lines.append(
                f"version = {_toml_repr(raw)} is deprecated by Harbor; write "
                f"schema_version = {_toml_repr(str(raw))}"
            )
    tables: list[tuple[str, Any]] = [("[environment]", data.get("environment"))]
    verifier = data.get("verifier")
    if isinstance(verifier, Mapping):
        tables.append(("[verifier.environment]", verifier.get("environment")))
    steps = data.get("steps")
    for k, step in enumerate(steps if isinstance(steps, list) else []):
        if isinstance(step, Mapping) and isinstance(step.get("verifier"), Mapping):
            name = step.get("name")
            label = f'step "{name}"' if isinstance(name, str) else f"step {k + 1}"
            where = f"[verifier.environment] of {label} ([[steps]])"
            tables.append((where, step["verifier"].get("environment")))
    for label, table in tables:
        if isinstance(table, Mapping):
            lines.extend(f"{label} {line}" for line in _deprecated_in_environment(table))
    return lines


def _deprecated_in_environment(env: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    if "allow_internet" in env:
        raw = env["allow_internet"]
        head = f"allow_internet = {_toml_repr(raw)} is deprecated by Harbor"
        if "network_mode" in env or env.get("allowed_hosts") is not None:
            lines.append(f"{head} and ignored, as network_mode or allowed_hosts is set; remove it")
        else:
            try:
                mode = "public" if _legacy_bool(raw, "allow_internet") else "no-network"
                lines.append(f'{head}; write network_mode = "{mode}"')
            except ValueError:
                lines.append(f'{head}; write network_mode = "public" or "no-network"')
    for legacy, modern in _SIZE_KEYS:
        if legacy not in env:
            continue
        raw = env[legacy]
        head = f"{legacy} = {_toml_repr(raw)} is deprecated by Harbor"
        try:
            mb: int | None = parse_size_mb(raw)
        except ValueError:
            mb = None  # ttgen reports the value itself as a problem
        if modern in env:
            if mb is not None and env[modern] != mb and isinstance(raw, str):
                lines.append(
                    f"{head}, and it differs from {modern} = {_toml_repr(env[modern])}, so "
                    f"Harbor refuses the task; remove {legacy}"
                )
            else:
                lines.append(f"{head} and ignored, as {modern} is set; remove it")
            continue
        write = f"write {modern} = {mb}" if mb is not None else f"write {modern} (in MB)"
        if not isinstance(raw, str):
            lines.append(f"{head}, and Harbor ignores a number here; {write}")
        elif not _harbor_reads_size(raw):
            lines.append(
                f"{head}, and Harbor cannot read {raw!r} (it takes a number with K, M or G); "
                f"{write}"
            )
        else:
            lines.append(f"{head}; {write}")
    return lines


def _harbor_reads_size(text: str) -> bool:
    """Whether Harbor 0.24's parser of legacy sizes takes `text` (a number, then K, M or G)."""
    s = text.strip().upper()
    if not s or s[-1] not in "KMG":
        return False
    try:
        float(s[:-1])
    except ValueError:
        return False
    return True


def _toml_repr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


# -- tasks without tests ----------------------------------------------------------------------

# tests/test.sh of a task that has no tests by design (the paper's adapter tasks). Harbor needs
# a tests/test.sh; this one gives no reward, which Harbor records as such, not as an error.
NO_TESTS_SCRIPT = """\
#!/bin/sh
# No tests, by design: this task was made from a prompt that came without a reference answer or
# test cases (like the math, code and SWE dataset-adapter tasks of Terminal-Task-Gen), so
# nothing can score the agent's work. This script gives no reward: it writes an empty
# /logs/verifier/reward.json, which Harbor records as a trial without a reward (not an error).
# ttgen recognizes this script and does not run it: trials of the task end `unverified`, and
# `ttgen validate` says `no_tests`. Replace it with real tests (a script that writes a reward to
# /logs/verifier/reward.txt or reward.json) to make the task scorable.
mkdir -p /logs/verifier
echo '{}' > /logs/verifier/reward.json
"""
# What makes a test.sh the no-tests script: these commands and nothing else (comments, blank
# lines and the #! line aside), so that skipping it means exactly what running it would.
_NO_TESTS_COMMANDS = ("mkdir -p /logs/verifier", "echo '{}' > /logs/verifier/reward.json")
_NO_TESTS_MAX_BYTES = 16384


def is_no_tests_script(text: str | bytes) -> bool:
    """Whether a tests/test.sh is `NO_TESTS_SCRIPT`: its only commands write ``{}`` to
    /logs/verifier/reward.json (the comments may differ)."""
    raw = text if isinstance(text, bytes) else text.encode("utf-8", errors="replace")
    if len(raw) > _NO_TESTS_MAX_BYTES:
        return False
    text = raw.decode("utf-8", errors="replace")
    commands = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    return tuple(commands) == _NO_TESTS_COMMANDS


@dataclass
class Task:
    """A task directory: the parsed config and instruction, plus where its files live.

    `path` is the directory the task was loaded from (None for a task made in memory).
    `files` holds extra files (relative path → content) that `save` writes on top of the ones
    under `path`; task generators use it to build tasks without touching the disk first.
    """

    name: str
    instruction: str
    config: TaskConfig = field(default_factory=TaskConfig)
    path: Path | None = None
    files: dict[str, bytes | str] = field(default_factory=dict)

    # -- loading --------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Task:
        """Load a task directory; raises `TaskError` naming the file and the problem."""
        root = Path(path)
        if not root.is_dir():
            raise TaskError(root, "not a directory")
        config_path = root / CONFIG_FILE
        if not config_path.is_file():
            if (root / "task.yaml").is_file():
                raise TaskError(
                    config_path,
                    "missing; this looks like a Terminal-Bench 1 task (task.yaml): "
                    "convert it with `ttgen tasks import-tb1`",
                )
            raise TaskError(config_path, "missing")
        config = _read_config(config_path)
        instruction = read_instruction(root / INSTRUCTION_FILE)
        name = (
            config.task.name if config.task and config.task.name else None
        ) or root.absolute().name
        return cls(name=name, instruction=instruction, config=config, path=root)

    # -- files ----------------------------------------------------------------------------

    def _file(self, rel: str) -> Path | None:
        if self.path is None:
            return None
        p = self.path / rel
        return p if p.is_file() else None

    @property
    def environment_dir(self) -> Path | None:
        return self.path / ENVIRONMENT_DIR if self.path is not None else None

    @property
    def dockerfile(self) -> Path | None:
        return self._file(f"{ENVIRONMENT_DIR}/{DOCKERFILE}")

    @property
    def solve_script(self) -> Path | None:
        return self._file(f"{SOLUTION_DIR}/solve.sh")

    @property
    def test_script(self) -> Path | None:
        return self._file(f"{TESTS_DIR}/test.sh")

    @property
    def has_tests(self) -> bool:
        """False when the task has no tests by design, so that nothing can score it (trials end
        `unverified`, validation says `no_tests`): its tests/test.sh is `NO_TESTS_SCRIPT` (what
        ttgen writes, as Harbor needs a tests/test.sh), or it has no tests/ at all (tasks written
        before that). A tests/ folder without test.sh is not "no tests" but a broken task.
        `[metadata] has_tests` is not consulted: the script decides (`ttgen tasks check` warns
        when the two disagree)."""
        if self.path is None:
            content = self.files.get(f"{TESTS_DIR}/test.sh")
            return content is not None and not is_no_tests_script(content)
        script = self.test_script
        if script is None:
            return (self.path / TESTS_DIR).exists()
        try:
            with script.open("rb") as f:
                head = f.read(_NO_TESTS_MAX_BYTES + 1)
        except OSError:
            return True  # unreadable: the verifier will say what is wrong
        return not is_no_tests_script(head)

    @property
    def workdir(self) -> str | None:
        return self.config.environment.workdir

    # -- saving ---------------------------------------------------------------------------

    def save(self, dest: str | os.PathLike[str] | None = None, *, overwrite: bool = True) -> Path:
        """Write the task directory to `dest` (default: where it was loaded from), atomically.

        Everything is written to a temporary directory beside `dest` and renamed into place,
        so a crash leaves either the old task or the new one, never a half-written one.
        """
        target = Path(dest) if dest is not None else self.path
        if target is None:
            raise TaskError(self.name, "task has no path; pass a destination to save()")
        target = target.absolute()
        if target.exists() and not overwrite:
            raise TaskError(target, "already exists (pass overwrite=True to replace it)")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = make_dir_temp(target.parent, f".{target.name}.tmp-")
        try:
            if self.path is not None and self.path.is_dir():
                for entry in os.scandir(self.path):
                    if entry.name in (INSTRUCTION_FILE, CONFIG_FILE):
                        continue
                    src = Path(entry.path)
                    if entry.is_dir(follow_symlinks=False):
                        shutil.copytree(src, tmp / entry.name, symlinks=True)
                    else:
                        shutil.copy2(src, tmp / entry.name, follow_symlinks=False)
            for rel, content in self.files.items():
                out = tmp / _safe_relpath(rel)
                out.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, str):
                    out.write_text(content, encoding="utf-8")
                else:
                    out.write_bytes(content)
                if out.suffix == ".sh":
                    out.chmod(0o755)
            (tmp / INSTRUCTION_FILE).write_text(self.instruction, encoding="utf-8")
            (tmp / CONFIG_FILE).write_text(self.config.to_toml(), encoding="utf-8")
            _replace_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.path = target
        self.files = {}
        return target


def _safe_relpath(rel: str) -> Path:
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        raise TaskError(rel, "task file paths must be relative and stay inside the task")
    return p


def _replace_dir(new: Path, target: Path) -> None:
    """Put directory `new` at `target`, replacing what is there with two renames."""
    if not target.exists():
        os.rename(new, target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _read_utf8(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TaskError(path, "missing") from None
    except OSError as exc:
        raise TaskError(path, f"cannot read: {exc.strerror}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaskError(path, f"not valid UTF-8 (byte {exc.start})") from None


def _read_config(config_path: Path) -> TaskConfig:
    try:
        data = tomllib.loads(_read_utf8(config_path))
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(config_path, f"TOML syntax error: {exc}") from None
    try:
        return TaskConfig.model_validate(data)
    except ValidationError as exc:
        raise TaskError(config_path, format_validation_error(exc)) from None


def read_instruction(path: Path) -> str:
    text = _read_utf8(path)
    if not text.strip():
        raise TaskError(path, "empty")
    return text


# -- discovery ------------------------------------------------------------------------------

_TASK_MARKERS = frozenset({CONFIG_FILE, INSTRUCTION_FILE, "task.yaml", ENVIRONMENT_DIR, TESTS_DIR})


def looks_like_task(path: Path, names: Iterable[str] | None = None) -> bool:
    names = set(names) if names is not None else {e.name for e in os.scandir(path)}
    return bool(names & _TASK_MARKERS)


def find_tasks(paths: Iterable[str | os.PathLike[str]], max_depth: int = 4) -> list[Path]:
    """Expand paths into task directories.

    A path that looks like a task (it holds task.toml, instruction.md, task.yaml, environment/
    or tests/) is a task; otherwise its sub-folders are searched, down to `max_depth` levels.
    Hidden folders are skipped. The result is sorted and free of duplicates.
    """
    found: dict[Path, None] = {}

    def walk(p: Path, depth: int) -> None:
        try:
            entries = list(os.scandir(p))
        except NotADirectoryError:
            return
        names = {e.name for e in entries}
        if looks_like_task(p, names):
            found[p] = None
            return
        if depth >= max_depth:
            return
        for e in sorted(entries, key=lambda e: e.name):
            if e.is_dir() and not e.name.startswith("."):
                walk(Path(e.path), depth + 1)

    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise TaskError(p, "no such file or directory")
        if not p.is_dir():
            raise TaskError(p, "not a directory (expected a task or a folder of tasks)")
        walk(p, 0)
    return sorted(found)
