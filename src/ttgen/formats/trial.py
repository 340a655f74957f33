"""What trials and jobs write: result.json models (Harbor's TrialResult/JobResult fields + ours).

A trial's result.json carries every field of Harbor's TrialResult (so Harbor tooling can read it)
plus `outcome`, the one word that says how the trial ended, and `reward`, its primary reward.
Infrastructure outcomes are never a model's failure: stats leave them out and export drops them.
"""

from __future__ import annotations

import functools
import json
import math
import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ttgen.fileio import write_json_atomic  # noqa: F401  (re-exported: the trial files' writer)


def now() -> datetime:
    return datetime.now(UTC)


class Outcome(StrEnum):
    PASSED = "passed"  # reward >= 1
    FAILED = "failed"  # reward < 1
    AGENT_TIMEOUT = "agent_timeout"  # the agent ran out of time; the verifier still ran
    VERIFIER_TIMEOUT = "verifier_timeout"
    REWARD_MISSING = "reward_missing"  # no (parsable) reward file
    # The task has no tests (the paper's adapter tasks): the agent ran, nothing scored it.
    UNVERIFIED = "unverified"
    # The agent changed what the tests run on (a Python start-up hook, a shim before the real
    # tool on PATH, ...): its reward cannot be trusted; counted as a model outcome, reward 0.
    TAMPERED = "tampered"
    BUILD_ERROR = "build_error"
    ENVIRONMENT_ERROR = "environment_error"
    AGENT_ERROR = "agent_error"
    LLM_ERROR = "llm_error"
    CANCELLED = "cancelled"

    @property
    def is_infra(self) -> bool:
        return self in INFRA_OUTCOMES


INFRA_OUTCOMES = frozenset(
    {
        Outcome.BUILD_ERROR,
        Outcome.ENVIRONMENT_ERROR,
        Outcome.AGENT_ERROR,
        Outcome.LLM_ERROR,
        Outcome.CANCELLED,
    }
)
# Outcomes a job retries (with backoff) inside one run.
RETRYABLE_OUTCOMES = INFRA_OUTCOMES - {Outcome.CANCELLED}


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class TimingInfo(_Model):
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class ExceptionInfo(_Model):
    exception_type: str
    exception_message: str
    exception_traceback: str = ""
    occurred_at: datetime = Field(default_factory=now)


class ModelInfoModel(_Model):
    name: str
    provider: str | None = None


class AgentInfo(_Model):
    name: str
    version: str = ""
    model_info: ModelInfoModel | None = None


class AgentResultModel(_Model):
    n_input_tokens: int | None = None
    n_cache_tokens: int | None = None
    n_output_tokens: int | None = None
    cost_usd: float | None = None
    rollout_details: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None


class VerifierResult(_Model):
    rewards: dict[str, float | int] = Field(default_factory=dict)

    @field_validator("rewards", mode="before")
    @classmethod
    def _no_rewards(cls, value: Any) -> Any:
        return {} if value is None else value  # Harbor writes null for "no reward"


class AgentSpec(_Model):
    """The agent a trial runs, as Harbor's AgentConfig: `name`, `model_name` (the `model`
    argument, for Harbor's readers) and `kwargs`. Its identity (`key`) is name + kwargs."""

    name: str
    model_name: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _model_name_from_kwargs(self) -> AgentSpec:
        if self.model_name is None and isinstance(self.kwargs.get("model"), str):
            self.model_name = self.kwargs["model"]
        return self

    @property
    def key(self) -> str:
        """The agent's identity: name and arguments, secrets left out (a new API key is the
        same agent)."""
        return json.dumps({"name": self.name, "kwargs": redact(self.kwargs)}, sort_keys=True)

    def redacted(self) -> AgentSpec:
        """This spec as written to files: secrets (API keys, tokens, passwords) replaced."""
        return self.model_copy(update={"kwargs": redact(self.kwargs)})


_SECRET_KEY = re.compile(r"key|token|secret|password|credential", re.IGNORECASE)
REDACTED = "<redacted>"


def redact(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Agent arguments with the value of every secret-looking one (api_key, ...) replaced."""
    return {
        k: (REDACTED if _SECRET_KEY.search(k) and isinstance(v, str) and v else v)
        for k, v in kwargs.items()
    }


class Timeouts(_Model):
    """Effective timeouts in seconds (after overrides, caps and multipliers); None = none."""

    build_sec: float | None = None
    agent_setup_sec: float | None = None
    agent_sec: float | None = None
    verifier_sec: float | None = None


class TaskRef(_Model):
    """Harbor's TaskConfig of a trial: where the task folder is."""

    path: str | None = None
    source: str | None = None


class EnvironmentRef(_Model):
    """Harbor's EnvironmentConfig of a trial (the sandbox type and build choice)."""

    type: str = "docker"
    force_build: bool = False
    delete: bool = True


class VerifierRef(_Model):
    """Harbor's VerifierConfig of a trial: extra environment for the tests."""

    env: dict[str, str] = Field(default_factory=dict)


def is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


class TrialConfig(_Model):
    """A trial's config.json: Harbor's TrialConfig (task.path, trial_name, trials_dir, agent,
    environment, verifier, job_id as a UUID) with ttgen's own fields beside it (task_name,
    attempt, the effective timeouts). Reads ttgen's earlier flat shape too (task_path,
    task_name, force_build, verifier_env at the top)."""

    task: TaskRef = Field(default_factory=TaskRef)
    trial_name: str
    trials_dir: str | None = None
    agent: AgentSpec
    environment: EnvironmentRef = Field(default_factory=EnvironmentRef)
    verifier: VerifierRef = Field(default_factory=VerifierRef)
    # A UUID for jobs made since ttgen 0.x wrote Harbor's shape; jobs started before keep their
    # 12-hex id (the id labels their containers), None for a trial run outside a job.
    job_id: str | None = None
    # ttgen fields
    task_name: str = ""
    attempt: int = 0
    timeouts: Timeouts = Field(default_factory=Timeouts)

    @model_validator(mode="before")
    @classmethod
    def _earlier_shape(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "task_path" in data:
            task = dict(data.get("task") or {})
            task.setdefault("path", data.pop("task_path") or None)
            data["task"] = task
        if "force_build" in data:
            env = dict(data.get("environment") or {})
            env.setdefault("force_build", data.pop("force_build"))
            data["environment"] = env
        if "verifier_env" in data:
            ver = dict(data.get("verifier") or {})
            ver.setdefault("env", data.pop("verifier_env") or {})
            data["verifier"] = ver
        if data.get("job_id") == "":
            data["job_id"] = None
        if not data.get("task_name"):
            path = (data.get("task") or {}).get("path") if isinstance(data.get("task"), dict) else None
            data["task_name"] = Path(str(path)).name if path else ""
        return data

    @property
    def task_path(self) -> str:
        return self.task.path or ""

    @property
    def force_build(self) -> bool:
        return self.environment.force_build

    @property
    def verifier_env(self) -> dict[str, str]:
        return self.verifier.env


def trial_config(
    spec: Any,
    trial_dir: Path,
    *,
    job_id: str | None,
    timeouts: Timeouts,
    force_build: bool = False,
    verifier_env: dict[str, str] | None = None,
) -> TrialConfig:
    """The config.json of a trial of `spec` (a TrialSpec) run into `trial_dir`."""
    task = spec.task
    return TrialConfig(
        task=TaskRef(path=str(task.path.resolve()) if task.path else None, source=spec.source),
        trial_name=spec.trial_name,
        trials_dir=str(trial_dir.parent.resolve()),
        agent=spec.agent.redacted(),
        environment=EnvironmentRef(force_build=force_build),
        verifier=VerifierRef(env=dict(verifier_env or {})),
        job_id=job_id if job_id and job_id != "adhoc" else None,
        task_name=task.name,
        attempt=spec.attempt,
        timeouts=timeouts,
    )


class RetryRecord(_Model):
    """One earlier run of a trial that ended in an infrastructure outcome and was redone."""

    outcome: Outcome
    exception_type: str | None = None
    exception_message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    previous_job_run: bool = False  # True when it came from an earlier run of the job

    @classmethod
    def of(cls, result: TrialResult, *, previous_job_run: bool = False) -> RetryRecord:
        info = result.exception_info
        return cls(
            outcome=result.outcome,
            exception_type=info.exception_type if info else None,
            exception_message=info.exception_message if info else None,
            started_at=result.started_at,
            finished_at=result.finished_at,
            previous_job_run=previous_job_run,
        )


class EnvironmentInfo(_Model):
    image: str | None = None
    image_source: str | None = None  # built | cached | prebuilt
    container: str | None = None
    oom_kills: int | None = None
    container_exit: dict[str, Any] | None = None  # engine state when the container died early


class TrialResult(_Model):
    # Harbor TrialResult fields
    id: str
    task_name: str
    trial_name: str
    trial_uri: str
    task_id: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None
    task_checksum: str = ""
    config: TrialConfig
    agent_info: AgentInfo
    agent_result: AgentResultModel | None = None
    verifier_result: VerifierResult | None = None
    exception_info: ExceptionInfo | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    environment_setup: TimingInfo | None = None
    agent_setup: TimingInfo | None = None
    agent_execution: TimingInfo | None = None
    verifier: TimingInfo | None = None
    step_results: list[dict[str, Any]] = Field(default_factory=list)
    # ttgen fields (a result.json that Harbor wrote has none: see `_harbor_result`)
    outcome: Outcome = Outcome.CANCELLED
    reward: float | None = None
    attempt: int = 0
    retries: list[RetryRecord] = Field(default_factory=list)
    environment: EnvironmentInfo = Field(default_factory=EnvironmentInfo)
    warnings: list[str] = Field(default_factory=list)
    ttgen_version: str = ""
    written_by: str = "ttgen"  # "harbor": read from a job that Harbor ran (see _harbor_result)
    # The task's task.toml [metadata] when the trial ran (source, domain, difficulty, ...): the
    # provenance curation needs, kept with the trial so it survives the task folder moving.
    task_metadata: dict[str, Any] = Field(default_factory=dict)
    # The instruction the agent was given, exactly (the task's instruction.md when the trial ran):
    # what curation records. None in trials of earlier releases and of Harbor.
    instruction: str | None = None
    # How the verifier ran ("snapshot": in a copy of the agent's container that nothing the agent
    # left running can reach; "shared": in the agent's container, as Harbor does) and what the
    # tamper check found (path, change, why); findings make the outcome `tampered`.
    verifier_isolation: str | None = None
    tamper_evidence: list[dict[str, str]] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _harbor_result(cls, data: Any) -> Any:
        """A result.json that Harbor wrote (no `outcome`, no `ttgen_version`; ttgen writes both
        and its trials build theirs with a version): the outcome and reward derived from
        its exception and verifier fields (`harbor_outcome`), the task's name and metadata
        from its config; `step_results: null` read as none."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("task_checksum") is None:
            data["task_checksum"] = ""
        if data.get("step_results") is None:
            data["step_results"] = []
        if "outcome" not in data and "ttgen_version" not in data:
            outcome, reward = harbor_outcome(data)
            data["outcome"] = outcome.value
            data.setdefault("reward", reward)
            data.setdefault("written_by", "harbor")
        return data

    @property
    def is_infra(self) -> bool:
        return self.outcome in INFRA_OUTCOMES

    @property
    def duration_sec(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


def primary_reward(rewards: dict[str, float | int] | None) -> float | None:
    """The reward a trial is judged by: `reward` if present, else the only value, else the mean."""
    if not rewards:
        return None
    if "reward" in rewards:
        return float(rewards["reward"])
    values = [float(v) for v in rewards.values()]
    return values[0] if len(values) == 1 else sum(values) / len(values)


# Harbor's exception types (harbor 0.24.0: trial/errors.py, verifier/verifier.py, llms/base.py,
# agents/installed/base.py; litellm's and openai's API errors) and the outcome each one means.
_HARBOR_MODEL_OUTCOMES = {
    "AgentTimeoutError": Outcome.AGENT_TIMEOUT,
    "VerifierTimeoutError": Outcome.VERIFIER_TIMEOUT,
    "RewardFileNotFoundError": Outcome.REWARD_MISSING,
    "RewardFileEmptyError": Outcome.REWARD_MISSING,
    "VerifierOutputParseError": Outcome.REWARD_MISSING,
    # the model's own output or context ran over: the trajectory ends, the verifier scores it
    "ContextLengthExceededError": Outcome.FAILED,
    "ContextWindowExceededError": Outcome.FAILED,
    "OutputLengthExceededError": Outcome.FAILED,
    "OutputTokenExceededError": Outcome.FAILED,
}
_HARBOR_INFRA_OUTCOMES = {
    "CancelledError": Outcome.CANCELLED,
    "KeyboardInterrupt": Outcome.CANCELLED,
    "SandboxBuildFailedError": Outcome.BUILD_ERROR,
    "EnvironmentStartTimeoutError": Outcome.ENVIRONMENT_ERROR,
    "HealthcheckError": Outcome.ENVIRONMENT_ERROR,
    "AddTestsDirError": Outcome.ENVIRONMENT_ERROR,
    "DownloadVerifierDirError": Outcome.ENVIRONMENT_ERROR,
    "AgentSetupTimeoutError": Outcome.AGENT_ERROR,
}
# The LLM endpoint failed (rate limits, outages, auth, bad requests): says nothing of the model.
_LLM_ERROR_NAMES = frozenset(
    {
        "RateLimitError", "APIConnectionError", "APIError", "APIResponseValidationError",
        "AuthenticationError", "BadRequestError", "InternalServerError", "NotFoundError",
        "PermissionDeniedError", "ServiceUnavailableError", "Timeout", "APITimeoutError",
        "BudgetExceededError", "UnprocessableEntityError", "UnsupportedParamsError",
        "ApiError", "ApiRateLimitError", "ApiUsageLimitError", "ApiInternalServerError",
        "ApiOverloadedError", "ApiConnectionClosedError", "ApiResponseStalledError",
        "ApiProviderResourceNotFoundError", "UnknownApiError", "ApiConnectionError",
        "ApiKeyRejectedError", "AgentAuthenticationError", "ModelNotFoundError",
        "NetworkConnectionError",
    }
)  # fmt: skip


def harbor_outcome(data: dict[str, Any]) -> tuple[Outcome, float | None]:
    """How a trial that Harbor ran ended, in ttgen's words, from its result.json fields: the
    exception type (timeouts and reward-file errors are the model's outcomes; cancellation, the
    environment, agent set-up and the LLM endpoint are infrastructure), the phase it failed in
    (an exception before the agent ran is the environment's), then the verifier's rewards
    (none: `unverified` for a task without tests, ttgen's no-tests script or a disabled
    verifier; `reward_missing` when the task's real tests gave none, as in ttgen's jobs)."""
    verifier = data.get("verifier_result") or {}
    rewards = verifier.get("rewards") if isinstance(verifier, dict) else None
    reward = primary_reward(rewards) if isinstance(rewards, dict) else None
    info = data.get("exception_info") or {}
    exc = str(info.get("exception_type") or "") if isinstance(info, dict) else ""
    if exc:
        if exc in _HARBOR_INFRA_OUTCOMES:
            return _HARBOR_INFRA_OUTCOMES[exc], None
        if exc in _LLM_ERROR_NAMES or exc.endswith("RateLimitError"):
            return Outcome.LLM_ERROR, None
        outcome = _HARBOR_MODEL_OUTCOMES.get(exc)
        if outcome is None:
            started = (data.get("agent_execution") or {}).get("started_at")
            setup_done = (data.get("agent_setup") or {}).get("finished_at")
            env_done = (data.get("environment_setup") or {}).get("finished_at")
            if not env_done:
                return Outcome.ENVIRONMENT_ERROR, None
            if not setup_done or not started:
                return Outcome.AGENT_ERROR, None
            if data.get("verifier") and (data.get("verifier") or {}).get("started_at"):
                return Outcome.ENVIRONMENT_ERROR, None  # the verifier phase itself broke
            return Outcome.AGENT_ERROR, None
        if outcome in (Outcome.AGENT_TIMEOUT, Outcome.FAILED) and reward is not None:
            return (Outcome.PASSED if outcome == Outcome.FAILED and reward >= 1 else outcome), reward
        return outcome, reward
    if reward is None:
        if isinstance(rewards, dict) and _has_real_tests(data):
            # tests that ran and gave no reward judged nothing: as ttgen's own runner says
            return Outcome.REWARD_MISSING, None
        return Outcome.UNVERIFIED, None  # verifier disabled, or ttgen's no-tests script
    return (Outcome.PASSED if reward >= 1.0 else Outcome.FAILED), reward


def _has_real_tests(data: dict[str, Any]) -> bool:
    """The task folder of a Harbor result (when still there) has tests other than ttgen's
    no-tests script."""
    from ttgen.task import is_no_tests_script

    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    task = config.get("task") if isinstance(config.get("task"), dict) else {}
    path = task.get("path") or (data.get("task_id") or {}).get("path")
    if not path:
        return False
    try:
        return not is_no_tests_script((Path(str(path)) / "tests" / "test.sh").read_bytes())
    except OSError:
        return False


def finite_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


# -- files --------------------------------------------------------------------------------------


def read_trial_result(trial_dir: Path) -> TrialResult | None:
    """The trial's result.json, or None when it is missing, truncated or not a trial result.
    A result that Harbor wrote gets its attempt number from its job (`harbor_attempts`)."""
    path = trial_dir / "result.json"
    try:
        result = TrialResult.model_validate_json(path.read_bytes())
    except (OSError, ValueError, ValidationError):
        return None
    if result.written_by == "harbor":
        result.attempt = harbor_attempts(trial_dir.parent).get(result.trial_name, 0)
    return result


def task_metadata_of(result: TrialResult) -> dict[str, Any]:
    """The task's [metadata]: recorded with the trial by ttgen; else (a Harbor job, an older
    ttgen) read from the task folder's task.toml when it is still there."""
    if result.task_metadata:
        return dict(result.task_metadata)
    return dict(_metadata_in_folder(result.config.task_path))


@functools.lru_cache(maxsize=4096)
def _metadata_in_folder(task_path: str) -> dict[str, Any]:
    if not task_path:
        return {}
    try:
        import tomllib

        data = tomllib.loads((Path(task_path) / "task.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    meta = data.get("metadata")
    return dict(meta) if isinstance(meta, dict) else {}


def harbor_attempts(job_dir: Path) -> dict[str, int]:
    """Harbor records no attempt number: a task's trials in a Harbor job are numbered 0, 1, ...
    in the order they started (then by trial name), as ttgen numbers its own attempts."""
    try:
        stamp = job_dir.stat().st_mtime_ns
    except OSError:
        return {}
    return dict(_harbor_attempts(str(job_dir), stamp))


@functools.lru_cache(maxsize=32)
def _harbor_attempts(job_dir: str, _stamp: int) -> tuple[tuple[str, int], ...]:
    by_task: dict[str, list[tuple[str, str]]] = {}
    for path in Path(job_dir).glob("*/result.json"):
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or "outcome" in data or "trial_name" not in data:
            continue
        key = str(data.get("task_name") or "")
        by_task.setdefault(key, []).append((str(data.get("started_at") or ""), data["trial_name"]))
    return tuple(
        (name, i) for trials in by_task.values() for i, (_, name) in enumerate(sorted(trials))
    )


def is_job_folder(path: Path) -> bool:
    """A rollout job folder (ttgen's or Harbor's): trial folders inside, no task.toml."""
    if not path.is_dir() or (path / "task.toml").exists():
        return False
    return any(
        (child / "result.json").is_file() and (child / "config.json").is_file()
        for child in path.iterdir()
        if child.is_dir()
    )


def read_job(job_dir: Path) -> list[TrialResult]:
    """Every finished trial of a job folder (ttgen's or Harbor's), in folder order."""
    return [
        r
        for d in sorted(p for p in job_dir.iterdir() if p.is_dir())
        if (r := read_trial_result(d)) is not None
    ]
