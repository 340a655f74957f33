"""`ttgen env shell` driven like a person would: in a real terminal (tmux on the host)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

from conftest import BASE_IMAGE
from ttgen.sandbox.engine_client import EngineClient


async def _names(job: str) -> list[str]:
    async with EngineClient() as d:
        found = await d.containers.list(all=True, filters={"label": [f"ttgen.job={job}"]})
        return [c.data["Names"][0].lstrip("/") for c in found]


def _pane(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
    ).stdout


def _wait_for(session: str, text: str, seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pane = _pane(session)
        if text in pane:
            return pane
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never appeared; pane:\n{_pane(session)}")


async def test_interactive_shell_runs_commands_and_cleans_up(
    docker_ready, make_task, tmp_path: Path
):
    assert shutil.which("tmux"), (
        "tmux is needed on the host for this test (scripts/setup.sh installs it)"
    )
    task = make_task(dockerfile=None, toml=f'[environment]\ndocker_image = "{BASE_IMAGE}"\n')
    session = f"ttgen-shell-{uuid.uuid4().hex[:8]}"
    ttgen = str(Path(sys.executable).with_name("ttgen"))
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40",
         f"cd {tmp_path} && {ttgen} env shell {task} --with-tests; echo SHELL-EXITED-$?; sleep 30"],
        check=True, env={**os.environ, "TERM": "xterm"},
    )  # fmt: skip
    try:
        first = _wait_for(session, "exit the shell to remove it")
        name = first.split("container ", 1)[1].split(";", 1)[0]
        time.sleep(1)
        subprocess.run(
            ["tmux", "send-keys", "-t", session, "echo answer=$((6*7)); ls /tests; pwd", "Enter"],
            check=True,
        )
        _wait_for(session, "answer=42")
        pane = _wait_for(session, "test.sh")  # ls /tests: the tests were uploaded
        assert "/app" in pane
        assert name in await _names("env-shell")
        subprocess.run(["tmux", "send-keys", "-t", session, "exit 5", "Enter"], check=True)
        _wait_for(session, "SHELL-EXITED-5")
        assert name not in await _names("env-shell")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
