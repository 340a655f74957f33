"""Trial folders and task folders as tar archives, for executors that run trials elsewhere.

A task folder travels to a node as one archive (`pack_task`); a finished trial folder comes back
as one (`pack_trial`, capped: the essential files always, then the others smallest first) and is
unpacked into the job folder with result.json last (`unpack_trial`). `record_failure` writes the
folder of a trial whose node never gave one back (it died, Ray failed, the trial was cancelled).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ttgen import __version__
from ttgen.formats.trial import (
    AgentInfo,
    ExceptionInfo,
    Outcome,
    RetryRecord,
    TrialConfig,
    TrialResult,
    now,
    trial_config,
    write_json_atomic,
)
from ttgen.rollout.trial import TrialSpec

if TYPE_CHECKING:
    from ttgen.rollout.job import JobOptions

# A finished trial folder travels back in one archive of at most this size; beyond it the
# biggest files are left on the node's side (and named in the result's warnings).
MAX_TRIAL_ARCHIVE_BYTES = 256 * 1024 * 1024
# Files that always come back, whatever the cap.
_ESSENTIAL = ("result.json", "config.json", "trial.log", "exception.txt")


def pack_task(path: Path) -> bytes:
    """The task folder as a tar archive (every file, hidden ones and symlinks included)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(path)
            if str(rel_dir) != ".":
                tar.add(dirpath, arcname=str(rel_dir), recursive=False)
            for name in sorted(filenames):
                tar.add(os.path.join(dirpath, name), arcname=str(rel_dir / name), recursive=False)
            # Symlinks to folders are listed in dirnames and not walked into: keep them as links.
            for name in list(dirnames):
                full = os.path.join(dirpath, name)
                if os.path.islink(full):
                    tar.add(full, arcname=str(rel_dir / name), recursive=False)
                    dirnames.remove(name)
    return buf.getvalue()


def pack_trial(root: Path, cap: int = MAX_TRIAL_ARCHIVE_BYTES) -> tuple[bytes, list[str]]:
    """The trial folder as a tar archive of at most about `cap` bytes: the essential files
    always, then the others smallest first while they fit. Returns (archive, files left out)."""
    dirs: list[str] = []
    files: list[tuple[int, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root)
        if str(rel_dir) != ".":
            dirs.append(str(rel_dir))
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(Path(dirpath, d))]:
            rel = str(rel_dir / name) if str(rel_dir) != "." else name
            files.append((os.lstat(root / rel).st_size, rel))
    total = sum(size for size, _ in files)
    chosen = {rel for _, rel in files}
    omitted: list[str] = []
    if total > cap:
        budget = cap
        chosen = set()
        for size, rel in files:
            if rel in _ESSENTIAL:
                chosen.add(rel)
                budget -= size
        for size, rel in sorted(files):
            if rel in chosen:
                continue
            if size <= budget:
                chosen.add(rel)
                budget -= size
            else:
                omitted.append(rel)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel in dirs:
            tar.add(root / rel, arcname=rel, recursive=False)
        for _, rel in files:
            if rel in chosen and rel != "result.json":
                tar.add(root / rel, arcname=rel, recursive=False)
        if (root / "result.json").is_file():  # last, like on disk
            tar.add(root / "result.json", arcname="result.json", recursive=False)
    return buf.getvalue(), sorted(omitted)


def _skip_unsafe(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tarfile's `data` filter, skipping (instead of failing on) what it refuses."""
    try:
        return tarfile.data_filter(member, dest)
    except tarfile.FilterError:
        return None


def unpack_trial(
    data: bytes,
    trial_dir: Path,
    *,
    task_path: str,
    node: dict[str, Any],
    omitted: list[str],
) -> TrialResult | None:
    """Unpack a trial archive into `trial_dir` (through a temporary folder beside it, renamed
    into place; result.json written last), with the task path and trial URI of this machine.
    None when the archive holds no valid result.json."""
    tmp = trial_dir.parent / f".{trial_dir.name}.incoming"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        result_bytes = None
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = []
            for m in tar.getmembers():
                if m.name == "result.json" and m.isfile():
                    f = tar.extractfile(m)
                    result_bytes = f.read() if f else None
                else:
                    members.append(m)
            tar.extractall(tmp, members=members, filter=_skip_unsafe)
        if result_bytes is None:
            return None
        try:
            result = TrialResult.model_validate_json(result_bytes)
        except ValueError:
            return None
        config_path = tmp / "config.json"
        if config_path.is_file():
            try:
                config = TrialConfig.model_validate_json(config_path.read_bytes())
                config.task.path = task_path
                config.trials_dir = str(trial_dir.parent.resolve())
                write_json_atomic(config_path, config.model_dump_json(indent=2), fsync=False)
            except ValueError:
                pass
        result.config.task.path = task_path
        result.config.trials_dir = str(trial_dir.parent.resolve())
        result.task_id = {**result.task_id, "path": task_path}
        result.trial_uri = trial_dir.resolve().as_uri()
        result.environment.__pydantic_extra__["node"] = node  # type: ignore[index]
        if omitted:
            result.warnings.append(
                f"the trial folder exceeded {MAX_TRIAL_ARCHIVE_BYTES // (1024 * 1024)} MB; "
                f"left on node {node.get('host')}: {', '.join(omitted[:20])}"
                + (f" and {len(omitted) - 20} more" if len(omitted) > 20 else "")
            )
        with contextlib.suppress(OSError), (tmp / "trial.log").open("a", encoding="utf-8") as f:
            stamp = now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            f.write(f"{stamp} ran on Ray node {node.get('host')} ({node.get('node_id')})\n")
        if trial_dir.exists():
            shutil.rmtree(trial_dir)
        tmp.rename(trial_dir)
        write_json_atomic(trial_dir / "result.json", result.model_dump_json(indent=2))
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def record_failure(
    spec: TrialSpec,
    trial_dir: Path,
    *,
    job_id: str,
    options: JobOptions,
    history: list[RetryRecord],
    outcome: Outcome,
    exc_type: str,
    message: str,
    tb: str = "",
    started_at: Any = None,
    node: dict[str, Any] | None = None,
) -> TrialResult:
    """Write a trial folder for a trial whose node never gave one back (it died, Ray failed,
    the trial was cancelled): config.json, trial.log, exception.txt, then result.json."""
    task = spec.task
    task_path = str(task.path.resolve()) if task.path else ""
    config = trial_config(
        spec,
        trial_dir,
        job_id=job_id,
        timeouts=options.timeouts.effective(task),
        force_build=options.force_build,
        verifier_env=options.verifier_env,
    )
    result = TrialResult(
        id=str(uuid.uuid4()),
        task_name=task.name,
        trial_name=spec.trial_name,
        trial_uri=trial_dir.resolve().as_uri(),
        task_id={"path": task_path},
        source=spec.source,
        task_checksum=spec.task_checksum,
        config=config,
        agent_info=AgentInfo(name=spec.agent.name),
        started_at=started_at or now(),
        finished_at=now(),
        outcome=outcome,
        attempt=spec.attempt,
        retries=history,
        ttgen_version=__version__,
        task_metadata=dict(task.config.metadata or {}),
        exception_info=ExceptionInfo(
            exception_type=exc_type, exception_message=message, exception_traceback=tb
        ),
    )
    if spec.extra:
        result.__pydantic_extra__["extra"] = spec.extra  # type: ignore[index]
    if node:
        result.environment.__pydantic_extra__["node"] = node  # type: ignore[index]
    trial_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(trial_dir / "config.json", config.model_dump_json(indent=2), fsync=False)
    stamp = now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    (trial_dir / "trial.log").write_text(f"{stamp} {outcome.value}: {message}\n", encoding="utf-8")
    (trial_dir / "exception.txt").write_text(f"{exc_type}: {message}\n\n{tb}", encoding="utf-8")
    write_json_atomic(trial_dir / "result.json", result.model_dump_json(indent=2))
    return result
