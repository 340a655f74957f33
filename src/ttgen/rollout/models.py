"""What trials and jobs write: result.json models (Harbor's TrialResult/JobResult fields + ours).

A trial's result.json carries every field of Harbor's TrialResult (so Harbor tooling can read it)
plus `outcome`, the one word that says how the trial ended, and `reward`, its primary reward.
Infrastructure outcomes are never a model's failure: stats leave them out and export drops them.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


class AgentSpec(_Model):
    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return json.dumps({"name": self.name, "kwargs": self.kwargs}, sort_keys=True)


class Timeouts(_Model):
    """Effective timeouts in seconds (after overrides, caps and multipliers); None = none."""

    build_sec: float | None = None
    agent_setup_sec: float | None = None
    agent_sec: float | None = None
    verifier_sec: float | None = None


class TrialConfig(_Model):
    task_path: str
    task_name: str
    trial_name: str
    attempt: int = 0
    job_id: str = ""
    agent: AgentSpec
    timeouts: Timeouts = Field(default_factory=Timeouts)
    force_build: bool = False
    verifier_env: dict[str, str] = Field(default_factory=dict)


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
    task_checksum: str | None = None
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
    # ttgen fields
    outcome: Outcome = Outcome.CANCELLED
    reward: float | None = None
    attempt: int = 0
    retries: list[RetryRecord] = Field(default_factory=list)
    environment: EnvironmentInfo = Field(default_factory=EnvironmentInfo)
    warnings: list[str] = Field(default_factory=list)
    ttgen_version: str = ""
    # The task's task.toml [metadata] when the trial ran (source, domain, difficulty, ...): the
    # provenance curation needs, kept with the trial so it survives the task folder moving.
    task_metadata: dict[str, Any] = Field(default_factory=dict)
    # How the verifier ran ("snapshot": in a copy of the agent's container that nothing the agent
    # left running can reach; "shared": in the agent's container, as Harbor does) and what the
    # tamper check found (path, change, why); findings make the outcome `tampered`.
    verifier_isolation: str | None = None
    tamper_evidence: list[dict[str, str]] = Field(default_factory=list)

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


def finite_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


# -- files --------------------------------------------------------------------------------------


def read_trial_result(trial_dir: Path) -> TrialResult | None:
    """The trial's result.json, or None when it is missing, truncated or not a trial result."""
    path = trial_dir / "result.json"
    try:
        return TrialResult.model_validate_json(path.read_bytes())
    except (OSError, ValueError, ValidationError):
        return None
