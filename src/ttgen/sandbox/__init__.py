"""Where tasks run. Everything above this package names the protocol and opens backends by name:

    from ttgen.sandbox import SandboxBackend, open_backend

    async with open_backend() as backend:          # the configured one: docker or podman
        sandbox = await backend.start(task, job="...")
"""

from ttgen.sandbox.backends import BACKENDS, check_backend, open_backend, register_backend
from ttgen.sandbox.base import (
    ContainerSandbox,
    ExecResult,
    ImageRef,
    ImageStore,
    Limits,
    Sandbox,
    SandboxBackend,
)

__all__ = [
    "BACKENDS",
    "ContainerSandbox",
    "ExecResult",
    "ImageRef",
    "ImageStore",
    "Limits",
    "Sandbox",
    "SandboxBackend",
    "check_backend",
    "open_backend",
    "register_backend",
]
