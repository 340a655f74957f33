"""A local engine's containers seen from the host: processes in /proc, cgroups, overlay layers.

Used by the container backends (Docker, Podman) when the engine runs on this machine: killing an
exec's processes from outside the container (a fork bomb may have used up its pids), listing
what an agent left running, reading a container's file changes from its overlay upper layer,
and telling whether the process that labelled a container is still alive.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ttgen.sandbox.base import LABEL_OWNER

EXEC_MARKER = "TTGEN_EXEC_ID"  # in the environment of everything one exec starts


def owner_alive(labels: Mapping[str, str], host: str) -> bool:
    """Whether the process that made a container or image may still use it (another machine's
    are never judged here)."""
    owner_host, _, pid = labels.get(LABEL_OWNER, "").rpartition(":")
    if owner_host == host and pid.isdigit() and pid_alive(int(pid)):
        return True
    return bool(owner_host and owner_host != host)


def _environ_has(pid: str | int, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return needle in f.read().split(b"\0")
    except OSError:
        return False


def kill_marked_on_host(marker: str) -> None:
    """Kill, from the host, every process carrying `marker`, until none is left."""
    needle = f"{EXEC_MARKER}={marker}".encode()
    for _ in range(50):
        found = False
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and _environ_has(entry.name, needle):
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                    found = True
                except (ProcessLookupError, PermissionError):
                    pass
        if not found:
            return


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (another user's counts too) and has not
    ended: a zombie (ended, its parent has not collected it yet; a Ray worker that died waits
    for its raylet) can no longer use anything it made."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    st = _proc_stat(pid)
    return st is None or st[0] not in ("Z", "X")


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a host process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                found.update(int(x) for x in f.read().split())
    except (OSError, ValueError):
        pass
    return found


def _foreign(init: int, ours: set[int], keepalive_cmd: Sequence[str]) -> list[int] | None:
    """Host pids in the cgroup of container process `init`, minus `ours` and the keep-alive
    command (the first child init started: nothing the agent runs can start before it; an
    orphan re-parented to init and named like it starts later), minus zombies."""
    try:
        with open(f"/proc/{init}/cgroup", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        _, ctrl, path = line.split(":", 2)
        if ctrl == "pids":
            candidates.insert(0, f"/sys/fs/cgroup/pids{path}/cgroup.procs")
        elif ctrl == "":
            candidates += [f"/sys/fs/cgroup/unified{path}/cgroup.procs",
                           f"/sys/fs/cgroup{path}/cgroup.procs"]  # fmt: skip
    pids: list[int] | None = None
    for c in candidates:
        try:
            with open(c, encoding="ascii") as f:
                pids = [int(x) for x in f.read().split()]
            break
        except (OSError, ValueError):
            continue
    if pids is None:
        return None
    try:
        children = []
        for task in os.listdir(f"/proc/{init}/task"):
            with open(f"/proc/{init}/task/{task}/children", encoding="ascii") as f:
                children += [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return None
    # sh may exec its command; MAIN_CMD's shell execs a sleep once the exec helper has exited
    keepalive = (" ".join(keepalive_cmd).strip(), keepalive_cmd[-1].strip(), "sleep infinity")
    started = sorted((st[1], pid) for pid in children if (st := _proc_stat(pid)) is not None)
    if started and _cmdline(started[0][1]) in keepalive:
        # It and its children: the sleep a `sh -c` may fork, or the exec helper when that is the
        # container's command (execd.MAIN_CMD). No agent process can be one of them (orphans go
        # to init); the helper's own children are commands it ran, counted like any other.
        keep = started[0][1]
        ours = {*ours, keep, *_children(keep)}
    out = []
    for pid in pids:
        if pid in ours:
            continue
        st = _proc_stat(pid)
        if st is None or st[0] in ("Z", "X"):
            continue  # gone, or a zombie: runs nothing
        out.append(pid)
    return out


def process_lines(pids: Sequence[int]) -> list[str]:
    """Processes as "pid command" lines (the command cut at 200 characters)."""
    return [f"{pid} {_cmdline(pid)[:200]}" for pid in pids]


def foreign_pids(init: int, ours: set[int], keepalive_cmd: Sequence[str]) -> list[str] | None:
    """What `_foreign` finds, as "pid command" lines."""
    pids = _foreign(init, ours, keepalive_cmd)
    return None if pids is None else process_lines(pids)


SHELLS = frozenset({"bash", "sh", "dash", "zsh", "ash", "ksh"})


def _ppid_comm(pid: int) -> tuple[int, str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        with open(f"/proc/{pid}/comm", "rb") as f:
            return ppid, f.read().decode(errors="replace").strip()
    except (OSError, IndexError, ValueError):
        return None


def idle_terminal(pids: Sequence[int], harness: Sequence[str]) -> list[int] | None:
    """When the processes `pids` (what runs in a container besides ttgen's own) are nothing
    but an idle terminal, its processes, multiplexer servers first; else None.

    Idle terminal: tmux servers (daemons: their parent is not among `pids`) whose children are
    shells with no child of their own (at the prompt: nothing started from them runs) or a
    harness helper with no child (its command line starts with one of `harness`, e.g. the
    pane's logger). Anything else (a service, a job left in the background, a command still in
    the foreground, a program in another tmux window) is the agent's work and may matter to the
    tests, so the answer is None."""
    info = {}
    for pid in pids:
        got = _ppid_comm(pid)
        if got is None:
            return None
        info[pid] = got
    parents = {pp for pp, _ in info.values()}
    servers = [p for p, (pp, comm) in info.items() if comm.startswith("tmux") and pp not in info]
    if not servers:
        return None
    rest = []
    for pid, (ppid, comm) in info.items():
        if pid in servers:
            continue
        if ppid not in servers or pid in parents:
            return None
        if comm not in SHELLS and not any(_cmdline(pid).startswith(h) for h in harness if h):
            return None
        rest.append(pid)
    return [*servers, *rest]


FREEZE_WAIT_SEC = 3.0  # for every stopped process to show state T


def freeze_idle_terminal(
    init: int, ours: set[int], keepalive_cmd: Sequence[str], harness: Sequence[str]
) -> list[int] | None:
    """Stop (SIGSTOP) an idle terminal (`idle_terminal`) that is all the container runs besides
    ttgen's own processes, and make sure it is then all there is, every process of it stopped:
    nothing in the container can run any more. The stopped pids; None (everything as it was)
    when the container runs anything else, or a process could not be stopped."""
    pids = _foreign(init, ours, keepalive_cmd)
    terminal = idle_terminal(pids, harness) if pids else None
    if not terminal:
        return None
    stopped: list[int] = []
    try:
        for pid in terminal:  # servers first: a stopped server starts nothing
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        # SIGSTOP takes effect within microseconds on an idle host, but a process must get a
        # core to stop: with 1,000 containers on 2 cores that took over the 0.2 s once allowed
        # (3 of 1,000 verifiers then went to a snapshot, ~60 s each under that load).
        deadline = time.monotonic() + FREEZE_WAIT_SEC
        pause = 0.001
        while True:
            now = _foreign(init, ours, keepalive_cmd)
            if now is None or sorted(now) != sorted(terminal):
                break
            states = [_proc_stat(pid) for pid in terminal]
            if all(st is not None and st[0] == "T" for st in states):
                return terminal
            if time.monotonic() >= deadline:
                break
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
    except (ProcessLookupError, PermissionError):
        pass
    thaw(stopped)
    return None


def thaw(pids: Sequence[int]) -> None:
    """SIGCONT what `freeze_idle_terminal` stopped."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGCONT)


def overlay_changes(upper: str, lowers: list[str]) -> list[dict[str, Any]]:
    """`docker diff` from an overlay2 container's upper layer: a whiteout (a 0:0 character
    device) is a deletion; a path present in a lower layer was modified, else added."""
    out: list[dict[str, Any]] = []
    for root, dirs, files in os.walk(upper):
        for name in [*dirs, *files]:
            full = os.path.join(root, name)
            rel = "/" + os.path.relpath(full, upper)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append({"Path": rel, "Kind": 2})
                continue
            below = any(os.path.lexists(os.path.join(low, rel.lstrip("/"))) for low in lowers)
            out.append({"Path": rel, "Kind": 0 if below else 1})
    return sorted(out, key=lambda c: c["Path"])
