"""`ttgen synth seeds|skills|taxonomy` on the bundled examples, against the scripted server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import BASE_IMAGE
from test_cli import scripted_server
from ttgen.check import check_task
from ttgen.cli import app
from ttgen.settings import host_ca_bundle
from ttgen.task import Task
from ttgen.testing import Error

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data" / "synth"
GOOD = (DATA / "sensor_rollup.xml").read_text()
GOOD2 = (DATA / "token_audit.xml").read_text()
ENV = {
    "COLUMNS": "200",
    "TTGEN_IMAGE_ALIASES": f"ubuntu:*={BASE_IMAGE}",
    "TTGEN_EXTRA_CA_CERT": str(host_ca_bundle()),
}


@pytest.fixture
def runner(tmp_path, monkeypatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # keep the repository's ttgen.toml out of these tests
    return CliRunner()


def test_synth_seeds_writes_valid_tasks_from_the_bundled_seeds(runner, tmp_path):
    out = tmp_path / "seeds"
    with scripted_server(["OK", GOOD, GOOD2]) as server:
        res = runner.invoke(
            app,
            ["synth", "seeds", "--seeds", str(ROOT / "examples/synth/seeds.jsonl"), "--limit", "2",
             "--out", str(out), "--model", "gen", "--base-url", server.base_url,
             "--gates", "static,leak,files", "--price-in", "0.5", "--price-out", "1.5", "--json"],
            env=ENV,
        )  # fmt: skip
        requests = [r.body for r in server.requests]
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["written"] == 2 and summary["cost_usd"] > 0
    assert requests[0]["messages"][-1]["content"] == "Reply with the single word OK."
    # The two seeds run concurrently: their requests may arrive in either order.
    sir = next(r for r in requests[1:] if "SIR epidemic model" in r["messages"][1]["content"])
    assert "<reference_solution>" in sir["messages"][1]["content"]
    assert sir["model"] == "gen" and sir["temperature"] == 0.7
    for name in ("seed_sir_peak", "seed_k_shortest_routes"):
        assert check_task(out / name).valid
        meta = Task.load(out / name).config.metadata
        assert meta["source"] == "seed_synth" and meta["has_reference_solution"] is True
    sir_task = Task.load(out / "seed_sir_peak")
    assert "def sir(" not in sir_task.instruction  # the reference solution stays with the generator
    assert (out / "generation" / "seed_sir_peak.json").is_file()


def test_synth_skills_with_the_docker_gates(runner, tmp_path):
    out = tmp_path / "skills"
    with scripted_server([GOOD, GOOD2]) as server:
        res = runner.invoke(
            app,
            ["synth", "skills", "--domain", "data-processing", "--n", "2", "--difficulty", "easy",
             "--out", str(out), "--model", "gen", "--base-url", server.base_url,
             "--no-preflight", "-n", "2"],
            env=ENV,
        )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "written" in res.stdout and "unknown (set --price-in/--price-out)" in res.stdout
    for i in range(2):
        task = out / f"data_processing_task_000{i}"
        assert check_task(task).valid
        record = json.loads((out / "generation" / f"{task.name}.json").read_text())
        gates = [g["gate"] for g in record["attempts"][-1]["gates"]]
        assert gates == ["static", "leak", "files", "collect"]
        dockerfile = (task / "environment" / "Dockerfile").read_text()
        assert dockerfile.startswith("FROM ttgen/domain:data_processing\n")
        assert Task.load(task).config.metadata["difficulty"] == "easy"
    # A re-run finds everything done and asks the model nothing.
    with scripted_server([]) as server:
        again = runner.invoke(
            app,
            ["synth", "skills", "--domain", "data_processing", "--n", "2", "--difficulty", "easy",
             "--out", str(out), "--model", "gen", "--base-url", server.base_url,
             "--no-preflight", "--json"],
            env=ENV,
        )  # fmt: skip
        assert server.requests == []
    assert again.exit_code == 0 and json.loads(again.stdout)["n_generated_this_run"] == 0


def test_synth_stops_before_starting_when_the_endpoint_refuses(runner, tmp_path):
    with scripted_server([Error(401, "invalid api key")]) as server:
        res = runner.invoke(
            app,
            ["synth", "skills", "--domain", "security", "--n", "1", "--out", str(tmp_path / "o"),
             "--model", "gen", "--base-url", server.base_url],
            env=ENV,
        )  # fmt: skip
    assert res.exit_code == 2
    assert "invalid api key" in res.stderr and "TTGEN_API_KEY" in res.stderr
    assert not (tmp_path / "o").exists()


def test_synth_errors_exit_1_and_bad_options_exit_2(runner, tmp_path):
    with scripted_server([Error(500, "down")] * 3) as server:
        res = runner.invoke(
            app,
            ["synth", "skills", "--domain", "security", "--n", "1", "--out", str(tmp_path / "o"),
             "--model", "gen", "--base-url", server.base_url, "--no-preflight",
             "--gates", "static", "--llm", "max_retries=0"],
            env=ENV,
        )  # fmt: skip
    assert res.exit_code == 1, res.output
    record = json.loads((tmp_path / "o" / "generation" / "security_task_0000.json").read_text())
    assert record["status"] == "error" and "down" in record["reason"]
    for bad in (["--domain", "cooking"], ["--difficulty", "extreme"], ["--gates", "vibes"],
                ["--llm", "max_retries=-1"]):  # fmt: skip
        res = runner.invoke(
            app,
            ["synth", "skills", "--n", "1", "--out", str(tmp_path / "x"), "--model", "gen",
             "--base-url", "http://127.0.0.1:9/v1", "--no-preflight", *bad],
            env=ENV,
        )  # fmt: skip
        assert res.exit_code == 2, (bad, res.output)


def test_synth_taxonomy_lists_domains_and_primitives(runner):
    res = runner.invoke(app, ["synth", "taxonomy"], env=ENV)
    assert res.exit_code == 0
    assert "data_science" in res.stdout and "model_training" in res.stdout
    res = runner.invoke(app, ["synth", "taxonomy", "--domain", "Security"], env=ENV)
    assert res.exit_code == 0 and "primitive skills" in res.stdout
