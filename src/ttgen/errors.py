"""ttgen's exception types.

Every error says what went wrong, where (a file, task or image), and when it helps, what to do.
Infrastructure errors (the Docker daemon, a build, the network) are kept apart from task errors
so that later stages never record an infrastructure failure as a model failure.
"""

from __future__ import annotations

from pathlib import Path


class TtgenError(Exception):
    """Base class of every error ttgen raises on purpose."""


class ConfigError(TtgenError):
    """A ttgen configuration value (config file or environment variable) is invalid."""


class TaskError(TtgenError):
    """A task directory is invalid: names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class SandboxError(TtgenError):
    """The sandbox backend failed (an infrastructure error, never a model failure)."""


class DockerUnavailableError(SandboxError):
    """No Docker engine answers on the configured socket."""


class EngineUnavailableError(DockerUnavailableError, ConfigError):
    """The configured sandbox backend's engine (Docker, Podman) does not answer: a setting or a
    service to start, said with the backend's name, its address and what to do."""


class EngineStuckError(SandboxError):
    """The engine took a container or network call and did not finish it in time (Docker 20.10
    before 20.10.27 can deadlock in its network code when many containers start and stop:
    moby/moby#46661). Every later such call is refused at once; a job stops and resumes once the
    engine is restarted. The message names the call, the deadline and what to do."""


class ImageBuildError(SandboxError):
    """An environment image failed to build; carries the tail of the build log.

    A failure of the task's own environment (a RUN step that fails, a COPY of a missing file, a
    Dockerfile syntax error) is deterministic: building again gives the same error, so it is not
    retried. `BuildInfraError` is the other kind."""

    retryable = False

    def __init__(self, message: str, log_tail: str = "", *, timed_out: bool = False) -> None:
        self.log_tail = log_tail
        self.timed_out = timed_out
        text = message
        if log_tail:
            text += "\n--- build log (tail) ---\n" + log_tail.rstrip("\n")
        super().__init__(text)


class BuildInfraError(ImageBuildError):
    """A build that failed for a reason outside the task (the engine or the network unreachable,
    a registry timing out): worth retrying. The message says which sign was seen."""

    retryable = True


class ImageNotFoundError(SandboxError):
    """An image is neither present locally nor pullable."""


class TooLargeError(TtgenError):
    """A file or folder to copy out of a sandbox is larger than the allowed size."""


# -- trials -----------------------------------------------------------------------------------
# Exception types recorded in a trial's result.json (`exception_info.exception_type`); the names
# are Harbor's where Harbor has one, so tools reading Harbor results read ours.


class AgentTimeoutError(TtgenError):
    """The agent ran past its timeout (recorded; the verifier still runs)."""


class AgentSetupTimeoutError(TtgenError):
    """The agent's setup ran past its timeout."""


class AgentError(TtgenError):
    """The agent itself failed (a harness problem, not the model's answer)."""


class LLMError(TtgenError):
    """The model endpoint failed (after retries): an infrastructure error."""


class ContainerDiedError(SandboxError):
    """The task container stopped while the trial still needed it."""


class VerifierTimeoutError(TtgenError):
    """tests/test.sh ran past the verifier timeout."""


class RewardFileNotFoundError(TtgenError):
    """The verifier wrote neither /logs/verifier/reward.json nor reward.txt."""


class RewardFileEmptyError(TtgenError):
    """The reward file exists but is empty."""


class VerifierOutputParseError(TtgenError):
    """The reward file is not a number (reward.txt) or an object of numbers (reward.json)."""
