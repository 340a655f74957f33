"""Terminal-Bench 1.x tasks → Harbor task directories (what `harbor task migrate` does).

A TB1 task is ``task.yaml`` (instruction + config), ``docker-compose.yaml`` (service ``client``
is the agent's container), a Dockerfile, ``run-tests.sh``, ``tests/`` and ``solution.sh``. The
mapping (see docs/harbor-format.md, "TB1 → Harbor mapping"):

* ``instruction`` → ``instruction.md``; every other task.yaml field except the two timeouts →
  ``[metadata]``; ``max_agent_timeout_sec`` (360) → ``[agent]``, ``max_test_timeout_sec`` (60)
  → ``[verifier]``.
* ``solution.sh`` → ``solution/solve.sh``; a keystroke ``solution.yaml`` is rejected.
* ``run-tests.sh`` → ``tests/test.sh`` that writes reward 1/0 from the exit code. The original
  script (``$TEST_DIR`` → ``/tests``) is kept beside it and run in its own bash process, so a
  ``set -e``, ``exit`` or ``exec`` in it cannot skip the reward.
* The client service collapses into ``environment/Dockerfile`` (``ENV``, ``WORKDIR``, ``EXPOSE``,
  ``USER``, ``ENTRYPOINT``, ``FROM --platform``, always ``ENV TEST_DIR=/tests``); the build
  context's files go to ``environment/``. With more services, ``environment/docker-compose.yaml``
  is written too, its main service renamed ``main`` in Harbor's form.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import yaml

from ttgen.errors import TaskError
from ttgen.task import AgentConfig, Task, TaskConfig, VerifierConfig

TASK_YAML = "task.yaml"
RUN_TESTS = "run-tests.sh"
SCHEMA_VERSION = "1.1"
DEFAULT_AGENT_TIMEOUT_SEC = 360.0
DEFAULT_TEST_TIMEOUT_SEC = 60.0
TESTS_MOUNT = "/tests"
NAME_PREFIX_VAR = "${T_BENCH_TASK_DOCKER_NAME_PREFIX}"
NAME_PREFIX = "hb"

_COMPOSE_NAMES = ("docker-compose.yaml", "docker-compose.yml")
# Task-dir entries that are not part of the Docker build context (unless the Dockerfile COPYs them).
_NOT_CONTEXT = frozenset(
    {TASK_YAML, *_COMPOSE_NAMES, RUN_TESTS, "solution.sh", "solution.yaml", "tests"}
)
_TIMEOUT_KEYS = ("max_agent_timeout_sec", "max_test_timeout_sec")
# Compose keys of the client service that the conversion consumes (or drops on purpose).
_HANDLED_SERVICE_KEYS = frozenset(
    {
        "build",
        "image",
        "container_name",
        "command",
        "volumes",
        "environment",
        "working_dir",
        "expose",
        "entrypoint",
        "platform",
        "user",
    }
)
_MULTI_SERVICE_KEYS = frozenset({"depends_on", "networks"})

_TEST_DIR_RE = re.compile(rb"\$\{TEST_DIR(?::?-[^}]*)?\}|\$TEST_DIR(?![A-Za-z0-9_])")
_INTERPOLATION_RE = re.compile(r"\$(?:\{|[A-Za-z_])")
_FROM_RE = re.compile(r"^(\s*FROM\s+)(.*)$", re.IGNORECASE)
_COPY_RE = re.compile(r"^\s*(COPY|ADD)\s+(.*)$", re.IGNORECASE)
_PLAIN_VALUE_RE = re.compile(r"^[A-Za-z0-9_./:,@%+=-]*$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_PORT_RE = re.compile(r"^\d+(-\d+)?(/(tcp|udp|sctp))?$")
_KEEPALIVE_COMMANDS = ("sleep infinity", "tail -f /dev/null")

_TEST_SH = """\
#!/bin/bash
# Harbor verifier entry point, made by ttgen from a Terminal-Bench 1 task.
# The task's run-tests.sh (TEST_DIR={mount}) runs in its own bash process so that
# `set -e`, `exit` or `exec` in it cannot skip the reward; its exit code is the reward.
mkdir -p /logs/verifier
echo 0 > /logs/verifier/reward.txt
export TEST_DIR={mount}
bash {mount}/{script}
status=$?
if [ "$status" -eq 0 ]; then
  echo 1 > /logs/verifier/reward.txt
else
  echo 0 > /logs/verifier/reward.txt
fi
exit "$status"
"""


@dataclass
class ImportItem:
    """One task's outcome in `import_tb1_tasks`."""

    name: str  # task id (folder name)
    status: str  # "converted" | "skipped" | "failed"
    detail: str  # destination path, or the reason (naming the file and the problem)


@dataclass
class _Plan:
    """A converted task before it is written: what to copy and what to write."""

    task_id: str
    instruction: str
    config: TaskConfig
    copies: dict[str, Path] = field(default_factory=dict)  # dest relpath → source file/link
    generated: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # relpath → (data, mode)
    empty_dirs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# -- public API -----------------------------------------------------------------------------


def convert_tb1_task(src: Path) -> Task:
    """Convert one TB1 task directory into an in-memory Harbor `Task` (files in `Task.files`).

    Raises `TaskError` naming the file and the problem. `import_tb1_tasks` writes tasks with
    their file modes and symlinks kept; saving this Task yourself marks only ``*.sh`` executable.
    """
    plan = _plan(Path(src))
    files: dict[str, bytes | str] = {}
    for rel, source in plan.copies.items():
        if source.is_file():  # a symlink is read through; dangling or dir links are left out
            files[rel] = source.read_bytes()
    for rel, (data, _mode) in plan.generated.items():
        files[rel] = data
    return Task(name=plan.task_id, instruction=plan.instruction, config=plan.config, files=files)


def import_tb1_tasks(src: Path, dest: Path, *, overwrite: bool = False) -> list[ImportItem]:
    """Convert the TB1 task at `src`, or every TB1 task under it, into ``dest/<task-id>``.

    A task whose destination exists is skipped unless `overwrite`. A bad task is reported as
    failed and the batch goes on; each task is written atomically, so nothing already written
    is lost. Raises `TaskError` only when `src` does not exist or holds no TB1 task.
    """
    src, dest = Path(src), Path(dest)
    task_dirs = find_tb1_tasks(src)
    dest_abs = dest.resolve()
    items: list[ImportItem] = []
    done: dict[str, Path] = {}
    for task_dir in task_dirs:
        task_id = task_dir.name
        target = dest / task_id
        if task_id in done:
            items.append(
                ImportItem(task_id, "failed", f"{task_dir}: task id also used by {done[task_id]}")
            )
            continue
        done[task_id] = task_dir
        if target.exists() and not overwrite:
            items.append(
                ImportItem(task_id, "skipped", f"{target} exists (pass --overwrite to replace it)")
            )
            continue
        try:
            plan = _plan(task_dir, avoid=dest_abs)
            _write(plan, target)
        except TaskError as exc:
            items.append(ImportItem(task_id, "failed", _one_line(_reason(exc, task_dir))))
            continue
        except Exception as exc:  # one broken task must never stop the batch
            items.append(ImportItem(task_id, "failed", _one_line(f"{task_dir}: {exc!r}")))
            continue
        detail = str(target)
        if plan.notes:
            detail += " (" + "; ".join(plan.notes) + ")"
        items.append(ImportItem(task_id, "converted", _one_line(detail)))
    return items


def find_tb1_tasks(src: Path, max_depth: int = 4) -> list[Path]:
    """`src` itself when it holds task.yaml, else its sub-folders that do (sorted, ≤ max_depth)."""
    src = Path(src)
    if not src.exists():
        raise TaskError(src, "no such file or directory")
    if src.is_file() and src.name == TASK_YAML:
        return [src.parent]
    if not src.is_dir():
        raise TaskError(src, "not a directory (expected a TB1 task or a folder of them)")
    if (src / TASK_YAML).is_file():
        return [src]
    found: dict[Path, Path] = {}

    def walk(folder: Path, depth: int) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            sub = Path(entry.path)
            if (sub / TASK_YAML).is_file():
                found.setdefault(sub.resolve(), sub)
            elif depth < max_depth:
                walk(sub, depth + 1)

    walk(src, 1)
    if not found:
        raise TaskError(src, f"no Terminal-Bench 1 task ({TASK_YAML}) here or in its sub-folders")
    return sorted(found.values())


# -- planning -------------------------------------------------------------------------------


def _plan(task_dir: Path, avoid: Path | None = None) -> _Plan:
    if not (task_dir / TASK_YAML).is_file():
        raise TaskError(task_dir / TASK_YAML, "missing (not a Terminal-Bench 1 task)")
    raw = _load_yaml(task_dir / TASK_YAML)
    if not isinstance(raw, dict):
        raise TaskError(task_dir / TASK_YAML, f"expected a mapping, got {_kind(raw)}")

    instruction = raw.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        problem = (
            "missing"
            if instruction is None
            else f"must be non-empty text, got {_kind(instruction)}"
        )
        raise TaskError(task_dir / TASK_YAML, f"instruction: {problem}")
    if not instruction.endswith("\n"):
        instruction += "\n"

    agent_timeout = _timeout(raw, "max_agent_timeout_sec", DEFAULT_AGENT_TIMEOUT_SEC, task_dir)
    test_timeout = _timeout(raw, "max_test_timeout_sec", DEFAULT_TEST_TIMEOUT_SEC, task_dir)
    metadata = {
        str(k): _toml_value(v)
        for k, v in raw.items()
        if k != "instruction" and k not in _TIMEOUT_KEYS and v is not None
    }
    config = TaskConfig(
        schema_version=SCHEMA_VERSION,
        metadata=metadata,
        agent=AgentConfig(timeout_sec=agent_timeout),
        verifier=VerifierConfig(timeout_sec=test_timeout),
        source=f"terminal-bench-1:{task_dir.name}",
    )
    try:
        config.to_toml()  # fail here, naming task.yaml, if a value cannot be written
    except (TypeError, ValueError) as exc:
        raise TaskError(task_dir / TASK_YAML, f"cannot be written as task.toml: {exc}") from None

    plan = _Plan(task_dir.name, instruction, config)
    _plan_solution(plan, task_dir)
    _plan_tests(plan, task_dir, avoid)
    _plan_environment(plan, task_dir, avoid)
    return plan


def _plan_solution(plan: _Plan, task_dir: Path) -> None:
    solution = task_dir / "solution.sh"
    if solution.is_file():
        mode = _mode(solution) | 0o755
        plan.generated["solution/solve.sh"] = (solution.read_bytes(), mode)
    elif (task_dir / "solution.yaml").exists():
        raise TaskError(
            task_dir / "solution.yaml",
            "keystroke solutions are not supported (Harbor rejects them); "
            "write the commands as solution.sh",
        )


def _plan_tests(plan: _Plan, task_dir: Path, avoid: Path | None) -> None:
    run_tests = task_dir / RUN_TESTS
    if not run_tests.is_file():
        raise TaskError(run_tests, "missing (no run-tests.sh to turn into tests/test.sh)")
    tests_dir = task_dir / "tests"
    if tests_dir.is_dir():
        if (tests_dir / "test.sh").exists():
            raise TaskError(
                tests_dir / "test.sh",
                "clashes with Harbor's verifier entry point tests/test.sh; rename it",
            )
        _plan_tree(plan, tests_dir, "tests", avoid=avoid)
    script = RUN_TESTS
    while f"tests/{script}" in plan.copies:
        script = "tb1-" + script
    body = _TEST_DIR_RE.sub(TESTS_MOUNT.encode(), run_tests.read_bytes())
    plan.generated[f"tests/{script}"] = (body, _mode(run_tests) | 0o755)
    wrapper = _TEST_SH.replace("{mount}", TESTS_MOUNT).replace("{script}", script)
    plan.generated["tests/test.sh"] = (wrapper.encode(), 0o755)


def _plan_environment(plan: _Plan, task_dir: Path, avoid: Path | None) -> None:
    compose_path = next((task_dir / n for n in _COMPOSE_NAMES if (task_dir / n).is_file()), None)
    services: dict[str, Any] = {}
    compose: dict[str, Any] = {}
    if compose_path is not None:
        loaded = _load_yaml(compose_path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise TaskError(compose_path, f"expected a mapping, got {_kind(loaded)}")
        compose = loaded
        services = compose.get("services") or {}
        if not isinstance(services, dict) or not all(
            isinstance(s, dict) for s in services.values()
        ):
            raise TaskError(compose_path, "services: expected a mapping of service mappings")
    compose_name = compose_path.name if compose_path else _COMPOSE_NAMES[0]

    main_name = "client" if "client" in services else next(iter(services), "client")
    service: dict[str, Any] = services.get(main_name, {})
    where = f"{compose_name} (service {main_name})"

    # Which Dockerfile, in which build context.
    build = service.get("build")
    context_rel, dockerfile_rel, build_args = ".", "Dockerfile", {}
    if isinstance(build, str):
        context_rel = build
    elif isinstance(build, dict):
        context_rel = str(build.get("context") or ".")
        dockerfile_rel = str(build.get("dockerfile") or "Dockerfile")
        build_args = build.get("args") or {}
    elif build is not None:
        raise TaskError(compose_path or task_dir, f"{main_name}.build: expected text or a mapping")
    context_dir = _inside(task_dir, task_dir / context_rel, compose_path, "build context")

    image = service.get("image")
    if build is None and isinstance(image, str) and image and not _interpolated(image):
        # A prebuilt image and no build: the Dockerfile is just FROM that image.
        dockerfile_text = f"FROM {image}\n"
    else:
        dockerfile_path = _inside(
            task_dir, context_dir / dockerfile_rel, compose_path, "dockerfile"
        )
        if not dockerfile_path.is_file():
            if compose_path is None:
                why = f"no {_COMPOSE_NAMES[0]} names another"
            else:
                why = f"the Dockerfile of {compose_name} service {main_name}"
            raise TaskError(dockerfile_path, f"missing ({why})")
        dockerfile_text = _decode(dockerfile_path)
        if not any(_FROM_RE.match(line) for line in dockerfile_text.splitlines()):
            raise TaskError(dockerfile_path, "no FROM instruction")
    lines = dockerfile_text.splitlines()

    # The build context → environment/ (minus the TB1 harness files the Dockerfile does not COPY).
    skip: set[str] = set()
    if context_dir == task_dir.resolve():
        skip = set(_NOT_CONTEXT) - _copied_names(lines)
    _plan_tree(plan, context_dir, "environment", skip=skip, avoid=avoid)

    additions = [f"ENV TEST_DIR={TESTS_MOUNT}", *_service_to_dockerfile(service, where, plan.notes)]
    platform = _compose_scalar(service.get("platform"), f"{where} platform", plan.notes)
    args = _build_args(build_args, where, plan.notes)
    dockerfile = _rewrite_dockerfile(lines, platform=platform, build_args=args)
    dockerfile += f"\n# From Terminal-Bench 1 {compose_name} (service {main_name}), by ttgen\n"
    dockerfile += "\n".join(additions) + "\n"
    plan.generated["environment/Dockerfile"] = (dockerfile.encode(), 0o644)

    ignored = sorted(
        str(k)
        for k in service
        if k not in _HANDLED_SERVICE_KEYS and (len(services) < 2 or k not in _MULTI_SERVICE_KEYS)
    )
    if ignored:
        plan.notes.append(f"ignored from {where}: {', '.join(ignored)}")
    command = service.get("command")
    if command is not None and not _is_keepalive(command):
        plan.notes.append(f"ignored {where} command {command!r}")
    volumes = service.get("volumes") or []
    custom_volumes = (
        [v for v in volumes if "${T_BENCH_" not in str(v)]
        if isinstance(volumes, list)
        else [volumes]
    )
    if custom_volumes:
        plan.notes.append(f"ignored {where} volumes {custom_volumes!r}")

    if len(services) > 1:
        out = _harbor_compose(compose, main_name, task_dir, context_dir, compose_path)
        text = yaml.safe_dump(out, sort_keys=False, default_flow_style=False)
        plan.generated["environment/docker-compose.yaml"] = (text.encode(), 0o644)


def _service_to_dockerfile(service: dict[str, Any], where: str, notes: list[str]) -> list[str]:
    """The Dockerfile lines that stand in for the client service's runtime settings."""
    out: list[str] = []
    env = service.get("environment")
    pairs: list[tuple[str, Any]] = []
    if isinstance(env, dict):
        pairs = [(str(k), v) for k, v in env.items()]
    elif isinstance(env, list):
        for entry in env:
            key, sep, value = str(entry).partition("=")
            pairs.append((key, value if sep else None))
    elif env is not None:
        notes.append(f"ignored {where} environment: expected a list or mapping")
    for key, value in pairs:
        if key == "TEST_DIR" or value is None:
            continue  # TEST_DIR is set below; a bare KEY passes the host's value through
        if isinstance(value, bool):
            value = "true" if value else "false"
        text = _compose_scalar(value, f"{where} environment {key}", notes)
        if text is None:
            continue
        if not _ENV_KEY_RE.match(key) or "\n" in text:
            notes.append(f"ignored {where} environment {key}: cannot be written as ENV")
            continue
        out.append(f"ENV {key}={_env_value(text)}")

    workdir = _compose_scalar(service.get("working_dir"), f"{where} working_dir", notes)
    if workdir:
        out.append(f"WORKDIR {workdir}")

    expose = service.get("expose")
    for port in expose if isinstance(expose, list) else ([] if expose is None else [expose]):
        text = _compose_scalar(port, f"{where} expose", notes)
        if text is None:
            continue
        if _PORT_RE.match(text):
            out.append(f"EXPOSE {text}")
        else:
            notes.append(f"ignored {where} expose {text!r}: not a port")

    user = _compose_scalar(service.get("user"), f"{where} user", notes)
    if user:
        out.append(f"USER {user}")

    entrypoint = service.get("entrypoint")
    if entrypoint is not None:
        parts = shlex.split(entrypoint) if isinstance(entrypoint, str) else entrypoint
        if not isinstance(parts, list):
            notes.append(f"ignored {where} entrypoint: expected text or a list")
        else:
            texts = [_compose_scalar(p, f"{where} entrypoint", notes) for p in parts]
            if all(t is not None for t in texts):
                out.append(f"ENTRYPOINT {json.dumps(texts)}")
    return out


def _harbor_compose(
    compose: dict[str, Any],
    main_name: str,
    task_dir: Path,
    context_dir: Path,
    compose_path: Path | None,
) -> dict[str, Any]:
    """The multi-container compose file in Harbor's form: main service ``main``."""
    services: dict[str, Any] = compose["services"]
    original = services[main_name]
    main: dict[str, Any] = {
        "build": {"context": "${CONTEXT_DIR}"},
        "image": "${MAIN_IMAGE_NAME}",
        "command": ["sh", "-c", "sleep infinity"],
    }
    for key in ("depends_on", "networks"):
        if key in original:
            main[key] = original[key]
    main["deploy"] = {"resources": {"limits": {"cpus": "${CPUS}", "memory": "${MEMORY}"}}}
    out_services: dict[str, Any] = {"main": main}
    for name, svc in services.items():
        if name == main_name:
            continue
        svc = dict(svc)
        # The new compose file lives in environment/, which holds the main build context.
        build = svc.get("build")
        if isinstance(build, str):
            svc["build"] = _rebase(build, task_dir, context_dir, compose_path, name)
        elif isinstance(build, dict) and isinstance(build.get("context", "."), str):
            svc["build"] = {
                **build,
                "context": _rebase(
                    build.get("context", "."), task_dir, context_dir, compose_path, name
                ),
            }
        for key in ("depends_on", "links"):
            if key in svc:
                svc[key] = _rename_service(svc[key], main_name)
        out_services[name] = svc
    out: dict[str, Any] = {"services": out_services}
    for key, value in compose.items():
        if key not in ("services", "version"):
            out[key] = value
    return _replace_strings(out, NAME_PREFIX_VAR, NAME_PREFIX)


def _rebase(
    context: str, task_dir: Path, context_dir: Path, compose_path: Path | None, service: str
) -> str:
    if "://" in context or context.startswith("git@") or os.path.isabs(context):
        return context
    target = _inside(task_dir, task_dir / context, compose_path, f"build context of {service}")
    try:
        rel = target.relative_to(context_dir)
    except ValueError:
        raise TaskError(
            compose_path or task_dir,
            f"service {service}: build context {context!r} lies outside the client's build context",
        ) from None
    return "./" + rel.as_posix() if rel.parts else "."


def _rename_service(value: Any, old: str) -> Any:
    """depends_on/links with the renamed main service (``client`` or ``client:alias``)."""
    if isinstance(value, list):
        out = []
        for v in value:
            name, sep, alias = str(v).partition(":")
            out.append(f"main{sep}{alias}" if name == old else v)
        return out
    if isinstance(value, dict):
        return {("main" if k == old else k): v for k, v in value.items()}
    return value


# -- Dockerfile -----------------------------------------------------------------------------


def _rewrite_dockerfile(
    lines: list[str], *, platform: str | None, build_args: dict[str, str]
) -> str:
    """Add ``--platform`` to the first FROM and compose build args as global ARG defaults."""
    out = list(lines)
    first = next(i for i, line in enumerate(out) if _FROM_RE.match(line))
    if platform:
        m = _FROM_RE.match(out[first])
        assert m is not None
        if "--platform" not in m.group(2):
            out[first] = f"{m.group(1)}--platform={platform} {m.group(2)}"
    if build_args:
        # A stage's own `ARG K=default` would win over the global value compose passed in.
        for i in range(first + 1, len(out)):
            m = re.match(r"^(\s*ARG\s+)([A-Za-z_][A-Za-z0-9_]*)=.*$", out[i], re.IGNORECASE)
            if m and m.group(2) in build_args:
                out[i] = m.group(1) + m.group(2)
        out[first:first] = [f"ARG {k}={_env_value(v)}" for k, v in build_args.items()]
    return "\n".join(out) + "\n"


def _copied_names(lines: list[str]) -> set[str]:
    """Top-level names the Dockerfile COPYs/ADDs from the build context."""
    names: set[str] = set()
    for line in lines:
        m = _COPY_RE.match(line)
        if not m:
            continue
        rest = m.group(2).strip()
        if rest.startswith("["):
            try:
                args = [str(a) for a in json.loads(rest)]
            except ValueError:
                continue
        else:
            args = rest.split()
        flags = [a for a in args if a.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue  # copies from another stage or image
        sources = [a for a in args if not a.startswith("--")][:-1]
        for source in sources:
            while source.startswith("./"):
                source = source[2:]
            if source:
                names.add(source.split("/", 1)[0])
    return names


def _build_args(args: Any, where: str, notes: list[str]) -> dict[str, str]:
    pairs: list[tuple[str, Any]] = []
    if isinstance(args, dict):
        pairs = [(str(k), v) for k, v in args.items()]
    elif isinstance(args, list):
        for entry in args:
            key, sep, value = str(entry).partition("=")
            pairs.append((key, value if sep else None))
    out: dict[str, str] = {}
    for key, value in pairs:
        text = None if value is None else _compose_scalar(value, f"{where} build arg {key}", notes)
        if text is not None and _ENV_KEY_RE.match(key) and "\n" not in text:
            out[key] = text
    return out


def _env_value(text: str) -> str:
    if _PLAIN_VALUE_RE.match(text) and text:
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


# -- writing --------------------------------------------------------------------------------


def _write(plan: _Plan, target: Path) -> Path:
    """Materialize the plan in a scratch folder, then let `Task.save` swap it in atomically."""
    with tempfile.TemporaryDirectory(prefix=f"ttgen-tb1-{plan.task_id[:40]}-") as tmp:
        stage = Path(tmp) / "task"
        stage.mkdir()
        for rel in plan.empty_dirs:
            (stage / rel).mkdir(parents=True, exist_ok=True)
        for rel, source in plan.copies.items():
            out = stage / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            if source.is_symlink():
                os.symlink(os.readlink(source), out)
                continue
            try:
                os.link(source, out)  # same inode: mode kept, no copy (Task.save copies it)
            except OSError:
                shutil.copy2(source, out)
        for rel, (data, mode) in plan.generated.items():
            out = stage / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.exists() or out.is_symlink():
                out.unlink()
            out.write_bytes(data)
            out.chmod(mode)
        task = Task(name=plan.task_id, instruction=plan.instruction, config=plan.config, path=stage)
        return task.save(target, overwrite=True)


def _plan_tree(
    plan: _Plan, root: Path, prefix: str, *, skip: set[str] = frozenset(), avoid: Path | None = None
) -> None:
    """Add every file under `root` (symlinks as links) to the plan's copies under `prefix`."""
    for path in _walk(root, skip, avoid):
        rel = f"{prefix}/{path.relative_to(root).as_posix()}"
        if path.is_dir() and not path.is_symlink():
            plan.empty_dirs.append(rel)
        else:
            plan.copies[rel] = path


def _walk(root: Path, skip: set[str], avoid: Path | None) -> Iterator[Path]:
    """Files and links under `root`, plus empty folders; top-level names in `skip` left out."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == root:
            dirnames[:] = [d for d in dirnames if d not in skip]
            filenames = [f for f in filenames if f not in skip]
        if avoid is not None:  # never copy the import's own output into a task
            dirnames[:] = [d for d in dirnames if not _is_within(here / d, avoid)]
        kept = []
        for d in sorted(dirnames):
            p = here / d
            if p.is_symlink():
                yield p  # a link to a folder stays a link
            else:
                kept.append(d)
        dirnames[:] = kept
        for f in sorted(filenames):
            yield here / f
        if here != root and not dirnames and not filenames:
            yield here


def _is_within(path: Path, parent: Path) -> bool:
    try:
        path.absolute().relative_to(parent)
        return True
    except ValueError:
        return False


# -- small helpers --------------------------------------------------------------------------


def _load_yaml(path: Path) -> Any:
    return parse_yaml(path, _decode(path))


def parse_yaml(path: Path, text: str) -> Any:
    """YAML `text` read from `path`; a syntax error is a TaskError naming the line and column."""
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise TaskError(path, f"YAML syntax error{at}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise TaskError(path, f"YAML error: {exc}") from None


def _decode(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaskError(path, f"not valid UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise TaskError(path, f"cannot read: {exc.strerror}") from None


def _timeout(raw: dict[str, Any], key: str, default: float, task_dir: Path) -> float:
    value = raw.get(key)
    if value is None:
        return default
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise TaskError(task_dir / TASK_YAML, f"{key}: must be a positive number, got {value!r}")
    return number


def _toml_value(value: Any) -> Any:
    """A YAML value as something TOML can hold (no nulls, string keys)."""
    if isinstance(value, dict):
        return {str(k): _toml_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple | set | frozenset):
        return [_toml_value(v) for v in value if v is not None]
    if isinstance(value, str | bool | int | float | date | datetime | time):
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return value
    return str(value)


def _compose_scalar(value: Any, what: str, notes: list[str]) -> str | None:
    """A compose value as literal text, or None when it is unset or needs host interpolation."""
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value)
    if _interpolated(text):
        if "${T_BENCH_" not in text:
            notes.append(f"ignored {what}: {text!r} needs compose variables")
        return None
    return text.replace("$$", "$")


def _interpolated(text: str) -> bool:
    return bool(_INTERPOLATION_RE.search(text.replace("$$", "")))


def _is_keepalive(command: Any) -> bool:
    text = " ".join(command) if isinstance(command, list) else str(command)
    return any(k in text for k in _KEEPALIVE_COMMANDS)


def _inside(task_dir: Path, path: Path, named_by: Path | None, what: str) -> Path:
    resolved = path.resolve()
    if not _is_within(resolved, task_dir.resolve()):
        raise TaskError(named_by or task_dir, f"{what} {path} lies outside the task")
    return resolved


def _replace_strings(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {
            _replace_strings(k, old, new): _replace_strings(v, old, new) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_replace_strings(v, old, new) for v in value]
    return value


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _reason(exc: TaskError, task_dir: Path) -> str:
    try:
        where = exc.path.resolve().relative_to(task_dir.resolve()).as_posix()
    except ValueError:
        where = str(exc.path)
    return f"{where}: {exc.problem}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
