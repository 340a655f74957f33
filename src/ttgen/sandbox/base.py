"""The sandbox interface: what agents and verifiers may do with a running environment.

Small on purpose (exec, files, stop) so that a second backend (Apptainer, a cloud sandbox) is one
new module. `DockerSandbox` in `ttgen.sandbox.docker` is the reference implementation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

# Per stream; more is cut in the middle (head and tail kept) and counted.
DEFAULT_MAX_OUTPUT_BYTES = 4 * 1024 * 1024


@dataclass
class ExecResult:
    """What one command did. `exit_code` is None when it timed out and was killed."""

    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    duration_sec: float = 0.0
    stdout_omitted_bytes: int = 0
    stderr_omitted_bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@runtime_checkable
class Sandbox(Protocol):
    """A running task environment."""

    id: str
    workdir: str | None

    async def exec(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        stdin: bytes | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> ExecResult:
        """Run `command` (a string goes through ``sh -c``) and wait for it, up to `timeout`.

        On timeout the whole process tree the command started is killed.
        """
        ...

    async def upload_file(self, local: str | os.PathLike[str], remote: str) -> None: ...

    async def upload_dir(self, local: str | os.PathLike[str], remote: str) -> None: ...

    async def write_file(self, remote: str, content: bytes | str, mode: int = 0o644) -> None: ...

    async def download_file(self, remote: str, local: str | os.PathLike[str]) -> Path: ...

    async def download_dir(self, remote: str, local: str | os.PathLike[str]) -> Path: ...

    async def read_file(self, remote: str) -> bytes: ...

    async def stop(self) -> None:
        """Stop and remove the environment. Safe to call twice."""
        ...
