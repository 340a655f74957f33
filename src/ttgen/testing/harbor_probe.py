"""Harbor's own code reading (and writing) what ttgen writes. Runs INSIDE the Harbor image.

Standard library + the pinned ``harbor`` package only; ttgen never imports this file (it needs
Python >= 3.12 and Harbor). `ttgen.testing.harbor.run_probe` runs it in a container. Every
subcommand prints one JSON document on the last line of stdout (what Harbor prints goes to
stderr):

    check-job JOB                    Harbor's models on a job folder: JobConfig (config.json),
                                     JobResult (result.json), per trial TrialConfig / TrialResult
                                     and the ATIF validator on agent/trajectory.json. Per file: ok,
                                     the error text, the warnings raised, and the keys Harbor
                                     ignored (its models drop unknown keys silently); for the job
                                     config also what Harbor read (agents, tasks, n_attempts, ...).
    check-tasks DIR...               Harbor's Task on each task folder (ok / error / warnings).
    traces-export JOB OUT.jsonl [--episodes all|last]...
                                     Harbor's export_traces on a job; its rows as JSONL (given
                                     twice: OUT's stem + .all.jsonl / .last.jsonl).
    write-harbor-job TTGEN_JOB OUT_JOB
                                     The job Harbor would have written for the run ttgen recorded
                                     in TTGEN_JOB, built only from Harbor's models.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import re
import shutil
import sys
import traceback
import types
import typing
import uuid
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MAX_ERROR_CHARS = 6000


def _emit(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, default=str) + "\n")
    sys.stdout.flush()


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + " [...]"


@contextlib.contextmanager
def _quiet():
    """Harbor's prints and logs go to stderr: stdout carries only our JSON."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _run_checked(fn, *args, **kwargs) -> tuple[Any, dict[str, Any]]:
    """fn(*args) with warnings recorded; returns (value or None, {"ok", "error", "warnings"})."""
    report: dict[str, Any] = {"ok": False, "error": None, "warnings": []}
    value = None
    with warnings.catch_warnings(record=True) as caught, _quiet():
        warnings.simplefilter("always")
        try:
            value = fn(*args, **kwargs)
            report["ok"] = True
        except Exception as exc:
            report["error"] = _error_text(exc)
    report["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
    return value, report


# -- keys Harbor did not read -------------------------------------------------------------------


def _model_classes(annotation: Any) -> list[type]:
    """The pydantic model classes an annotation can hold (directly, in a list, optional, union)."""
    from pydantic import BaseModel

    found: list[type] = []
    origin = typing.get_origin(annotation)
    if origin is None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.append(annotation)
        return found
    if origin in (typing.Union, types.UnionType, list, tuple, set, frozenset):
        for arg in typing.get_args(annotation):
            found += _model_classes(arg)
    return found


def ignored_keys(model: type, data: Any, prefix: str = "") -> list[str]:
    """Dotted paths of keys in `data` that `model` has no field for (Harbor drops them)."""
    if not isinstance(data, dict):
        return []
    fields = model.model_fields  # type: ignore[attr-defined]
    names: dict[str, Any] = {}
    for name, info in fields.items():
        names[name] = info
        if info.alias:
            names[info.alias] = info
    out: list[str] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        info = names.get(key)
        if info is None:
            out.append(path)
            continue
        classes = _model_classes(info.annotation)
        if not classes:
            continue
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            sub = f"{path}[{i}]." if isinstance(value, list) else f"{path}."
            # The first class that has every key wins; else report against the first.
            best = min(classes, key=lambda c, item=item: len(ignored_keys(c, item)))
            out += ignored_keys(best, item, sub)
    return out


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def check_model(model: type, path: Path) -> tuple[Any, dict[str, Any]]:
    if not path.is_file():
        return None, {"ok": False, "error": f"missing: {path}", "warnings": [], "present": False}
    value, report = _run_checked(model.model_validate_json, path.read_bytes())  # type: ignore[attr-defined]
    report["present"] = True
    try:
        report["ignored_keys"] = ignored_keys(model, _load_json(path))
    except ValueError as exc:
        report["ignored_keys"] = []
        report["error"] = report["error"] or _error_text(exc)
    return value, report


def _job_view(config: Any) -> dict[str, Any]:
    """What Harbor took from a job config: the fields that differ from a default JobConfig."""
    from harbor.models.job.config import JobConfig

    dumped = config.model_dump(mode="json")
    default = JobConfig().model_dump(mode="json")
    changed = sorted(k for k in dumped if k not in ("job_name",) and dumped[k] != default.get(k))
    return {
        "job_name": config.job_name,
        "n_attempts": config.n_attempts,
        "n_concurrent_trials": config.n_concurrent_trials,
        "agents": [
            {"name": a.name, "model_name": a.model_name, "kwargs": a.kwargs} for a in config.agents
        ],
        "tasks": [
            {"path": str(t.path) if t.path else None, "name": t.name, "source": t.source}
            for t in config.tasks
        ],
        "datasets": [
            {"path": str(d.path) if d.path else None, "name": d.name} for d in config.datasets
        ],
        "non_default_fields": changed,
    }


def _trial_dirs(job: Path) -> list[Path]:
    return sorted(
        p
        for p in job.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and ((p / "config.json").is_file() or (p / "result.json").is_file())
    )


def cmd_check_job(job: Path) -> dict[str, Any]:
    from harbor.models.job.config import JobConfig
    from harbor.models.job.result import JobResult, JobStats
    from harbor.models.trial.config import TrialConfig
    from harbor.models.trial.result import TrialResult
    from harbor.utils.trajectory_validator import TrajectoryValidator

    out: dict[str, Any] = {"job": str(job), "trials": {}}
    config, report = check_model(JobConfig, job / "config.json")
    if config is not None:
        report["harbor_view"] = _job_view(config)
    out["config"] = report
    result, report = check_model(JobResult, job / "result.json")
    if result is not None:
        report["harbor_view"] = {
            "id": str(result.id),
            "n_total_trials": result.n_total_trials,
            "stats": _stats_view(result.stats),
        }
    out["result"] = report
    trial_results = []
    for tdir in _trial_dirs(job):
        entry: dict[str, Any] = {}
        tconfig, entry["config"] = check_model(TrialConfig, tdir / "config.json")
        if tconfig is not None:
            entry["config"]["harbor_view"] = {
                "task_path": str(tconfig.task.path) if tconfig.task.path else None,
                "agent": tconfig.agent.name,
                "model_name": tconfig.agent.model_name,
                "job_id": str(tconfig.job_id) if tconfig.job_id else None,
                "trial_name": tconfig.trial_name,
            }
        tresult, entry["result"] = check_model(TrialResult, tdir / "result.json")
        if tresult is not None:
            exc = tresult.exception_info
            entry["result"]["harbor_view"] = {
                "task_name": tresult.task_name,
                "trial_name": tresult.trial_name,
                "agent": tresult.agent_info.name,
                "model": tresult.agent_info.model_info.name
                if tresult.agent_info.model_info
                else None,
                "rewards": tresult.verifier_result.rewards if tresult.verifier_result else None,
                "exception_type": exc.exception_type if exc else None,
                "n_input_tokens": tresult.agent_result.n_input_tokens
                if tresult.agent_result
                else None,
            }
        if tresult is not None:
            trial_results.append(tresult)
        traj = tdir / "agent" / "trajectory.json"
        if traj.is_file():
            validator = TrajectoryValidator()
            _, rep = _run_checked(validator.validate, traj)
            rep["ok"] = rep["ok"] and not validator.errors
            rep["errors"] = validator.errors
            rep["present"] = True
            entry["trajectory"] = rep
        else:
            entry["trajectory"] = {"ok": None, "present": False}
        out["trials"][tdir.name] = entry
    # What Harbor's own job would say about these trials (JobStats from the trial results).
    with _quiet():
        out["recomputed_stats"] = _stats_view(JobStats.from_trial_results(trial_results))
    return out


def _stats_view(stats: Any) -> dict[str, Any]:
    return {
        "n_completed_trials": stats.n_completed_trials,
        "n_errored_trials": stats.n_errored_trials,
        "n_cancelled_trials": stats.n_cancelled_trials,
        "evals": {
            key: {"n_trials": ev.n_trials, "n_errors": ev.n_errors}
            for key, ev in sorted(stats.evals.items())
        },
    }


# -- tasks ---------------------------------------------------------------------------------------


def cmd_check_tasks(dirs: list[Path]) -> dict[str, Any]:
    from harbor.models.task.task import Task

    out: dict[str, Any] = {}
    for d in dirs:
        task, rep = _run_checked(Task, d)
        if task is not None:
            rep["name"] = task.name
            rep["instruction_chars"] = len(task.instruction)
            rep["has_tests"] = task.paths.tests_dir.is_dir()
            rep["has_solution"] = task.paths.solution_dir.is_dir()
        # Harbor's way to run a task without tests: verification disabled.
        task2, rep2 = _run_checked(Task, d, disable_verification=True)
        rep["without_verification"] = rep2
        if task2 is not None and task is None:
            rep["name"] = task2.name
        rep["is_valid_dir"] = Task.is_valid_dir(d)
        rep["is_valid_dir_without_verification"] = Task.is_valid_dir(d, disable_verification=True)
        out[str(d)] = rep
    return {"tasks": out}


# -- traces --------------------------------------------------------------------------------------


def cmd_traces_export(job: Path, out_path: Path, episodes: list[str]) -> dict[str, Any]:
    """Harbor's export_traces once per `episodes` mode, in one process (Harbor's imports are the
    slow part). One mode writes OUT; several write OUT's stem + ``.<mode>.jsonl`` each."""
    from harbor.utils.traces_utils import export_traces

    reports = {}
    for mode in episodes:
        path = out_path if len(episodes) == 1 else out_path.with_suffix(f".{mode}.jsonl")
        ds, rep = _run_checked(
            export_traces, job, episodes=mode, use_rich_progress=False, verbose=True
        )
        rows = ds.to_list() if ds is not None else []
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, default=str) + "\n")
        rep["n_rows"] = len(rows)
        rep["columns"] = sorted(rows[0]) if rows else []
        rep["out"] = str(path)
        reports[mode] = rep
    if len(episodes) == 1:
        return reports[episodes[0]]
    return {"ok": all(r["ok"] for r in reports.values()), "episodes": reports}


# -- the reverse direction: the job Harbor would have written ----------------------------------

# ttgen's outcome → the exception type Harbor records for the same ending (class names from
# harbor.trial.errors, harbor.verifier.verifier, harbor.environments.base; asyncio; litellm).
OUTCOME_EXCEPTION = {
    "agent_timeout": "AgentTimeoutError",
    "verifier_timeout": "VerifierTimeoutError",
    "reward_missing": "RewardFileNotFoundError",
    "build_error": "SandboxBuildFailedError",
    "environment_error": "EnvironmentStartTimeoutError",
    "cancelled": "CancelledError",
}
# HTTP status of a failed LLM call → litellm's exception class (what Harbor's Terminus 2 raises).
LITELLM_BY_STATUS = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    408: "Timeout",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
    500: "InternalServerError",
    502: "BadGatewayError",
    503: "ServiceUnavailableError",
}
_SECRET = re.compile(r"key|token|secret|password", re.I)


def _uuid(value: Any, namespace: str) -> uuid.UUID:
    """A UUID as is; anything else (ttgen's 12-hex job ids) mapped to a stable UUID."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"ttgen:{namespace}:{value}")


def _llm_exception(info: dict[str, Any]) -> str:
    """litellm's class for a failed LLM call (never ContextWindowExceededError: ttgen records a
    context overflow as the model's outcome, not as `llm_error`)."""
    name = str(info.get("exception_type") or "")
    message = str(info.get("exception_message") or "")
    m = re.search(r"HTTP (\d{3})", message)
    if m:
        status = int(m.group(1))
        return LITELLM_BY_STATUS.get(status, "APIError")
    if "timed out" in message.lower() or "timeout" in name.lower():
        return "Timeout"
    return "APIConnectionError"


def _exception_type(outcome: str, info: dict[str, Any] | None) -> str | None:
    if outcome in OUTCOME_EXCEPTION:
        return OUTCOME_EXCEPTION[outcome]
    if outcome == "llm_error":
        return _llm_exception(info or {})
    if outcome == "agent_error":
        return str((info or {}).get("exception_type") or "RuntimeError")
    if info and outcome not in ("passed", "failed", "unverified", "tampered"):
        return str(info.get("exception_type") or "RuntimeError")
    return None


def _ttgen_trial(tdir: Path) -> dict[str, Any]:
    """A ttgen trial read as plain JSON, in either shape (earlier flat or Harbor's)."""
    result = _load_json(tdir / "result.json")
    config = result.get("config") or {}
    if (tdir / "config.json").is_file():
        config = {**_load_json(tdir / "config.json"), **config}
    task = config.get("task") if isinstance(config.get("task"), dict) else {}
    task_id = result.get("task_id") if isinstance(result.get("task_id"), dict) else {}
    task_path = task.get("path") or config.get("task_path") or task_id.get("path") or ""
    agent = config.get("agent") or {}
    kwargs = dict(agent.get("kwargs") or {})
    info = result.get("agent_info") or {}
    model_info = info.get("model_info") or {}
    model = agent.get("model_name") or kwargs.get("model") or model_info.get("name")
    return {
        "dir": tdir,
        "result": result,
        "task_path": task_path,
        "task_name": result.get("task_name")
        or config.get("task_name")
        or (Path(task_path).name if task_path else tdir.name),
        "source": task.get("source") or result.get("source"),
        "agent": agent.get("name") or info.get("name") or "unknown",
        "agent_version": info.get("version") or "unknown",
        "model": model,
        "provider": model_info.get("provider"),
        "kwargs": kwargs,
        "job_id": config.get("job_id"),
        "outcome": str(result.get("outcome") or ""),
    }


def _harbor_kwargs(agent_name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The agent kwargs Harbor's agent of that name takes by name (secrets and model left out;
    ttgen's base_url is Harbor's api_base)."""
    from harbor.agents.factory import AgentFactory
    from harbor.models.agent.name import AgentName

    try:
        cls = AgentFactory.get_agent_class(AgentName(agent_name))
        params = inspect.signature(cls.__init__).parameters
    except Exception:
        return {}
    named = {
        n
        for n, p in params.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and n not in ("self", "logs_dir", "model_name")
    }
    renamed = {("api_base" if k == "base_url" else k): v for k, v in kwargs.items()}
    return {
        k: v for k, v in renamed.items() if k in named and not _SECRET.search(k) and v is not None
    }


def _dt(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _timing(value: Any):
    from harbor.models.trial.result import TimingInfo

    if not isinstance(value, dict):
        return None
    return TimingInfo(
        started_at=_dt(value.get("started_at")), finished_at=_dt(value.get("finished_at"))
    )


def _harbor_checksum(task_path: str) -> str | None:
    from harbor.models.task.task import Task

    if not task_path or not Path(task_path).is_dir():
        return None
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        try:
            return Task(task_path, disable_verification=True).checksum
        except Exception:
            return None


HARBOR_METADATA_KEYS = ("n_episodes", "api_request_times_msec", "summarization_count")


def _write_trial(t: dict[str, Any], out_job: Path, job_uuid: uuid.UUID) -> Any:
    from harbor.models.agent.context import AgentContext
    from harbor.models.task.config import VerifierEnvironmentMode
    from harbor.models.task.id import LocalTaskId
    from harbor.models.trajectories import Trajectory
    from harbor.models.trial.config import AgentConfig, TaskConfig, TrialConfig
    from harbor.models.trial.result import (
        AgentInfo,
        ExceptionInfo,
        ModelInfo,
        TrialResult,
    )
    from harbor.models.verifier.result import VerifierResult
    from harbor.utils.trajectory_utils import format_trajectory_json

    r = t["result"]
    config = TrialConfig(
        task=TaskConfig(path=Path(t["task_path"]), source=t["source"]),
        trials_dir=out_job,
        agent=AgentConfig(
            name=t["agent"],
            model_name=t["model"],
            kwargs=_harbor_kwargs(t["agent"], t["kwargs"]),
        ),
        job_id=job_uuid,
    )  # trial_name: Harbor's own (task[:32]__<7 chars>)
    tdir = out_job / config.trial_name
    (tdir / "agent").mkdir(parents=True)
    ar = r.get("agent_result") if isinstance(r.get("agent_result"), dict) else None
    agent_result = None
    if ar is not None:
        meta = {k: v for k, v in (ar.get("metadata") or {}).items() if k in HARBOR_METADATA_KEYS}
        agent_result = AgentContext(
            n_input_tokens=ar.get("n_input_tokens"),
            n_cache_tokens=ar.get("n_cache_tokens"),
            n_output_tokens=ar.get("n_output_tokens"),
            cost_usd=ar.get("cost_usd"),
            metadata=meta or None,
        )
    vr = r.get("verifier_result") if isinstance(r.get("verifier_result"), dict) else None
    rewards = (vr or {}).get("rewards") or None
    info = r.get("exception_info") if isinstance(r.get("exception_info"), dict) else None
    exc_type = _exception_type(t["outcome"], info)
    exception = None
    if exc_type is not None:
        exception = ExceptionInfo(
            exception_type=exc_type,
            exception_message=str((info or {}).get("exception_message") or ""),
            exception_traceback=str((info or {}).get("exception_traceback") or ""),
            occurred_at=_dt((info or {}).get("occurred_at"))
            or _dt(r.get("finished_at"))
            or datetime.now(UTC),
        )
    ran_verifier = rewards is not None or isinstance(r.get("verifier"), dict)
    result = TrialResult(
        id=_uuid(r.get("id"), "trial"),
        task_name=t["task_name"],
        trial_name=config.trial_name,
        trial_uri=tdir.resolve().as_uri(),
        task_id=LocalTaskId(path=Path(t["task_path"])),
        source=t["source"],
        task_checksum=_harbor_checksum(t["task_path"]) or str(r.get("task_checksum") or ""),
        config=config,
        agent_info=AgentInfo(
            name=t["agent"],
            version=t["agent_version"],
            model_info=ModelInfo(name=t["model"], provider=t["provider"]) if t["model"] else None,
        ),
        agent_result=agent_result,
        verifier_result=VerifierResult(rewards=rewards) if rewards is not None else None,
        verifier_environment_mode=VerifierEnvironmentMode.SHARED if ran_verifier else None,
        exception_info=exception,
        started_at=_dt(r.get("started_at")),
        finished_at=_dt(r.get("finished_at")),
        environment_setup=_timing(r.get("environment_setup")),
        agent_setup=_timing(r.get("agent_setup")),
        agent_execution=_timing(r.get("agent_execution")),
        verifier=_timing(r.get("verifier")),
    )
    # Files as Harbor's trial writes them: config.json without defaults, result.json in full.
    (tdir / "config.json").write_text(config.model_dump_json(indent=4, exclude_defaults=True))
    src_agent = t["dir"] / "agent"
    for traj in sorted(src_agent.glob("*.json")) if src_agent.is_dir() else []:
        if traj.name.startswith("messages"):
            continue
        try:
            model = Trajectory.model_validate_json(traj.read_bytes())
        except Exception:
            continue  # not an ATIF document
        (tdir / "agent" / traj.name).write_text(format_trajectory_json(model.to_json_dict()))
    if (t["dir"] / "verifier").is_dir():
        shutil.copytree(t["dir"] / "verifier", tdir / "verifier")
    if exception is not None:
        (tdir / "exception.txt").write_text(
            exception.exception_traceback
            or f"{exception.exception_type}: {exception.exception_message}"
        )
    (tdir / "result.json").write_text(result.model_dump_json(indent=4))
    return result


def cmd_write_harbor_job(src: Path, out_job: Path) -> dict[str, Any]:
    from harbor.metrics.mean import Mean
    from harbor.models.job.config import JobConfig, RetryConfig
    from harbor.models.job.result import JobResult, JobStats
    from harbor.models.trial.config import AgentConfig, TaskConfig
    from harbor.utils.pass_at_k import compute_pass_at_k_by_evals

    if out_job.exists():
        raise FileExistsError(f"{out_job} exists")
    job_config = _load_json(src / "config.json") if (src / "config.json").is_file() else {}
    job_result = _load_json(src / "result.json") if (src / "result.json").is_file() else {}
    trials = [_ttgen_trial(d) for d in _trial_dirs(src) if (d / "result.json").is_file()]
    job_uuid = _uuid(job_result.get("id") or job_config.get("job_id") or src.name, "job")
    out_job.mkdir(parents=True)
    with _quiet():
        results = [_write_trial(t, out_job, job_uuid) for t in trials]

    runs = job_config.get("runs") or []
    options = (runs[-1].get("options") if runs else None) or job_config.get("options") or {}
    agents: dict[str, AgentConfig] = {}
    for t in trials:
        a = AgentConfig(
            name=t["agent"], model_name=t["model"], kwargs=_harbor_kwargs(t["agent"], t["kwargs"])
        )
        agents.setdefault(a.model_dump_json(), a)
    tasks: dict[str, TaskConfig] = {}
    per_task: dict[tuple[str, str], int] = {}
    for t in trials:
        tasks.setdefault(t["task_path"], TaskConfig(path=Path(t["task_path"]), source=t["source"]))
        key = (t["task_path"], t["agent"])
        per_task[key] = per_task.get(key, 0) + 1
    n_concurrent = options.get("n_concurrent") or 4
    config = JobConfig(
        job_name=out_job.name,
        jobs_dir=out_job.parent,
        n_attempts=max(per_task.values(), default=1),
        timeout_multiplier=float((options.get("timeouts") or {}).get("multiplier") or 1.0),
        n_concurrent_trials=max(int(n_concurrent), 1),
        retry=RetryConfig(max_retries=int(options.get("retries") or 0)),
        agents=list(agents.values()) or [AgentConfig()],
        tasks=list(tasks.values()),
    )
    (out_job / "config.json").write_text(config.model_dump_json(indent=4, exclude_defaults=True))

    stats = JobStats.from_trial_results(results, n_total_trials=len(results))
    rewards: dict[str, list] = {}
    for r in results:
        key = JobStats.format_agent_evals_key(
            r.agent_info.name,
            r.agent_info.model_info.name if r.agent_info.model_info else None,
            r.source or "adhoc",
        )
        rewards.setdefault(key, []).append(r.verifier_result.rewards if r.verifier_result else None)
    for key, values in rewards.items():
        stats.evals[key].metrics.append(Mean().compute(values))
    for key, pass_at_k in compute_pass_at_k_by_evals(results).items():
        stats.evals[key].pass_at_k = pass_at_k
    started = min((r.started_at for r in results if r.started_at), default=None)
    finished = max((r.finished_at for r in results if r.finished_at), default=None)
    now = datetime.now(UTC)
    job = JobResult(
        id=job_uuid,
        started_at=_dt(job_result.get("started_at")) or started or now,
        updated_at=_dt(job_result.get("updated_at")) or finished or now,
        finished_at=_dt(job_result.get("finished_at")) or finished or now,
        n_total_trials=len(results),
        stats=stats,
        trial_results=results,
    )
    (out_job / "result.json").write_text(job.model_dump_json(indent=4, exclude={"trial_results"}))
    return {
        "ok": True,
        "out": str(out_job),
        "job_id": str(job_uuid),
        "trials": {
            r.trial_name: {
                "from": t["dir"].name,
                "task_name": r.task_name,
                "exception_type": r.exception_info.exception_type if r.exception_info else None,
            }
            for r, t in zip(results, trials, strict=True)
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harbor_probe")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("check-job")
    p.add_argument("job", type=Path)
    p = sub.add_parser("check-tasks")
    p.add_argument("dirs", type=Path, nargs="+")
    p = sub.add_parser("traces-export")
    p.add_argument("job", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--episodes", choices=("all", "last"), action="append")
    p = sub.add_parser("write-harbor-job")
    p.add_argument("src", type=Path)
    p.add_argument("out", type=Path)
    p = sub.add_parser("version")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "check-job":
            doc = cmd_check_job(args.job)
        elif args.cmd == "check-tasks":
            doc = cmd_check_tasks(args.dirs)
        elif args.cmd == "traces-export":
            doc = cmd_traces_export(args.job, args.out, args.episodes or ["all"])
        elif args.cmd == "write-harbor-job":
            doc = cmd_write_harbor_job(args.src, args.out)
        else:
            from importlib.metadata import version

            doc = {"harbor": version("harbor"), "python": sys.version.split()[0]}
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        _emit({"ok": False, "error": _error_text(exc), "traceback": traceback.format_exc()})
        return 1
    _emit(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
