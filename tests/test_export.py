"""Export: Terminal-Corpus rows exactly as released, loadable with `datasets`; mixes (single-stage
and curriculum), reproducible nested scaling subsets stratified by source; atomic outputs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ttgen.curate.curator import CurateOptions, curate
from ttgen.export.corpus import CORPUS_FIELDS
from ttgen.export.exporter import ExportError, ExportOptions, export
from ttgen.export.mixes import largest_remainder, plan_outputs
from ttgen.formats.trial import Outcome
from ttgen.testing.trials import conversation, terminus_turn, write_trial

RELEASED_FIELDS = ("conversations", "agent", "model", "model_provider", "date", "task", "episode",
                   "run_id", "trial_name", "enable_thinking", "source")  # fmt: skip
META = {
    "math": {"source": "adapter", "adapter": "math"},
    "code": {"source": "adapter", "adapter": "code"},
    "sec": {"source": "skill_synth", "domain": "security", "difficulty": "easy"},
    "dp": {"source": "skill_synth", "domain": "data_processing", "difficulty": "medium"},
}


def _curated(tmp_path: Path, per_kind: dict[str, int]) -> Path:
    job = tmp_path / "job"
    for kind, n in per_kind.items():
        for i in range(n):
            turns = [terminus_turn(f"echo {kind} {i}\n", think=f"step for {kind} {i}")] + [
                terminus_turn("", complete=True, think="confirm")
            ] * (1 + i % 3)
            text = f"Task {kind} number {i}: " + " ".join(f"w{kind}{i}x{j}" for j in range(30))
            write_trial(job, f"{kind}-{i:03d}__0", task=f"{kind}-{i:03d}", task_metadata=META[kind],
                        reward=None if kind in ("math", "code") else 1.0,
                        outcome=Outcome.UNVERIFIED if kind in ("math", "code") else Outcome.PASSED,
                        messages=conversation(text, turns))  # fmt: skip
    data = tmp_path / "data"
    curate([job], data, CurateOptions(decontaminate=False))
    return data


def test_corpus_rows_have_exactly_the_released_fields_and_datasets_loads_them(tmp_path):
    data = _curated(tmp_path, {"math": 3, "sec": 2})
    out = tmp_path / "corpus.parquet"
    summary = export([data], out, ExportOptions(format="corpus"))
    assert summary["outputs"]["default"]["rows"] == 5
    table = pq.read_table(out)
    assert tuple(table.schema.names) == RELEASED_FIELDS == CORPUS_FIELDS
    rows = table.to_pylist()
    r = next(x for x in rows if x["task"] == "math-001")
    assert (r["agent"], r["model"], r["model_provider"]) == (
        "terminus-2", "deepseek-ai/DeepSeek-V3.2", "hosted_vllm")  # fmt: skip
    assert r["episode"] == "episode-2"  # 3 assistant turns: the final episode's index is 2
    assert len(r["conversations"]) == 6 and r["conversations"][0]["role"] == "user"
    assert [m["role"] for m in r["conversations"]] == ["user", "assistant"] * 3
    assert r["conversations"][1]["content"].startswith("<think>step for math 1</think>")
    assert (r["run_id"], r["trial_name"], r["enable_thinking"], r["source"]) == (
        "job1", "math-001__0", True, "dataset_adapters/math")  # fmt: skip
    assert r["date"].startswith("2026-11-01T12:00:00")

    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(out), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))  # fmt: skip
    assert ds.num_rows == 5 and set(ds.column_names) == set(RELEASED_FIELDS)
    assert ds[0]["conversations"][0]["role"] == "user"

    jsonl = tmp_path / "corpus.jsonl"
    export([data], jsonl, ExportOptions(format="corpus"))
    lines = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert lines == rows
    ds2 = datasets.load_dataset("json", data_files=str(jsonl), split="train",
                                cache_dir=str(tmp_path / "hf-cache"))  # fmt: skip
    assert ds2.num_rows == 5 and set(ds2.column_names) == set(RELEASED_FIELDS)


def test_curriculum_puts_adapters_in_stage_one_and_the_rest_in_stage_two(tmp_path):
    data = _curated(tmp_path, {"math": 3, "code": 2, "sec": 4})
    out = tmp_path / "out" / "corpus.parquet"
    summary = export([data], out, ExportOptions(format="corpus", mix="curriculum"))
    s1 = pq.read_table(tmp_path / "out" / "corpus.stage1.parquet").to_pylist()
    s2 = pq.read_table(tmp_path / "out" / "corpus.stage2.parquet").to_pylist()
    assert Counter(r["source"] for r in s1) == {
        "dataset_adapters/math": 3,
        "dataset_adapters/code": 2,
    }
    assert Counter(r["source"] for r in s2) == {"skill_based/easy/security": 4}
    assert not out.exists()
    assert {k: v["rows"] for k, v in summary["outputs"].items()} == {"stage1": 5, "stage2": 4}


def test_scaling_subsets_are_stratified_nested_and_reproducible(tmp_path):
    data = _curated(tmp_path, {"math": 60, "code": 20, "sec": 15, "dp": 5})
    out = tmp_path / "sub" / "c.jsonl"
    summary = export([data], out, ExportOptions(format="corpus", fractions=[0.1, 0.5, 0.2]))
    files = {f: tmp_path / "sub" / f"c.frac{f}.jsonl" for f in ("0.1", "0.2", "0.5")}
    subsets = {f: [json.loads(x) for x in p.read_text().splitlines()] for f, p in files.items()}
    sizes = {f: len(v) for f, v in subsets.items()}
    assert sizes == {"0.1": 10, "0.2": 20, "0.5": 50}
    # stratified: each source contributes its share (security 1.5 and data_processing 0.5: the
    # tie for the last place goes to the first name)
    assert Counter(r["source"] for r in subsets["0.1"]) == {
        "dataset_adapters/math": 6,
        "dataset_adapters/code": 2,
        "skill_based/easy/security": 2,
    }
    assert Counter(r["source"] for r in subsets["0.2"]) == {
        "dataset_adapters/math": 12, "dataset_adapters/code": 4, "skill_based/easy/security": 3,
        "skill_based/medium/data_processing": 1}  # fmt: skip
    assert Counter(r["source"] for r in subsets["0.5"])["dataset_adapters/math"] == 30
    # nested
    ids = {f: {r["trial_name"] for r in v} for f, v in subsets.items()}
    assert ids["0.1"] <= ids["0.2"] <= ids["0.5"]
    # reproducible with the same seed; another seed picks another subset of the same size
    again = tmp_path / "again" / "c.jsonl"
    export([data], again, ExportOptions(format="corpus", fractions=[0.1]))
    assert (tmp_path / "again" / "c.frac0.1.jsonl").read_text() == files["0.1"].read_text()
    other = tmp_path / "other" / "c.jsonl"
    export([data], other, ExportOptions(format="corpus", fractions=[0.1], seed=7))
    other_ids = {json.loads(x)["trial_name"]
                 for x in (tmp_path / "other" / "c.frac0.1.jsonl").read_text().splitlines()}  # fmt: skip
    assert len(other_ids) == 10 and other_ids != ids["0.1"]
    assert summary["outputs"]["frac0.1"]["by_source"]["dataset_adapters/math"] == 6


def test_largest_remainder_hits_the_total_exactly():
    q = largest_remainder({"a": 7, "b": 7, "c": 7}, 0.5)
    assert sum(q.values()) == round(0.5 * 21) and max(q.values()) - min(q.values()) <= 1
    assert largest_remainder({"a": 1, "b": 99}, 0.01) == {"a": 0, "b": 1}
    assert largest_remainder({"a": 3}, 1.0) == {"a": 3}


def test_output_names_and_usage_errors(tmp_path):
    names = [p.path.name for p in plan_outputs(Path("d/x.parquet"), "curriculum", [0.01])]
    assert names == ["x.stage1.frac0.01.parquet", "x.stage2.frac0.01.parquet"]
    data = _curated(tmp_path, {"math": 1})
    with pytest.raises(ExportError, match="unknown output format"):
        export([data], tmp_path / "x.csv", ExportOptions())
    with pytest.raises(ExportError, match="fraction must be in"):
        export([data], tmp_path / "x.jsonl", ExportOptions(fractions=[1.5]))
    with pytest.raises(ExportError, match="needs --tokenizer"):
        export([data], tmp_path / "x.jsonl", ExportOptions(format="sft"))
    with pytest.raises(ExportError, match="no curated records"):
        export([tmp_path / "empty"], tmp_path / "x.jsonl", ExportOptions())


def test_a_broken_record_line_is_reported_and_the_rest_is_exported(tmp_path):
    data = _curated(tmp_path, {"sec": 3})
    lines = (data / "records.jsonl").read_text().splitlines()
    lines.insert(1, "{broken")
    (data / "records.jsonl").write_text("\n".join(lines) + "\n")
    summary = export([data], tmp_path / "c.jsonl", ExportOptions())
    assert summary["outputs"]["default"]["rows"] == 3
    assert summary["skipped"] == 1 and summary["problems"][0].startswith(
        f"{data / 'records.jsonl'}:2: "
    )


def test_an_interrupted_export_keeps_the_previous_file(tmp_path, monkeypatch):
    data = _curated(tmp_path, {"sec": 3})
    out = tmp_path / "c.parquet"
    export([data], out, ExportOptions())
    before = out.read_bytes()
    import ttgen.export.exporter as pipeline

    calls = []

    def boom(rec):
        calls.append(rec)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return pipeline_corpus_row(rec)

    pipeline_corpus_row = pipeline.corpus_row
    monkeypatch.setattr(pipeline, "corpus_row", boom)
    with pytest.raises(KeyboardInterrupt):
        export([data], out, ExportOptions())
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_save_to_disk_through_datasets(tmp_path):
    import datasets

    data = _curated(tmp_path, {"math": 2, "sec": 2})
    summary = export([data], tmp_path / "c.parquet",
                     ExportOptions(mix="curriculum", save_to_disk=tmp_path / "disk"))  # fmt: skip
    assert summary["datasets"]["stage1"]["saved_to"] == str(tmp_path / "disk" / "stage1")
    s1 = datasets.load_from_disk(str(tmp_path / "disk" / "stage1"))
    assert s1.num_rows == 2 and set(s1.column_names) == set(RELEASED_FIELDS)


def test_push_to_hub_sends_each_file_as_a_configuration(tmp_path, monkeypatch):
    """No hub is reachable here: the call `datasets` would make is captured instead."""
    import datasets

    pushed = []
    monkeypatch.setattr(datasets.Dataset, "push_to_hub",
                        lambda self, repo, **kw: pushed.append((repo, self.num_rows, kw)))  # fmt: skip
    data = _curated(tmp_path, {"math": 2, "sec": 3})
    export([data], tmp_path / "c.parquet",
           ExportOptions(mix="curriculum", push_to_hub="me/terminal-corpus", hub_private=True))  # fmt: skip
    assert [(r, n, kw["config_name"], kw["split"], kw["private"]) for r, n, kw in pushed] == [
        ("me/terminal-corpus", 2, "stage1", "train", True),
        ("me/terminal-corpus", 3, "stage2", "train", True),
    ]


def test_cli_usage_errors_exit_2_with_the_problem_named(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ttgen.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    data = _curated(tmp_path, {"math": 2})
    res = runner.invoke(app, ["curate", str(tmp_path / "job"), "--out", str(tmp_path / "d2")])
    assert res.exit_code == 2 and "--no-decontam" in res.stderr
    res = runner.invoke(app, ["curate", str(tmp_path / "nojob"), "--out", "x", "--no-decontam"])
    assert res.exit_code == 2 and "nojob: no such file or folder" in res.stderr
    res = runner.invoke(app, ["export", str(data), "--format", "sft", "--out", "x.parquet"])
    assert res.exit_code == 2 and "needs --tokenizer" in res.stderr
    res = runner.invoke(app, ["export", str(data), "--format", "sft", "--out", "x.parquet",
                              "--tokenizer", str(tmp_path / "no-tokenizer")])  # fmt: skip
    assert res.exit_code == 2 and "no-tokenizer" in res.stderr
    res = runner.invoke(app, ["export", str(data), "--out", "x.txt"])
    assert res.exit_code == 2 and "unknown output format" in res.stderr
    res = runner.invoke(app, ["stats", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "no such file or folder" in res.stderr
    # a broken record: exported rows are kept, the record is named, exit 1
    with (data / "records.jsonl").open("a") as f:
        f.write("{oops\n")
    res = runner.invoke(app, ["export", str(data), "--out", str(tmp_path / "ok.jsonl")])
    assert res.exit_code == 1 and "records.jsonl:3" in res.stderr
    assert len((tmp_path / "ok.jsonl").read_text().splitlines()) == 2


def test_sft_cli_passes_template_args_and_a_template_override(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ttgen.cli import app
    from ttgen.export.toy_tokenizer import train_toy_tokenizer

    monkeypatch.chdir(tmp_path)
    data = _curated(tmp_path, {"sec": 2})
    tok = train_toy_tokenizer(tmp_path / "tok", vocab_size=600)
    template = tmp_path / "t.jinja"
    template.write_text(
        "{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{% if m.role == 'assistant' and not enable_thinking %}[no-think]{% endif %}"
        "{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    out = tmp_path / "sft.jsonl"
    res = CliRunner().invoke(app, [
        "export", str(data), "--format", "sft", "--tokenizer", str(tok), "--out", str(out),
        "--chat-template", str(template), "--template-arg", "enable_thinking=false",
        "--workers", "1",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    from tokenizers import Tokenizer

    decoder = Tokenizer.from_file(str(tok / "tokenizer.json"))
    for line in out.read_text().splitlines():
        row = json.loads(line)
        trained = [i for i, m in zip(row["input_ids"], row["loss_mask"], strict=True) if m]
        text = decoder.decode(trained, skip_special_tokens=False)
        assert text.count("[no-think]") == row["n_assistant_turns"] == text.count("<|im_end|>")


def test_source_selection_makes_each_ablation_one_command(tmp_path):
    """The paper's per-source rows (Table 5: math / code / skill ... alone and mixed) are one
    export each: --source keeps a source or a prefix of it, --exclude-source leaves one out;
    scaling subsets are stratified over the selection only."""
    from typer.testing import CliRunner

    from ttgen.cli import app

    data = _curated(tmp_path, {"math": 4, "code": 3, "sec": 2, "dp": 5})

    def sources(path: Path) -> Counter:
        return Counter(r["source"] for r in pq.read_table(path).to_pylist())

    runner = CliRunner()
    res = runner.invoke(app, ["export", str(data), "--out", str(tmp_path / "m.parquet"),
                              "--source", "dataset_adapters/math"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert sources(tmp_path / "m.parquet") == {"dataset_adapters/math": 4}
    assert "source selection: 4 of 14 record(s) selected" in " ".join(res.output.split())
    # adapters + one skill domain, without the rest
    out = tmp_path / "a.parquet"
    res = runner.invoke(app, ["export", str(data), "--out", str(out), "--source",
                              "dataset_adapters", "--source", "skill_based",
                              "--exclude-source", "skill_based/medium"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert sources(out) == {"dataset_adapters/math": 4, "dataset_adapters/code": 3,
                            "skill_based/easy/security": 2}  # fmt: skip
    summary = json.loads((tmp_path / "a.parquet.export.json").read_text())
    assert summary["not_selected"] == 5
    assert summary["options"]["exclude_sources"] == ["skill_based/medium"]
    # a 50% subset of the selection (7 records -> 4 rows, largest remainders), nothing of the
    # others
    export([data], tmp_path / "f.parquet", ExportOptions(
        fractions=[0.5], exclude_sources=("skill_based",)))  # fmt: skip
    assert sources(tmp_path / "f.frac0.5.parquet") == {"dataset_adapters/math": 2,
                                                       "dataset_adapters/code": 2}  # fmt: skip
    # a selection nothing matches is an error that says so, and writes nothing
    res = runner.invoke(app, ["export", str(data), "--out", str(tmp_path / "none.parquet"),
                              "--source", "seed_based"])  # fmt: skip
    assert res.exit_code == 2
    assert "none of the 14 record(s) is of the selected sources" in " ".join(res.output.split())
    assert not (tmp_path / "none.parquet").exists()


def test_the_sft_export_states_its_reasoning_choice(tmp_path):
    from typer.testing import CliRunner

    from ttgen.cli import app
    from ttgen.export.toy_tokenizer import train_toy_tokenizer

    data = _curated(tmp_path, {"sec": 2})
    tok = train_toy_tokenizer(tmp_path / "tok", template="qwen3")
    runner = CliRunner()
    outs = {}
    for mode in ("template", "keep"):
        out = tmp_path / f"{mode}.parquet"
        res = runner.invoke(app, ["export", str(data), "--format", "sft", "--tokenizer", str(tok),
                                  "--reasoning", mode, "--out", str(out), "--workers", "1"],
                            env={"COLUMNS": "200"})  # fmt: skip
        assert res.exit_code == 0, res.output
        assert f"reasoning: {mode} (" in res.output
        summary = json.loads((tmp_path / f"{mode}.parquet.export.json").read_text())
        assert summary["options"]["reasoning"] == mode
        outs[mode] = pq.read_table(out).to_pylist()
    # these trajectories have 2-4 assistant turns, each with reasoning: keeping it all trains
    # more tokens than the template's rule
    for a, b in zip(outs["template"], outs["keep"], strict=True):
        assert b["n_trained_tokens"] > a["n_trained_tokens"]
    res = runner.invoke(app, ["export", str(data), "--format", "sft", "--tokenizer", str(tok),
                              "--reasoning", "some", "--out", str(tmp_path / "x.parquet")])  # fmt: skip
    assert res.exit_code == 2 and "--reasoning must be one of template, keep, drop, per-turn" in res.output


def test_per_turn_export_writes_one_row_per_assistant_turn(tmp_path):
    from ttgen.export.sft import TokenizerSpec
    from ttgen.export.toy_tokenizer import train_toy_tokenizer

    data = _curated(tmp_path, {"sec": 2})  # 2 and 3 assistant turns
    tok = train_toy_tokenizer(tmp_path / "tok", template="qwen3")
    out = tmp_path / "turns.parquet"
    export([data], out, ExportOptions(format="sft", tokenizer=TokenizerSpec(
        str(tok), reasoning="per-turn")))  # fmt: skip
    rows = pq.read_table(out).to_pylist()
    assert [r["trajectory_id"] for r in rows] == [
        "job1/sec-000__0#turn1", "job1/sec-000__0#turn2",
        "job1/sec-001__0#turn1", "job1/sec-001__0#turn2", "job1/sec-001__0#turn3"]  # fmt: skip
    assert [len(r["messages"]) for r in rows] == [2, 4, 2, 4, 6]
    assert all(r["messages"][-1]["role"] == "assistant" and r["n_trained_tokens"] > 0 for r in rows)
