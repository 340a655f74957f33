"""The bootstrapped base image has what terminal tasks and agents expect."""

from __future__ import annotations

from conftest import BASE_IMAGE
from ttgen.task import Task


async def test_base_image_has_the_tools(backend, make_task, job_name):
    task = Task.load(
        make_task(dockerfile=None, toml=f'[environment]\ndocker_image = "{BASE_IMAGE}"\n')
    )
    async with await backend.start(task, job=job_name) as sb:
        assert sb.workdir == "/app"
        for tool in ("bash", "python3", "pip", "tmux", "curl", "git", "ps", "pkill"):
            res = await sb.exec(["sh", "-c", f"command -v {tool}"])
            assert res.ok, f"{tool} missing from {BASE_IMAGE}"
        venv = await sb.exec(
            "python3 -m venv /tmp/v && /tmp/v/bin/python -c 'import sys; print(sys.prefix)'"
        )
        assert venv.stdout.strip() == "/tmp/v"
        tmux = await sb.exec(
            "tmux new-session -d -s t -x 160 -y 40 && tmux send-keys -t t 'echo $((6*7))' Enter"
            " && sleep 0.5 && tmux capture-pane -p -t t"
        )
        assert "42" in tmux.stdout
        assert "bookworm" in (await sb.exec("cat /etc/os-release")).stdout
        assert (await sb.exec("printenv LANG")).stdout.strip() == "C.UTF-8"
