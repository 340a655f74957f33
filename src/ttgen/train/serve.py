"""An OpenAI-compatible server for a model folder (a trained checkpoint in Hugging Face format),
run as a child process: `transformers serve` (CPU or GPU) or vLLM (`vllm serve`, GPU).

    with ModelServer("RUN/model") as server:        # picks a free port, waits until ready
        server.base_url   # http://127.0.0.1:PORT/v1
        server.model      # the name requests must use: the folder's absolute path

Engines:

* ``transformers``: ``transformers serve FOLDER --host H --port P --device D --dtype T``. The
  folder given as the forced model is loaded before the HTTP server starts, so ``/health``
  answers 200 only once the model is in memory. Requests must name exactly that string (any
  other name is refused with a 400 "Server is pinned to ..."). Its ``/v1/models`` does not list
  the forced model (it lists the Hugging Face cache, and fails with a 500 when there is no
  cache), so readiness is ``/health``. It enforces no context length (a prompt longer than the
  model's positions is run anyway) and generates greedily unless the folder's
  generation_config.json sets ``do_sample`` (a request's temperature is then ignored); without
  ``max_tokens`` a request generates up to 1024 tokens. On CPU the default dtype is float32.
* ``vllm``: ``vllm serve FOLDER --host H --port P --served-model-name NAME --dtype auto``
  (+ ``--max-model-len N`` when given): ready when ``/health`` answers 200 and ``/v1/models``
  lists NAME; a prompt over the context length gets vLLM's 400 "maximum context length",
  which ttgen's client raises as ContextLengthExceededError.
* ``auto``: vLLM when it is installed and a GPU is present, else transformers.

The agent (Terminus 2) runs in the ttgen process on this host and sends only keystrokes into the
trial containers, so the server listens on 127.0.0.1 by default; another host (Ray nodes) needs
``host="0.0.0.0"`` and a base URL naming this machine.

The process runs in a session (process group) of its own, with its output in a log file; on
Linux it is also sent SIGTERM when the thread that started it ends (so a killed ttgen leaves no
server behind; start it from a thread that lives as long as the server, e.g. the main thread,
or pass die_with_parent=False). `stop()` sends SIGTERM to the whole group, SIGKILL after a grace
period, and waits until no process of the group is left.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ttgen.errors import TtgenError

ENGINES = ("auto", "transformers", "vllm")
DEFAULT_HOST = "127.0.0.1"
STARTUP_TIMEOUT_SEC = 600.0
STOP_GRACE_SEC = 15.0
FORCE_AFTER_SEC = 3.0
LOG_TAIL_CHARS = 4000
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")


class ServerError(TtgenError):
    """The model server could not be started (the message quotes its log's tail) or stopped."""


def gpu_available() -> bool:
    """Whether an NVIDIA GPU is visible here (without importing torch)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    with contextlib.suppress(OSError):
        if gpus.is_dir() and any(gpus.iterdir()):
            return True
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None or _executable("vllm") is not None


def resolve_engine(engine: str) -> str:
    """``auto`` → ``vllm`` when vLLM is installed and a GPU is present, else ``transformers``."""
    if engine not in ENGINES:
        raise ServerError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if engine == "vllm" and not vllm_installed():
        raise ServerError("vLLM is not installed here (pip install vllm, on a GPU machine); "
                          "--engine transformers serves on CPU")  # fmt: skip
    if engine != "auto":
        return engine
    return "vllm" if vllm_installed() and gpu_available() else "transformers"


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port nothing listens on now (the kernel's choice)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free(port: int, host: str = DEFAULT_HOST) -> bool:
    """Whether a server could listen on `port` now (connections of an earlier server that are
    still closing (TIME_WAIT) do not stop it: servers bind with SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _executable(name: str) -> str | None:
    """`name` next to this Python (its virtual environment) first, then on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def check_model_folder(folder: str | Path) -> Path:
    """The folder's absolute path; ServerError unless it looks like a Hugging Face model folder."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ServerError(f"{path}: no such model folder")
    if not (path / "config.json").is_file():
        raise ServerError(
            f"{path}: not a Hugging Face model folder (no config.json); give the folder that "
            "holds config.json, the weights and the tokenizer (e.g. RUN/model)"
        )
    return path.resolve()


def model_max_positions(folder: Path) -> int | None:
    """config.json's max_position_embeddings (the model's trained context), if it says."""
    try:
        value = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        value = value.get("max_position_embeddings") or (value.get("text_config") or {}).get(
            "max_position_embeddings"
        )
    except (OSError, ValueError, AttributeError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


def server_command(
    engine: str,
    folder: Path,
    *,
    host: str,
    port: int,
    model_name: str,
    device: str | None = None,
    dtype: str | None = None,
    max_model_len: int | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command line that serves `folder` with `engine` (``transformers`` or ``vllm``)."""
    if engine == "transformers":
        exe = _executable("transformers")
        base = [exe] if exe else [sys.executable, "-m", "transformers.cli.transformers"]
        if model_name != str(folder):
            raise ServerError("transformers serve names the model by its folder; no other name")
        if "@" in str(folder):  # it reads MODEL@REVISION
            raise ServerError(
                f"{folder}: transformers serve cannot load a folder whose path has an '@' "
                "(it reads model@revision); move or link the folder elsewhere"
            )
        device = device or ("auto" if gpu_available() else "cpu")
        return [
            *base, "serve", str(folder),
            "--host", host, "--port", str(port),
            "--device", device,
            "--dtype", dtype or ("float32" if device == "cpu" else "auto"),
            "--log-level", "info",
            *extra_args,
        ]  # fmt: skip
    if engine == "vllm":
        exe = _executable("vllm")
        base = [exe] if exe else [sys.executable, "-m", "vllm.entrypoints.cli.main"]
        cmd = [
            *base, "serve", str(folder),
            "--host", host, "--port", str(port),
            "--served-model-name", model_name,
            "--dtype", dtype or "auto",
        ]  # fmt: skip
        if max_model_len:
            cmd += ["--max-model-len", str(max_model_len)]
        if device not in (None, "auto", "cuda"):
            raise ServerError(
                f"vllm serves on a GPU; --device {device!r} needs --engine transformers"
            )
        return [*cmd, *extra_args]
    raise ServerError(f"unknown engine {engine!r}; use transformers or vllm")


def _parent_death_hook() -> Any:
    """A function for Popen's preexec_fn that has Linux send the child SIGTERM when the thread
    that started it ends (prctl PR_SET_PDEATHSIG), or None where that is not available. libc is
    loaded here, in the parent: the child, between fork and exec, only makes the call."""
    if sys.platform != "linux":
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return hook


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` runs (zombies waiting to be reaped do not count)."""
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()  # state, ppid, pgrp, ...
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ModelServer:
    """A served model folder: `start()` (or ``with``) launches the engine and waits until it
    answers; `base_url` and `model` are what a client (``--base-url``, ``--model``) uses;
    `stop()` ends the process group. Not reusable once stopped."""

    def __init__(
        self,
        folder: str | Path,
        engine: str = "auto",
        port: int | None = None,
        *,
        host: str = DEFAULT_HOST,
        device: str | None = None,
        dtype: str | None = None,
        max_model_len: int | None = None,
        extra_args: Sequence[str] = (),
        log_path: str | Path | None = None,
        startup_timeout_sec: float = STARTUP_TIMEOUT_SEC,
        env: dict[str, str] | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self.folder = check_model_folder(folder)
        self.engine = resolve_engine(engine)
        self.requested_engine = engine
        self.host = host
        self.port = port
        self.device = device
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.extra_args = list(extra_args)
        self.log_path = Path(log_path) if log_path is not None else None
        self.startup_timeout_sec = startup_timeout_sec
        self.env = env
        self.die_with_parent = die_with_parent
        self.model = str(self.folder)  # the served name: the folder's absolute path
        self.command: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_sec: float | None = None
        self._stopped = False

    # -- addresses ----------------------------------------------------------------------------

    @property
    def url_host(self) -> str:
        """The host clients use: the bound address, or this machine's for a wildcard bind."""
        if self.host not in _WILDCARD_HOSTS:
            return f"[{self.host}]" if ":" in self.host else self.host
        try:
            return socket.gethostbyname(socket.gethostname())
        except OSError:
            return DEFAULT_HOST

    @property
    def root_url(self) -> str:
        if self.port is None:
            raise ServerError("the server is not started")
        return f"http://{self.url_host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (requests go to {base_url}/chat/completions)."""
        return f"{self.root_url}/v1"

    @property
    def max_positions(self) -> int | None:
        return model_max_positions(self.folder)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def describe(self) -> dict[str, Any]:
        """What eval.json records about the server."""
        return {
            "checkpoint": str(self.folder),
            "engine": self.engine,
            "model": self.model,
            "base_url": self.base_url if self.port is not None else None,
            "command": self.command,
            "log": str(self.log_path) if self.log_path else None,
            "startup_sec": round(self.startup_sec, 2) if self.startup_sec is not None else None,
            "max_position_embeddings": self.max_positions,
        }

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> ModelServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ModelServer:
        if self.proc is not None or self._stopped:
            raise ServerError("a ModelServer starts once")
        bind_host = DEFAULT_HOST if self.host == "localhost" else self.host
        if self.port is None:
            self.port = free_port(bind_host if bind_host not in _WILDCARD_HOSTS else "0.0.0.0")
        self.command = server_command(
            self.engine,
            self.folder,
            host=self.host,
            port=self.port,
            model_name=self.model,
            device=self.device,
            dtype=self.dtype,
            max_model_len=self.max_model_len,
            extra_args=self.extra_args,
        )
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="ttgen-serve-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})}
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(self.command)}\n".encode())
            log.flush()
            try:
                self.proc = subprocess.Popen(
                    self.command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_parent_death_hook() if self.die_with_parent else None,
                )
            except OSError as exc:
                raise ServerError(f"cannot start {self.command[0]}: {exc}") from None
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_sec = time.monotonic() - started
        return self

    def _get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        url = f"http://{DEFAULT_HOST if self.host in _WILDCARD_HOSTS else self.url_host}"
        req = urllib.request.Request(f"{url}:{self.port}{path}", method="GET")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
        try:
            with opener.open(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (OSError, ValueError):
            return 0, b""

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout_sec
        delay = 0.1
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServerError(
                    f"{self.engine} server for {self.folder} exited with code {code} before it "
                    f"was ready; log {self.log_path}:\n{self.log_tail()}"
                )
            status, _ = self._get("/health", timeout=2.0)
            if status == 200 and self._model_listed():
                return
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self.engine} server for {self.folder} not ready after "
                    f"{self.startup_timeout_sec:g}s; log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    def _model_listed(self) -> bool:
        """vLLM: /v1/models lists the served name. (transformers' /v1/models lists the
        Hugging Face cache, not the forced model; /health already implies it is loaded.)"""
        if self.engine != "vllm":
            return True
        status, body = self._get("/v1/models")
        if status != 200:
            return False
        try:
            ids = [m.get("id") for m in json.loads(body).get("data", [])]
        except (ValueError, AttributeError):
            return False
        return self.model in ids

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        """The end of this run's part of the log."""
        if self.log_path is None:
            return ""
        try:
            with self.log_path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(getattr(self, "_log_start", 0), size - chars))
                return f.read().decode("utf-8", errors="replace").rstrip()
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the server process to exit (its code), or None after `timeout`."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace_sec: float = STOP_GRACE_SEC) -> None:
        """End the server's process group: SIGTERM; after FORCE_AFTER_SEC SIGINT (uvicorn's
        second signal: quit without waiting for requests in flight, e.g. a generation whose
        client is gone); SIGKILL after `grace_sec`. Returns when no process of the group is left
        (or raises ServerError after a further 10 s)."""
        self._stopped = True
        proc = self.proc
        if proc is None:
            return
        pgid = proc.pid  # a session leader: its group id is its pid
        deadline = time.monotonic() + grace_sec
        for sig, wait in ((signal.SIGTERM, min(FORCE_AFTER_SEC, grace_sec)),
                          (signal.SIGINT, grace_sec), (signal.SIGKILL, None)):  # fmt: skip
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            try:
                proc.wait(
                    None if wait is None else max(0.0, min(wait, deadline - time.monotonic()))
                )
            except subprocess.TimeoutExpired:
                continue
        # Children of the server (engine workers) may outlive it: end the rest of the group.
        deadline = time.monotonic() + min(grace_sec, FORCE_AFTER_SEC)
        while _group_alive(pgid):
            sig = signal.SIGTERM if time.monotonic() < deadline else signal.SIGKILL
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            if time.monotonic() > deadline + 10:
                raise ServerError(f"processes of group {pgid} are still running after SIGKILL")
            time.sleep(0.1)


__all__ = [
    "ENGINES",
    "ModelServer",
    "ServerError",
    "free_port",
    "gpu_available",
    "model_max_positions",
    "resolve_engine",
    "server_command",
]


def previous_port(config: Path, model: str) -> int | None:
    """The local port an earlier eval of the same served model used (from the job's
    config.json): serving on it again lets the job resume (its identity holds the base URL)."""
    try:
        agents = json.loads(config.read_text(encoding="utf-8"))["identity"]["agents"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for a in agents if isinstance(agents, list) else []:
        kw = a.get("kwargs") if isinstance(a, dict) else None
        if not isinstance(kw, dict) or kw.get("model") != model:
            continue
        with contextlib.suppress(ValueError, TypeError):
            url = urlsplit(str(kw.get("base_url")))
            if url.hostname == "127.0.0.1" and url.port:
                return url.port
    return None
