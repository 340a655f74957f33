"""`ttgen run PIPELINE.yaml`: the bundled quickstart end to end offline (the README's main
command), stage skipping and resuming, --until, --dry-run, and config errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from ttgen.cli import app
from ttgen.pipeline.config import PipelineConfigError, load_pipeline

REPO = Path(__file__).resolve().parents[1]
WIDE = {"COLUMNS": "400"}


def _write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_config_errors_name_the_file_and_the_key(tmp_path):
    with pytest.raises(PipelineConfigError, match=r"p.yaml: sources\[0\]\.adapterr: unknown key"):
        load_pipeline(_write(tmp_path, {"sources": [{"adapterr": "math"}]}))
    with pytest.raises(PipelineConfigError, match="exactly one of adapter, tasks, synth"):
        load_pipeline(_write(tmp_path, {"sources": [{"adapter": "math", "input": "x",
                                                     "tasks": "t"}]}))  # fmt: skip
    with pytest.raises(PipelineConfigError, match="`input` is required"):
        load_pipeline(_write(tmp_path, {"sources": [{"adapter": "math"}]}))
    with pytest.raises(PipelineConfigError, match=r"rollouts\.attempts: Input should be greater"):
        load_pipeline(_write(tmp_path, {"sources": [{"tasks": "t"}], "rollouts": {"attempts": 0}}))
    with pytest.raises(PipelineConfigError, match="distinct `name`s"):
        load_pipeline(_write(tmp_path, {"sources": [{"tasks": "a"}, {"tasks": "b"}]}))
    with pytest.raises(PipelineConfigError, match="not valid YAML"):
        (tmp_path / "bad.yaml").write_text("sources: [\n")
        load_pipeline(tmp_path / "bad.yaml")
    with pytest.raises(PipelineConfigError, match="apply to synth sources only"):
        load_pipeline(_write(tmp_path, {"sources": [{"tasks": "t", "executor": "ray"}]}))
    c = load_pipeline(_write(tmp_path, {"sources": [
        {"synth": "skills", "domains": ["all"], "executor": "ray", "address": "h:6379",
         "per_node": 2}]}))  # fmt: skip
    assert (c.sources[0].executor, c.sources[0].per_node) == ("ray", 2)
    c = load_pipeline(REPO / "examples" / "quickstart.yaml")
    assert c.path("adapters/math.jsonl") == REPO / "examples" / "adapters" / "math.jsonl"


def test_unknown_keys_suggest_the_nearest_known_key(tmp_path):
    def message(data: dict) -> str:
        with pytest.raises(PipelineConfigError) as info:
            load_pipeline(_write(tmp_path, data))
        return str(info.value)

    base = {"sources": [{"tasks": "t"}]}
    msg = message({**base, "rollouts": {"attempt": 2}})
    assert msg == f'{tmp_path / "p.yaml"}: rollouts.attempt: unknown key; did you mean "attempts"?'
    msg = message({"sources": [{"tasks": "t", "nmae": "x"}]})
    assert 'sources[0].nmae: unknown key; did you mean "name"?' in msg
    msg = message({**base, "export": {"sft": {"tokenizer": "toy", "max_length": 9}}})
    assert 'export.sft.max_length: unknown key; did you mean "max_len"?' in msg
    assert 'rollout: unknown key; did you mean "rollouts"?' in message({**base, "rollout": {}})
    # Nothing close: the keys the section does know.
    msg = message({**base, "curation": {"zzz": 1}})
    assert "curation.zzz: unknown key (known here: benchmarks, decontaminate," in msg


def test_run_prints_config_errors_literally(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "[x]"
    folder.mkdir()
    _write(folder, {"sources": [{"tasks": "t"}], "rollouts": {"attempt": 2}})
    res = CliRunner().invoke(app, ["run", str(folder / "p.yaml")], env=WIDE)
    assert res.exit_code == 2, res.output
    assert f'{folder / "p.yaml"}: rollouts.attempt: unknown key; did you mean "attempts"?' in (
        res.stderr
    )


def test_the_quickstart_runs_offline_end_to_end_and_resumes(
    docker_ready, tmp_path, monkeypatch, umask_022
):
    monkeypatch.chdir(REPO)  # the repository's ttgen.toml maps the examples' base images
    runner = CliRunner()
    run = tmp_path / "run"
    res = runner.invoke(app, ["run", "examples/quickstart.yaml", "--out", str(run)], env=WIDE)
    assert res.exit_code == 0, res.output
    assert f"report: {run / 'report' / 'index.html'}" in res.stdout
    manifest = json.loads((run / "run.json").read_text())
    stages = manifest["stages"]
    assert [s for s in stages if stages[s]["status"] == "done"] == [
        "sources", "validation", "rollouts", "curation", "export", "train", "eval",
        "report"]  # fmt: skip
    src = stages["sources"]["counts"]
    assert src["by_source"] == {"adapter-math": 8, "adapter-code": 5, "adapter-swe": 3,
                                "tasks": 3, "synth-skills": 0, "synth-seeds": 0}  # fmt: skip
    assert "synthesis needs a teacher" in stages["sources"]["note"]
    assert stages["validation"]["counts"]["verdicts"] == {"valid": 14, "no_tests": 5}
    # the oracle stands in for the teacher on the 14 tasks with solutions, 2 attempts each
    roll = stages["rollouts"]["counts"]
    assert (roll["trials"], roll["outcomes"], roll["agent"], roll["stand_in"]) == (
        28, {"passed": 28}, "oracle", True)  # fmt: skip
    # the demo benchmark shares 14+ words with one bundled math prompt: both its trials dropped
    cur = stages["curation"]["counts"]
    assert (cur["kept"], cur["dropped_by"], cur["decontaminated_tasks"]) == (
        26, {"decontamination": 2}, 1)  # fmt: skip
    dropped = [json.loads(x) for x in (run / "curated" / "dropped.jsonl").read_text().splitlines()]
    assert {d["task"] for d in dropped} == {"math-count-3-or-5-not-15"}
    records = [json.loads(x) for x in (run / "curated" / "records.jsonl").read_text().splitlines()]
    assert all(r["stand_in"] and r["agent"] == "oracle" for r in records)
    corpus = pq.read_table(run / "export" / "corpus.parquet").to_pylist()
    assert len(corpus) == 26 and {r["agent"] for r in corpus} == {"oracle"}
    first = corpus[0]["conversations"]
    assert [m["role"] for m in first] == ["user", "assistant"] * 3
    assert "Stand-in for a teacher model" in first[1]["content"]
    sft = pq.read_table(run / "export" / "sft.parquet").to_pylist()
    assert len(sft) == 26 and all(sum(r["loss_mask"]) == r["n_trained_tokens"] > 0 for r in sft)
    assert "toy tokenizer" in stages["export"]["note"]
    assert (run / "report" / "index.html").is_file()
    # a tiny model built from a config learned the SFT rows (loss on trained tokens falls)...
    tr = stages["train"]["counts"]
    assert tr["steps"] == 160 and tr["final_loss_mean10"] < 0.3 * tr["first_loss_mean10"]
    assert (run / "train" / "model" / "model.safetensors").is_file()
    assert len((run / "train" / "metrics.jsonl").read_text().splitlines()) == 160
    # ... was served and evaluated through Terminus 2: it fails every task as a model does,
    # with nothing missing and nothing recorded as infrastructure
    ev = json.loads((run / "eval" / "eval.json").read_text())
    assert (ev["n_tasks"], ev["n_trials"], ev["accuracy"], ev["n_missing"]) == (3, 3, 0.0, 0)
    assert ev["infra"]["n_trials"] == 0 and ev["checkpoint"] == str(run / "train" / "model")
    assert stages["eval"]["counts"]["missing"] == 0
    page = (run / "report" / "index.html").read_text()
    assert '"training":{' in page and '"eval":{' in page
    # why tasks leave: the 5 tasks without tests have no solution for the oracle stand-in
    assert roll["tasks"] == 14
    assert roll["left_out"] == {"no reference solution for the oracle stand-in": 5}
    assert "left_out: no reference solution for the oracle stand-in 5" in res.stdout
    # every artifact is readable by the other users of a shared machine (umask 022 here)
    for rel in ("run.json", "rollouts/result.json", "rollouts/config.json",
                "rollouts/hello-world__0/result.json", "curated/records.jsonl",
                "curated/curate.json", "export/corpus.parquet", "export/sft.parquet",
                "export/corpus.parquet.export.json", "report/index.html"):  # fmt: skip
        assert (run / rel).stat().st_mode & 0o777 == 0o644, rel

    # a second run skips every stage
    res = runner.invoke(app, ["run", "examples/quickstart.yaml", "--out", str(run)], env=WIDE)
    assert res.exit_code == 0, res.output
    assert res.stdout.count("done earlier: skipped") == 8
    # a changed curation setting reruns curation and what follows, nothing upstream; where and
    # how fast validation and rollouts run (Ray, concurrency) is not a change of their results
    cfg = yaml.safe_load((REPO / "examples" / "quickstart.yaml").read_text())
    cfg["validation"].update(executor="ray", per_node=3, concurrency=1)
    cfg["rollouts"].update(executor="ray", address="auto", concurrency=1)
    cfg["curation"]["decontaminate"] = False
    cfg["curation"]["benchmarks"] = []
    cfg["train"]["set"] = {"epochs": 2}  # (kept short: the new data trains a new model)
    cfg["eval"]["tasks"] = ["tasks/hello-world"]
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    (tmp_path / "examples" / "quickstart.yaml").write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["run", str(tmp_path / "examples" / "quickstart.yaml"),
                              "--out", str(run)], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert res.stdout.count("done earlier: skipped") == 3
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["stages"]["curation"]["counts"]["kept"] == 28
    # the earlier model and its eval are set aside, not resumed with the new data or mixed in
    assert manifest["stages"]["train"]["counts"]["steps"] == 8
    assert len(list(tmp_path.glob("run/train.*"))) == 1 and len(list(tmp_path.glob("run/eval.*"))) == 1
    assert json.loads((run / "eval" / "eval.json").read_text())["n_trials"] == 1


def test_until_and_dry_run(docker_ready, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    runner = CliRunner()
    run = tmp_path / "run"
    res = runner.invoke(app, ["run", "examples/quickstart.yaml", "--out", str(run), "--dry-run",
                              "--model", "m", "--base-url", "http://127.0.0.1:9/v1", "--json"],
                        env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    plan = json.loads(res.stdout)
    # 19 tasks from the adapters and examples + 4 skill items + 5 seed records (with a teacher)
    assert (plan["tasks_planned"], plan["synthesis_items"], plan["trials_planned"]) == (28, 9, 56)
    assert plan["estimate"]["input_tokens"] > 0 and not run.exists()
    res = runner.invoke(app, ["run", "examples/quickstart.yaml", "--out", str(run),
                              "--until", "sources"], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    stages = json.loads((run / "run.json").read_text())["stages"]
    assert list(stages) == ["sources"] and (run / "tasks" / "adapter-math").is_dir()
    res = runner.invoke(app, ["run", "examples/quickstart.yaml", "--until", "nope"], env=WIDE)
    assert res.exit_code == 2 and "unknown stage 'nope'" in res.stderr
    res = runner.invoke(app, ["run", "examples/quickstart.yaml", "--model", "m"], env=WIDE)
    assert res.exit_code == 2 and "--base-url" in res.stderr


def test_with_a_teacher_the_same_file_runs_synthesis_and_terminus_2(docker_ready, tmp_path,
                                                                    monkeypatch):  # fmt: skip
    """--model/--base-url: the seed source is synthesized by the teacher and the rollouts are
    Terminus 2 trials of the teacher (a scripted OpenAI-compatible server here)."""
    from test_cli import scripted_server

    monkeypatch.chdir(REPO)
    good = (REPO / "tests" / "data" / "synth" / "sensor_rollup.xml").read_text()
    cfg = {
        "name": "t",
        "sources": [
            {"tasks": str(REPO / "examples" / "tasks")},
            {"synth": "seeds", "seeds": str(REPO / "examples" / "synth" / "seeds.jsonl"),
             "limit": 1, "gates": "static,leak,files"},
        ],
        "rollouts": {"attempts": 1, "concurrency": 4},
        "curation": {"decontaminate": False},
        "export": {"corpus": "corpus.parquet"},
    }  # fmt: skip
    pipeline = _write(tmp_path, cfg)
    run = tmp_path / "run"

    def teacher(body: dict) -> str:
        msgs = body["messages"]
        if msgs[0]["role"] == "system":
            return good  # a synthesis request
        first = msgs[0]["content"]
        if "Task Description:" not in first:
            return "OK"  # a pre-flight request
        done = sum(m["role"] == "assistant" for m in msgs) > 0
        keys = []
        if not done:
            for solve in (REPO / "examples" / "tasks").glob("*/solution/solve.sh"):
                if (solve.parent.parent / "instruction.md").read_text().strip() in first:
                    keys = [{"keystrokes": f"cat > /tmp/s.sh <<'EOF'\n{solve.read_text()}EOF\n",
                             "duration": 0.5},
                            {"keystrokes": "bash /tmp/s.sh\n", "duration": 20}]  # fmt: skip
        return json.dumps({"analysis": "a", "plan": "p", "commands": keys, "task_complete": done})

    with scripted_server([], default=teacher) as server:
        res = CliRunner().invoke(app, ["run", str(pipeline), "--out", str(run), "--model",
                                       "teacher-m", "--base-url", server.base_url], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    stages = json.loads((run / "run.json").read_text())["stages"]
    assert stages["sources"]["counts"]["by_source"] == {"tasks": 3, "synth-seeds": 1}
    assert stages["validation"]["counts"]["verdicts"] == {"valid": 3, "no_solution": 1}
    roll = stages["rollouts"]["counts"]
    assert (roll["trials"], roll["agent"], roll["stand_in"]) == (4, "terminus-2", False)
    assert roll["outcomes"] == {"passed": 3, "failed": 1}  # the synthesized task was not solved
    corpus = pq.read_table(run / "export" / "corpus.parquet").to_pylist()
    assert len(corpus) == 4 and {r["model"] for r in corpus} == {"teacher-m"}
    assert {r["agent"] for r in corpus} == {"terminus-2"}
    assert "seed_based/" in " ".join(r["source"] for r in corpus)


def test_settings_added_later_do_not_redo_earlier_runs():
    """A run folder made before `verifier_isolation` / `keep_tampered` existed keeps its
    fingerprints (nothing is redone after an upgrade) while they are at their defaults."""
    from ttgen.pipeline.config import Curation, Rollouts, Validation
    from ttgen.pipeline.stages import _settings

    assert "verifier_isolation" not in _settings(Validation())
    assert "verifier_isolation" not in _settings(Rollouts())
    assert "keep_tampered" not in _settings(Curation())
    assert _settings(Rollouts(verifier_isolation="shared"))["verifier_isolation"] == "shared"
    assert _settings(Curation(keep_tampered=True))["keep_tampered"] is True
