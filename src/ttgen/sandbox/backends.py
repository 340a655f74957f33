"""Sandbox backends by name: `open_backend("docker" | "podman" | None)`.

A backend is registered as "module:Class" and imported only when opened, so a host without one
backend's engine never loads it. `None` means the configured backend (`backend` in ttgen.toml,
`TTGEN_BACKEND`; default "docker"). Opening checks, without starting anything, that the engine's
socket answers when its address is a local socket, so a wrong setting fails at once with what to
do instead of at the first container.
"""

from __future__ import annotations

import importlib
import socket
from typing import Any

from ttgen.errors import ConfigError, EngineUnavailableError
from ttgen.sandbox.base import SandboxBackend
from ttgen.settings import Settings, load_settings

BACKENDS: dict[str, str] = {
    "docker": "ttgen.sandbox.docker:DockerBackend",
    "podman": "ttgen.sandbox.podman:PodmanBackend",
}


def register_backend(name: str, target: str) -> None:
    """Make `open_backend(name)` open the class at "module:Class" (a plugin's own backend)."""
    if ":" not in target:
        raise ValueError(f"backend {name!r}: expected 'module:Class', got {target!r}")
    BACKENDS[name] = target


def backend_class(name: str) -> type:
    """The class registered under `name`; ConfigError naming the known ones if none is."""
    target = BACKENDS.get(name)
    if target is None:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigError(f"unknown sandbox backend {name!r}: use one of {known}")
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"sandbox backend {name!r} ({target}) cannot be loaded: {exc}") from None


def check_backend(name: str | None) -> str:
    """A backend name as given (None: the configured one), checked; ConfigError if unknown."""
    chosen = name or load_settings().backend
    if chosen not in BACKENDS:
        backend_class(chosen)  # raises with the known names
    return chosen


def open_backend(
    name: str | None = None, settings: Settings | None = None, *, check: bool = True, **kwargs: Any
) -> SandboxBackend:
    """The sandbox backend `name` (None: `settings.backend`), made with `settings` and `kwargs`
    (e.g. exec_channel, build_concurrency, url). With `check`, an engine whose local socket
    does not answer raises EngineUnavailableError (a ConfigError) saying what to start."""
    settings = settings if settings is not None else load_settings()
    chosen = name or settings.backend
    cls = backend_class(chosen)
    backend: SandboxBackend = cls(settings, **kwargs)
    if check:
        url = getattr(backend, "engine_url", None)
        problem = probe(url) if url else None
        if problem is not None:
            hint = getattr(backend, "UNAVAILABLE_HINT", "")
            raise EngineUnavailableError(
                f"the {chosen} backend's engine is not reachable at {url}: {problem}. {hint}".rstrip()
            )
    return backend


def probe(url: str, timeout: float = 3.0) -> str | None:
    """Whether an engine answers `GET /_ping` at a unix:// address: None if it does, else what
    went wrong. Other schemes are not probed here (the first API call tells)."""
    if not url.startswith("unix://"):
        return None
    path = url[len("unix://") :]
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: engine\r\n\r\n")
            reply = s.recv(1024)
    except FileNotFoundError:
        return "no such socket"
    except OSError as exc:
        return exc.strerror or str(exc)
    if not reply.startswith(b"HTTP/"):
        return "it does not speak HTTP"
    return None
