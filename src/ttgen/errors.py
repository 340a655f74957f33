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


class ImageBuildError(SandboxError):
    """An environment image failed to build; carries the tail of the build log."""

    def __init__(self, message: str, log_tail: str = "", *, timed_out: bool = False) -> None:
        self.log_tail = log_tail
        self.timed_out = timed_out
        text = message
        if log_tail:
            text += "\n--- build log (tail) ---\n" + log_tail.rstrip("\n")
        super().__init__(text)


class ImageNotFoundError(SandboxError):
    """An image is neither present locally nor pullable."""
