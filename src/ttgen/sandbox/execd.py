"""A persistent exec channel into a container: one long-lived helper instead of one `docker exec`
per command.

Every `docker exec` pays for runc setting up a process inside the container's namespaces
(~25-35 ms here); a helper already inside only forks (~1-2 ms). The helper is a small Python
program (`HELPER`, run with the container's python3, if it has one) attached to an exec's stdin
and stdout, or to the container's own when it is the container's command (`MAIN_CMD`: no exec
at all). The host sends one JSON request per line; the helper answers with binary frames::

    >IBI  request id, kind, payload length; payload
    kinds: 1 stdout, 2 stderr, 3 exit status, 4 hello, 5 cannot switch to the requested user,
           6 no helper here (sent by `MAIN_CMD`'s shell where the image has no python3)

A request with ``"keep": 1`` leaves the command's stdin open; ``{"input": id, "data": ...}``
requests then write to it, in the order sent, each after writing the file it names (``"file":
[path, content]``, an error there is ignored), and ``"close": 1`` closes it (a tmux control-mode
client is driven this way: `DockerSandbox.open_process`). A ``{"record": ...}`` request makes a
named pipe and records what a terminal's logger writes to it in a thread (`CAST_COPY`:
`DockerSandbox.record_pipe`), so a terminal recording needs no interpreter of its own. An
``{"id": n, "op": name, ...}`` request runs one of the helper's own file operations (`OPS`: a tar
of a folder, a sha256 listing of a folder's files) in a thread, answered like a command: the
verifier's copies and listings after every trial start no process in the container.

It runs each command in its own session, with the container's environment plus the request's,
as the requested user, in the requested directory; it streams output as it comes and reports the
exit status when the command has exited and its output streams are closed (what `docker exec`
does). A kill request SIGKILLs every process carrying the request's marker variable by reading
/proc, which needs no new process even when the container's pids limit is exhausted.

Images without python3 keep using `docker exec`; so does a sandbox whose helper died (an agent may
kill it; an exec in flight when that happens fails as an infrastructure error), and so do
commands for another user where the helper may not switch users (Docker gives an exec as root in a
container whose user is not root no capabilities).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)

FRAME = struct.Struct(">IBI")
STDOUT, STDERR, EXIT, HELLO, NO_USER, NO_HELPER = 1, 2, 3, 4, 5, 6

# A terminal recorder (Python >= 3.6, standard library only): copies what it reads from file
# descriptor `fd` to the raw log `pane` (as `cat` would; none when empty or it cannot be opened)
# and writes an asciinema v2 recording of the same bytes with their times to `cast` (header,
# then one `[seconds, "o", text]` line per chunk). Each file stops growing at `cap` bytes. Not
# even `json` (importing it, and `re` with it, doubles a bare interpreter's start: ~6 ms of CPU
# per trial): JSON strings are escaped by a table (control characters, quote, backslash; other
# text is written as UTF-8). The helper below runs it in a thread (`record` requests); Terminus
# 2 also runs it as its own process where there is no helper (ttgen.agents.terminus2.tmux). So
# that tmux can pass it on a command line: no "python" or "ttgen" in its text, no escaped
# backslash (tmux would unescape it) and no "%" (tmux passes the command through strftime).
CAST_COPY = r"""
def cast_copy(fd, pane, cast, width, height, cap):
    import os, time
    from codecs import getincrementaldecoder
    b = chr(92)
    esc = {i: b + "u" + format(i, "04x") for i in range(32)}
    esc.update({8: b + "b", 9: b + "t", 10: b + "n", 12: b + "f", 13: b + "r", 34: b + '"', 92: b + b})
    t0 = int(time.time())
    raw = None
    if pane:
        try:
            raw = open(pane, "ab", buffering=0)
        except OSError:
            pass
    rec = open(cast, "w", encoding="utf-8")
    rec.write('{"version": 2, "width": ' + str(width) + ', "height": ' + str(height) + ', "timestamp": '
              + str(t0) + ', "env": {"SHELL": "/bin/bash", "TERM": "xterm-256color"}}' + chr(10))
    rec.flush()
    dec = getincrementaldecoder("utf-8")("replace")
    n_raw = n_rec = 0
    while True:
        try:
            data = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not data:
            break
        if raw is not None and n_raw < cap:
            raw.write(data[:cap - n_raw])
            n_raw += len(data)
        if n_rec < cap:
            text = dec.decode(data)
            if text:
                line = "[" + repr(round(time.time() - t0, 6)) + ', "o", "' + text.translate(esc) + '"]' + chr(10)
                rec.write(line)
                rec.flush()
                n_rec += len(line)
    rec.close()
    if raw is not None:
        raw.close()
"""

# Runs inside the container (Python >= 3.6, standard library only). Kept free of the words
# "python" and "ttgen" so that `pkill -f python` in a task does not hit it by accident.
HELPER = r"""
import json, os, pwd, grp, queue, select, signal, struct, subprocess, sys, threading, time
""" + CAST_COPY + r"""
FR = struct.Struct(">IBI")
out = sys.stdout.buffer
def send(rid, kind, data=b""):
    out.write(FR.pack(rid, kind, len(data)) + data)
def resolve(user):
    name, _, group = user.partition(":")
    try:
        pw = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        uid, gid, home, uname = pw.pw_uid, pw.pw_gid, pw.pw_dir, pw.pw_name
    except KeyError:
        if not name.isdigit():
            raise
        uid, gid, home, uname = int(name), int(name), "/", None
    if group:
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    groups = os.getgrouplist(uname, gid) if uname else [gid]
    return uid, gid, groups, home
def marked(marker):
    needle = ("TTGEN_EXEC_ID=" + marker).encode()
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/environ" % pid, "rb") as f:
                    if needle in f.read().split(b"\0"):
                        found.append(int(pid))
            except OSError:
                pass
    return found
def kill(marker):
    for _ in range(50):
        pids = marked(marker)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
def record(req):
    # A named pipe for a terminal's logger to write to (`cat > fifo`, started by tmux), its bytes
    # recorded by a thread of this process (`cast_copy`): no interpreter of its own per terminal.
    # The pipe is made before the next request runs, and unlinked once both ends are open.
    fifo = req["fifo"]
    os.mkfifo(fifo, 0o600)
    if req.get("user"):
        uid, gid, _, _ = resolve(req["user"])
        os.chown(fifo, uid, gid)
    def run():
        try:
            fd = os.open(fifo, os.O_RDONLY)
        except OSError:
            return
        try:
            os.unlink(fifo)
        except OSError:
            pass
        try:
            cast_copy(fd, req.get("pane") or "", req["cast"], req["width"], req["height"], req["cap"])
        except Exception:
            pass
        os.close(fd)
    threading.Thread(target=run, daemon=True).start()
# File work a verifier does after every trial, done by this process instead of a command per
# step (each exec of a program costs the container ~4-5 ms of CPU here): an "op" request runs
# in a thread and answers like a command (output frames, then an exit status). Frames are whole
# single writes to `out` (a BufferedWriter, which has a lock of its own), so they never mix.
class Big(Exception):
    pass
class Frames(object):
    # A file object that sends what is written as stdout frames of request `rid`, at most `cap`
    # bytes in all (Big past that).
    def __init__(self, rid, cap):
        self.rid, self.cap, self.n = rid, cap, 0
    def write(self, b):
        self.n += len(b)
        if self.n > self.cap:
            raise Big()
        send(self.rid, 1, bytes(b))
        return len(b)
def op_tar(rid, req):
    # What `cd PATH && tar -cf - .` writes: the folder's contents (symbolic links as links),
    # names starting with "./"; 3 when PATH is not a folder, 4 past `max` bytes.
    import tarfile
    path = req["path"]
    if not os.path.isdir(path):
        return 3
    w = Frames(rid, req["max"])
    try:
        with tarfile.open(fileobj=w, mode="w|") as tar:
            tar.add(os.path.realpath(path), arcname=".")
    except Big:
        return 4
    return 0
def op_digest(rid, req):
    # What `cd PATH && find . -type f ! -path '*/__pycache__/*' ! -path '*/.pytest_cache/*'
    # -exec sha256sum {} + | sort -k 2` prints (C locale), names escaped as sha256sum does; 3
    # when PATH is not a folder.
    try:
        from _sha256 import sha256
    except ImportError:
        try:
            from _sha2 import sha256
        except ImportError:
            from hashlib import sha256
    import stat
    root = req["path"]
    if not os.path.isdir(root):
        return 3
    rows = []
    base = os.fsencode(root).rstrip(b"/") or b"/"
    for top, dirs, files in os.walk(base):
        rel = b"." if top == base else b"./" + os.path.relpath(top, base)
        for name in files:  # links to files are here too (not -type f: lstat below)
            full = os.path.join(top, name)
            path = rel + b"/" + name
            if b"/__pycache__/" in path or b"/.pytest_cache/" in path:
                continue
            try:
                if not stat.S_ISREG(os.lstat(full).st_mode):
                    continue
                h = sha256()
                with open(full, "rb") as f:
                    for block in iter(lambda: f.read(1 << 16), b""):
                        h.update(block)
            except OSError as e:
                send(rid, 2, ("%s: %s\n" % (os.fsdecode(path), e.strerror)).encode())
                continue
            esc = b"\\" in path or b"\n" in path
            if esc:
                path = path.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
            rows.append((path, (b"\\" if esc else b"") + h.hexdigest().encode() + b"  " + path + b"\n"))
    rows.sort()
    send(rid, 1, b"".join(r[1] for r in rows))
    return 0
OPS = {"tar": op_tar, "digest": op_digest}
def start_op(req):
    rid = req["id"]
    def run():
        try:
            code = OPS[req["op"]](rid, req)
        except Exception as e:
            send(rid, 2, ("%s: %r\n" % (req["op"], e)).encode())
            code = 1
        send(rid, 3, struct.pack(">i", code))
        out.flush()
    threading.Thread(target=run, daemon=True).start()
base_env = dict(os.environ)
jobs = {}
inputs = {}
def start(req):
    rid = req["id"]
    env = dict(base_env)
    kw = {}
    if req.get("user"):
        uid, gid, groups, home = resolve(req["user"])
        env["HOME"] = home
        kw = dict(user=uid, group=gid, extra_groups=groups) if sys.version_info >= (3, 9) else {}
        if not kw:
            def demote():
                os.setgroups(groups); os.setgid(gid); os.setuid(uid)
            kw = dict(preexec_fn=demote)
    env.update(req.get("env") or {})
    data = req.get("stdin")
    keep = bool(req.get("keep"))
    p = subprocess.Popen(req["argv"], cwd=req.get("cwd") or None, env=env, start_new_session=True,
                         stdin=subprocess.PIPE if data is not None or keep else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if keep:
        # Its stdin stays open for "input" requests, written in order by one thread (a full
        # pipe must not stop this loop), each after the file it names, if any, is written.
        q = queue.Queue()
        def writer():
            while True:
                item = q.get()
                if item is None:
                    break
                path, content, chunk = item
                if path:
                    try:
                        with open(path, "wb") as f:
                            f.write(content)
                    except OSError:
                        pass
                try:
                    p.stdin.write(chunk); p.stdin.flush()
                except (OSError, ValueError):
                    break
            try:
                p.stdin.close()
            except OSError:
                pass
        threading.Thread(target=writer, daemon=True).start()
        inputs[rid] = q
    elif data is not None:
        def feed():
            try:
                p.stdin.write(data.encode("latin-1")); p.stdin.close()
            except OSError:
                pass
        threading.Thread(target=feed, daemon=True).start()
    for f in (p.stdout, p.stderr):
        os.set_blocking(f.fileno(), False)
    jobs[rid] = [p, {p.stdout.fileno(): (p.stdout, 1), p.stderr.fileno(): (p.stderr, 2)}]
def pump(rid, p, pipes, fd):
    # What there is now (a bounded share, so a nonstop writer cannot hold up the others), and
    # the end if it came.
    pipe, kind = pipes[fd]
    for _ in range(8):
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            del pipes[fd]
            pipe.close()
            if not pipes and p.poll() is None:
                # It closed its output: it is most likely exiting right now.
                try:
                    p.wait(0.002)
                except subprocess.TimeoutExpired:
                    pass
            return
        send(rid, kind, chunk)
def main():
    inp = sys.stdin.buffer.raw if hasattr(sys.stdin.buffer, "raw") else sys.stdin.buffer
    buf = b""
    # A child's exit wakes the select below (its pipes may close just before it is reapable).
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *a: None)
    # Not dumpable: no process without CAP_SYS_PTRACE (an agent's, even as root) can attach to
    # this one or write its memory, so a verifier may trust it after the agent's processes end.
    sealed = False
    try:
        import ctypes
        sealed = ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) == 0
    except Exception:
        pass
    send(0, 4, (str(os.getpid()) + (" sealed" if sealed else "")).encode())
    while True:
        # What one pass has to say leaves in one write: a command's last output and its exit
        # status usually travel together (one wake-up of each relay on the way, not two).
        out.flush()
        fds = [inp.fileno(), wake_r] + [fd for j in jobs.values() for fd in j[1]]
        try:
            ready, _, _ = select.select(fds, [], [], 0.05 if any(not j[1] for j in jobs.values()) else None)
        except InterruptedError:
            ready = []
        for fd in ready:
            if fd == wake_r:
                os.read(wake_r, 4096)
                continue
            if fd == inp.fileno():
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    req = json.loads(line)
                    if "kill" in req:
                        kill(req["kill"])
                        continue
                    if "record" in req:
                        try:
                            record(req["record"])
                        except Exception:
                            pass  # no pipe: the logger's shell sees none and records otherwise
                        continue
                    if "op" in req:
                        start_op(req)
                        continue
                    if "input" in req:
                        q = inputs.get(req["input"])
                        if q is not None:
                            f = req.get("file") or ["", ""]
                            q.put((f[0], f[1].encode("latin-1"), req.get("data", "").encode("latin-1")))
                            if req.get("close"):
                                q.put(None)
                                del inputs[req["input"]]
                        continue
                    try:
                        start(req)
                    except PermissionError as e:
                        if e.errno == 1 and req.get("user"):
                            send(req["id"], 5)  # cannot switch user here: nothing ran
                        else:
                            send(req["id"], 2, ("%s: %s\n" % (req["argv"][0], e.strerror or e)).encode())
                            send(req["id"], 3, struct.pack(">i", 126))
                    except OSError as e:
                        send(req["id"], 2, ("%s: %s\n" % (req["argv"][0], e.strerror or e)).encode())
                        send(req["id"], 3, struct.pack(">i", 127 if e.errno == 2 else 126))
                    except Exception as e:
                        send(req["id"], 2, ("exec failed: %r\n" % (e,)).encode())
                        send(req["id"], 3, struct.pack(">i", 126))
                continue
            for rid, (p, pipes) in list(jobs.items()):
                if fd in pipes:
                    pump(rid, p, pipes, fd)
        for rid, (p, pipes) in list(jobs.items()):
            if not pipes and p.poll() is not None:
                code = p.returncode if p.returncode >= 0 else 128 - p.returncode
                send(rid, 3, struct.pack(">i", code))
                del jobs[rid]
                q = inputs.pop(rid, None)
                if q is not None:
                    q.put(None)
main()
"""


# The command of a container whose helper is its own main process (attached to the container's
# stdin and stdout, so it needs no `docker exec`): the shell starts python3 on the container's
# stdin (kept as fd 3 first: sh gives a background command /dev/null) and waits for it. The
# helper's code comes first on that stdin (`MAIN_BOOT` bytes, sent by the host as it attaches),
# so no process but the helper carries the code in its command line. Should the helper exit (an
# agent's `pkill python3`, a python3 too old), the shell says so on stderr (`HELPER_EXITED`: the
# container's stdout stays open in its init, so the stream does not end) and becomes the
# keep-alive; commands then go through `docker exec`. Without python3 the shell sends one
# NO_HELPER frame. -I keeps PYTHONPATH and the working directory (files an agent may write) out
# of the helper's imports.
HELPER_BYTES = HELPER.encode()
HELPER_EXITED = b"ttgen: the exec helper exited"
MAIN_SCRIPT = (
    "if command -v python3 >/dev/null 2>&1; then exec 3<&0; "
    f'python3 -I -c "import sys; exec(sys.stdin.buffer.read({len(HELPER_BYTES)}))" <&3 3<&- & '
    f"exec 3<&-; wait $!; echo '{HELPER_EXITED.decode()}' >&2; "
    "else printf '\\000\\000\\000\\000\\006\\000\\000\\000\\000'; fi; "
    "exec sleep infinity </dev/null >/dev/null 2>&1"
)
MAIN_CMD = ["sh", "-c", MAIN_SCRIPT]


@dataclass(frozen=True)
class PaneRecording:
    """What the helper records from a named pipe (`CAST_COPY`): the raw bytes appended to
    `pane` (none when empty), an asciinema v2 recording of `width` x `height` to `cast`, each
    file up to `cap` bytes."""

    fifo: str
    pane: str | None
    cast: str
    width: int
    height: int
    cap: int


class UserSwitchError(Exception):
    """The helper cannot run a command as the requested user (nothing was started)."""


@dataclass
class _Pending:
    out: Any
    err: Any
    done: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class ExecChannel:
    """The host side of one container's helper: sends requests, routes frames to callers."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._pending: dict[int, _Pending] = {}
        self._next = 1
        self._buf = bytearray()
        self.alive = True
        self.sealed = False  # the helper made itself non-dumpable (no ptrace attach into it)
        self.pid = 0  # the helper's pid in the container (from its hello)
        self.ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            while True:
                msg = await self._stream.read_out()
                if msg is None:
                    break
                if msg.stream != 1:
                    log.debug("exec helper: %s", msg.data.decode(errors="replace").rstrip())
                    if HELPER_EXITED in msg.data:
                        break
                    continue
                self._buf += msg.data
                while len(self._buf) >= FRAME.size:
                    rid, kind, size = FRAME.unpack_from(self._buf)
                    if len(self._buf) < FRAME.size + size:
                        break
                    payload = bytes(self._buf[FRAME.size : FRAME.size + size])
                    del self._buf[: FRAME.size + size]
                    self._dispatch(rid, kind, payload)
        except Exception as exc:  # the stream broke: every caller learns it below
            log.debug("exec helper stream ended: %r", exc)
        finally:
            self.alive = False
            if not self.ready.done():
                self.ready.set_result(False)
            for pending in self._pending.values():
                if not pending.done.done():
                    pending.done.set_exception(
                        ConnectionError("the exec helper in the container exited")
                    )
            self._pending.clear()
            await self._stream.close()

    def _dispatch(self, rid: int, kind: int, payload: bytes) -> None:
        if kind == HELLO:
            self.sealed = payload.endswith(b" sealed")
            with contextlib.suppress(ValueError, IndexError):
                self.pid = int(payload.split()[0])
            if not self.ready.done():
                self.ready.set_result(True)
            return
        if kind == NO_HELPER:
            if not self.ready.done():
                self.ready.set_result(False)
            return
        pending = self._pending.get(rid)
        if pending is None:
            return
        if kind == STDOUT:
            pending.out.feed(payload)
        elif kind == STDERR:
            pending.err.feed(payload)
        elif kind == NO_USER:
            # Where the container's user is not root, Docker gives execs as root no
            # capabilities, so the helper cannot change user; nothing was started.
            self._pending.pop(rid, None)
            if not pending.done.done():
                pending.done.set_exception(UserSwitchError())
        elif kind == EXIT:
            self._pending.pop(rid, None)
            if not pending.done.done():
                pending.done.set_result(struct.unpack(">i", payload)[0])

    async def _send(self, obj: dict[str, Any]) -> None:
        await self._stream.write_in(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    async def run(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: str | None,
        user: str | None,
        stdin: bytes | None,
        out: Any,
        err: Any,
    ) -> asyncio.Future[int]:
        """Start a command; returns a future of its exit status (output goes to out/err)."""
        req: dict[str, Any] = {"argv": argv, "env": env, "cwd": cwd, "user": user}
        if stdin is not None:
            req["stdin"] = stdin.decode("latin-1")
        return (await self._request(req, out, err))[1]

    async def _request(
        self, req: dict[str, Any], out: Any, err: Any
    ) -> tuple[int, asyncio.Future[int]]:
        """Send `req` under a new request id whose frames go to out/err: (the id, a future of
        its exit status). ConnectionError when the helper cannot be reached (nothing sent)."""
        rid = self._next
        self._next += 1
        pending = _Pending(out, err)
        self._pending[rid] = pending
        try:
            await self._send({"id": rid, **req})
        except Exception as exc:
            self._pending.pop(rid, None)
            raise ConnectionError(f"cannot reach the exec helper: {exc}") from exc
        return rid, pending.done

    async def open(
        self, argv: list[str], *, env: dict[str, str], user: str | None, out: Any, err: Any
    ) -> tuple[int, asyncio.Future[int]]:
        """Start a command whose stdin stays open for `send_input`; returns its request id and
        a future of its exit status (output goes to out/err as it comes)."""
        req = {"argv": argv, "env": env, "cwd": None, "user": user, "keep": 1}
        return await self._request(req, out, err)

    async def send_input(
        self, rid: int, data: bytes, *, file: tuple[str, bytes] | None = None, close: bool = False
    ) -> None:
        """Write `data` to the stdin of the command `open` started, after writing `file`
        (path, content) in the container if given; requests are carried out in the order sent.
        `close` closes its stdin after the data."""
        req: dict[str, Any] = {"input": rid, "data": data.decode("latin-1")}
        if file is not None:
            req["file"] = [file[0], file[1].decode("latin-1")]
        if close:
            req["close"] = 1
        await self._send(req)

    async def record(self, rec: PaneRecording, user: str | None) -> None:
        """Make the named pipe `rec.fifo` (owned by `user`, if given) and record what is written
        to it, in a thread of the helper (`PaneRecording`). Done before any request sent after
        this one; nothing is answered (no pipe at `fifo` afterwards means it could not be
        made)."""
        try:
            await self._send({"record": {**asdict(rec), "user": user}})
        except Exception as exc:
            raise ConnectionError(f"cannot reach the exec helper: {exc}") from exc

    async def op(self, name: str, args: dict[str, Any], *, out: Any, err: Any) -> asyncio.Future[int]:
        """Start one of the helper's own file operations (`OPS` in `HELPER`: "tar" of a folder,
        "digest" of a folder's files), run in a thread of the helper as root; answered like a
        command: output to out/err, a future of its exit status."""
        return (await self._request({"op": name, **args}, out, err))[1]

    async def kill(self, marker: str) -> None:
        await self._send({"kill": marker})

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
