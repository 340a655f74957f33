"""Terminus 2's terminal: a tmux session inside the container, driven through `sandbox.exec`.

What the model sees is what Harbor's Terminus 2 shows it: the same tmux session
(``tmux new-session -x 160 -y 40 -d -s terminus-2 'bash --login'``, TERM=xterm-256color,
SHELL=/bin/bash, the raw pane piped to /logs/agent/terminus_2.pane), keystrokes sent verbatim,
the same incremental-output rules and the same 10,000-byte middle-out truncation. Three things
differ, each on purpose:

* ``history-limit`` is set before the session's window exists, so the 10,000,000 lines really
  apply (Harbor sets it after ``new-session``, which leaves its first window at tmux's 2,000).
* Keystrokes arrive intact whatever they contain: text goes through ``send-keys -l`` (a leading
  ``-``, or a trailing ``;``, which tmux would otherwise take as a command separator, cannot
  be misread), and text over `paste_threshold` bytes goes through a paste buffer loaded from stdin
  (no "command too long", no silent drop, no chunk boundaries inside a heredoc).
* Early completion (on by default; ``early_completion=False`` is Harbor's timing exactly):
  ``send_keys`` stops waiting as soon as the shell is back at its prompt after the keys, instead
  of always sleeping the model's ``duration``.

How early completion works
--------------------------
At start a small function is added to the shell's ``PROMPT_COMMAND`` (typed into the pane, then
the screen and scrollback are cleared and the line is removed from bash's history, so neither the
screen, the scrollback nor ``history`` shows any setup). Bash runs it before drawing each primary
prompt; it prints nothing (the title it may add to PS1 is drawn with the prompt: see below) and
leaves ``$?``, ``$_`` and ``PIPESTATUS`` as they were. It works with three tmux user options of
this session (global options with a per-session name):

* ``sent``: set by ``send_keys`` to a new sequence number in the *same* tmux command list that
  delivers the keys, so the server records it at the moment the keys are queued to the pane.
* ``seen``: the hook's first step copies ``sent`` into it, server side (``set-option -F``), and
  waits for tmux to answer.
* ``idle``: only then the hook asks the terminal whether a complete input line is waiting
  (``read -t 0``, which reads nothing). If none is, it copies ``seen`` into ``idle`` and opens a
  ``tmux wait-for`` gate (``-U``).

``send_keys`` then waits until ``idle`` reaches its sequence number, or the time is up: one
tmux client call (one exec, perhaps by way of ``sh``: see below) delivers the keys and sleeps in
``wait-for -L`` on that gate (no polling); when woken it reads ``idle``, and the server itself
decides (``if-shell -F``) whether that wait is over. Why a return is never premature:
``idle >= n`` means some prompt's hook read ``sent >= n`` from the server, i.e. after the server
had queued our keys to the pane, and the hook only checked for pending input after that answer
came back. So at that check our keys were in the terminal's input queue or already consumed;
"no complete line pending" then means every line we typed has been read, and the shell has
finished what it read and is at its prompt. For a foreground command that is the final state
the fixed wait would have shown too (nothing writes to the pane after the prompt is drawn, except
background jobs; see below). Keys that end no command (``vim`` keystrokes, text typed into a
Python REPL, ``C-c`` to a program that keeps running) make no prompt appear, so those waits run
their full time; a command still running when the time is up (``sleep 5`` with duration 2) is
waited for the full duration, as in Harbor. The prompt of a command that was already running
before the keys (a previous turn's timed-out command) counts only if no line of ours is still
pending at that prompt, so typed-ahead commands are never cut short. Why a return is never
missed: the prompt after our own command copies ``sent`` only after the shell read our keys,
which the server queued after recording ``sent``.

The hook runs just before bash draws the prompt, so the signal can come first. The hook's second
call therefore also records the cursor (``x|y|history size``, a fourth option ``pos``), and the
wait is over only once the cursor has moved from there, i.e. bash has drawn its prompt: the same
tmux call checks after `settle_sec`, and if not yet, short further calls look again (at most
PROMPT_DRAW_MAX_SEC; an empty PS1 moves nothing). Only then, in that same call, the turn's last
command also captures the pane (``capture=True``), so the observation costs no exec of its own.
Under load a fixed pause was not enough: 1 capture in 921 missed the prompt with 20 ms.

The time limit is kept by the tmux server too (tmux 3.2 and later): the same call starts a
``run-shell -b -d <seconds> -C`` timer that, if this wait is still on then, sets ``cancel`` to
the wait's token and opens the gate; the woken call sees its token and takes the capture of that
moment. So a turn whose command outlives its duration is still one exec (under load, with
Terminus 2's usual 0.1 s durations, most turns). A wait woken by the prompt of an earlier command
(one whose wait ran out opens the gate with nobody waiting) waits once more in the same call.
Only a call that has not come back WAIT_END_GRACE_SEC after the deadline (or any call, before
tmux 3.2) is ended by a tmux call of ttgen's, which then takes the capture.

The hook costs the shell two tmux client calls per prompt (~2 ms of CPU each), or fewer: with
tmux 3.2 and later, a send made while the shell sits idle at its prompt (the previous wait ended
there) first writes its number to a file in tmux's socket folder, so the prompt after the keys
finds ``sent`` there, and the first call is skipped. The write is made by ``sh`` in the same exec,
before it ``exec``s the tmux client that sends the keys, so it is on disk before the server can
queue them. (tmux's own ``save-buffer`` is not enough: the server hands the data to the client and
goes on to the keys at once, and on a loaded host the shell's prompt came before the client had
written it.) The same reasoning as above holds: the number was written before the keys were
queued, and with nothing running in the shell no other prompt can come between. Any other send
(after a wait that ran out, so a command may still be running and draw a prompt at any moment)
writes ``-`` there first, and the hook asks the server as above. The hook empties the file once
it has taken a number (each number is used once), so a write that fails (a full disk) leaves
nothing old to be taken for new: that turn's hook asks the server, and the failed write is not an
error of the turn. The file is removed with the session. With ``early_completion=False`` the hook
removes itself (restoring ``PROMPT_COMMAND``) after the one prompt that tells setup the shell is
ready.

At such a prompt (a number found in the file) the second call is not made either: the prompt
itself carries the signal. The hook appends to PS1 an OSC 2 sequence (the terminal's title,
nothing on the screen) with the number, ``ttgen-<session tag>-<n>``, and a ``pane-title-changed``
hook of the tmux server sets ``idle`` to n (only upwards) and opens the gate. The title is the
prompt's last bytes and tmux runs hooks after the bytes it has read, so the prompt is drawn by
then and the cursor check above is skipped (``pos`` is set to ``title``). The next prompt's hook
takes the sequence off PS1 again before anything else (a PS1 the model set is kept, and gets the
sequence at its end); with PS1 unset the hook calls tmux as before. The sequences are in the raw
pane log and the recording (a player sets its window title from them), never in a capture; a
command that prints ``$PS1`` shows it at the end (as ``echo $PROMPT_COMMAND`` shows the hook),
and a ``PROMPT_COMMAND`` entry the model adds after the hook that sets PS1 anew leaves its turns
without the signal (they wait their full time, as without early completion). A turn at an idle
prompt thus costs the shell no process at all.

Control-mode clients
--------------------
Each call above is an exec of a tmux client in the container (a process: ~3-7 ms of CPU, and an
``sh`` before it when it writes the sequence number). Where the sandbox can keep a process's
stdin open (`open_process`: the exec helper) and tmux is 3.2 or later, the session keeps two
control-mode clients (``tmux -C attach-session``, with ``refresh-client -f no-output``) and sends
each call's command list to one of them as a line; the helper writes the sequence number file
before it passes the line on. A turn then starts no process but what the shell runs (the
prompt's title carries its signal). Two, because a wait blocks its client's command queue:
tmux's deadline timer would run its commands in that same queue (they go to the attached
client), so the deadline is kept by ttgen and the other client ends the wait, with the capture
of that moment.
The only trace in the container: `tmux ls` shows the session as attached, and `tmux
list-clients` the two clients. Keys containing NUL go through an exec (a line cannot carry
it). Should the clients end (the model detaches them, or kills them), the call in progress
goes on through execs, and so does every later one.

What early completion cannot know: output that background processes write after the prompt
came back (``server &``) would have appeared during a longer fixed wait; a shell that replaced
the hooked one (``exec bash``, ``su``, a nested ``bash``) has no hook, so its waits are the full
durations (safe, only slower); an empty keystroke string sent to a shell that is already idle
waits its full time (no new prompt comes); ``set -x`` in the shell shows the hook's commands in
its trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ttgen.agents.terminus2.observation import find_new_content
from ttgen.errors import AgentError
from ttgen.sandbox.base import ExecResult, Sandbox
from ttgen.sandbox.execd import CAST_COPY, PaneRecording

log = logging.getLogger(__name__)

PASTE_THRESHOLD_BYTES = 8 * 1024  # tmux refuses a command message over ~16 KB
MAX_CAPTURE_BYTES = 64 * 1024 * 1024
# The exec marker the container backends put in each command's environment (ttgen.sandbox.host
# EXEC_MARKER). The tmux server inherits it from the exec that starts it; it is kept out of the
# shell's environment so that the model's `env` shows what it would in Harbor.
_EXEC_MARKER_VARS = ("TTGEN_EXEC_ID",)

# A whole keystroke string that may be a tmux key name ("C-c", "Escape", "Enter", "Up", "M-x",
# "F5", "^C", "q"). Such strings go to `send-keys` without -l, exactly as Harbor sends every
# string, so tmux decides: a key name becomes that key, anything else is typed as it is.
# Everything else is sent with -l, where nothing is interpreted.
_KEY_NAME = re.compile(r"(?:[CMS]-)*(?:[A-Za-z][A-Za-z0-9]*|[!-~])|\^[!-~]")

# The session's start, one exec: find tmux and bash, make the log files, choose the pane's
# logger (where the recording can be written: `cat` into the exec helper's recorder pipe when
# there is one, else the recorder when python3 is there; else `cat` into the pane log, else
# none), then exec the tmux client that starts the server and the session.
# $1 pane log, $2 recording, $3/$4 the recorder's arguments after the interpreter with/without
# the pane log, $5 the `cat` logger, $6 the session, $7 the helper's recorder pipe (or empty);
# the rest is the tmux command list.
_START_SCRIPT = r"""
t=$(command -v tmux 2>/dev/null)
[ -n "$t" ] || { echo TTGEN_NO_TMUX; exit 0; }
command -v bash >/dev/null 2>&1 || { echo TTGEN_NO_BASH; exit 0; }
echo "TTGEN_TMUX=$t"
log= pipe=
if [ -n "$1" ]; then
    d=${1%/*}
    [ -z "$d" ] || [ -d "$d" ] || mkdir -p "$d" 2>/dev/null
    if : >> "$1" 2>/dev/null; then log=1; echo TTGEN_LOG_OK; fi
fi
fifo=
if [ -n "$2" ] && : > "$2" 2>/dev/null; then
    if [ -n "$7" ] && [ -p "$7" ]; then
        echo TTGEN_REC_PIPE; pipe="exec cat > $7"; fifo=1
    elif p=$(command -v python3 2>/dev/null); then
        case $p in
            *[!A-Za-z0-9/._+-]*) ;;
            *) echo "TTGEN_PY=$p"; if [ -n "$log" ]; then pipe="exec $p $3"; else pipe="exec $p $4"; fi ;;
        esac
    fi
fi
[ -n "$fifo" ] || [ -z "$7" ] || rm -f "$7"
[ -z "$pipe" ] && [ -n "$log" ] && pipe=$5
s=$6
shift 7
[ -z "$pipe" ] && exec "$t" "$@"
exec "$t" "$@" \; pipe-pane -o -t "$s" "$pipe"
"""

# The pane's recorder as a process of its own (the `pipe-pane` command where the sandbox has no
# exec helper to record in, and the image has python3): `CAST_COPY` on its stdin. Run with -I -S.
_RECORDER = (
    CAST_COPY
    + "import sys\n"
    + "cast_copy(0, sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))\n"
)

RECORDING_CAP_BYTES = 16 * 1024 * 1024


# Where the pane's cursor is, and how much history it has: the hook records it just before bash
# draws its prompt; a capture waits until it has changed (the prompt has been drawn).
_CURSOR = "#{cursor_x}|#{cursor_y}|#{history_size}"
# How long after the prompt signal a capture waits for the cursor to move at most (an empty PS1
# never moves it), and how often it looks.
PROMPT_DRAW_MAX_SEC = 0.5
PROMPT_DRAW_POLL_SEC = 0.01
# A prompt wait ends itself at its deadline (a timer in the tmux server); only if its call has
# not come back this long after the deadline does a tmux call of its own end it. Generous: on a
# host so loaded that the call is late, a second call would only queue behind it.
WAIT_END_GRACE_SEC = 10.0


def _tmux_quote(value: str) -> str:
    """`value` as one word of a tmux command line (what a control-mode client reads): double
    quotes, with the characters tmux's parser would act on escaped. NUL cannot be written."""
    if "\0" in value:
        raise ValueError("a NUL character cannot be written in a tmux command line")
    out = ['"']
    for ch in value:
        if ch in '\\"$~':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch < " " or ch == "\x7f":
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _tmux_line(args: Sequence[str]) -> str:
    """A tmux command list given as a client's arguments, as one command line: an argument
    ``;`` separates commands, one ending in ``;`` ends its command and one ending in ``\\;``
    keeps a literal ``;`` (what tmux makes of a client's arguments)."""
    words: list[str] = []
    for arg in args:
        if arg == ";":
            words.append(";")
            continue
        end = False
        if arg.endswith("\\;"):
            arg = arg[:-2] + ";"
        elif arg.endswith(";"):
            arg, end = arg[:-1], True
        words.append(_tmux_quote(arg))
        if end:
            words.append(";")
    return " ".join(words)


class _ControlRequest:
    """One command line sent to the control client, and what came back for it."""

    def __init__(self, sentinel: bytes, max_bytes: int) -> None:
        self.sentinel = sentinel
        # the output's first and last max_bytes/2 (as an exec's), and what was cut between
        self.head = bytearray()
        self.tail = bytearray()
        self.err = bytearray()
        self.failed = False
        self.answered = 0  # commands of the line that have run (so it was read)
        self.omitted = 0
        self.max_bytes = max_bytes
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def out(self) -> bytes:
        if not self.omitted:
            return bytes(self.head + self.tail)
        marker = f"\n[... {self.omitted} bytes omitted by ttgen ...]\n".encode()
        return bytes(self.head) + marker + bytes(self.tail)

    def block(self, lines: list[bytes], error: bool) -> bool:
        """One command's output; True when it was the sentinel's (the line is done)."""
        if not error and lines == [self.sentinel]:
            if not self.future.done():
                self.future.set_result(None)
            return True
        self.answered += 1
        if error:
            self.failed = True
            self.err += b"".join(line + b"\n" for line in lines)
            return False
        half = self.max_bytes // 2
        for line in lines:
            data = line + b"\n"
            room = half - len(self.head)
            if room > 0:
                self.head += data[:room]
                data = data[room:]
            if data:
                self.tail += data
                cut = len(self.tail) - (self.max_bytes - half)
                if cut > 0:
                    del self.tail[:cut]
                    self.omitted += cut
        return False


class _Control:
    """A tmux control-mode client (``tmux -C attach-session``) kept open for a session: each
    command line costs the container no process (a tmux client per call costs ~3-7 ms of CPU).

    tmux answers each command of a line with ``%begin T N F`` ... ``%end T N F`` (or
    ``%error``); F is 1 for commands this client sent (and those they insert, e.g. if-shell's),
    0 for others run on its behalf later (a timer's). Notifications are lines starting with
    ``%`` outside those blocks, or inside the block of a command that is waiting (none of ours
    that wait prints anything). Each line is followed by ``display-message -p SENTINEL`` on a
    line of its own: its block closes the request, whatever failed before it."""

    def __init__(self) -> None:
        self.proc: Any = None
        self._buf = bytearray()
        self._block: tuple[bytes, bytes] | None = None
        self._ours = False
        self._lines: list[bytes] = []
        self.requests: deque[_ControlRequest] = deque()
        self.lock = asyncio.Lock()
        self.exited = False
        # set by the %session-changed that follows its attach (a line read before that would
        # find no current client)
        self.attached = asyncio.Event()

    def feed(self, data: bytes) -> None:
        self._buf += data
        while True:
            i = self._buf.find(b"\n")
            if i < 0:
                return
            line = bytes(self._buf[:i])
            del self._buf[: i + 1]
            self._line(line)

    def _line(self, line: bytes) -> None:
        if self._block is None:
            parts = line.split(b" ")
            if len(parts) == 4 and parts[0] == b"%begin":
                self._block, self._ours, self._lines = (parts[1], parts[2]), parts[3] == b"1", []
            elif parts[0] == b"%session-changed":
                self.attached.set()
            elif parts[0] == b"%exit":
                self.exited = True
                self.fail_all()
            return
        parts = line.split(b" ")
        if (
            len(parts) == 4
            and parts[0] in (b"%end", b"%error")
            and (parts[1], parts[2]) == self._block
        ):
            self._block = None
            done = self._ours and self.requests
            if done and self.requests[0].block(self._lines, parts[0] == b"%error"):
                self.requests.popleft()
            self._lines = []
            return
        self._lines.append(line)

    def fail_all(self) -> None:
        while self.requests:
            req = self.requests.popleft()
            if not req.future.done():
                req.future.set_exception(ConnectionError("the tmux control client ended"))


# The stderr of a call whose control client ended after running part of its line.
_CONTROL_LOST = "ttgen: the tmux control client ended during the call"


@dataclass(frozen=True)
class SendKeysResult:
    """How a `send_keys` call waited.

    `waited_sec` runs from the call to its return (delivery included). `ended_early` is true when
    the wait stopped before ``min(wait_sec, max_wait_sec)`` because the shell was back at its
    prompt (or the tmux session had ended, so there was nothing left to wait for).
    """

    waited_sec: float
    ended_early: bool


class TmuxSession:
    """One tmux session in a sandbox, with Terminus 2's keystroke and observation semantics."""

    def __init__(
        self,
        sandbox: Sandbox,
        *,
        session_name: str = "terminus-2",
        width: int = 160,
        height: int = 40,
        history_limit: int = 10_000_000,
        user: str | None = None,
        pane_log: str | None = "/logs/agent/terminus_2.pane",
        recording: str | None = None,
        early_completion: bool = True,
        paste_threshold: int = PASTE_THRESHOLD_BYTES,
        settle_sec: float = 0.005,
        setup_timeout_sec: float = 30.0,
        command_timeout_sec: float = 30.0,
        max_capture_bytes: int = MAX_CAPTURE_BYTES,
        control: bool = True,
    ) -> None:
        if width <= 0 or height <= 0:
            raise ValueError("width and height must be positive")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", session_name):
            raise ValueError(f"session name {session_name!r}: use letters, digits, '-' and '_'")
        self.sandbox = sandbox
        self.session_name = session_name
        self.width = int(width)
        self.height = int(height)
        self.history_limit = int(history_limit)
        self.user = user
        self.pane_log = pane_log or None
        self.recording = recording or None
        # (time.time(), keys) of every send_keys call while recording: its input events.
        self.keystrokes: list[tuple[float, str]] = []
        self.early_completion = early_completion
        self.paste_threshold = paste_threshold
        self.settle_sec = settle_sec
        self.setup_timeout_sec = setup_timeout_sec
        self.command_timeout_sec = command_timeout_sec
        self.max_capture_bytes = max_capture_bytes
        # Keep a control-mode client open (tmux 3.2+, a sandbox with `open_process`): a turn's
        # keys, wait and capture then start no process in the container.
        self.control = control
        # Two control clients when open: a prompt wait blocks one (`wait-for -L`), the other
        # ends it at its deadline (tmux's own timer would queue behind the wait: its commands go
        # to the attached client) and takes calls made meanwhile.
        self._ctls: list[_Control] = []
        self._ctl_tried = False  # a control client was started once (none is started again)
        self._ctl_closing: asyncio.Future[Any] | None = None
        tag = uuid.uuid4().hex[:12]
        self._tag = tag
        self._opt_sent = f"@ttgen_{tag}_sent"
        self._opt_seen = f"@ttgen_{tag}_seen"
        self._opt_idle = f"@ttgen_{tag}_idle"
        self._opt_pos = f"@ttgen_{tag}_pos"
        self._opt_cancel = f"@ttgen_{tag}_cancel"
        self._opt_waiting = f"@ttgen_{tag}_waiting"
        self._channel = f"ttgen-{tag}"
        self._title = f"ttgen-{tag}-"  # + n: the prompt's title after the keys numbered n
        self._server_deadline = False  # tmux keeps a wait's deadline itself (3.2 and later)
        # Where each send also writes its sequence number for the prompt hook (tmux 3.2 and
        # later, next to the server's socket); None: the hook asks the server every time.
        self._seq_file: str | None = None
        self._at_prompt = False  # the last wait ended at the prompt (nothing runs in the shell)
        self._tmux: list[str] = ["tmux"]
        self._seq = 0
        self._started = False
        self._hooked = False  # the persistent prompt hook is installed
        self._previous_buffer: str | None = None
        # (output, mark) of a capture taken by send_keys(capture=True), for the next observation
        self._prefetched: tuple[str, str] | None = None
        self._seen_alive_at = float("-inf")  # when a capture last found the session
        self._waiter: tuple[asyncio.Future[ExecResult], str] | None = None
        self._cleanup: asyncio.Future[None] | None = None
        self.pane_logging = False  # whether the pane log is being written
        self.recording_active = False  # whether the asciinema recording is being written
        # Command-line prefixes of this session's own helper processes in the container (the
        # pane's logger): harness, not agent, processes (see `harness_processes`).
        self.harness: list[str] = []

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._started

    async def start(self) -> None:
        """Start the session (tmux must be in the image; this layer installs nothing)."""
        if self._started:
            raise AgentError(f"tmux session {self.session_name!r} is already started")
        if self.user and (self.pane_log or self.recording):
            await self._make_logs_for_user()
        name = self.session_name
        recorder: list[str] = []
        if self.recording:
            recorder = ["-I", "-S", "-c", _RECORDER, self.pane_log or "", self.recording,
                        str(self.width), str(self.height), str(RECORDING_CAP_BYTES)]  # fmt: skip
        without_log = [*recorder[:4], "", *recorder[5:]] if recorder else []
        tmux_cmd = ["set-option", "-g", "history-limit", str(self.history_limit), ";"]
        for var in _EXEC_MARKER_VARS:
            tmux_cmd += ["set-environment", "-g", "-u", var, ";"]
        tmux_cmd += ["new-session", "-x", str(self.width), "-y", str(self.height)]
        tmux_cmd += ["-d", "-s", name, "bash --login", ";"]
        tmux_cmd += ["display-message", "-p", "-t", name, "ttgen-tmux-version #{version}", ";"]
        tmux_cmd += ["display-message", "-p", "-t", name, "#{socket_path}"]
        # Where the sandbox's exec helper can record (a thread of its own), the pane's logger is
        # `cat` into its pipe: no interpreter per terminal (~10 ms of CPU and ~2.5 MB each).
        pipe = ""
        record = getattr(self.sandbox, "record_pipe", None)
        if self.recording and record is not None:
            rec = PaneRecording(f"/tmp/.ttgen-rec-{self._tag}", self.pane_log, self.recording,
                                self.width, self.height, RECORDING_CAP_BYTES)  # fmt: skip
            if await record(rec, self.user):
                pipe = rec.fifo
        res = await self._run(
            [
                *("sh", "-c", _START_SCRIPT, "ttgen-tmux-start"),
                self.pane_log or "",
                self.recording or "",
                " ".join(shlex.quote(a) for a in recorder),
                " ".join(shlex.quote(a) for a in without_log),
                f"exec cat >> {shlex.quote(self.pane_log)}" if self.pane_log else "",
                name,
                pipe,
                *tmux_cmd,
            ],
            env={"TERM": "xterm-256color", "SHELL": "/bin/bash"},
        )
        who = f" for user {self.user!r}" if self.user else ""
        if "TTGEN_NO_TMUX" in res.stdout:
            raise AgentError(
                f"tmux is not installed in the container (not found on PATH{who}). Terminus 2 "
                "drives its terminal through tmux, and this layer does not install it: add tmux to "
                "the task image, or install it in the agent's setup step."
            )
        if "TTGEN_NO_BASH" in res.stdout:
            raise AgentError(
                f"bash is not installed in the container (not found on PATH{who}); Terminus 2 "
                "runs `bash --login` in its tmux session."
            )
        found = re.search(r"^TTGEN_TMUX=(.+)$", res.stdout, re.MULTILINE)
        if found is None:
            raise AgentError(
                f"cannot probe the container for tmux (exit {res.exit_code}): "
                f"{res.output.strip()[:500]}"
            )
        tmux = found.group(1).strip()
        version = re.search(r"^ttgen-tmux-version \D*(\d+)\.(\d+)", res.stdout, re.MULTILINE)
        # run-shell -d/-C (the server-kept deadline) came with tmux 3.2
        self._server_deadline = version is not None and (
            int(version.group(1)),
            int(version.group(2)),
        ) >= (3, 2)
        after = res.stdout.partition("\nttgen-tmux-version ")[2].splitlines()[1:]
        if not res.ok or not after:
            raise AgentError(
                f"tmux could not start session {name!r} (exit {res.exit_code}): "
                f"{res.output.strip()[:500]}"
            )
        socket = after[0].strip()
        self.pane_logging = self.pane_log is not None and "TTGEN_LOG_OK" in res.stdout
        python = re.search(r"^TTGEN_PY=(.+)$", res.stdout, re.MULTILINE)
        if "TTGEN_REC_PIPE" in res.stdout:
            self.recording_active = True
            self.harness = ["cat"]  # into the helper's pipe
        elif python is not None:
            self.recording_active = True
            # the interpreter, its options and the code
            self.harness = [" ".join([python.group(1).strip(), *recorder[:4]])]
        elif self.pane_logging:
            self.harness = ["cat"]
        if self.pane_log is not None and not self.pane_logging:
            log.warning("cannot write the pane log %s; the session runs without it", self.pane_log)
        if self.recording is not None and not self.recording_active:
            log.warning("cannot write the recording %s (or no python3 in the container); the "
                        "session runs without it", self.recording)  # fmt: skip
        self._tmux = [tmux, "-S", socket]
        if self.early_completion and self._server_deadline and "/" in socket and "#" not in socket:
            self._seq_file = f"{socket.rsplit('/', 1)[0]}/.ttgen-{self._tag}"
        self._started = True
        try:
            await self._install_hook()
            await self._open_control()
        except BaseException:
            await self.stop()
            raise

    async def _make_logs_for_user(self) -> None:
        """Make the log files that do not exist yet as root and hand them to `user` (their
        folder may exist only for root)."""
        files = [p for p in (self.pane_log, self.recording) if p is not None]
        res = await self.sandbox.exec(
            [
                "sh",
                "-c",
                'u=$1; shift; for f; do [ -e "$f" ] && continue; d=${f%/*}; '
                '[ -n "$d" ] && mkdir -p "$d"; : >> "$f" && chown "$u" "$f"; done',
                "ttgen-tmux-log",
                self.user or "",
                *files,
            ],
            user="root",
            timeout=self.command_timeout_sec,
        )
        if not res.ok:
            log.debug("cannot make the log files for %s: %s", self.user, res.output[:300])

    async def _install_hook(self) -> None:
        """Type the sourcing of the prompt hook into the new shell, wait for its first prompt,
        then clear the scrollback, so that the session looks untouched."""
        path = f"/tmp/.ttgen-terminus-{self._tag}.sh"
        self._seq = 1
        # One exec: sh writes the hook's file (and, with a sequence number file, the number 1,
        # so that this first prompt needs no question to the server), then the tmux client
        # types the line that sources it, waits for the prompt, clears the scrollback and
        # captures the screen for the first observation.
        prefix = [
            "sh",
            "-c",
            'printf %s "$1" >"$2" || exit 5; [ -z "$3" ] || { printf "1\\n" >"$3"; } 2>/dev/null; '
            'shift 3; exec "$@"',
            "ttgen-tmux-hook",
            self._hook_script(path),
            path,
            self._seq_file or "",
        ]
        send = ["send-keys", "-t", self.session_name, "-l", "--", f" . {path}\n", ";"]
        send += ["set-option", "-g", self._opt_sent, "1"]
        if self._seq_file is not None:  # the prompt's title signal (see the module docstring)
            send += [";", "set-hook", "-ag", "pane-title-changed", self._title_hook()]
        try:
            outcome = await self._wait_prompt(
                1, time.monotonic() + self.setup_timeout_sec, clear_history=True, send=send,
                prefix=prefix, capture=True,
            )  # fmt: skip
        except AgentError as e:
            raise AgentError(f"cannot set up the tmux session's shell: {e}") from None
        if outcome != "prompt":
            screen = "" if outcome == "gone" else await self.capture(full_history=False)
            what = "ended" if outcome == "gone" else "did not reach its prompt"
            raise AgentError(
                f"the shell in tmux session {self.session_name!r} {what} during setup "
                f"(within {self.setup_timeout_sec:g} s). Screen:\n{screen.rstrip()[-2000:]}"
            )
        self._hooked = self.early_completion
        self._at_prompt = True

    def _hook_script(self, path: str) -> str:
        """The bash file sourced once in the session's shell (see the module docstring)."""
        tmux = " ".join(shlex.quote(a) for a in self._tmux)
        fn = "__ttgen_prompt_hook"
        once = not self.early_completion
        lines = []
        if once:
            lines.append(
                'if [ -n "${PROMPT_COMMAND+x}" ]; then __ttgen_saved_pc=$PROMPT_COMMAND; fi'
            )
        ask = f"{tmux} set-option -gF {self._opt_seen} '#{{{self._opt_sent}}}' >/dev/null 2>&1 || :"
        signal = (
            f"set-option -gF {self._opt_pos} '{_CURSOR}' \\; "
            f"wait-for -U {self._channel} >/dev/null 2>&1 || :"
        )
        from_server = f"{tmux} set-option -gF {self._opt_idle} '#{{{self._opt_seen}}}' \\; {signal}"
        lines.append(f"{fn}() {{")
        fast: list[str] = []
        if self._seq_file is None:
            lines.append(f"    {ask}")
        else:
            # A number in the file (written before the keys of a send made while the shell sat
            # idle at its prompt) needs no question to the server; anything else (no file,
            # "-": keys sent while a command may still run) asks it, as on older tmux.
            seq_file = shlex.quote(self._seq_file)
            lines += [
                "    local __ttgen_s=",
                f"    {{ IFS= builtin read -r __ttgen_s < {seq_file}; }} 2>/dev/null || :",
                "    case $__ttgen_s in",
                f"        ''|*[!0-9]*) __ttgen_s=; {ask} ;;",
                # used once: should a later write fail, no old number is taken for a new one
                f"        *) {{ : > {seq_file}; }} 2>/dev/null || : ;;",
                "    esac",
            ]
            # The number goes out at the end of the prompt itself, as its terminal title
            # (no process; the server's hook takes it, `_title_hook`); a tmux client when
            # PS1 is unset. The previous prompt's title is taken off PS1 first.
            title = f"$'\\\\[\\e]2;{self._title}'\"$__ttgen_s\"$'\\a\\\\]'"
            lines += [
                '    if [ -n "${__ttgen_t-}" ]; then',
                '        [ -z "${PS1+x}" ] || PS1=${PS1%"$__ttgen_t"}; __ttgen_t=',
                "    fi",
            ]
            fast = [
                '    elif [ -n "$__ttgen_s" ] && [ -n "${PS1+x}" ]; then',
                f"        __ttgen_t={title}",
                '        PS1=$PS1$__ttgen_t',
                '    elif [ -n "$__ttgen_s" ]; then',
                f'        {tmux} set-option -g {self._opt_idle} "$__ttgen_s" \\; {signal}',
            ]
        lines += [
            "    if builtin read -t 0 2>/dev/null; then",
            "        :",
            *fast,
            "    else",
            f"        {from_server}",
            "    fi",
        ]
        if once:  # strict timing: only the readiness signal at setup, then the shell as it was
            lines += [
                '    if [ -n "${__ttgen_saved_pc+x}" ]; then PROMPT_COMMAND=$__ttgen_saved_pc;'
                " else unset PROMPT_COMMAND; fi",
                f"    unset __ttgen_saved_pc; unset -f {fn}",
            ]
        lines += [
            "}",
            f'PROMPT_COMMAND="${{PROMPT_COMMAND:+$PROMPT_COMMAND\n}}{fn}"',
            # Forget the line that sourced this file (unless bash did not record it).
            "__ttgen_h=$(HISTTIMEFORMAT= builtin history 1 2>/dev/null)",
            "case $__ttgen_h in",
            f'    *{path}*) __ttgen_h=${{__ttgen_h#"${{__ttgen_h%%[0-9]*}}"}}',
            '        builtin history -d "${__ttgen_h%%[!0-9]*}" 2>/dev/null || : ;;',
            "esac",
            "unset __ttgen_h",
            f"command rm -f -- {shlex.quote(path)} 2>/dev/null || :",
            "builtin printf '\\033[H\\033[2J\\033[3J'",
            "",
        ]
        return "\n".join(lines)

    def _title_hook(self) -> str:
        """The server's side of the prompt's title signal: a title ``<_title><n>`` with n above
        ``idle`` (the end of the prompt drawn after the keys numbered n) sets ``idle`` to n and
        opens the gate. The prompt is drawn by then (the title is its last bytes, and tmux runs
        hooks after the bytes it read), so ``pos`` is set to what no cursor is."""
        num = f"#{{s/^{self._title}//:pane_title}}"
        cond = (
            f"#{{&&:#{{m/r:^{self._title}[0-9]+$,#{{pane_title}}}},"
            f"#{{e|>:{num},#{{{self._opt_idle}}}}}}}"
        )
        then = (
            f"set-option -gF {self._opt_idle} '{num}' ; set-option -g {self._opt_pos} title ; "
            f"wait-for -U {self._channel}"
        )
        return f"if-shell -F '{cond}' \"{then}\""

    async def stop(self) -> None:
        """End the session (its shell and everything running in it). Safe to call twice."""
        if self._waiter is not None:
            with contextlib.suppress(Exception):
                await self._cancel_wait(*self._waiter)
        if self._cleanup is not None:
            with contextlib.suppress(BaseException):
                await self._cleanup
            self._cleanup = None
        if not self._started:
            return
        self._started = False
        self._hooked = False
        self._at_prompt = False
        self._prefetched = None
        kill = [*self._tmux, "kill-session", "-t", self.session_name]
        if self._seq_file is not None:
            kill = ["sh", "-c", 'rm -f -- "$1"; shift; exec "$@"', "ttgen-tmux-stop",
                    self._seq_file, *kill]  # fmt: skip
        with contextlib.suppress(Exception):
            await self._run(kill, timeout=10)
        self._drop_control("the session ended")
        if self._ctl_closing is not None:
            with contextlib.suppress(BaseException):
                await self._ctl_closing
            self._ctl_closing = None

    async def is_alive(self, *, max_age_sec: float = 0.0) -> bool:
        """Whether the session exists. With `max_age_sec`, a successful capture of the session
        that recent (``get_incremental_output``) answers without asking tmux again."""
        if not self._started:
            return False
        if max_age_sec > 0 and time.monotonic() - self._seen_alive_at <= max_age_sec:
            return True
        res = await self._call(["has-session", "-t", self.session_name])
        return res.exit_code == 0

    # -- keys -----------------------------------------------------------------------------------

    async def send_keys(
        self, keys: str, *, wait_sec: float, max_wait_sec: float = 60.0, capture: bool = False
    ) -> SendKeysResult:
        """Send `keys` as Terminus 2 does, then wait ``min(wait_sec, max_wait_sec)`` seconds, or
        (with early completion) until the shell is back at its prompt after them.

        A string that is a tmux key name (``C-c``, ``C-d``, ``Escape``, ``Enter``, ``Up``) is
        pressed as that key; any other text is typed exactly as given, with ``\\n`` arriving as a
        newline (C-j), which a shell or REPL takes as Enter, as in Harbor.

        With `capture`, a wait that ends at the prompt also takes the terminal's contents in the
        same tmux call, at the moment the wait ends; the next `get_incremental_output` uses them
        instead of capturing again (for the last command of a turn, whose observation follows at
        once). Sending keys again drops them.
        """
        self._require_started()
        self._prefetched = None
        if self._cleanup is not None:  # a cancelled call's wait is still ending: one at a time
            with contextlib.suppress(Exception):
                await self._cleanup
            self._cleanup = None
        if not self._ctls and not self._ctl_tried and self.control:
            await self._open_control()  # the container's exec helper may have started since
        t0 = time.monotonic()
        budget = max(0.0, min(float(wait_sec), float(max_wait_sec)))
        deadline = t0 + budget
        watch = self._hooked and budget > 0
        seq = None
        if watch:
            self._seq += 1
            seq = self._seq
        cmd, stdin, note = self._send_command(
            keys, seq, fast=seq is not None and self._at_prompt, inline=bool(self._ctls)
        )
        self._at_prompt = False  # until this wait ends at the prompt
        if keys and self.recording_active:
            self.keystrokes.append((time.time(), keys))
        if seq is not None:
            # One tmux call delivers the keys, waits for the prompt (and captures).
            outcome = await self._wait_prompt(seq, deadline, send=cmd, stdin=stdin, note=note,
                                              capture=capture)  # fmt: skip
            self._at_prompt = outcome == "prompt"
            if outcome in ("prompt", "gone"):
                return SendKeysResult(time.monotonic() - t0, True)
        elif cmd:
            res = await self._call(cmd, stdin=stdin)
            if not res.ok:
                self._send_failed(res)
        remaining = deadline - time.monotonic()
        if remaining > 0:
            await asyncio.sleep(remaining)
        return SendKeysResult(time.monotonic() - t0, False)

    def _send_failed(self, res: ExecResult) -> None:
        raise AgentError(
            f"tmux could not send keys to session {self.session_name!r} "
            f"(exit {res.exit_code}): {res.output.strip()[:500]}"
        )

    def _send_command(
        self, keys: str, seq: int | None, *, fast: bool = False, inline: bool = False
    ) -> tuple[list[str], bytes | None, str | None]:
        """The tmux command list that delivers `keys` (and records `seq`), its stdin, and what
        to write to the sequence number file before the call (`_call`'s `note`), if anything.

        With a sequence number file (tmux 3.2+) and `seq`, that is `seq` when `fast` (the shell
        sat idle at its prompt: the next prompt is the one after these keys), else "-" (the
        hook then asks the server). `inline`: keys over `paste_threshold` go in the command
        list itself (a control-mode line has no size limit), not on stdin.
        """
        # Lone surrogates cannot leave the process; they become U+FFFD.
        keys = keys.encode("utf-8", errors="replace").decode("utf-8")
        target = self.session_name
        stdin = None
        cmd: list[str] = []
        note = None if seq is None or self._seq_file is None else (str(seq) if fast else "-")
        if not keys:
            pass
        elif _KEY_NAME.fullmatch(keys) and not keys.endswith(";"):
            cmd += ["send-keys", "-t", target, "--", keys]
        elif len(keys.encode("utf-8")) <= self.paste_threshold and "\0" not in keys:
            cmd += ["send-keys", "-t", target, "-l", "--", _protect_separator(keys)]
        elif inline and "\0" not in keys:
            # The same paste, its text in the line (load-buffer cannot read a control client's
            # stdin: that is where its commands come from).
            buf = f"ttgen-{uuid.uuid4().hex[:12]}"
            cmd += ["set-buffer", "-b", buf, "--", _protect_separator(keys), ";"]
            cmd += ["paste-buffer", "-d", "-r", "-b", buf, "-t", target]
        else:
            # Over tmux's command size: a paste buffer read from stdin, pasted without bracketed
            # paste markers and without turning LF into CR (-r), so the pane gets the very bytes
            # send-keys would have typed.
            buf = f"ttgen-{uuid.uuid4().hex[:12]}"
            cmd += ["load-buffer", "-b", buf, "-", ";", "paste-buffer", "-d", "-r", "-b", buf]
            cmd += ["-t", target]
            stdin = keys.encode("utf-8")
        if seq is not None:
            if cmd and cmd[-1] != ";":
                cmd.append(";")
            cmd += ["set-option", "-g", self._opt_sent, str(seq)]
        return cmd, stdin, note

    def _note_prefix(self, note: str) -> list[str]:
        """The start of an exec whose ``sh`` writes `note` to the sequence number file, then
        ``exec``s the tmux client given after it: the number is on disk before the server can
        queue the keys. A write that fails (a full disk, a folder in the way) is not an error:
        the hook then asks the server. Nothing without a sequence number file."""
        if self._seq_file is None:
            return []
        script = '{ printf "%s\\n" "$1" >"$2"; } 2>/dev/null; shift 2; exec "$@"'
        return ["sh", "-c", script, "ttgen-send", note, self._seq_file]

    async def _wait_prompt(
        self,
        seq: int,
        deadline: float,
        *,
        clear_history: bool = False,
        send: Sequence[str] = (),
        stdin: bytes | None = None,
        prefix: Sequence[str] = (),
        note: str | None = None,
        capture: bool = False,
    ) -> str:
        """Wait until a prompt has come back after the keys numbered `seq`, or `deadline`.
        `send` (a tmux command list, with its `stdin`) is run first, in the same tmux call;
        `note` is written to the sequence number file before it (`_call`), and `prefix` (an
        ``sh`` that writes files, then ``exec``s the rest: the set-up's) starts an exec call.

        Each try is one tmux client call: [the keys, then] ``wait-for -L`` on the
        session's gate, which returns when a prompt hook opens it (woken by an earlier
        prompt, it waits once more); then, only if ``idle`` has reached `seq` (decided by the
        server in the same call, with ``if-shell -F``), a pause of `settle_sec` inside the
        server and, if the cursor shows the prompt drawn, a mark line and `clear_history` or
        `capture` (otherwise `_wait_drawn` looks again); else, if ``cancel`` holds this wait's
        token (the server's deadline timer, or `_cancel_wait`, set it and opened the gate), a
        cut line and the capture. A call that ends with neither tries again.

        Returns "prompt", "timeout", "gone" (the session ended) or "error"."""
        remaining = deadline - time.monotonic()
        if remaining <= 0 and not send:
            return "timeout"
        token = uuid.uuid4().hex[:12]
        target = self.session_name
        done, drawing, cut = (f"ttgen-{w}-{token}" for w in ("done", "drawing", "cut"))
        mark = f"ttgen-capture-{uuid.uuid4().hex}"
        finish = [f"clear-history -t {target}"] if clear_history else []
        finish += [f"set-option -g {self._opt_waiting} -", f"display-message -p {done}"]
        if capture:
            finish.append(self._capture_commands(mark))
        # The deadline, kept by the server: at that moment, if this wait is still on, it is
        # cancelled and woken (the ## survive run-shell's own expansion: the test is made when
        # the timer fires). The gate is then held by this wait, so the unlock is never an error.
        on_time = (
            f"if-shell -F '##{{==:##{{{self._opt_waiting}}},{token}}}' "
            f"'set-option -g {self._opt_cancel} {token} ; wait-for -U {self._channel}'"
        )
        timer = [
            *("set-option", "-g", self._opt_waiting, token, ";"),
            *("run-shell", "-b", "-d", f"{max(remaining, 0.0):.3f}", "-C", on_time, ";"),
        ]
        # Woken by the deadline (or a cancel) before the prompt: the screen as it is then, in
        # the same call.
        cancelled = f"#{{==:#{{{self._opt_cancel}}},{token}}}"
        on_cancel = [f"display-message -p {cut}"]
        if capture:
            on_cancel.append(self._capture_commands(mark))
        if_cancelled = " ".join(
            shlex.quote(a)
            for a in ("if-shell", "-F", "-t", target, cancelled, " ; ".join(on_cancel))
        )
        # Done once the cursor has left where the hook saw it: bash has drawn its prompt.
        moved = f"#{{!=:{_CURSOR},#{{{self._opt_pos}}}}}"
        finish_if_drawn = [
            *("if-shell", "-F", "-t", target, moved),
            " ; ".join(finish),
            f"display-message -p {drawing}",
        ]
        when_idle = " ".join(shlex.quote(a) for a in finish_if_drawn)
        if self.settle_sec > 0:
            when_idle = f"run-shell -d {self.settle_sec:.3f} ; {when_idle}"
        # Woken by the prompt of an earlier command (one whose wait ran out opened the gate
        # with nobody waiting), not cancelled: wait once more in the same call.
        stale = (
            f"#{{&&:#{{e|<:#{{{self._opt_idle}}},{seq}}},#{{!=:#{{{self._opt_cancel}}},{token}}}}}"
        )
        check = [
            *("wait-for", "-L", self._channel, ";"),
            *("if-shell", "-F", "-t", target, stale, f"wait-for -L {self._channel}", ";"),
            *("if-shell", "-F", "-t", target, f"#{{e|>=:#{{{self._opt_idle}}},{seq}}}"),
            when_idle,
            if_cancelled,
        ]
        # Through a control client, the deadline is kept here and the other client ends the wait
        # (tmux's timer would run its commands behind this wait, in the same client's queue).
        via_control = self._via_control and not prefix and stdin is None
        first, timed = bool(send), not self._server_deadline or via_control
        while True:
            remaining = max(deadline - time.monotonic(), 0.0)
            cmd = [*send, ";"] if first else []
            if not timed:
                cmd += timer
                timed = True
            cmd += check
            if first and prefix:
                call = self._run([*prefix, *self._tmux, *cmd], stdin=stdin, timeout=remaining + 30,
                                 max_output_bytes=self.max_capture_bytes)  # fmt: skip
            else:
                call = self._call(cmd, stdin=stdin if first else None, note=note if first else None,
                                  timeout=remaining + 30, max_output_bytes=self.max_capture_bytes)  # fmt: skip
            waiter = asyncio.ensure_future(call)
            self._waiter = (waiter, token)
            try:
                grace = WAIT_END_GRACE_SEC if self._server_deadline and not via_control else 0.0
                res = await asyncio.wait_for(asyncio.shield(waiter), remaining + grace)
            except TimeoutError:
                await self._cancel_wait(waiter, token, capture_mark=mark if capture else None)
                return "timeout"
            except asyncio.CancelledError:
                # Let the wait end by itself (cancel token + wake-up) rather than killing its
                # tmux client mid-wait; stop() awaits this.
                self._cleanup = asyncio.ensure_future(self._cancel_wait(waiter, token))
                raise
            finally:
                if self._waiter is not None and self._waiter[0] is waiter and waiter.done():
                    self._waiter = None
            if res.timed_out:
                await self._repair_gate()
            if res.exit_code != 0 and _CONTROL_LOST in res.stderr:
                # Its keys were sent (a command of the line ran); the wait goes on through
                # execs, the dead client's place at the gate given up first.
                await self._repair_gate()
                first = False
                continue
            if res.exit_code != 0:
                if not await self.is_alive():
                    return "gone"
                if first:
                    self._send_failed(res)
                log.debug("prompt wait ended with %s: %s", res.exit_code, res.output[:300])
                return "error"
            first = False
            if drawing + "\n" in res.stdout:
                return await self._wait_drawn(finish_if_drawn, deadline, done, mark, capture,
                                              clear_history)  # fmt: skip
            if self._finished(res, done, mark, capture):
                return "prompt"
            if self._finished(res, cut, mark, capture):
                return "timeout"
            if deadline <= time.monotonic():
                return "timeout"

    async def _wait_drawn(
        self,
        finish_if_drawn: list[str],
        deadline: float,
        done: str,
        mark: str,
        capture: bool,
        clear_history: bool,
    ) -> str:
        """The prompt signal came before bash drew the prompt (it comes just before): look
        again every PROMPT_DRAW_POLL_SEC, for at most PROMPT_DRAW_MAX_SEC (an empty PS1 draws
        nothing) or until the deadline; then the wait is over either way."""
        until = min(deadline, time.monotonic() + PROMPT_DRAW_MAX_SEC)
        again = ["run-shell", "-d", f"{PROMPT_DRAW_POLL_SEC:.3f}", ";", *finish_if_drawn]
        while time.monotonic() < until:
            res = await self._call(again, max_output_bytes=self.max_capture_bytes)
            if not res.ok:
                return "prompt" if await self.is_alive() else "gone"
            if self._finished(res, done, mark, capture):
                return "prompt"
        if clear_history:
            await self._call(["clear-history", "-t", self.session_name])
        return "prompt"

    def _finished(self, res: ExecResult, done: str, mark: str, capture: bool) -> bool:
        """Whether a wait's tmux call ran its final commands; keeps the capture they took."""
        _, sep, rest = res.stdout.partition(done + "\n")
        if sep and capture:
            self._warn_if_cut(res)
            self._prefetched = (rest, mark)
        return bool(sep)

    async def _cancel_wait(
        self, waiter: asyncio.Future[ExecResult], token: str, capture_mark: str | None = None
    ) -> None:
        """End an in-container prompt wait: it exits when woken and shown its token. With
        `capture_mark`, the same tmux call then captures the terminal, at the moment the wait
        ran out, for the next `get_incremental_output` (a wait that runs its full time costs
        no capture call of its own)."""
        killed = False
        if not waiter.done():
            cmd = [
                *("set-option", "-g", self._opt_waiting, "-", ";"),  # the server's timer is off
                *("set-option", "-g", self._opt_cancel, token, ";"),
                *("wait-for", "-U", self._channel),
            ]
            if capture_mark is not None:
                cmd += [";", *shlex.split(self._capture_commands(capture_mark))]
            with contextlib.suppress(Exception):
                res = await self._call(cmd, timeout=10, max_output_bytes=self.max_capture_bytes)
                if capture_mark is not None and res.ok and f"{capture_mark}\n" in res.stdout:
                    self._warn_if_cut(res)
                    self._prefetched = (res.stdout, capture_mark)
            try:
                await asyncio.wait_for(asyncio.shield(waiter), 5)
            except TimeoutError:
                waiter.cancel()  # the sandbox kills it
                killed = True
            except Exception:
                pass
        with contextlib.suppress(BaseException):
            res = await waiter
            killed = killed or res.timed_out
        if self._waiter is not None and self._waiter[0] is waiter:
            self._waiter = None
        if killed:
            await self._repair_gate()

    async def _repair_gate(self) -> None:
        """After a waiter was killed inside `wait-for -L`, tmux keeps its place in the queue and
        would hand it the next release; two releases leave the gate open whatever its state."""
        with contextlib.suppress(Exception):
            for _ in range(2):
                await self._call(["wait-for", "-U", self._channel], timeout=10)

    # -- output ---------------------------------------------------------------------------------

    async def capture(self, full_history: bool = True) -> str:
        """``tmux capture-pane -p`` of the visible pane, or with ``-S -`` the whole scrollback
        plus the visible pane (every row, blank ones included; trailing spaces trimmed by tmux).
        """
        self._require_started()
        cmd = ["capture-pane", "-p"]
        if full_history:
            cmd += ["-S", "-"]
        res = await self._call(
            [*cmd, "-t", self.session_name], max_output_bytes=self.max_capture_bytes
        )
        self._warn_if_cut(res)
        return res.stdout

    def _capture_commands(self, mark: str) -> str:
        """A tmux command list printing the whole scrollback plus screen, a mark line, then the
        visible screen: what `get_incremental_output` compares and shows."""
        name = self.session_name
        return (
            f"capture-pane -p -S - -t {name} ; display-message -p -t {name} {mark} ; "
            f"capture-pane -p -t {name}"
        )

    async def get_incremental_output(self) -> str:
        """Terminus 2's observation of the terminal since the previous call.

        * First call: ``"Current Terminal Screen:\\n"`` + the visible pane.
        * Later calls: the whole scrollback is captured and compared with the previous capture
          by `find_new_content` (previous capture stripped of surrounding whitespace, searched
          in the new one). If found and what follows is not only whitespace:
          ``"New Terminal Output:\\n"`` + that part (it begins with a newline and the previous
          last line, and ends with the screen's blank rows, exactly as in Harbor). Otherwise
          (the previous capture is gone, e.g. after ``clear``, a full-screen program or
          trimmed history; or the new capture is blank): ``"Current Terminal Screen:\\n"`` +
          the visible pane.

        Because the new part starts at the previous capture's last line, a call with nothing new
        does not fall back to the screen: it gives ``"New Terminal Output:\\n\\n"`` + that last
        line (usually the prompt) + the blank rows, as Harbor does.

        Both captures are taken by one tmux command list (one exec), or were taken already by
        ``send_keys(capture=True)``.
        """
        self._require_started()
        ok = True
        if self._prefetched is not None:
            (raw, mark), self._prefetched = self._prefetched, None
        else:
            mark = f"ttgen-capture-{uuid.uuid4().hex}"
            cmd = shlex.split(self._capture_commands(mark))
            res = await self._call(cmd, max_output_bytes=self.max_capture_bytes)
            self._warn_if_cut(res)
            raw, ok = res.stdout, res.ok
        current, sep, visible = raw.partition(mark + "\n")
        if sep and ok:
            self._seen_alive_at = time.monotonic()
        if not sep:  # tmux failed (the session ended?): what two separate captures would give
            current = raw if ok else ""
            visible = await self.capture(full_history=False)
        if self._previous_buffer is None:
            self._previous_buffer = current
            return f"Current Terminal Screen:\n{visible}"
        new = find_new_content(self._previous_buffer, current)
        self._previous_buffer = current
        if new is not None and new.strip():
            return f"New Terminal Output:\n{new}"
        return f"Current Terminal Screen:\n{visible}"

    # -- helpers ----------------------------------------------------------------------------

    def _require_started(self) -> None:
        if not self._started:
            raise AgentError(f"tmux session {self.session_name!r} is not started")

    def _warn_if_cut(self, res: ExecResult) -> None:
        if res.stdout_omitted_bytes:
            log.warning(
                "tmux capture of %s exceeded %d bytes; %d bytes were cut from its middle",
                self.session_name,
                self.max_capture_bytes,
                res.stdout_omitted_bytes,
            )

    async def _call(
        self,
        args: Sequence[str],
        *,
        stdin: bytes | None = None,
        note: str | None = None,
        timeout: float | None = None,
        max_output_bytes: int | None = None,
    ) -> ExecResult:
        """One call of the tmux command list `args`: a line to the control client when one is
        open and free, else an exec of a tmux client (after an ``sh`` that writes `note` to the
        sequence number file, when given; the helper writes it before the line otherwise)."""
        ctl = self._free_control() if stdin is None else None
        if ctl is not None:
            try:
                line = _tmux_line(args)
            except ValueError:  # a NUL: only a client's arguments can carry it
                line = None
            if line is not None:
                res = await self._run_control(ctl, line, note, timeout, max_output_bytes)
                if res is not None:
                    return res
        prefix = [] if note is None else self._note_prefix(note)
        return await self._run([*prefix, *self._tmux, *args], stdin=stdin, timeout=timeout,
                               max_output_bytes=max_output_bytes)  # fmt: skip

    async def _run_control(
        self,
        ctl: _Control,
        line: str,
        note: str | None,
        timeout: float | None,
        max_output_bytes: int | None,
    ) -> ExecResult | None:
        """`line` through the control client; None when it could not be sent (nothing ran)."""
        async with ctl.lock:
            t0 = time.monotonic()
            sentinel = f"ttgen-ctl-{uuid.uuid4().hex}"
            req = _ControlRequest(sentinel.encode(), max_output_bytes or self.max_capture_bytes)
            write = None
            if note is not None and self._seq_file is not None:
                write = (self._seq_file, f"{note}\n".encode())
            ctl.requests.append(req)
            try:
                await ctl.proc.send(f"{line}\ndisplay-message -p {sentinel}\n".encode(),
                                    write_file=write)  # fmt: skip
            except ConnectionError:
                self._drop_control("it has exited")
                return None

            def result(code: int | None, stderr: str = "", timed_out: bool = False) -> ExecResult:
                return ExecResult(
                    exit_code=code,
                    stdout=req.out.decode("utf-8", errors="replace"),
                    stderr=req.err.decode("utf-8", errors="replace") + stderr,
                    timed_out=timed_out,
                    duration_sec=time.monotonic() - t0,
                    stdout_omitted_bytes=req.omitted,
                )

            wait = self.command_timeout_sec if timeout is None else timeout
            try:
                await asyncio.wait_for(asyncio.shield(req.future), wait)
            except TimeoutError:
                self._drop_control(f"no answer within {wait:g} s")
                return result(None, timed_out=True)
            except asyncio.CancelledError:
                self._drop_control("a call was cancelled")
                raise
            except ConnectionError:
                self._drop_control("it ended")
                if not req.answered:
                    return None  # nothing of the line ran: it can go through an exec
                return result(1, _CONTROL_LOST + "\n")
            return result(1 if req.failed else 0)

    async def _open_control(self) -> None:
        """Attach a control-mode client to the session and keep it (see `_Control`); where that
        cannot be done, every call stays an exec."""
        opener = getattr(self.sandbox, "open_process", None)
        if not self.control or not self._server_deadline or opener is None or self._ctl_tried:
            return  # refresh-client -f (no pane output for it) came with tmux 3.2
        argv = [*self._tmux, "-C", "attach-session", "-t", self.session_name]
        for _ in range(2):
            ctl = _Control()
            try:
                proc = await opener(argv, ctl.feed, user=self.user)
            except Exception as exc:
                log.debug("no tmux control client: %r", exc)
                proc = None
            if proc is None:  # no exec helper (yet): a later send looks again
                self._drop_control("cannot start it")
                return
            self._ctl_tried = True
            ctl.proc = proc
            proc.done.add_done_callback(lambda _, ctl=ctl: ctl.fail_all())
            # attached, no pane output for it (it reads none), and a call answered
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctl.attached.wait(), self.command_timeout_sec)
            res = None
            if ctl.attached.is_set():
                res = await self._run_control(ctl, "refresh-client -f no-output", None, 10, None)
            if res is None or not res.ok:
                why = "it did not attach" if res is None else res.output.strip()[:200]
                self._ctls.append(ctl)
                self._drop_control(f"its set-up failed: {why}")
                return
            self._ctls.append(ctl)

    def _free_control(self) -> _Control | None:
        """An open control client with no call in progress (the waiting one is busy)."""
        if len(self._ctls) < 2:
            return None
        for ctl in self._ctls:
            if not ctl.lock.locked():
                return ctl
        return None

    @property
    def _via_control(self) -> bool:
        """Whether a call made now goes to a control client."""
        return self._free_control() is not None

    def _drop_control(self, why: str) -> None:
        """Stop using the control clients (calls are execs from now on) and end them."""
        ctls, self._ctls = self._ctls, []
        if ctls:
            log.debug("tmux session %s: control clients dropped: %s", self.session_name, why)
        for ctl in ctls:
            ctl.fail_all()
        procs = [ctl.proc for ctl in ctls if ctl.proc is not None]
        if procs and self._ctl_closing is None:
            self._ctl_closing = asyncio.ensure_future(
                asyncio.gather(*(proc.close(timeout=0.5) for proc in procs))
            )

    async def _run(
        self,
        cmd: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        max_output_bytes: int | None = None,
    ) -> ExecResult:
        kwargs = {} if max_output_bytes is None else {"max_output_bytes": max_output_bytes}
        return await self.sandbox.exec(
            list(cmd),
            timeout=self.command_timeout_sec if timeout is None else timeout,
            env=env,
            user=self.user,
            stdin=stdin,
            **kwargs,
        )


def _protect_separator(text: str) -> str:
    """tmux reads an argument ending in ``;`` as the end of a command, and ``\\;`` at the end as
    a literal ``;``: one backslash before a final ``;`` makes it arrive as typed."""
    return text[:-1] + "\\;" if text.endswith(";") else text
