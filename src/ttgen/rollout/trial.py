"""One trial: one agent's attempt at one task, in a fresh container, ending in one outcome.

    environment_setup  build (once per content) and start the container; healthcheck
    agent_setup        agent.setup() under the setup timeout
    agent_execution    agent.run() under the agent timeout (a timeout is recorded; we go on)
    verifier           tests/ uploaded only now, stale reward files deleted, tests/test.sh run
                       under the verifier timeout, reward.json (first) or reward.txt read
    always             the container is removed (errors and cancellation included), then
                       result.json is written atomically, as the last file of the trial

The trial folder: config.json, result.json, trial.log, exception.txt (on error), agent/ (the
agent's logs), verifier/ (test-stdout.txt, reward file, whatever test.sh left in /logs/verifier).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import sys
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ttgen import __version__
from ttgen.agents import AgentContext, create_agent
from ttgen.errors import (
    AgentSetupTimeoutError,
    AgentTimeoutError,
    ContainerDiedError,
    EngineStuckError,
    ImageBuildError,
    ImageNotFoundError,
    LLMError,
    RewardFileEmptyError,
    RewardFileNotFoundError,
    SandboxError,
    TaskError,
    TooLargeError,
    VerifierOutputParseError,
    VerifierTimeoutError,
)
from ttgen.formats.trial import (
    AgentInfo,
    AgentResultModel,
    AgentSpec,
    ExceptionInfo,
    ModelInfoModel,
    Outcome,
    RetryRecord,
    Timeouts,
    TimingInfo,
    TrialResult,
    VerifierResult,
    finite_number,
    now,
    primary_reward,
    trial_config,
    write_json_atomic,
)
from ttgen.rollout import tamper
from ttgen.rollout.pacing import AgentPacer
from ttgen.sandbox.base import ContainerSandbox, SandboxBackend, container_name, resolve_env
from ttgen.sandbox.diagnose import TLS_HINT, tls_intercepted
from ttgen.sandbox.engine_client import DockerError
from ttgen.task import Task

log = logging.getLogger(__name__)

AGENT_LOGS = "/logs/agent"
VERIFIER_LOGS = "/logs/verifier"
ARTIFACT_LOGS = "/logs/artifacts"
# Run as root in every new container: the log folders the agent and the verifier write to.
LOGS_SETUP_CMD = (
    f"mkdir -p {AGENT_LOGS} {VERIFIER_LOGS} {ARTIFACT_LOGS} && "
    f"chmod 777 {AGENT_LOGS} {VERIFIER_LOGS} {ARTIFACT_LOGS}"
)
TESTS_DIR = "/tests"
AGENT_SETUP_TIMEOUT_SEC = 360.0  # Harbor's
# Folders copied back from the container are capped: an agent could fill them with gigabytes.
MAX_LOG_DIR_BYTES = 64 * 1024 * 1024
MAX_REWARD_FILE_BYTES = 1024 * 1024


@dataclass
class TimeoutPolicy:
    """How effective timeouts are computed: min(override or task value, cap) * multiplier."""

    multiplier: float = 1.0
    build_multiplier: float | None = None
    agent_setup_multiplier: float | None = None
    agent_multiplier: float | None = None
    verifier_multiplier: float | None = None
    agent_override_sec: float | None = None
    verifier_override_sec: float | None = None
    agent_setup_override_sec: float | None = None
    max_agent_sec: float | None = None
    max_verifier_sec: float | None = None

    def effective(self, task: Task) -> Timeouts:
        def calc(base: float | None, cap: float | None, mult: float | None) -> float | None:
            if base is None:
                return None
            if cap is not None:
                base = min(base, cap)
            return base * (mult if mult is not None else self.multiplier)

        return Timeouts(
            build_sec=calc(task.config.environment.build_timeout_sec, None, self.build_multiplier),
            agent_setup_sec=calc(
                self.agent_setup_override_sec or AGENT_SETUP_TIMEOUT_SEC,
                None,
                self.agent_setup_multiplier,
            ),
            agent_sec=calc(
                self.agent_override_sec or task.config.agent.timeout_sec,
                self.max_agent_sec,
                self.agent_multiplier,
            ),
            verifier_sec=calc(
                self.verifier_override_sec or task.config.verifier.timeout_sec,
                self.max_verifier_sec,
                self.verifier_multiplier,
            ),
        )


@dataclass
class TrialSpec:
    """What to run: which task, which agent, which attempt, under which name."""

    task: Task
    trial_name: str
    agent: AgentSpec
    attempt: int = 0
    task_checksum: str | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. {"role": "oracle"} for validation


class _TrialLog:
    """trial.log: one line per event, appended as it happens (useful after a crash)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, message: str) -> None:
        stamp = now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        try:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(f"{stamp} {message}\n")
        except OSError:
            pass


def _exception_info(exc: BaseException, type_name: str | None = None) -> ExceptionInfo:
    return ExceptionInfo(
        exception_type=type_name or type(exc).__name__,
        exception_message=str(exc) or type(exc).__name__,
        exception_traceback="".join(traceback.format_exception(exc)),
    )


def raise_if_cancel_requested() -> None:
    """Raise CancelledError when this task was asked to stop and the request got lost on the
    way (Python 3.11's `asyncio.wait_for` drops a cancellation that arrives just as its inner
    call finishes; a cleanup that suppresses everything can too): the stop still happens, at the
    next point that checks."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _classify(exc: BaseException, phase: str) -> Outcome:
    if isinstance(exc, EngineStuckError):
        # Not the trial's fault, and the job stops on it: a run after the engine's restart
        # runs it again (as an interrupted trial).
        return Outcome.CANCELLED
    if isinstance(exc, ImageBuildError | ImageNotFoundError):
        return Outcome.BUILD_ERROR
    if isinstance(exc, TaskError) and phase == "environment_setup":
        return Outcome.BUILD_ERROR
    if isinstance(exc, LLMError):
        return Outcome.LLM_ERROR
    if isinstance(exc, SandboxError | DockerError | ConnectionError) or _http_client_error(exc):
        return Outcome.ENVIRONMENT_ERROR
    if phase in ("agent_setup", "agent_execution"):
        return Outcome.AGENT_ERROR
    return Outcome.ENVIRONMENT_ERROR


def _http_client_error(exc: BaseException) -> bool:
    """An HTTP client's failure (aiohttp's, loaded only where an agent talks to a model)."""
    aiohttp = sys.modules.get("aiohttp")
    return aiohttp is not None and isinstance(exc, aiohttp.ClientError)


def _changed_files(before: str, after: str) -> list[str]:
    """Files of the `before` listing (sha256sum lines) that are gone or differ `after`."""

    def table(text: str) -> dict[str, str]:
        rows = (line.split(None, 1) for line in text.splitlines() if line.strip())
        return {r[1]: r[0] for r in rows if len(r) == 2}

    old, new = table(before), table(after)
    return sorted(f"{name.removeprefix('./')} ({'removed' if name not in new else 'changed'})"
                  for name, digest in old.items() if new.get(name) != digest)  # fmt: skip


def parse_rewards(verifier_dir: Path) -> dict[str, float | int]:
    """Read reward.json (first) or reward.txt as Harbor does; raise the matching error."""
    json_path = verifier_dir / "reward.json"
    txt_path = verifier_dir / "reward.txt"
    if json_path.is_file():
        text = json_path.read_text(encoding="utf-8", errors="replace").strip()
        if not text:
            raise RewardFileEmptyError("/logs/verifier/reward.json is empty")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise VerifierOutputParseError(
                f"/logs/verifier/reward.json is not valid JSON: {exc}"
            ) from None
        if not isinstance(data, dict) or not data:
            raise VerifierOutputParseError(
                "/logs/verifier/reward.json must be a non-empty JSON object of numbers, "
                f'e.g. {{"reward": 1}}; got {text[:200]!r}'
            )
        bad = [k for k, v in data.items() if not finite_number(v)]
        if bad:
            raise VerifierOutputParseError(
                f"/logs/verifier/reward.json: values must be finite numbers; bad keys: {bad}"
            )
        return dict(data)
    if txt_path.is_file():
        text = txt_path.read_text(encoding="utf-8", errors="replace").strip()
        if not text:
            raise RewardFileEmptyError("/logs/verifier/reward.txt is empty")
        try:
            value = float(text)
        except ValueError:
            raise VerifierOutputParseError(
                f"/logs/verifier/reward.txt must hold one number; got {text[:200]!r}"
            ) from None
        if not finite_number(value):
            raise VerifierOutputParseError(f"/logs/verifier/reward.txt is not finite: {text!r}")
        return {"reward": int(value) if value.is_integer() else value}
    raise RewardFileNotFoundError(
        "tests/test.sh wrote neither /logs/verifier/reward.json nor /logs/verifier/reward.txt"
    )


class Trial:
    """Runs one TrialSpec into a trial folder. `await Trial(...).run()` never raises for a
    failure of the task, agent or environment: the outcome says what happened. Cancellation is
    recorded (outcome `cancelled`), the container removed, and CancelledError re-raised."""

    def __init__(
        self,
        spec: TrialSpec,
        backend: SandboxBackend,
        trial_dir: Path,
        *,
        job_id: str = "adhoc",
        timeouts: TimeoutPolicy | None = None,
        force_build: bool = False,
        verifier_env: Mapping[str, str] | None = None,
        verifier_isolation: str = "snapshot",
        history: list[RetryRecord] | None = None,
        known_build_error: str | None = None,
        pacer: AgentPacer | None = None,
    ) -> None:
        self.spec = spec
        self.backend = backend
        self.dir = trial_dir
        self.job_id = job_id
        self.policy = timeouts or TimeoutPolicy()
        self.force_build = force_build
        self.verifier_env = dict(verifier_env or {})
        if verifier_isolation not in ("snapshot", "shared"):
            raise ValueError(
                f"verifier isolation must be snapshot or shared, not {verifier_isolation!r}"
            )
        self.verifier_isolation = verifier_isolation
        self.sandbox: ContainerSandbox | None = None
        self._agent: Any = None  # the agent, once set up (the verifier asks it about its helpers)
        self.history = history or []
        # Set when this job already failed to build the task's image: fail fast, same error.
        self.known_build_error = known_build_error
        # the host's agent pacer: during a start burst the agent waits for its turn (pacing.py)
        self.pacer = pacer

    async def run(self) -> TrialResult:
        spec, task = self.spec, self.spec.task
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "agent").mkdir(exist_ok=True)
        (self.dir / "verifier").mkdir(exist_ok=True)
        tlog = _TrialLog(self.dir / "trial.log")
        timeouts = self.policy.effective(task)
        config = trial_config(
            spec,
            self.dir,
            job_id=self.job_id,
            timeouts=timeouts,
            force_build=self.force_build,
            verifier_env=self.verifier_env,
        )
        write_json_atomic(self.dir / "config.json", config.model_dump_json(indent=2))
        result = TrialResult(
            id=str(uuid.uuid4()),
            task_name=task.name,
            trial_name=spec.trial_name,
            trial_uri=self.dir.resolve().as_uri(),
            task_id={"path": config.task_path},
            source=spec.source,
            task_checksum=spec.task_checksum,
            config=config,
            agent_info=AgentInfo(name=spec.agent.name),
            started_at=now(),
            attempt=spec.attempt,
            retries=self.history,
            ttgen_version=__version__,
            task_metadata=dict(task.config.metadata or {}),
            instruction=task.instruction,  # as agent.run() is given it
        )
        if spec.extra:
            result.__pydantic_extra__["extra"] = spec.extra  # type: ignore[index]
        tlog(f"trial {spec.trial_name}: task {task.name}, agent {spec.agent.name}")
        phase = "environment_setup"
        cancelled: asyncio.CancelledError | None = None
        pacer = self.pacer
        if pacer is not None:
            pacer.begin()
        try:
            phase = "environment_setup"
            await self._environment_setup(result, timeouts, tlog)
            raise_if_cancel_requested()  # a stop that a phase's own calls lost (see the job)
            phase = "agent_setup"
            agent, ctx = await self._agent_setup(result, timeouts, tlog)
            raise_if_cancel_requested()
            if pacer is not None:
                paced, pacer = pacer, None  # ready() counts this trial as started, come what may
                held = await paced.ready(agent.model_info() is not None)
                if held >= 0.05:
                    tlog(f"agent held {held:.1f}s while other trials' containers started")
                raise_if_cancel_requested()
            phase = "agent_execution"
            timed_out = await self._agent_execution(agent, ctx, result, timeouts, tlog)
            raise_if_cancel_requested()
            phase = "verifier"
            await self._ensure_alive(result)
            if not task.has_tests:
                # No tests at all, by design (adapter tasks, as in the paper): no reward.
                tlog("no tests: the trajectory is kept unscored")
                result.outcome = Outcome.UNVERIFIED
                if timed_out:
                    result.warnings.append("the agent ran past its timeout")
            else:
                await self._verify(result, timeouts, tlog)
                result.reward = primary_reward(
                    result.verifier_result.rewards if result.verifier_result else None
                )
                if result.tamper_evidence:
                    # what the verifier said stays in verifier_result; the reward is not trusted
                    result.outcome = Outcome.TAMPERED
                    result.reward = 0.0
                    tlog(f"tampered: {len(result.tamper_evidence)} finding(s), reward set to 0")
                elif timed_out:
                    result.outcome = Outcome.AGENT_TIMEOUT
                elif result.reward is not None and result.reward >= 1.0:
                    result.outcome = Outcome.PASSED
                else:
                    result.outcome = Outcome.FAILED
        except asyncio.CancelledError as exc:
            cancelled = exc
            result.outcome = Outcome.CANCELLED
            result.exception_info = ExceptionInfo(
                exception_type="CancelledError",
                exception_message=f"the trial was cancelled during {phase}",
            )
        except VerifierTimeoutError as exc:
            result.outcome = Outcome.VERIFIER_TIMEOUT
            result.exception_info = _exception_info(exc)
        except (RewardFileNotFoundError, RewardFileEmptyError, VerifierOutputParseError) as exc:
            result.outcome = Outcome.REWARD_MISSING
            result.exception_info = _exception_info(exc)
        except Exception as exc:
            result.outcome = _classify(exc, phase)
            result.exception_info = _exception_info(exc)
        finally:
            if pacer is not None:  # began, never became ready
                pacer.abandon()
            await self._cleanup(result, tlog)
            self._close_phases(result)
            result.finished_at = now()
            if result.exception_info is not None and result.outcome != Outcome.AGENT_TIMEOUT:
                info = result.exception_info
                (self.dir / "exception.txt").write_text(
                    f"{info.exception_type}: {info.exception_message}\n\n"
                    f"{info.exception_traceback}",
                    encoding="utf-8",
                )
            tlog(f"outcome {result.outcome.value} reward {result.reward}")
            write_json_atomic(self.dir / "result.json", result.model_dump_json(indent=2))
        if cancelled is not None:
            raise cancelled
        return result

    # -- phases -----------------------------------------------------------------------------

    async def _environment_setup(
        self, result: TrialResult, timeouts: Timeouts, tlog: _TrialLog
    ) -> None:
        task = self.spec.task
        result.environment_setup = TimingInfo(started_at=now())
        if self.known_build_error is not None:
            raise ImageBuildError(f"{self.known_build_error} (failed earlier in this job run)")
        image = await self.backend.ensure_image(
            task, force_build=self.force_build, build_timeout=timeouts.build_sec
        )
        result.environment.image = image.tag
        result.environment.image_source = image.source
        tlog(f"image {image.tag} ({image.source}, {image.seconds:.1f}s)")
        name = container_name(self.job_id[:12], self.spec.trial_name)
        self.sandbox = await self.backend.start(
            task,
            job=self.job_id,
            image=image,
            name=name,
            labels={"ttgen.trial": self.spec.trial_name},
            exec_channel="eager",  # a trial runs many commands: start the exec helper now
        )
        result.environment.container = name
        setup = await self.sandbox.exec(LOGS_SETUP_CMD, user="root", timeout=60)
        if not setup.ok:
            raise SandboxError(
                f"cannot create /logs in the container: {setup.output.strip()[:500]}"
            )
        await self._healthcheck(tlog)
        result.environment_setup.finished_at = now()
        tlog(f"container {name} started")

    async def _healthcheck(self, tlog: _TrialLog) -> None:
        hc = self.spec.task.config.environment.healthcheck
        if hc is None or not hc.command:
            return
        assert self.sandbox is not None
        if hc.start_period_sec:
            await asyncio.sleep(hc.start_period_sec)
        last = ""
        for i in range(int(hc.retries) + 1):
            r = await self.sandbox.exec(hc.command, timeout=hc.timeout_sec)
            if r.ok:
                tlog(f"healthcheck passed (try {i + 1})")
                return
            last = (r.output.strip() or f"exit {r.exit_code}")[-500:]
            await asyncio.sleep(hc.interval_sec)
        raise SandboxError(
            f"healthcheck `{hc.command}` failed {int(hc.retries) + 1} times; last: {last}"
        )

    async def _agent_setup(
        self, result: TrialResult, timeouts: Timeouts, tlog: _TrialLog
    ) -> tuple[Any, AgentContext]:
        assert self.sandbox is not None
        spec = self.spec
        result.agent_setup = TimingInfo(started_at=now())
        agent = self._agent = create_agent(spec.agent.name, **spec.agent.kwargs)
        info = agent.model_info()
        result.agent_info = AgentInfo(
            name=agent.name,
            version=agent.version(),
            model_info=ModelInfoModel(name=info.name, provider=info.provider) if info else None,
        )
        ctx = AgentContext(
            task=spec.task,
            logs_dir=self.dir / "agent",
            trial_name=spec.trial_name,
            user=spec.task.config.agent.user,
        )
        result.agent_result = AgentResultModel()
        try:
            await asyncio.wait_for(agent.setup(self.sandbox, ctx), timeouts.agent_setup_sec)
        except TimeoutError:
            raise AgentSetupTimeoutError(
                f"agent setup exceeded {timeouts.agent_setup_sec:g}s"
            ) from None
        finally:
            self._collect_agent_result(result, ctx)
        result.agent_setup.finished_at = now()
        tlog("agent set up")
        return agent, ctx

    async def _agent_execution(
        self,
        agent: Any,
        ctx: AgentContext,
        result: TrialResult,
        timeouts: Timeouts,
        tlog: _TrialLog,
    ) -> bool:
        """Run the agent; True when it hit the agent timeout (recorded, not raised)."""
        assert self.sandbox is not None
        result.agent_execution = TimingInfo(started_at=now())
        if timeouts.agent_sec is not None:
            ctx.deadline = time.monotonic() + timeouts.agent_sec
        timed_out = False
        try:
            await asyncio.wait_for(
                agent.run(self.spec.task.instruction, self.sandbox, ctx), timeouts.agent_sec
            )
        except TimeoutError:
            timed_out = True
            assert timeouts.agent_sec is not None
            result.exception_info = ExceptionInfo(
                exception_type=AgentTimeoutError.__name__,
                exception_message=f"the agent ran past its timeout of {timeouts.agent_sec:g}s",
            )
            tlog(f"agent timed out after {timeouts.agent_sec:g}s")
        except Exception:
            # The agent failed: keep what it left in the container if that is still possible,
            # without hiding the error. (A cancelled trial does not wait for this.)
            self._collect_agent_result(result, ctx)
            result.agent_execution.finished_at = now()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._agent_logs(agent, ctx, result), 20)
            raise
        self._collect_agent_result(result, ctx)
        result.agent_execution.finished_at = now()
        await self._agent_logs(agent, ctx, result)
        tlog("agent finished")
        return timed_out

    async def _agent_logs(self, agent: Any, ctx: AgentContext, result: TrialResult) -> None:
        """Copy /logs/agent out, then let the agent finish its host-side logs."""
        await self._copy_out(AGENT_LOGS, self.dir / "agent", result, skip_existing=True)
        finish = getattr(agent, "finish", None)
        if callable(finish):
            try:
                finish(ctx)
            except Exception as exc:  # the logs are a by-product: never fail the trial for them
                result.warnings.append(f"agent finish(): {type(exc).__name__}: {exc}")

    async def _ensure_alive(self, result: TrialResult) -> None:
        assert self.sandbox is not None
        state = await self.sandbox.state()
        if not state.get("Running"):
            result.environment.container_exit = {
                k: state.get(k) for k in ("Status", "ExitCode", "OOMKilled", "Error") if k in state
            }
            raise ContainerDiedError(
                f"the container stopped during the agent phase ({state.get('Status')}, exit code "
                f"{state.get('ExitCode')}, OOM-killed: {state.get('OOMKilled')}); "
                "the verifier cannot run"
            )

    async def _verify(self, result: TrialResult, timeouts: Timeouts, tlog: _TrialLog) -> None:
        """Run tests/test.sh and read the reward.

        With isolation "snapshot" (the default) the tests run in a new container made from the
        agent's files as they are now, in the agent container's network namespace (services the
        agent left running answer on localhost) but with its own files and processes: nothing
        the agent left running can rewrite the tests or the reward. When no process of the agent
        runs any more (checked on the host), nothing can, and the tests run in the agent's
        container ("in_place", through an exec helper no agent process could have touched).
        Before the tests, the engine's diff of the agent's container is checked for changes that
        alter how tests run (tamper.py); after them, /tests must be as uploaded."""
        assert self.sandbox is not None
        agent_sb, task = self.sandbox, self.spec.task
        result.verifier = TimingInfo(started_at=now())
        if task.test_script is None or task.path is None:
            raise RewardFileNotFoundError("the task has no tests/test.sh, so nothing can score it")
        mode = self.verifier_isolation
        running: list[str] | None = None
        frozen: list[str] | None = None
        if mode == "snapshot":
            running = await agent_sb.foreign_processes()
            if running:
                # All that runs may be the agent's terminal, idle at its prompt (Terminus 2's
                # tmux server and shell): stopped, it can do nothing either. Stopping it changes
                # nothing the tests can need (a service or a job left running is not idle).
                harness = getattr(self._agent, "harness_processes", None)
                frozen = await agent_sb.freeze_idle_terminal(harness() if harness else ())
            if running == [] or frozen:
                # Nothing of the agent runs, so nothing can start or reach the tests: verify in
                # the agent's container (much cheaper), through a trusted exec helper.
                mode = "in_place"
        result.verifier_isolation = mode
        sb = agent_sb
        if mode == "snapshot":
            t0 = time.monotonic()
            sb = await self.backend.start_snapshot(agent_sb)
            why = (f"{len(running)} process(es) of the agent still running, e.g. {running[0]}"
                   if running else "the agent's processes cannot be listed here")  # fmt: skip
            tlog(f"verifier container {sb.name} from a snapshot ({time.monotonic() - t0:.2f}s; "
                 f"{why})")  # fmt: skip
        elif mode == "in_place":
            await agent_sb.trusted_exec_channel()
            if frozen:
                tlog(f"the agent's terminal is idle: stopped its {len(frozen)} process(es) "
                     f"({', '.join(f.split(' ', 2)[1] for f in frozen)}); verifying in its "
                     "container")  # fmt: skip
            else:
                tlog("no process of the agent runs: verifying in its container")
        try:
            await self._check_tampering(agent_sb, sb, result, tlog)
            await self._run_tests(sb, result, timeouts, tlog)
        finally:
            if sb is not agent_sb:
                await asyncio.shield(sb.stop())

    async def _check_tampering(
        self, agent_sb: ContainerSandbox, sb: ContainerSandbox, result: TrialResult, tlog: _TrialLog
    ) -> None:
        changes = await agent_sb.changes()
        path_dirs = None
        if tamper.may_touch_path(changes):  # else no shim check needs the container's PATH
            path = await sb.exec('printf %s "$PATH"', user="root", timeout=30)
            path_dirs = [d for d in path.stdout.split(":") if d] or None

        async def read(p: str) -> bytes | None:
            try:
                return await sb.read_file(p, max_bytes=65536)
            except Exception:  # a symlink, a folder, gone: not a plain file
                return None

        async def which(names: list[str]) -> dict[str, list[tuple[str, str]]]:
            res = await sb.exec(["sh", "-c", tamper.WHICH_ALL, "ttgen-which", *names],
                                user="root", timeout=30)  # fmt: skip
            return tamper.parse_which(res.stdout)

        found = await tamper.findings(changes, read, which, path_dirs)
        result.tamper_evidence = [f.to_dict() for f in found]
        if found:
            tlog("tamper evidence: " + "; ".join(f"{f.path} ({f.why})" for f in found[:5]))

    async def _run_tests(
        self, sb: ContainerSandbox, result: TrialResult, timeouts: Timeouts, tlog: _TrialLog
    ) -> None:
        task = self.spec.task
        assert task.path is not None
        # The agent may have planted files where the verifier looks: start from a clean slate.
        prep = await sb.exec(
            f"rm -rf {TESTS_DIR} {VERIFIER_LOGS}/reward.txt {VERIFIER_LOGS}/reward.json && "
            f"mkdir -p {VERIFIER_LOGS} && chmod 777 {VERIFIER_LOGS}",
            user="root",
            timeout=60,
        )
        if prep.exit_code is None or not prep.ok:
            raise SandboxError(f"cannot prepare the verifier: {prep.output.strip()[:500]}")
        await sb.upload_dir(task.path / "tests", TESTS_DIR)
        await sb.exec(
            f"chmod -R a+rX {TESTS_DIR} && chmod a+x {TESTS_DIR}/test.sh", user="root", timeout=60
        )
        # A listing of the uploaded tests (sha256 per file, caches that running them writes
        # left out), taken before and after test.sh: a file that changed while it ran is evidence.
        before = await sb.tree_digest(TESTS_DIR)
        env = {**resolve_env(task.config.verifier.env), **self.verifier_env}
        run = await sb.exec(
            f"exec 2>&1; {TESTS_DIR}/test.sh",
            env=env,
            user=task.config.verifier.user,
            timeout=timeouts.verifier_sec,
        )
        verifier_dir = self.dir / "verifier"
        await self._copy_out(VERIFIER_LOGS, verifier_dir, result, sandbox=sb)
        out = run.stdout
        if run.stdout_omitted_bytes:
            out += f"\n[ttgen: {run.stdout_omitted_bytes} bytes of output omitted in the middle]\n"
        (verifier_dir / "test-stdout.txt").write_text(out, encoding="utf-8")
        result.verifier.finished_at = now()
        if not run.timed_out:
            changed = _changed_files(before, await sb.tree_digest(TESTS_DIR))
            if changed:
                result.tamper_evidence.append(tamper.Finding(
                    TESTS_DIR, "modified", "the tests changed while they ran: "
                    + ", ".join(changed[:10])).to_dict())  # fmt: skip
        if run.timed_out:
            raise VerifierTimeoutError(
                f"tests/test.sh ran past the verifier timeout of {timeouts.verifier_sec:g}s"
            )
        tlog(f"verifier exit {run.exit_code} in {run.duration_sec:.2f}s")
        try:
            rewards = parse_rewards(verifier_dir)
        except RewardFileNotFoundError as exc:
            raise RewardFileNotFoundError(
                f"{exc} (test.sh exited {run.exit_code}; see verifier/test-stdout.txt)"
            ) from None
        result.verifier_result = VerifierResult(rewards=rewards)
        reward = primary_reward(rewards)
        if (reward is None or reward < 1) and tls_intercepted(out):
            result.warnings.append(f"verifier output: {TLS_HINT}")
            tlog("verifier output shows TLS interception (see warnings)")

    async def _copy_out(
        self,
        remote: str,
        local: Path,
        result: TrialResult,
        *,
        skip_existing: bool = False,
        sandbox: ContainerSandbox | None = None,
    ) -> None:
        """Copy a /logs folder out of the container, capped; reward files get a second chance."""
        sb = sandbox or self.sandbox
        assert sb is not None
        target = local
        if skip_existing:  # the agent's host-side logs win over files of the same name
            target = local.parent / f".{local.name}.incoming"
            shutil.rmtree(target, ignore_errors=True)
        try:
            await sb.download_dir(remote, target, max_bytes=MAX_LOG_DIR_BYTES)
        except FileNotFoundError:
            return
        except TooLargeError as exc:
            result.warnings.append(str(exc))
            if remote == VERIFIER_LOGS:
                for name in ("reward.json", "reward.txt"):
                    try:
                        data = await sb.read_file(
                            f"{remote}/{name}", max_bytes=MAX_REWARD_FILE_BYTES
                        )
                    except (FileNotFoundError, IsADirectoryError, TooLargeError):
                        continue
                    local.mkdir(parents=True, exist_ok=True)
                    (local / name).write_bytes(data)
            return
        if skip_existing:
            for src in sorted(target.rglob("*")):
                dest = local / src.relative_to(target)
                if src.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                elif not dest.exists():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    src.replace(dest)
            shutil.rmtree(target, ignore_errors=True)

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _collect_agent_result(result: TrialResult, ctx: AgentContext) -> None:
        result.agent_result = AgentResultModel(
            n_input_tokens=ctx.n_input_tokens,
            n_cache_tokens=ctx.n_cache_tokens,
            n_output_tokens=ctx.n_output_tokens,
            cost_usd=ctx.cost_usd,
            rollout_details=ctx.rollout_details or None,
            metadata=ctx.metadata or None,
        )

    async def _cleanup(self, result: TrialResult, tlog: _TrialLog) -> None:
        sb = self.sandbox
        if sb is None:
            return
        result.environment.oom_kills = sb.oom_kills()
        try:
            await asyncio.shield(sb.stop())
            tlog("container removed")
        except Exception as exc:
            # The job's garbage collection removes it later; the trial's outcome stands.
            result.warnings.append(f"container {sb.name} could not be removed: {exc}")
            log.warning("trial %s: %s", self.spec.trial_name, exc)

    @staticmethod
    def _close_phases(result: TrialResult) -> None:
        t = now()
        for timing in (
            result.environment_setup,
            result.agent_setup,
            result.agent_execution,
            result.verifier,
        ):
            if timing is not None and timing.finished_at is None:
                timing.finished_at = t


__all__ = ["TimeoutPolicy", "Trial", "TrialSpec", "parse_rewards", "raise_if_cancel_requested"]
