"""Terminus 2's terminal layer against real containers: keys, output capture, early completion."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import re
import string
import time

import pytest

from conftest import BASE_IMAGE
from ttgen.agents.terminus2.observation import find_new_content, limit_output_length
from ttgen.agents.terminus2.tmux import TmuxSession, _ControlRequest, _tmux_line
from ttgen.errors import AgentError
from ttgen.task import Task

PREBUILT = f'[environment]\ndocker_image = "{BASE_IMAGE}"\n'


@pytest.fixture
async def sandbox(backend, make_task, job_name):
    # as a trial's: the exec helper starts with the container
    task = Task.load(make_task(dockerfile=None, toml=PREBUILT))
    sb = await backend.start(task, job=job_name, exec_channel="eager")
    try:
        yield sb
    finally:
        await sb.stop()


@pytest.fixture(params=["control", "exec"])
async def term(sandbox, request):
    """A session whose calls go to its control-mode clients (what a trial gets), or, as where
    there is no exec helper, each through an exec of a tmux client."""
    t = TmuxSession(sandbox, control=request.param == "control")
    await t.start()
    assert len(t._ctls) == (2 if t.control else 0)
    try:
        yield t
    finally:
        await t.stop()


async def sh(sandbox, command: str) -> str:
    res = await sandbox.exec(command)
    assert res.ok, res.output
    return res.stdout


def screen_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# -- pure functions ---------------------------------------------------------------------------


def test_limit_output_length_ascii():
    assert limit_output_length("abc") == "abc"
    exact = "x" * 10_000
    assert limit_output_length(exact) == exact
    text = "a" * 6000 + "b" * 6000
    out = limit_output_length(text)
    head, marker, _ = out.partition("\n[... output limited to 10000 bytes; ")
    assert marker and head == "a" * 5000
    assert out.endswith(" interior bytes omitted ...]\n" + "b" * 5000)
    assert "; 2000 interior bytes omitted" in out
    assert limit_output_length("z" * 10_001).count("1 interior bytes omitted") == 1


def test_limit_output_length_multibyte():
    exact = "é" * 5000  # 10,000 bytes
    assert limit_output_length(exact) == exact
    text = "é" * 3000 + "€" * 3000  # 6,000 + 9,000 bytes
    out = limit_output_length(text)
    head, _, rest = out.partition("\n[... output limited to 10000 bytes; ")
    count, _, tail = rest.partition(" interior bytes omitted ...]\n")
    assert head == "é" * 2500  # 5,000 bytes: cut between characters
    assert tail == "€" * 1666  # 4,998 bytes: the half character at the cut is dropped
    assert int(count) == 15_000 - 5000 - 4998
    assert limit_output_length("€" * 4000, max_bytes=100).count("€") == 16 + 16


def test_find_new_content_follows_harbor():
    prev = "root@x:/app# \n\n\n"
    cur = "root@x:/app# ls\na b\nroot@x:/app# \n\n"
    assert find_new_content(prev, cur) == cur  # one-line buffer: from where it occurs
    prev2 = "root@x:/app# echo 1\n1\nroot@x:/app#\n\n"
    cur2 = "root@x:/app# echo 1\n1\nroot@x:/app# echo 2\n2\nroot@x:/app#\n\n"
    assert find_new_content(prev2, cur2) == "\nroot@x:/app# echo 2\n2\nroot@x:/app#\n\n"
    assert find_new_content("gone\nlines", cur2) is None


# -- the session ------------------------------------------------------------------------------


@contextlib.contextmanager
def tmux_calls(term):
    """The tmux calls `term` makes inside the block, as ("exec", argv) or ("control", line)."""
    calls: list[tuple[str, object]] = []
    sandbox = term.sandbox
    real_exec, real_control = sandbox.exec, term._run_control

    async def counting_exec(cmd, *args, **kwargs):
        calls.append(("exec", cmd))
        return await real_exec(cmd, *args, **kwargs)

    async def counting_control(ctl, line, *args, **kwargs):
        calls.append(("control", line))
        return await real_control(ctl, line, *args, **kwargs)

    sandbox.exec, term._run_control = counting_exec, counting_control
    try:
        yield calls
    finally:
        sandbox.exec = real_exec
        del term._run_control


@pytest.mark.parametrize("control", [True, False], ids=["control", "exec"])
async def test_start_and_first_observation_take_two_execs(sandbox, control):
    """The set-up is cheap at 1,000 containers: one exec starts tmux (probe, logs, session,
    logger), one installs the hook, waits for the first prompt and captures the screen that
    the first observation shows. Then two control-mode clients are attached (one line each to
    set them up), and a turn is one line to one of them: no process starts in the container
    but the shell's. Without them, a turn is one more exec."""
    term = TmuxSession(sandbox, recording="/logs/agent/recording.cast", control=control)
    try:
        with tmux_calls(term) as calls:
            await term.start()
            first = await term.get_incremental_output()
        assert first.startswith("Current Terminal Screen:\n") and first.rstrip().endswith("#")
        kinds = [kind for kind, _ in calls]
        assert kinds == ["exec", "exec", *(["control"] * 2 if control else [])], calls
        with tmux_calls(term) as calls:
            r = await term.send_keys("echo one\n", wait_sec=5, capture=True)
            assert r.ended_early and "\none\n" in await term.get_incremental_output()
        assert [kind for kind, _ in calls] == ["control" if control else "exec"], calls
        assert term.recording_active and term.pane_logging
        size = await sh(sandbox, "tmux display-message -p '#{window_width}x#{window_height}'")
        assert size.strip() == "160x40"  # an attached control client leaves the pane's size
    finally:
        await term.stop()

@pytest.mark.parametrize("control", [True, False], ids=["control", "exec"])
async def test_a_turn_at_the_prompt_starts_no_process_but_the_shells(sandbox, control):
    """With the control clients, a turn of a shell builtin starts no process in the container
    at all: the keys and the wait go to a control client, and the prompt tells the tmux server
    its number as its last bytes (the terminal's title), not through a tmux client. Seen in the
    container's next process id; without the control clients each turn's call is an exec.
    A PS1 the model sets keeps its look and the early end of its turns."""
    term = TmuxSession(sandbox, control=control)
    await term.start()
    try:

        async def pid_of_a_new_process() -> int:
            r = await term.send_keys("sh -c 'echo pid-$$'\n", wait_sec=10, capture=True)
            assert r.ended_early, r
            out = await term.get_incremental_output()
            return int(re.findall(r"^pid-(\d+)$", out, re.MULTILINE)[-1])

        first = await pid_of_a_new_process()
        for _ in range(5):
            r = await term.send_keys(":\n", wait_sec=10)
            assert r.ended_early and r.waited_sec < 1, r
        gap = await pid_of_a_new_process() - first
        assert gap == 1 if control else gap >= 7, gap
        r = await term.send_keys("PS1='my> '\n", wait_sec=10)
        assert r.ended_early and r.waited_sec < 1, r
        for i in range(3):
            r = await term.send_keys(f"echo hi-{i}\n", wait_sec=10, capture=True)
            assert r.ended_early and r.waited_sec < 1, r
            rows = screen_lines(await term.get_incremental_output())
            assert rows[-2:] == [f"hi-{i}", "my>"], rows
        # What the shell tells about the last command is the command's, not the hook's.
        for keys in ("false | true\n", "false last-arg\n"):
            assert (await term.send_keys(keys, wait_sec=10)).ended_early
        r = await term.send_keys('echo "st=$? last=$_"\n', wait_sec=10, capture=True)
        assert "\nst=1 last=last-arg\n" in await term.get_incremental_output()
        await term.send_keys("false | true\n", wait_sec=10)
        await term.send_keys('echo "pipe=${PIPESTATUS[*]}"\n', wait_sec=10, capture=True)
        assert "\npipe=1 0\n" in await term.get_incremental_output()
    finally:
        await term.stop()


async def test_start_shows_a_clean_prompt_and_first_then_new_output(term, sandbox):
    first = await term.get_incremental_output()
    assert first.startswith("Current Terminal Screen:\n")
    lines = screen_lines(first.removeprefix("Current Terminal Screen:\n"))
    assert len(lines) == 1 and lines[0].endswith("#"), first  # just the prompt: no setup visible
    full = await term.capture(full_history=True)
    assert screen_lines(full) == lines and "ttgen" not in full
    # Nothing of the setup is left in the shell's history, environment or /tmp either.
    await term.send_keys("history | grep -c 'hook[.]sh'; env | grep -c TTGEN_\n", wait_sec=5)
    out = await term.get_incremental_output()
    # The previous capture was one line (the prompt): Harbor's rule gives the whole buffer.
    assert out.startswith("New Terminal Output:\nroot@"), out
    assert screen_lines(out)[2:4] == ["0", "0"], out
    assert "ttgen" not in await sh(sandbox, "ls -a /tmp")

    await term.send_keys("echo one; echo two\n", wait_sec=5)
    out = await term.get_incremental_output()
    body = screen_lines(out.removeprefix("New Terminal Output:\n"))
    # From the newline before the previous capture's last line (the prompt) on.
    assert out.startswith("New Terminal Output:\n\nroot@"), out
    assert body[0].endswith("# echo one; echo two") and body[1:3] == ["one", "two"]
    assert len(body) == 4 and body[3].endswith("#")  # only the new lines and the new prompt
    # Nothing happened since: as in Harbor, just the last line again (the prompt).
    again = await term.get_incremental_output()
    assert again.startswith("New Terminal Output:\n\nroot@"), again
    assert screen_lines(again) == ["New Terminal Output:", body[3]]
    # The previous capture cannot be found once the screen is cleared: the visible screen.
    await term.send_keys("clear\n", wait_sec=5)
    await term.send_keys("echo fresh\n", wait_sec=5)
    cleared = await term.get_incremental_output()
    assert cleared.startswith("Current Terminal Screen:\n"), cleared
    assert screen_lines(cleared)[2:] == ["fresh", body[3]], cleared
    assert await term.is_alive()


async def test_keys_arrive_exactly(term, sandbox):
    text = "-n a;b 'q' \"dq\" $HOME \\back\\slash \ttab ünïcødé → 😀 \\;"
    await term.send_keys("cat > /tmp/keys.txt\n", wait_sec=0.3)
    await term.send_keys(text, wait_sec=0)
    await term.send_keys("\n", wait_sec=0)
    await term.send_keys("tail;", wait_sec=0)
    await term.send_keys("C-d", wait_sec=0)  # hands "tail;" to cat
    await term.send_keys("C-d", wait_sec=5)  # end of input: cat exits, the prompt is back
    got = (await sandbox.read_file("/tmp/keys.txt")).decode()
    assert got == text + "\n" + "tail;"
    # A keystroke string that starts with a dash is typed, not taken as a tmux option.
    await term.send_keys("-x", wait_sec=0)
    await term.send_keys("C-u", wait_sec=0)
    await term.send_keys("echo done\n", wait_sec=5)
    assert "done" in await term.get_incremental_output()


async def test_ctrl_c_interrupts_and_ends_the_wait(term):
    r = await term.send_keys("sleep 100\n", wait_sec=0.5)
    assert not r.ended_early and r.waited_sec >= 0.5
    r = await term.send_keys("C-c", wait_sec=10)
    assert r.ended_early and r.waited_sec < 2
    await term.send_keys("echo back\n", wait_sec=5)
    out = await term.get_incremental_output()
    assert "^C" in out and "back" in out


async def test_a_cancelled_wait_leaves_early_completion_working(term):
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(term.send_keys("sleep 100\n", wait_sec=30), 0.3)
    r = await term.send_keys("C-c", wait_sec=10)
    assert r.ended_early and r.waited_sec < 2, r
    r = await term.send_keys("echo ok\n", wait_sec=10)
    assert r.ended_early and r.waited_sec < 1, r


async def test_big_heredoc_arrives_intact(term, sandbox):
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + " -_;:'\"$`\\!#(){}[]<>|&*?~=+,.é→"
    body = "".join(
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 150))) + "\n"
        for _ in range(1400)
    )
    assert len(body.encode()) > 100_000
    keys = f"cat > /tmp/big.txt <<'EOF'\n{body}EOF\n"
    r = await term.send_keys(keys, wait_sec=30)
    assert r.ended_early  # the heredoc ended and the shell came back to its prompt
    digest = (await sh(sandbox, "sha256sum /tmp/big.txt")).split()[0]
    assert digest == hashlib.sha256(body.encode()).hexdigest()
    await term.send_keys("echo after-heredoc\n", wait_sec=5)
    assert "after-heredoc" in await term.get_incremental_output()


async def test_early_completion_returns_when_the_prompt_is_back(term):
    r = await term.send_keys("ls /\n", wait_sec=10)
    assert r.ended_early and r.waited_sec < 1, r
    r = await term.send_keys("sleep 2\n", wait_sec=10)
    assert r.ended_early and 2 <= r.waited_sec < 3, r
    r = await term.send_keys("sleep 5\n", wait_sec=1)
    assert not r.ended_early and 1 <= r.waited_sec < 1.3, r
    # Typed while `sleep 5` runs: the prompt after the sleep must not end this wait, only the
    # one after `echo`.
    r = await term.send_keys("echo typed-ahead\n", wait_sec=10)
    assert r.ended_early and 3 < r.waited_sec < 5, r
    last = screen_lines(await term.capture(full_history=False))[-3:]
    assert last[0].endswith("# echo typed-ahead") and last[1] == "typed-ahead", last
    assert last[2].endswith("#"), last  # the command ran and the prompt is back


async def test_an_early_capture_waits_for_the_prompt_to_be_drawn(term, sandbox):
    """The prompt signal comes just before bash draws its prompt; a capture taken with the wait
    must still show the drawn prompt, also with the container's CPU busy, and be what a capture
    of its own would have shown."""
    await term.get_incremental_output()
    hog = "for i in 1 2; do (while :; do :; done) & done; disown -a\n"
    await term.send_keys(hog, wait_sec=5)
    await term.get_incremental_output()
    try:
        for i in range(30):
            r = await term.send_keys(f"echo line-{i}\n", wait_sec=10, capture=True)
            assert r.ended_early, r
            out = await term.get_incremental_output()
            rows = [row for row in out.splitlines() if row.strip()]
            assert rows[-2] == f"line-{i}" and re.fullmatch(r"root@\w+:/app#", rows[-1]), out
            assert term._prefetched is None  # used once
            again = await term.get_incremental_output()  # a capture of its own: nothing new
            assert again.rstrip("\n") == f"New Terminal Output:\n\n{rows[-1]}", again
    finally:
        await sandbox.exec(["sh", "-c", "kill -9 $(pgrep -f 'while :') 2>/dev/null; true"])
    # Those turns' prompts sent their numbers as their last bytes (the title): drawn already.
    pos = await sandbox.exec(["tmux", "show-options", "-gv", term._opt_pos])
    assert pos.stdout.strip() == "title", pos.stdout
    # A prompt after a wait that ran out asks the server and records the cursor before bash
    # draws the prompt, as "x|y|history size" (not the format's text).
    r = await term.send_keys("sleep 1\n", wait_sec=0.2)
    assert not r.ended_early, r
    r = await term.send_keys("echo after\n", wait_sec=10, capture=True)
    assert r.ended_early and "after" in await term.get_incremental_output(), r
    pos = await sandbox.exec(["tmux", "show-options", "-gv", term._opt_pos])
    assert re.fullmatch(r"\d+\|\d+\|\d+", pos.stdout.strip()), pos.stdout



@pytest.mark.parametrize("server_deadline", [True, False], ids=["tmux-3.2+", "older-tmux"])
async def test_a_wait_that_runs_out_captures_the_screen_of_that_moment(
    term, sandbox, server_deadline
):
    """A command still running when its duration is up (Terminus 2 then shows the screen as it
    is). Through exec calls, the tmux server ends the wait at its deadline and the same call
    takes that capture, so the whole turn is one exec (keys, wait, end, capture); tmux before
    3.2 has no timed run-shell: a call of ttgen's ends the wait and takes the capture (two
    execs). Through control clients (tmux's timer would queue behind the wait), the other
    client ends it at the deadline: two lines, no process. Either way the next turn still
    ends at its prompt, in one call."""
    assert term._server_deadline  # the base image's tmux 3.3a (control clients need 3.2)
    term._server_deadline = server_deadline
    await term.get_incremental_output()
    with tmux_calls(term) as calls:
        r = await term.send_keys("echo sta''rted; sleep 3; echo fin''ished\n", wait_sec=0.5,
                                 capture=True)  # fmt: skip
        out = await term.get_incremental_output()
    assert not r.ended_early and 0.5 <= r.waited_sec < 1.0, r
    if term.control:
        assert [kind for kind, _ in calls] == ["control", "control"], calls
        assert '"run-shell" "-b"' not in calls[0][1] and "wait-for" in calls[1][1], calls
    else:
        assert len(calls) == (1 if server_deadline else 2), calls
        assert ("run-shell" in calls[0][1]) == server_deadline, calls
    assert "started" in out.splitlines() and "finished" not in out.splitlines(), out
    # The late prompt of that command (while the model thinks) opens the gate with nobody
    # waiting; the next wait, woken by it, waits once more inside the same call.
    await asyncio.sleep(3)
    with tmux_calls(term) as calls:
        r = await term.send_keys("echo next\n", wait_sec=10, capture=True)
        out = await term.get_incremental_output()
    assert len(calls) == 1, calls
    assert r.ended_early and r.waited_sec < 1, r
    rows = [row for row in out.splitlines() if row.strip()]
    assert rows[-4:-1] == ["finished", rows[-3], "next"] and rows[-3].endswith("echo next"), rows


async def test_keys_that_bring_no_prompt_wait_the_full_time(term):
    r = await term.send_keys("python3\n", wait_sec=1.5)
    assert not r.ended_early and r.waited_sec >= 1.5, r
    r = await term.send_keys("print(6 * 7)\n", wait_sec=1)
    assert not r.ended_early and r.waited_sec >= 1, r
    assert "42" in await term.get_incremental_output()
    r = await term.send_keys("exit()\n", wait_sec=10)
    assert r.ended_early and r.waited_sec < 1, r
    r = await term.send_keys("echo no-enter", wait_sec=1)  # typed at the prompt, not run
    assert not r.ended_early and r.waited_sec >= 1, r


async def test_strict_mode_always_waits_and_leaves_no_hook(sandbox):
    term = TmuxSession(sandbox, early_completion=False)
    await term.start()
    try:
        screen = await term.get_incremental_output()
        assert len(screen_lines(screen)) == 2, screen  # the header and the prompt
        t0 = time.monotonic()
        r = await term.send_keys("echo strict\n", wait_sec=1)
        assert not r.ended_early and time.monotonic() - t0 >= 1
        await term.send_keys('echo "pc=[${PROMPT_COMMAND-unset}]"\n', wait_sec=0.5)
        assert "pc=[unset]" in await term.get_incremental_output()
    finally:
        await term.stop()
    assert not (await sandbox.exec("tmux has-session -t terminus-2")).ok


@pytest.mark.parametrize("helper", [True, False], ids=["helper", "no-helper"])
async def test_recording_is_a_thread_of_the_exec_helper_where_there_is_one(
    backend, make_task, job_name, helper
):
    """With the exec helper (a trial's container), the pane's logger is `cat` into a pipe that
    the helper records in a thread: no interpreter per terminal. Without one, a python3
    recorder of its own. Either way the same pane log and asciinema recording (text split
    across chunks, non-ASCII), and nothing of it left in /tmp."""
    task = Task.load(make_task(dockerfile=None, toml=PREBUILT))
    sb = await backend.start(task, job=job_name, exec_channel="eager" if helper else False)
    term = TmuxSession(sb, recording="/logs/agent/recording.cast")
    try:
        await term.start()
        r = await term.send_keys("printf 'h\\303\\251llo-%s\\n' 1 2; seq 3000 | tail -n 1\n",
                                 wait_sec=10, capture=True)  # fmt: skip
        assert r.ended_early, r
        assert "héllo-2" in await term.get_incremental_output()
        assert term.recording_active and term.pane_logging
        procs = await sh(sb, "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done")
        interpreters = [line for line in procs.splitlines() if line.startswith("python3")]
        if helper:
            assert term.harness == ["cat"]
            assert len(interpreters) == 1, procs  # the helper alone
            assert re.search(r"^cat\s*$", procs, re.MULTILINE), procs
        else:
            assert term.harness[0].startswith("/usr/bin/python3 -I -S -c"), term.harness
            assert len(interpreters) == 0 and "/usr/bin/python3 -I -S" in procs, procs
        assert (await sh(sb, "ls -a /tmp")).split() == [".", "..", "tmux-0"]
        deadline = time.monotonic() + 10
        while True:  # the recorder writes as the bytes come; the last ones may be on their way
            cast = (await sb.read_file("/logs/agent/recording.cast")).decode().splitlines()
            output = "".join(e[2] for e in map(json.loads, cast[1:]) if e[1] == "o")
            if "\r\n3000\r\n" in output or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        head = json.loads(cast[0])
        assert (head["version"], head["width"], head["height"]) == (2, 160, 40)
        assert "héllo-1\r\nhéllo-2\r\n" in output and "\r\n3000\r\n" in output, output
        times = [e[0] for e in map(json.loads, cast[1:])]
        assert times == sorted(times) and len(times) >= 2
        raw = (await sb.read_file("/logs/agent/terminus_2.pane")).decode()
        assert "héllo-2\r\n" in raw and "\r\n3000\r\n" in raw
    finally:
        await term.stop()
        await sb.stop()


async def test_runs_as_the_given_user(sandbox):
    term = TmuxSession(sandbox, user="nobody", recording="/logs/agent/recording.cast")
    await term.start()
    try:
        r = await term.send_keys("id -un\n", wait_sec=5)
        assert r.ended_early
        assert screen_lines(await term.get_incremental_output())[2] == "nobody"
        # The logs' folder belongs to root: the files were made for the user.
        assert "nobody" in await sh(sandbox, "stat -c %U /logs/agent/terminus_2.pane")
        assert "nobody" in await sh(sandbox, "stat -c %U /logs/agent/recording.cast")
        assert term.recording_active
        cast = (await sandbox.read_file("/logs/agent/recording.cast")).decode().splitlines()
        assert json.loads(cast[0])["version"] == 2
        output = "".join(e[2] for e in map(json.loads, cast[1:]) if e[1] == "o")
        # The set-up's prompt and the turn's end with their numbers as the terminal's title
        # (nothing on the screen), right after the prompt's text.
        title = r"\x1b\]2;" + term._title + r"(\d+)\x07"
        assert re.findall(r"\$ " + title, output) == ["1", "2"], output
        output = re.sub(title, "", output)
        assert "$ id -un\r\n" in output and "\rnobody\r\n" in output
    finally:
        await term.stop()


async def test_scrollback_keeps_more_than_2000_lines_and_pane_log_records(term, sandbox):
    await term.get_incremental_output()
    r = await term.send_keys("seq 1 3000 | sed 's/^/line-/'\n", wait_sec=10)
    assert r.ended_early
    full = await term.capture(full_history=True)
    assert "\nline-1\n" in full and "\nline-3000\n" in full
    out = await term.get_incremental_output()
    assert out.startswith("New Terminal Output:\n") and "line-1\n" in out and "line-3000" in out
    assert len(limit_output_length(out).encode()) < 10_200
    log = (await sandbox.read_file("/logs/agent/terminus_2.pane")).decode(errors="replace")
    assert "line-2999" in log


async def test_missing_tmux_is_a_clear_error(sandbox):
    term = TmuxSession(sandbox)
    await sandbox.exec("mv /usr/bin/tmux /usr/bin/tmux.off", user="root")
    with pytest.raises(AgentError, match="tmux is not installed"):
        await term.start()
    assert not term.started


async def test_a_turn_at_the_prompt_costs_the_shell_one_tmux_call(term, sandbox):
    """tmux 3.2+: a send made while the shell sits at its prompt writes its number to a file
    before the keys, so the prompt hook reads it there instead of asking the server (one tmux
    client per prompt instead of two). After a wait that ran out (a command may still be
    running) the hook asks the server, and the typed-ahead line still waits for its own prompt.
    The file lives in tmux's own socket folder and goes with the session."""
    assert term._seq_file is not None and term._seq_file.startswith("/tmp/tmux-0/.ttgen-")

    async def option(name: str) -> str:
        return (await sh(sandbox, f"tmux show-options -gqv {name}")).strip()

    # The set-up's own first prompt found its number in the file too.
    seen_before = await option(term._opt_seen)
    assert seen_before == ""
    for i in range(5):
        r = await term.send_keys(f"echo fast-{i}\n", wait_sec=10)
        assert r.ended_early and r.waited_sec < 1, r
    assert await option(term._opt_idle) == str(term._seq)
    assert await option(term._opt_seen) == seen_before  # never asked the server
    assert (await sh(sandbox, f"cat {term._seq_file}")) == ""  # each number is used once
    # A command outlives its wait; keys typed while it runs must wait for their own prompt.
    r = await term.send_keys("sleep 2\n", wait_sec=0.3)
    assert not r.ended_early, r
    assert (await sh(sandbox, f"cat {term._seq_file}")).strip() == str(term._seq)
    r = await term.send_keys("echo after-sleep\n", wait_sec=10)
    assert r.ended_early and 1.2 < r.waited_sec < 3, r
    assert (await sh(sandbox, f"cat {term._seq_file}")).strip() == "-"
    assert await option(term._opt_seen) == str(term._seq)  # this prompt asked the server
    last = screen_lines(await term.capture(full_history=False))[-2:]
    assert last[0] == "after-sleep" and last[1].endswith("#"), last
    # Tampering with the file changes nothing for the next turn: the send writes it first.
    await sh(sandbox, f"echo 999999 > {term._seq_file}")
    r = await term.send_keys("sleep 1; echo slept\n", wait_sec=10)
    assert r.ended_early and 1 <= r.waited_sec < 2, r
    assert not (await sh(sandbox, "tmux list-buffers")).strip()  # no buffer left behind
    # The number cannot be written (here a folder is in the way; a full disk alike): the keys
    # still go, the hook asks the server, and the turn ends at its prompt, without an error.
    await sh(sandbox, f"rm -f {term._seq_file} && mkdir {term._seq_file}")
    for i in range(3):
        r = await term.send_keys(f"echo blocked-{i}\n", wait_sec=10, capture=True)
        assert r.ended_early and r.waited_sec < 1, r
        assert f"\nblocked-{i}\n" in await term.get_incremental_output()
    await sh(sandbox, f"rmdir {term._seq_file}")
    await term.stop()
    assert (await sh(sandbox, "ls -A /tmp/tmux-0 2>/dev/null || true")).strip() in ("", "default")


async def test_a_turn_at_the_prompt_skips_the_question_on_a_busy_host(term, sandbox):
    """The number is on disk before the keys reach the pane, however late the processes of the
    container get the CPU: with busy loops beside the shell, no fast turn's prompt asks the
    server (tmux's save-buffer wrote it from the client after the keys went, and on a loaded CI
    host the shell's prompt came first)."""
    hogs = "for i in 1 2 3 4; do (while :; do :; done) </dev/null >/dev/null 2>&1 & done"
    await sh(sandbox, f"setsid sh -c '{hogs}' </dev/null >/dev/null 2>&1")
    try:
        seen_before = (await sh(sandbox, f"tmux show-options -gqv {term._opt_seen}")).strip()
        for i in range(40):
            r = await term.send_keys(f"echo busy-{i}\n", wait_sec=20)
            assert r.ended_early, (i, r)
        seen = (await sh(sandbox, f"tmux show-options -gqv {term._opt_seen}")).strip()
        assert seen == seen_before, f"a prompt asked the server (last at turn {seen})"
    finally:
        await sandbox.exec("pkill -f 'while :' || true", user="root")


def test_a_command_line_for_the_control_client_keeps_every_argument_as_given():
    """What tmux makes of a client's arguments, written as one line: `;` alone separates
    commands, a trailing `;` ends one, a trailing `\\;` is a literal `;`; anything tmux's
    parser would act on inside a word ($, ~, quotes, backslashes, newlines, control bytes) is
    escaped, and NUL, which a line cannot carry, is refused (such keys go through an exec)."""
    line = _tmux_line(["send-keys", "-l", "--", "a;b $HOME ~x \"q\" \\ \n\t\x1b\x7f", ";",
                       "display-message", "-p", "x;", "set-option", "y", "z\\;"])  # fmt: skip
    assert line == (
        '"send-keys" "-l" "--" "a;b \\$HOME \\~x \\"q\\" \\\\ \\n\\t\\033\\177" ; '
        '"display-message" "-p" "x" ; "set-option" "y" "z;"'
    )
    with pytest.raises(ValueError, match="NUL"):
        _tmux_line(["send-keys", "-l", "a\0b"])


async def test_a_control_client_that_goes_away_leaves_the_terminal_working(sandbox):
    """The model may end the control clients (`tmux detach-client -a`, `pkill tmux`-like
    commands) or they may die: the turn in progress still ends at its prompt, and every later
    call is an exec of a tmux client. Keys with a NUL go through an exec from the start."""
    term = TmuxSession(sandbox)
    await term.start()
    try:
        assert len(term._ctls) == 2
        await term.get_incremental_output()
        r = await term.send_keys("echo before\n", wait_sec=10, capture=True)
        assert r.ended_early and "\nbefore\n" in await term.get_incremental_output()
        clients = await sh(sandbox, "tmux list-clients -F '#{client_control_mode}'")
        assert clients.split() == ["1", "1"]
        # The model detaches every client but the one it runs in (none: its shell has none).
        r = await term.send_keys("tmux detach-client -a -s terminus-2; echo detached\n",
                                 wait_sec=10, capture=True)  # fmt: skip
        out = await term.get_incremental_output()
        assert "\ndetached\n" in out, out
        with tmux_calls(term) as calls:
            for i in range(3):
                r = await term.send_keys(f"echo after-{i}\n", wait_sec=10, capture=True)
                assert r.ended_early and r.waited_sec < 2, r
                assert f"\nafter-{i}\n" in await term.get_incremental_output()
        assert term._ctls == []
        assert {kind for kind, _ in calls} == {"exec"}, calls
        assert (await sh(sandbox, "tmux list-clients")).strip() == ""
        assert await term.is_alive()
    finally:
        await term.stop()


async def test_a_control_client_answer_is_read_like_an_exec_output():
    """A line's answer: each command's output in order, a failed command's message kept apart
    (the call fails, as a tmux client exits 1), the sentinel's block ending it; over the size
    cap the middle is cut with a marker, as an exec's output (the capture's mark and screen at
    the end survive)."""
    req = _ControlRequest(b"ttgen-ctl-x", 40)
    assert not req.block([b"line one", b"line two"], False)
    assert not req.block([b"can't find session: nope"], True)
    assert not req.block([], False)
    assert req.block([b"ttgen-ctl-x"], False) and req.future.done()
    assert req.out == b"line one\nline two\n" and req.failed and req.answered == 3
    assert req.err == b"can't find session: nope\n"
    big = _ControlRequest(b"s", 20)
    big.block([b"aaaa", b"bbbb", b"cccc", b"dddd", b"mark", b"eeee"], False)
    assert big.omitted == 10
    assert big.out == b"aaaa\nbbbb\n\n[... 10 bytes omitted by ttgen ...]\nmark\neeee\n"
