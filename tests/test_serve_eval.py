"""Serving a model folder (`ttgen serve`, ModelServer) and evaluating it (`ttgen eval --serve`):
a real `transformers serve` process on CPU for a tiny random Qwen3 model, real Docker trials.

A random model answers garbage: Terminus 2 gets no JSON it can parse, every trial is the model
failing (reward 0, a model outcome), never an infrastructure error."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import BASE_IMAGE
from ttgen.cli import app
from ttgen.formats.trial import AgentSpec, Outcome
from ttgen.llm import LLMClient, LLMConfig, LLMRequestError
from ttgen.rollout.trial import Trial, TrialSpec
from ttgen.task import Task
from ttgen.testing import Error, ScriptedLLMServer
from ttgen.train.serve import ModelServer, ServerError, _group_alive, server_command

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "tasks"
WIDE = {"COLUMNS": "400"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from ttgen.export.toy_tokenizer import train_toy_tokenizer
    from ttgen.train.tiny import init_model

    root = tmp_path_factory.mktemp("served")
    tok = train_toy_tokenizer(root / "tok", vocab_size=800, template="chatml")
    model = init_model(tok, root / "model", size="tiny")
    # Sample (as released checkpoints ask): the request's temperature applies, and the answers
    # are random text, not one token repeated.
    gen = json.loads((model / "generation_config.json").read_text())
    (model / "generation_config.json").write_text(json.dumps({**gen, "do_sample": True}))
    return model


def _processes_of(folder: Path) -> list[str]:
    """Command lines of running processes that name `folder` (a server left behind)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if str(folder) in cmd and state not in ("Z", "X"):
            found.append(cmd)
    return found


def _chat(base_url: str, model: str, **kw):
    config = LLMConfig(model=model, base_url=base_url, max_retries=0, **kw)

    async def go():
        async with LLMClient(config) as llm:
            return await llm.chat([{"role": "user", "content": "Say hello."}])

    return asyncio.run(go())


def test_model_server_answers_through_ttgens_client_and_stops_cleanly(tiny_model, tmp_path):
    log = tmp_path / "server.log"
    server = ModelServer(tiny_model, "transformers", device="cpu", log_path=log)
    assert server.model == str(tiny_model.resolve())
    with server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert server.command[1:3] == ["serve", str(tiny_model.resolve())]
        assert server.command[-8:] == ["--port", str(server.port), "--device", "cpu",
                                       "--dtype", "float32", "--log-level", "info"]  # fmt: skip
        pgid = server.pid
        assert server.alive() and _group_alive(pgid)
        r = _chat(server.base_url, server.model, max_tokens=8, temperature=0.7)
        assert isinstance(r.content, str) and r.finish_reason in ("length", "stop")
        assert 0 < r.usage.completion_tokens <= 8 and r.usage.prompt_tokens > 0
        assert r.model.startswith(server.model)
        # The server answers only to the folder's name.
        with pytest.raises(LLMRequestError) as info:
            _chat(server.base_url, "some-other-name", max_tokens=4)
        assert info.value.status == 400 and "pinned" in str(info.value)
        assert server.describe()["max_position_embeddings"] == 32768
    assert not server.alive() and not _group_alive(pgid)
    assert _processes_of(tiny_model) == []
    assert "Uvicorn running on" in log.read_text()
    # vLLM's command line (not run here: no GPU): the same name, the same host and port.
    vllm = server_command("vllm", tiny_model, host="127.0.0.1", port=8000,
                          model_name=server.model, max_model_len=4096)  # fmt: skip
    assert vllm[vllm.index("serve") :] == ["serve", str(tiny_model), "--host", "127.0.0.1", "--port", "8000",
                        "--served-model-name", server.model, "--dtype", "auto",
                        "--max-model-len", "4096"]  # fmt: skip


def test_a_model_folder_that_does_not_load_fails_with_the_servers_log(tiny_model, tmp_path):
    with pytest.raises(ServerError, match=r"no config\.json"):
        ModelServer(tmp_path, "transformers")
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in tiny_model.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "model.safetensors").write_bytes(b"\x00" * 64)  # not a safetensors file
    server = ModelServer(bad, "transformers", log_path=tmp_path / "bad.log")
    t0 = time.monotonic()
    with pytest.raises(ServerError) as info:
        server.start()
    message = str(info.value)
    assert "exited with code" in message and str(tmp_path / "bad.log") in message
    assert "safetensors" in message.lower()  # quoted from the server's log
    assert time.monotonic() - t0 < 60
    assert _processes_of(bad) == []


def test_ttgen_serve_runs_in_the_foreground_until_sigterm(tiny_model, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **WIDE}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ttgen.cli", "serve", str(tiny_model), "--engine", "transformers",
         "--log", str(tmp_path / "serve.log"), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        lines = {}
        deadline = time.monotonic() + 120
        while "model" not in lines and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            key, _, value = line.partition(":")
            lines[key.strip()] = value.strip()
        assert lines.get("model") == str(tiny_model.resolve()), proc.stderr.read()
        r = _chat(lines["base URL"], lines["model"], max_tokens=4)  # what it printed
        assert r.usage.completion_tokens > 0
        assert f"--base-url {lines['base URL']}" in proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    assert rc == 0 and "server stopped" in proc.stderr.read()
    assert _processes_of(tiny_model) == []


def test_eval_serve_a_random_model_fails_every_trial_as_the_model(
    docker_ready, tiny_model, tmp_path, monkeypatch
):
    monkeypatch.chdir(REPO)  # the repository's ttgen.toml maps the examples' base images
    out = tmp_path / "eval"
    cmd = ["eval", str(EXAMPLES / "hello-world"), str(EXAMPLES / "fix-offline-repo"),
           "--serve", str(tiny_model), "--serve-engine", "transformers", "-k", "1", "-n", "2",
           "--ak", "max_tokens=16", "--ak", "max_turns=2", "--out", str(out)]  # fmt: skip
    t0 = time.monotonic()
    res = CliRunner().invoke(app, cmd, env=WIDE)
    elapsed = time.monotonic() - t0
    assert res.exit_code == 0, res.output
    assert "accuracy 0.0%" in res.stdout
    saved = json.loads((out / "eval.json").read_text())
    assert saved["checkpoint"] == str(tiny_model.resolve()) == saved["model"]
    assert saved["server"]["engine"] == "transformers"
    assert saved["server"]["log"] == str(out / "server.log")
    assert (saved["accuracy"], saved["n_trials"], saved["n_missing"]) == (0.0, 2, 0)
    assert saved["outcomes"] == {"failed": 2} and saved["infra"]["n_trials"] == 0
    assert saved["n_retries"] == 0
    for name in ("hello-world__0", "fix-offline-repo__0"):
        trial = out / "job" / name
        result = json.loads((trial / "result.json").read_text())
        assert result["outcome"] == "failed" and result["reward"] == 0
        assert result["retries"] == [] and result["exception_info"] is None
        meta = result["agent_result"]["metadata"]
        assert meta["ended"] == "max_turns" and meta["n_episodes"] == 2
        messages = json.loads((trial / "agent" / "messages.json").read_text())
        assert any(m["content"].startswith("Previous response had parsing errors:\nERROR: ")
                   for m in messages if m["role"] == "user")  # fmt: skip
        steps = json.loads((trial / "agent" / "trajectory.json").read_text())["steps"]
        parse_errors = [s for s in steps
                        if "parsing errors" in json.dumps(s.get("observation", ""))]  # fmt: skip
        assert len(parse_errors) == 2  # one per turn, nothing executed
        assert not any(s.get("tool_calls") for s in steps)
    assert _processes_of(tiny_model) == []
    assert elapsed < 180  # seconds, on 2 busy cores; 20 s when idle

    # The same command again resumes the job: the server comes back on the same port.
    res = CliRunner().invoke(app, [*cmd, "--json"], env=WIDE)
    assert res.exit_code == 0, res.output
    again = json.loads(res.stdout)
    assert again["server"]["base_url"] == saved["server"]["base_url"]
    assert (again["n_trials"], again["n_missing"], again["accuracy"]) == (2, 0, 0.0)
    assert _processes_of(tiny_model) == []

    # --serve names the model and the endpoint itself.
    res = CliRunner().invoke(app, [*cmd, "--model", "m"], env=WIDE)
    assert res.exit_code == 2 and "drop --model" in res.output


async def test_first_prompt_over_the_context_ends_the_run_as_a_model_outcome(
    backend, job_name, make_task, tmp_path
):
    """A model whose context cannot hold even the first prompt (an endpoint's 400 "maximum
    context length") while short summary prompts fit: the trajectory ends, the verifier scores
    it, and the trial is the model failing, not an agent error."""
    task = Task.load(make_task(
        "hello", dockerfile=None, instruction="Create /app/hello.txt.\n",
        toml=f'[environment]\ndocker_image = "{BASE_IMAGE}"\n[agent]\ntimeout_sec = 60\n',
        test_sh="#!/bin/bash\necho 0 > /logs/verifier/reward.txt\n",
    ))  # fmt: skip
    too_long = Error.vllm_context_length(2048, 3000)
    async with ScriptedLLMServer([too_long, "SUMMARY", "QUESTIONS", "ANSWERS"],
                                 default=too_long) as server:  # fmt: skip
        spec = TrialSpec(task=task, trial_name="p", agent=AgentSpec(name="terminus-2", kwargs={
            "model": "m", "base_url": server.base_url, "api_key": "k", "max_turns": 5}))  # fmt: skip
        result = await Trial(spec, backend, tmp_path / "t", job_id=job_name).run()
        n_requests = len(server.requests)
    assert result.outcome == Outcome.FAILED and result.reward == 0, result.exception_info
    meta = result.agent_result.metadata
    assert meta["ended"] == "context_length_exceeded" and meta["n_episodes"] == 0
    assert "maximum context length is 2048" in meta["context_length_error"]
    assert n_requests == 1  # never retried, nothing summarized
