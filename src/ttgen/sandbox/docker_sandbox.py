"""One running container of a Docker-API engine (Docker, Podman): exec, files, stop.

Two exec transports with one behaviour: one Engine API exec per command (works in every image),
or, from a container's second exec on, the exec helper (execd.py) on one attached exec. Every
exec carries a marker variable in its environment; on timeout or cancellation everything with
that marker is killed (from the host's /proc when the engine is local). Output is capped per
stream, head and tail kept. Files travel as tar archives.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import shlex
import tarfile
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from ttgen.errors import SandboxError, TooLargeError
from ttgen.sandbox.base import DEFAULT_MAX_OUTPUT_BYTES, TREE_DIGEST_CMD, ExecResult
from ttgen.sandbox.engine_client import Container, DockerError
from ttgen.sandbox.execd import (
    HELPER,
    HELPER_BYTES,
    MAIN_CMD,
    ExecChannel,
    PaneRecording,
    UserSwitchError,
)
from ttgen.sandbox.host import (
    EXEC_MARKER,
    foreign_pids,
    freeze_idle_terminal,
    kill_marked_on_host,
    overlay_changes,
    process_lines,
)

if TYPE_CHECKING:
    from ttgen.sandbox.docker import DockerBackend

log = logging.getLogger(__name__)

KEEPALIVE_CMD = ["sh", "-c", "sleep infinity"]
# What a container whose exec helper is its main process gets (see execd.MAIN_CMD): stdin kept
# open for the attached helper, and no log driver (everything the helper sends would be logged).
MAIN_HELPER_CONFIG: dict[str, Any] = {
    "Cmd": MAIN_CMD,
    "OpenStdin": True,
    "StdinOnce": False,
    "AttachStdin": True,
    "AttachStdout": True,
    "AttachStderr": True,
    # As root, whatever the image's USER: the helper switches to the image's user per command
    # (an exec as root in a container of another user has no capabilities to do so), and an
    # agent running as that user cannot kill the keep-alive.
    "User": "0",
}
# A snapshot of such a container keeps the plain keep-alive (its helper starts as usual).
SNAPSHOT_KEEPALIVE: dict[str, Any] = {
    "Cmd": KEEPALIVE_CMD,
    "OpenStdin": False,
    "StdinOnce": False,
    "AttachStdin": False,
    "AttachStdout": False,
    "AttachStderr": False,
}
FAST_COPY_MAX_BYTES = 8 * 1024 * 1024  # file copies through the exec helper up to this size
# Waits between the tries of a forced removal the engine answered with a server error.
REMOVE_RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0, 4.0)


async def force_remove(container: Any) -> bool:
    """Remove a container, killing it first; False when it was gone (or going) already.

    The engine sends the kill, then waits a fixed 2 s for the container's exit event; on a
    loaded host (a CI runner, 1,000 trials stopping at once, a container with many processes)
    that wait lapses and the removal fails with a 500 ("tried to kill container, but did not
    receive an exit event") while the kill goes on. Such a 5xx is asked again a few times
    (~8 s in all) before it is raised; a 404 or 409 (someone else removes it) is success.
    """
    for delay in (*REMOVE_RETRY_DELAYS, None):
        try:
            await container.delete(force=True, v=True)
            return True
        except DockerError as exc:
            if exc.status in (404, 409):
                return False
            if delay is None or not 500 <= exc.status < 600:
                raise
            log.info("removing container %s: %s; asking again", container.id[:12], exc.message)
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")


@dataclass
class _ExecRequest:
    """One command on its way through either exec transport."""

    cmd: list[str]
    marker: str  # TTGEN_EXEC_ID of everything the command starts
    env: dict[str, str]
    timeout: float | None
    cwd: str | None
    user: str | None
    stdin: bytes | None
    out: _OutputBuffer
    err: _OutputBuffer


class _OutputBuffer:
    """Keeps the first and last `limit/2` bytes of a stream and counts what was dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 0)
        self.head = bytearray()
        self.tail = bytearray()
        self.omitted = 0

    def feed(self, data: bytes) -> None:
        half = self.limit // 2
        room = half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data:
            return
        self.tail += data
        keep = self.limit - half
        if len(self.tail) > keep:
            cut = len(self.tail) - keep
            del self.tail[:cut]
            self.omitted += cut

    def text(self) -> str:
        if not self.omitted:
            return (self.head + self.tail).decode("utf-8", errors="replace")
        marker = f"\n[... {self.omitted} bytes omitted by ttgen ...]\n"
        return (
            self.head.decode("utf-8", errors="replace")
            + marker
            + self.tail.decode("utf-8", errors="replace")
        )


# A POSIX sh script that kills every process carrying one exec's marker in its environment,
# repeated until none is left (a fork bomb keeps forking while we kill).
_KILL_TREE = r"""
id="$1"; n=0
while [ $n -lt 20 ]; do
  found=0
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = "$$" ] && continue
    if tr '\000' '\n' < "$p/environ" 2>/dev/null | grep -qx "TTGEN_EXEC_ID=$id"; then
      kill -9 "$pid" 2>/dev/null && found=1
    fi
  done
  [ $found -eq 0 ] && exit 0
  n=$((n+1))
done
"""


class _Feed:
    """Hands each chunk of a stream to a callback (`ExecChannel`'s output sink)."""

    def __init__(self, callback: Callable[[bytes], None]) -> None:
        self.feed = callback


class ChannelProcess:
    """A command started by `DockerSandbox.open_process`: its stdin stays open."""

    def __init__(
        self,
        sandbox: DockerSandbox,
        channel: ExecChannel,
        rid: int,
        done: asyncio.Future[int],
        marker: str,
        err: _OutputBuffer,
    ) -> None:
        self._sandbox = sandbox
        self._channel = channel
        self._rid = rid
        self._marker = marker
        self._err = err
        # its exit status (an exception where it could not run or the helper died)
        self.done = done
        done.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen: never logged

    @property
    def running(self) -> bool:
        return not self.done.done() and self._channel.alive

    def stderr(self) -> str:
        return self._err.text()

    async def send(self, data: bytes, *, write_file: tuple[str, bytes] | None = None) -> None:
        """Write `data` to its stdin; with `write_file` (path, content), that file is written in
        the container first (a write that fails is not an error). Raises ConnectionError when
        the process or the helper is gone."""
        if not self.running:
            raise ConnectionError("the process has exited")
        await self._channel.send_input(self._rid, data, file=write_file)

    async def close(self, timeout: float = 2.0) -> None:
        """Close its stdin and wait for it to exit; kill it after `timeout` seconds."""
        if self.running:
            with contextlib.suppress(Exception):
                await self._channel.send_input(self._rid, b"", close=True)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(self.done), timeout)
        if not self.done.done():
            with contextlib.suppress(Exception):
                await self._sandbox._kill_tree(self._marker)


class DockerSandbox:
    """One running container (implements `ttgen.sandbox.base.ContainerSandbox`)."""

    # Storage drivers whose upper layer `changes()` may read directly (Podman's is "overlay").
    OVERLAY_DRIVERS: tuple[str, ...] = ("overlay2",)

    def __init__(
        self,
        backend: DockerBackend,
        container: Container,
        name: str,
        image: str,
        task: str,
    ) -> None:
        self.backend = backend
        self.container = container
        self.id: str = container.id
        self.name = name
        self.image = image
        self.task = task
        self.workdir: str | None = None
        self._stopped = False
        self._local: bool | None = None
        self._channel: ExecChannel | None = None
        self._channel_task: asyncio.Future[None] | None = None
        self._default_user: str | None = None
        self._channel_can_switch_user = True
        self._docker_execs = 0
        self._channel_mode: bool | Literal["eager"] = backend.exec_channel
        # how it was created (for a snapshot of it), and an image it owns (a snapshot's)
        self._create_config: dict[str, Any] | None = None
        self._owned_image: str | None = None
        self._channel_exec: Any = None  # the exec running the helper (its pid is ttgen's)
        self._init_pid = 0  # host pid of the container's init (known once _engine_is_local ran)
        self._keepalive_cmd: list[str] = KEEPALIVE_CMD  # the container's own command

    async def __aenter__(self) -> DockerSandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- exec -----------------------------------------------------------------------------

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
        marker = uuid.uuid4().hex
        req = _ExecRequest(
            cmd=["sh", "-c", command] if isinstance(command, str) else list(command),
            marker=marker,
            env={EXEC_MARKER: marker, **(env or {})},
            timeout=timeout,
            cwd=cwd,
            user=user,
            stdin=stdin,
            out=_OutputBuffer(max_output_bytes),
            err=_OutputBuffer(max_output_bytes),
        )
        out, err = req.out, req.err
        t0 = time.monotonic()
        channel = self._channel_for(user)
        if channel is None:
            self._start_channel_soon()
            exit_code, timed_out = await self._exec_docker(req)
        else:
            exit_code, timed_out = await self._exec_channel(channel, req)
        return ExecResult(
            exit_code=exit_code,
            stdout=out.text(),
            stderr=err.text(),
            timed_out=timed_out,
            duration_sec=time.monotonic() - t0,
            stdout_omitted_bytes=out.omitted,
            stderr_omitted_bytes=err.omitted,
        )

    async def _exec_docker(self, req: _ExecRequest) -> tuple[int | None, bool]:
        """One `docker exec` per command: works in every image."""
        try:
            execution = await self.container.exec(
                req.cmd,
                stdout=True,
                stderr=True,
                stdin=req.stdin is not None,
                # the image's user unless told: the container's own may be root (execd.MAIN_CMD)
                user=req.user or self._default_user or "",
                environment=req.env,
                workdir=req.cwd,
            )
        except DockerError as exc:
            raise SandboxError(f"{self.name}: exec failed to start: {exc.message}") from exc
        timed_out = False
        stream = execution.attach()

        async def pump() -> None:
            async with stream:
                if req.stdin is not None:
                    await stream.write_in(req.stdin)
                    stream.write_eof()  # the command reads EOF after it
                while True:
                    msg = await stream.read_out()
                    if msg is None:
                        return
                    (req.out if msg.stream == 1 else req.err).feed(msg.data)

        pump_task = asyncio.ensure_future(pump())
        try:
            await asyncio.wait_for(asyncio.shield(pump_task), req.timeout)
        except TimeoutError:
            timed_out = True
            await self._kill_tree(req.marker)
            try:
                await asyncio.wait_for(asyncio.shield(pump_task), 5)
            except TimeoutError:
                pump_task.cancel()
        except asyncio.CancelledError:
            pump_task.cancel()
            await asyncio.shield(self._kill_tree(req.marker))
            raise
        except DockerError as exc:
            raise SandboxError(f"{self.name}: exec failed: {exc.message}") from exc
        if pump_task.done() and not pump_task.cancelled() and pump_task.exception() is not None:
            exc = pump_task.exception()
            raise SandboxError(f"{self.name}: exec stream failed: {exc}") from exc
        if timed_out:
            return None, True
        try:
            info = await execution.inspect()
        except DockerError as exc:
            raise SandboxError(f"{self.name}: cannot read exec result: {exc.message}") from exc
        return info.get("ExitCode"), False

    async def _exec_channel(
        self, channel: ExecChannel, req: _ExecRequest
    ) -> tuple[int | None, bool]:
        """Through the container's exec helper (see execd.py): no runc exec per command."""
        try:
            done = await channel.run(
                req.cmd,
                env=req.env,
                cwd=req.cwd,
                user=req.user or self._default_user,
                stdin=req.stdin,
                out=req.out,
                err=req.err,
            )
        except ConnectionError:  # the request never reached it: the classic path is safe
            return await self._exec_docker(req)
        try:
            return await asyncio.wait_for(asyncio.shield(done), req.timeout), False
        except UserSwitchError:  # nothing ran; docker exec can switch users
            self._channel_can_switch_user = False
            return await self._exec_docker(req)
        except TimeoutError:
            await self._kill_tree(req.marker)
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(asyncio.shield(done), 5)
            return None, True
        except asyncio.CancelledError:
            await asyncio.shield(self._kill_tree(req.marker))
            raise
        except ConnectionError as exc:
            raise SandboxError(
                f"{self.name}: the exec helper died while running {req.cmd[:3]}: {exc}"
            ) from exc

    async def open_process(
        self,
        argv: Sequence[str],
        on_output: Callable[[bytes], None],
        *,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ChannelProcess | None:
        """Start `argv` with its stdin kept open (`ChannelProcess.send`), its stdout handed to
        `on_output` as it comes; through the exec helper only (None where there is none, or it
        cannot run commands as `user`: the caller keeps to `exec`)."""
        channel = self._channel_for(user)
        if channel is None:
            return None
        marker = uuid.uuid4().hex
        err = _OutputBuffer(64 * 1024)
        try:
            rid, done = await channel.open(
                list(argv),
                env={EXEC_MARKER: marker, **(env or {})},
                user=user or self._default_user,
                out=_Feed(on_output),
                err=err,
            )
        except ConnectionError:
            return None
        return ChannelProcess(self, channel, rid, done, marker, err)

    async def record_pipe(self, rec: PaneRecording, user: str | None = None) -> bool:
        """Have the exec helper make the named pipe `rec.fifo` (writable by `user`) and record
        what is written to it: raw to `rec.pane`, asciinema v2 to `rec.cast` (`PaneRecording`).
        The pipe exists before any command started after this call runs, as long as the command
        goes through the helper too; False (nothing asked) where there is no helper, or commands
        as `user` go through `docker exec`."""
        channel = self._channel_for(user)
        if channel is None:
            return False
        try:
            await channel.record(rec, user or self._default_user)
        except ConnectionError:
            return False
        return True

    def _channel_for(self, user: str | None) -> ExecChannel | None:
        """The exec helper, if it runs and can run commands as `user` (or the default user);
        else None (commands go through `docker exec`)."""
        channel = self._channel if self._channel is not None and self._channel.alive else None
        if channel is None or ((user or self._default_user) and not self._channel_can_switch_user):
            return None
        return channel

    def _start_channel_soon(self) -> None:
        # From the second exec on: a container used for one command never pays for the helper.
        self._docker_execs += 1
        if (
            self._docker_execs >= 2
            and self._channel_task is None
            and not self._stopped
            and self._channel_mode
        ):
            self._channel_task = asyncio.ensure_future(self._start_channel())

    async def _start_channel(self) -> None:
        try:
            ex = await self.container.exec(
                ["python3", "-I", "-c", HELPER], stdin=True, user="root"
            )
            self._channel_exec = ex
            stream = ex.attach()
            await stream.__aenter__()
            channel = ExecChannel(stream)
            if await asyncio.wait_for(asyncio.shield(channel.ready), 15):
                self._channel = channel
            else:
                await channel.close()
        except Exception as exc:  # no python3, no room: the classic path keeps working
            log.debug("%s: no exec helper: %r", self.name, exc)

    async def _attach_main_channel(self, start: Callable[[], Awaitable[Any]]) -> None:
        """Attach to the stdin/stdout of the created container (its command is the exec helper,
        execd.MAIN_CMD), send the helper's code, call `start` (the container's start), then wait
        for the helper's hello; without one, commands use `docker exec`."""
        self._keepalive_cmd = MAIN_CMD

        stream = self.container.attach()  # no tty: the engine frames stdout and stderr
        try:
            await stream.__aenter__()
            await stream.write_in(HELPER_BYTES)  # the code python3 reads first
        except Exception as exc:
            log.debug("%s: cannot attach to the exec helper: %r", self.name, exc)
            with contextlib.suppress(Exception):
                await stream.close()
            await start()
            return
        channel = ExecChannel(stream)
        try:
            await start()
            if await asyncio.wait_for(asyncio.shield(channel.ready), 15):
                self._channel = channel
                return
        except TimeoutError:
            pass
        except BaseException:
            await asyncio.shield(channel.close())
            raise
        await channel.close()

    async def _kill_tree(self, marker: str) -> None:
        """Kill every process started by one exec: those carrying its marker in their environment.

        Where the engine runs on this host and we may signal its processes, this is done from
        outside (no process needs to start inside the container, which a fork bomb may have
        filled up to its pids limit); otherwise a small sh script does it from inside.
        """
        if await self._engine_is_local():
            await asyncio.to_thread(kill_marked_on_host, marker)
            return
        if self._channel is not None and self._channel.alive:
            try:
                await self._channel.kill(marker)
                return
            except Exception:
                pass
        try:
            ex = await self.container.exec(
                ["sh", "-c", _KILL_TREE, "ttgen-kill", marker], user="root"
            )
            await ex.start_detached()
            for _ in range(100):
                info = await ex.inspect()
                if not info.get("Running"):
                    break
                await asyncio.sleep(0.05)
        except DockerError as exc:
            log.warning("%s: could not kill exec %s: %s", self.name, marker, exc)

    async def _engine_is_local(self) -> bool:
        """Whether this container's processes are visible (and ours to signal) in our /proc."""
        if self._local is None:
            self._local = False
            try:
                pid = (await self.container.show())["State"].get("Pid") or 0
                self._init_pid = int(pid)
                with open(f"/proc/{pid}/cgroup") as f:
                    self._local = (
                        bool(pid)
                        and self.id in f.read()
                        and os.access(f"/proc/{pid}/environ", os.R_OK)
                    )
            except (OSError, KeyError, DockerError):
                self._local = False
        return self._local

    # -- files ----------------------------------------------------------------------------

    async def _put_files(self, dest_dir: str, files: Mapping[str, tuple[bytes, int]]) -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for rel, (data, mode) in files.items():
                info = tarfile.TarInfo(rel)
                info.size = len(data)
                info.mode = mode
                info.mtime = int(time.time())
                tar.addfile(info, io.BytesIO(data))
        await self._put_archive(dest_dir, buf.getvalue())

    def _channel_alive(self) -> bool:
        return self._channel is not None and self._channel.alive

    async def _put_archive(self, dest_dir: str, data: bytes) -> None:
        # With the exec helper up, a tar through its stdin costs a few ms; the archive API
        # costs a dockerd mount/chroot per call (100+ ms on a busy engine).
        if self._channel_alive() and len(data) <= FAST_COPY_MAX_BYTES:
            q = shlex.quote(self._abs(dest_dir))
            res = await self.exec(
                f"mkdir -p {q} && tar -xf - -C {q}", user="root", stdin=data, timeout=300
            )
            if res.ok:
                return
            log.debug("%s: tar upload failed (%s); using the archive API", self.name, res.stderr)
        try:
            await self.container.put_archive(dest_dir, data)
            return
        except DockerError as exc:
            if exc.status != 404:
                raise SandboxError(
                    f"{self.name}: upload to {dest_dir} failed: {exc.message}"
                ) from exc
        # The destination folder does not exist yet: create it, then retry once.
        res = await self.exec(["mkdir", "-p", dest_dir], user="root")
        if not res.ok:
            raise SandboxError(f"{self.name}: cannot create {dest_dir}: {res.stderr.strip()}")
        try:
            await self.container.put_archive(dest_dir, data)
        except DockerError as exc:
            raise SandboxError(f"{self.name}: upload to {dest_dir} failed: {exc.message}") from exc

    async def write_file(self, remote: str, content: bytes | str, mode: int = 0o644) -> None:
        data = content.encode("utf-8") if isinstance(content, str) else content
        p = PurePosixPath(self._abs(remote))
        await self._put_files(str(p.parent), {p.name: (data, mode)})

    async def upload_file(self, local: str | os.PathLike[str], remote: str) -> None:
        src = Path(local)
        st = src.stat()
        await self.write_file(remote, src.read_bytes(), st.st_mode & 0o7777)

    async def upload_dir(self, local: str | os.PathLike[str], remote: str) -> None:
        """Copy the contents of folder `local` into folder `remote` (created if needed)."""
        src = Path(local)
        if not src.is_dir():
            raise SandboxError(f"upload_dir: {src} is not a directory")
        dest = PurePosixPath(self._abs(remote))

        def pack() -> bytes:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:

                def owner(info: tarfile.TarInfo) -> tarfile.TarInfo:
                    info.uid = info.gid = 0
                    info.uname = info.gname = "root"
                    return info

                tar.add(src, arcname=dest.name or ".", filter=owner)
            return buf.getvalue()

        await self._put_archive(str(dest.parent), await asyncio.to_thread(pack))

    async def _get_archive(self, remote: str, max_bytes: int | None = None) -> tarfile.TarFile:
        """Fetch `remote` as a tar archive, streamed to a spooled file (memory stays small).

        Raises `TooLargeError` once the archive passes `max_bytes`.
        """
        buf = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 - returned open, inside the tar
        try:
            response = await self.container.get_archive(self._abs(remote))
            try:
                total = 0
                async for chunk in response.chunks(256 * 1024):
                    total += len(chunk)
                    if max_bytes is not None and total > max_bytes:
                        raise TooLargeError(
                            f"{self.name}:{remote} is larger than {max_bytes} bytes; not copied"
                        )
                    buf.write(chunk)
            finally:
                response.release()
        except DockerError as exc:
            buf.close()
            if exc.status == 404:
                raise FileNotFoundError(
                    f"{self.name}:{remote}: no such file or directory"
                ) from None
            raise SandboxError(f"{self.name}: download of {remote} failed: {exc.message}") from exc
        except BaseException:
            buf.close()
            raise
        buf.seek(0)
        try:
            return tarfile.open(fileobj=buf, mode="r")
        except tarfile.TarError as exc:
            buf.close()
            raise SandboxError(f"{self.name}: download of {remote} failed: {exc}") from exc

    async def _channel_op(
        self, name: str, args: dict[str, Any], timeout: float
    ) -> tuple[int, bytes, str] | None:
        """One of the exec helper's own file operations (execd `OPS`), as root: (exit status,
        output, error text); None where there is no helper that runs root's commands, or it
        did not answer in time (the caller then takes the classic path)."""
        channel = self._channel_for("root")
        if channel is None:
            return None
        out, err = bytearray(), _OutputBuffer(64 * 1024)
        try:
            done = await channel.op(name, args, out=_Feed(out.extend), err=err)
            code = await asyncio.wait_for(asyncio.shield(done), timeout)
        except (ConnectionError, TimeoutError) as exc:
            log.debug("%s: exec helper %s of %s: %r", self.name, name, args.get("path"), exc)
            return None
        return code, bytes(out), err.text()

    async def _tar_through_channel(
        self, remote: str, max_bytes: int | None
    ) -> tarfile.TarFile | None:
        """`remote` as a tar made by the exec helper itself (no process in the container);
        None: use the API (no helper, an error on the way, or more than the fast path takes)."""
        limit = FAST_COPY_MAX_BYTES if max_bytes is None else min(max_bytes, FAST_COPY_MAX_BYTES)
        res = await self._channel_op("tar", {"path": self._abs(remote), "max": limit}, 300)
        if res is None:
            return None
        code, data, err = res
        if code == 3:
            raise FileNotFoundError(f"{self.name}:{remote}: no such file or directory")
        if code != 0:
            log.debug("%s: exec helper tar of %s: exit %s %s", self.name, remote, code, err)
            return None  # past the limit (4) or a file that changed on the way: the API decides
        try:
            return tarfile.open(fileobj=io.BytesIO(data), mode="r")
        except tarfile.TarError:
            return None

    async def tree_digest(self, remote: str) -> str:
        res = await self._channel_op("digest", {"path": self._abs(remote)}, 60)
        if res is not None and res[0] in (0, 3):  # 3: no such folder, an empty listing
            return res[1].decode("utf-8", "surrogateescape")
        run = await self.exec(
            f"cd {shlex.quote(self._abs(remote))} && {TREE_DIGEST_CMD}", user="root", timeout=60
        )
        return run.stdout

    async def read_file(self, remote: str, max_bytes: int | None = None) -> bytes:
        tar = await self._get_archive(remote, max_bytes)
        with tar:
            for member in tar.getmembers():
                if member.isfile():
                    f = tar.extractfile(member)
                    assert f is not None
                    return f.read()
        raise IsADirectoryError(f"{self.name}:{remote} is not a regular file")

    async def download_file(self, remote: str, local: str | os.PathLike[str]) -> Path:
        data = await self.read_file(remote)
        dest = Path(local)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        return dest

    async def download_dir(
        self, remote: str, local: str | os.PathLike[str], max_bytes: int | None = None
    ) -> Path:
        """Copy the contents of folder `remote` into folder `local`.

        Entries that would land outside `local` (absolute or escaping links) are skipped; more
        than `max_bytes` in all raises `TooLargeError` and copies nothing.
        """
        tar = await self._tar_through_channel(remote, max_bytes)
        if tar is None:
            tar = await self._get_archive(remote, max_bytes)
        dest = Path(local)
        dest.mkdir(parents=True, exist_ok=True)

        def extract() -> None:
            with tar:
                for member in tar.getmembers():
                    parts = member.name.split("/", 1)
                    if len(parts) < 2 or not parts[1]:
                        continue  # the folder itself
                    member.name = parts[1]
                    try:
                        tar.extract(member, dest, filter="data")
                    except (tarfile.FilterError, OSError) as exc:
                        log.warning(
                            "%s: skipped %s while downloading %s: %s",
                            self.name,
                            member.name,
                            remote,
                            exc,
                        )

        await asyncio.to_thread(extract)
        return dest

    async def state(self) -> dict[str, Any]:
        """The container's State from the engine (Running, ExitCode, OOMKilled, ...)."""
        try:
            info = await self.container.show()
        except DockerError as exc:
            if exc.status == 404:
                return {"Running": False, "Status": "removed"}
            raise SandboxError(f"cannot inspect container {self.name}: {exc.message}") from exc
        return info.get("State") or {}

    def oom_kills(self) -> int | None:
        """How many processes the kernel's OOM killer killed in this container (local engines
        with a readable cgroup only; None when unknown)."""
        key = "oom_kill "
        for path in self._oom_files():
            try:
                for line in path.read_text().splitlines():
                    if line.startswith(key):
                        return int(line[len(key) :].strip())
            except (OSError, ValueError):
                continue
        return None

    def _oom_files(self) -> list[Path]:
        """Where the engine puts this container's memory cgroup (v1 memory.oom_control, v2
        memory.events), for each cgroup driver."""
        return [
            Path(f"/sys/fs/cgroup/memory/docker/{self.id}/memory.oom_control"),
            Path(f"/sys/fs/cgroup/system.slice/docker-{self.id}.scope/memory.events"),
            Path(f"/sys/fs/cgroup/docker/{self.id}/memory.events"),
        ]

    def _abs(self, path: str) -> str:
        if path.startswith("/"):
            return path
        return str(PurePosixPath(self.workdir or "/") / path)

    # -- lifecycle ------------------------------------------------------------------------

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._channel_task is not None:
            self._channel_task.cancel()
        try:
            async with self.backend.remove_slots:  # admission control (see DockerBackend)
                await self.backend.bounded(
                    f"removing container {self.name}", asyncio.shield(force_remove(self.container))
                )
        except DockerError as exc:
            raise SandboxError(f"cannot remove container {self.name}: {exc.message}") from exc
        finally:
            if self._channel is not None:
                await self._channel.close()
            if self._owned_image is not None:
                with contextlib.suppress(DockerError):
                    await asyncio.shield(self.backend.docker.images.delete(self._owned_image))

    async def trusted_exec_channel(self) -> None:
        """Make sure no process the agent ran could have tampered with the exec helper: keep it
        when it sealed itself (not dumpable: no ptrace into it without CAP_SYS_PTRACE), else
        replace it by a fresh process; without python3 commands use `docker exec`."""
        if self._channel is not None and self._channel.alive and self._channel.sealed:
            return
        if self._channel_task is not None:
            self._channel_task.cancel()
            with contextlib.suppress(BaseException):
                await self._channel_task
            self._channel_task = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        self._channel_exec = None
        if self._channel_mode:
            await self._start_channel()

    async def foreign_processes(self) -> list[str] | None:
        """The processes running in the container besides ttgen's own (its init, the keep-alive
        command, the exec helper): what an agent left running, as "pid command" lines. None when
        they cannot be listed from here (a remote engine): assume there are some."""
        if not await self._engine_is_local():
            return None
        ours = await self._our_pids()
        return await asyncio.to_thread(foreign_pids, self._init_pid, ours, self._keepalive_cmd)

    async def _our_pids(self) -> set[int]:
        """Host pids of ttgen's own processes in the container: its init (fixed for its life)
        and the exec helper."""
        ours = {self._init_pid}
        if self._channel_exec is not None:
            with contextlib.suppress(DockerError, KeyError, TypeError, ValueError):
                ours.add(int((await self._channel_exec.inspect())["Pid"]))
        return ours

    async def freeze_idle_terminal(self, harness: Sequence[str] = ()) -> list[str] | None:
        if not await self._engine_is_local():
            return None
        ours = await self._our_pids()
        frozen = await asyncio.to_thread(
            freeze_idle_terminal, self._init_pid, ours, self._keepalive_cmd, tuple(harness)
        )
        return None if frozen is None else process_lines(frozen)

    async def changes(self) -> list[dict[str, Any]]:
        """What differs between the container's files and its image (`docker diff`): a list of
        {"Path": ..., "Kind": 0 modified | 1 added | 2 deleted}.

        The engine's own endpoint costs ~0.5 s of its CPU per call (it compares the whole file
        tree); on a local overlay2 engine the container's upper layer is read directly instead
        (milliseconds: only what the container wrote)."""
        try:
            info = await self.container.show()
            gd = info.get("GraphDriver") or {}
            data = gd.get("Data") or {}
            upper = data.get("UpperDir")
            if (
                gd.get("Name") in self.OVERLAY_DRIVERS
                and upper
                and os.access(upper, os.R_OK | os.X_OK)
            ):
                lowers = [d for d in str(data.get("LowerDir") or "").split(":") if d]
                return await asyncio.to_thread(overlay_changes, upper, lowers)
        except (OSError, DockerError):
            pass
        try:
            return await self.container.changes()
        except DockerError as exc:
            raise SandboxError(f"{self.name}: cannot list its changes: {exc.message}") from exc

