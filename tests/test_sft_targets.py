"""`ttgen export --format sft --target ttgen|trl|verl|sharegpt`: files that real trainers read with
no glue code, checked against the real trainers' own data code (veRL's MultiTurnSFTDataset, TRL's
SFTTrainer) on tokenizers trained here and curated records made here (test_export's helper).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from test_export import _curated
from test_sft_tokenize import conversation as rich_conversation
from ttgen.cli import app
from ttgen.export.exporter import ExportError, ExportOptions, export
from ttgen.export.sft import TokenizerSpec
from ttgen.export.targets import sharegpt_messages
from ttgen.export.toy_tokenizer import train_toy_tokenizer

FORMATS = ("chatml", "qwen3", "llama3")
WIDE = {"COLUMNS": "240"}
VERL_CONFIG = {"pad_mode": "no_padding", "max_length": 100000, "truncation": "error"}

# Reasoning as Qwen3's own template treats it: kept only in the assistant turns after the last
# user message, and a lone assistant message (how veRL renders every message) comes after none,
# so its reasoning is dropped. (Written for these tests; our test "qwen3" template keeps it.)
DROPS_LONE_REASONING = """\
{%- set ns = namespace(last=messages|length - 1) %}
{%- for m in messages %}{% if m.role == 'user' %}{% set ns.last = loop.index0 %}{% endif %}
{%- endfor %}
{%- for m in messages %}
    {%- set content = m.content %}
    {%- if m.role == 'assistant' and '</think>' in content %}
        {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
        {%- if loop.index0 > ns.last %}{% set content = m.content %}{% endif %}
    {%- endif %}
    {{- '<|im_start|>' + m.role + '\\n' + content + '<|im_end|>\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{% endif %}
"""


@pytest.fixture(scope="module")
def toks(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenizers")
    out = {f: train_toy_tokenizer(root / f, template=f) for f in FORMATS}
    # the chatml tokenizer with a template that drops a lone assistant message's reasoning
    drops = train_toy_tokenizer(root / "drops", template="chatml")
    config = json.loads((drops / "tokenizer_config.json").read_text())
    config["chat_template"] = DROPS_LONE_REASONING
    (drops / "tokenizer_config.json").write_text(json.dumps(config))
    out["drops"] = drops
    return out


def _records_with(data: Path, conversations: dict[str, list[dict]]) -> None:
    """Append records with these messages to a curated folder (copies of its first record)."""
    path = data / "records.jsonl"
    first = json.loads(path.read_text().splitlines()[0])
    with path.open("a") as f:
        for rid, messages in conversations.items():
            f.write(json.dumps({**first, "id": rid, "messages": messages}) + "\n")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Curated records: Terminus-like trajectories with reasoning in every turn (2-4 turns),
    plus one with a system message, unicode, a turn without reasoning and trailing blanks, and
    one whose last turn has no reasoning."""
    folder = _curated(tmp_path_factory.mktemp("curated"), {"math": 2, "code": 1, "sec": 2})
    last_plain = rich_conversation()[1:5]
    _records_with(folder, {"job1/rich__0": rich_conversation(), "job1/plain-last__0": last_plain})
    return folder


def _hf_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    # transformers 5 takes special tokens in tokenizer_config.json as strings (or with an
    # "__type": "AddedToken" marker); the llama3 test folder writes bos_token as {"content": ..},
    # as tokenizer_config files sometimes do: give it as a string
    config = json.loads((folder / "tokenizer_config.json").read_text())
    bos = config.get("bos_token")
    extra = {"bos_token": bos["content"]} if isinstance(bos, dict) else {}
    return AutoTokenizer.from_pretrained(folder, **extra)


def _verl_dataset(path: Path, tok_folder: Path, **config):
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    return MultiTurnSFTDataset(str(path), _hf_tokenizer(tok_folder), config={**VERL_CONFIG,
                                                                             **config})  # fmt: skip


def _sft(tok: Path, **kw) -> TokenizerSpec:
    return TokenizerSpec(str(tok), **kw)


# -- verl -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_verl_target_is_what_verls_dataset_trains_token_for_token(tmp_path, toks, data, fmt):
    """THE check: for every row, veRL's own MultiTurnSFTDataset (re-tokenizing the messages we
    wrote, with the tokenizer folder) yields exactly our input_ids and loss_mask, for each
    reasoning choice veRL can express; a Qwen3-style template needs ignore_input_ids_mismatch,
    which the summary says."""
    qwen3 = fmt == "qwen3"
    for reasoning in ("template", "keep", "drop"):
        out = tmp_path / f"{reasoning}.parquet"
        summary = export([data], out, ExportOptions(
            format="sft", target="verl", tokenizer=_sft(toks[fmt], reasoning=reasoning)))  # fmt: skip
        t = summary["target"]
        assert (t["rule"], t["ignore_input_ids_mismatch"]) == ("verl", qwen3)
        assert t["trainer"]["config"]["data.ignore_input_ids_mismatch"] is qwen3
        assert f"data.ignore_input_ids_mismatch={qwen3}" in t["trainer"]["overrides"]
        rows = pq.read_table(out).to_pylist()
        assert len(rows) == 7 and t["rows_rendering_differs"] == (7 if qwen3 else 0)
        ds = _verl_dataset(out, toks[fmt], ignore_input_ids_mismatch=qwen3)
        assert len(ds) == len(rows)
        for i, row in enumerate(rows):
            item = ds[i]
            assert item["input_ids"].tolist() == row["input_ids"], (reasoning, row["trajectory_id"])
            assert item["loss_mask"].tolist() == row["loss_mask"], (reasoning, row["trajectory_id"])
            assert sum(row["loss_mask"]) == row["n_trained_tokens"] > 0
        written = [m["content"] for r in rows for m in r["messages"] if m["role"] == "assistant"]
        assert any("<think>" in c for c in written) == (reasoning != "drop")
    assert summary["target"]["generation_prompt_exact"]
    if not qwen3:
        return
    # without the flag veRL refuses the rows: what the summary warns about
    with pytest.raises(AssertionError, match="ignore_input_ids_mismatch"):
        _verl_dataset(out, toks[fmt])[0]
    # template arguments reach veRL as apply_chat_template_kwargs; enable_thinking=false puts an
    # empty think block in the generation prompt only, and veRL, masking by the prompt's token
    # count, then leaves the first tokens of each reply untrained: reproduced, and said
    out = tmp_path / "no-thinking.parquet"
    summary = export([data], out, ExportOptions(format="sft", target="verl", tokenizer=_sft(
        toks[fmt], template_kwargs={"enable_thinking": False})))  # fmt: skip
    t = summary["target"]
    assert not t["generation_prompt_exact"]
    assert any("first tokens of each reply go untrained" in n for n in t["trainer"]["notes"])
    kwargs = t["trainer"]["config"]["data.apply_chat_template_kwargs"]
    assert kwargs == {"enable_thinking": False}
    ds = _verl_dataset(out, toks[fmt], ignore_input_ids_mismatch=True,
                       apply_chat_template_kwargs=kwargs)  # fmt: skip
    for i, row in enumerate(pq.read_table(out).to_pylist()):
        assert ds[i]["input_ids"].tolist() == row["input_ids"]
        assert ds[i]["loss_mask"].tolist() == row["loss_mask"]


def test_verl_truncation_matches_verls_right_truncation(tmp_path, toks, data):
    out = tmp_path / "short.parquet"
    summary = export([data], out, ExportOptions(format="sft", target="verl", max_len=150,
                                                tokenizer=_sft(toks["chatml"])))  # fmt: skip
    assert summary["outputs"]["default"]["truncated"] == 7
    assert summary["target"]["trainer"]["config"]["data.truncation"] == "right"
    ds = _verl_dataset(out, toks["chatml"], max_length=150, truncation="right")
    for i, row in enumerate(pq.read_table(out).to_pylist()):
        assert len(row["input_ids"]) == 150 and row["truncated"]
        assert ds[i]["input_ids"].tolist() == row["input_ids"]
        assert ds[i]["loss_mask"].tolist() == row["loss_mask"]


@pytest.mark.parametrize("fmt", ["chatml", "llama3"])
def test_our_default_rule_differs_from_verls_only_after_the_end_marker(tmp_path, toks, data, fmt):
    """Why the verl target exists: on the same ids, veRL also trains what the template writes
    after an assistant turn's end marker (chatml's "\\n" after <|im_end|>; llama3's <|eot_id|>
    is followed by nothing, so there the rules agree)."""
    out = tmp_path / "ours.parquet"
    export([data], out, ExportOptions(format="sft", tokenizer=_sft(toks[fmt])))
    hf = _hf_tokenizer(toks[fmt])
    end = hf.convert_tokens_to_ids("<|im_end|>" if fmt == "chatml" else "<|eot_id|>")
    ds = _verl_dataset(out, toks[fmt])
    for i, row in enumerate(pq.read_table(out).to_pylist()):
        item = ds[i]
        assert item["input_ids"].tolist() == row["input_ids"]
        ours, theirs = np.array(row["loss_mask"]), item["loss_mask"].numpy()
        diff = np.nonzero(ours != theirs)[0]
        assert all(theirs[diff] == 1)  # veRL trains more, never less
        assert all(row["input_ids"][k - 1] == end and hf.decode([row["input_ids"][k]]).isspace()
                   for k in diff)  # fmt: skip
        assert len(diff) == (row["n_assistant_turns"] if fmt == "chatml" else 0)


def test_verl_reasoning_choices_under_a_template_that_drops_lone_reasoning(tmp_path, toks, data):
    """A template like Qwen3's drops the reasoning of a lone assistant message: under veRL no
    turn's reasoning is trained (and the summary says so), keep is refused naming what to use,
    per-turn is refused everywhere."""
    out = tmp_path / "t.parquet"
    summary = export([data], out, ExportOptions(format="sft", target="verl",
                                                tokenizer=_sft(toks["drops"])))  # fmt: skip
    assert "drops its reasoning, so no turn's reasoning is trained" in (
        summary["target"]["reasoning_text"])  # fmt: skip
    hf = _hf_tokenizer(toks["drops"])
    ds = _verl_dataset(out, toks["drops"], ignore_input_ids_mismatch=True)
    for i, row in enumerate(pq.read_table(out).to_pylist()):
        assert ds[i]["loss_mask"].tolist() == row["loss_mask"]
        assert "<think>" not in hf.decode(row["input_ids"])
    with pytest.raises(ExportError, match=r"drops the <think> part.*--target ttgen or trl with "
                                          r"--reasoning keep"):  # fmt: skip
        export([data], out, ExportOptions(format="sft", target="verl",
                                          tokenizer=_sft(toks["drops"], reasoning="keep")))  # fmt: skip
    with pytest.raises(ExportError, match=r"per-turn is not expressible with --target verl.*"
                                          r"--target ttgen or trl with --reasoning per-turn"):  # fmt: skip
        export([data], out, ExportOptions(format="sft", target="verl",
                                          tokenizer=_sft(toks["qwen3"], reasoning="per-turn")))  # fmt: skip


# -- trl --------------------------------------------------------------------------------------------


def test_trl_target_is_read_by_sfttrainer_as_is(tmp_path, toks, data):
    """TRL's SFTTrainer (default SFTConfig but for the length and the step count) takes the file
    as tokenized: its labels are our ids where our mask is 1 and -100 elsewhere (messages beside
    input_ids are not re-tokenized), the collator is not disturbed by the string columns, and a
    training step runs."""
    import datasets
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from ttgen.train.tiny import init_model

    out = tmp_path / "trl.parquet"
    summary = export([data], out, ExportOptions(format="sft", target="trl",
                                                tokenizer=_sft(toks["qwen3"])))  # fmt: skip
    assert summary["target"]["columns"][-2:] == ["input_ids", "assistant_masks"]
    assert summary["target"]["trainer"]["config"] == {"max_length": 32768}
    ds = datasets.load_dataset("parquet", data_files=str(out), split="train",
                               cache_dir=str(tmp_path / "hf"))  # fmt: skip
    assert {"messages", "trajectory_id", "source", "input_ids", "assistant_masks"} <= set(
        ds.column_names
    ) and "loss_mask" not in ds.column_names
    folder = init_model(toks["qwen3"], tmp_path / "model", size="tiny")
    config = SFTConfig(output_dir=str(tmp_path / "run"), max_length=32768, max_steps=1,
                       per_device_train_batch_size=2, report_to=[], save_strategy="no",
                       use_cpu=True)  # fmt: skip
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(folder), args=config,
                         train_dataset=ds, processing_class=_hf_tokenizer(folder))  # fmt: skip
    prepared = trainer.train_dataset
    assert prepared.num_rows == ds.num_rows == 7
    for row, ids, labels in zip(ds, prepared["input_ids"], prepared["labels"], strict=True):
        assert ids == row["input_ids"]
        assert labels == [t if m else -100 for t, m in zip(row["input_ids"],
                                                            row["assistant_masks"], strict=True)]  # fmt: skip
    batch = trainer.data_collator([prepared[0], prepared[1]])  # rows with every column
    assert set(batch) == {"input_ids", "labels", "attention_mask"}
    result = trainer.train()
    assert np.isfinite(result.training_loss)


# -- sharegpt ---------------------------------------------------------------------------------------


def test_sharegpt_rows_round_trip_and_dataset_info_describes_them(tmp_path, data):
    """No tokenizer needed; system moved to `system`, user turns human, assistant gpt; every
    row gives back the record's messages (think blocks removed with drop; one conversation per
    turn with per-turn); dataset_info.json lists each file the way LLaMA-Factory reads it."""
    import datasets

    records = {r["id"]: r for r in map(json.loads, (data / "records.jsonl").read_text().splitlines())}
    out = tmp_path / "lf" / "sft.jsonl"
    summary = export([data], out, ExportOptions(format="sft", target="sharegpt"))
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == len(records) == 7
    for row in rows:
        assert set(row) == {"conversations", "system", "trajectory_id", "task_group_id",
                            "model_name", "subset", "domain", "difficulty", "source"}  # fmt: skip
        assert sharegpt_messages(row) == records[row["trajectory_id"]]["messages"]
        assert [t["from"] for t in row["conversations"]][:2] == ["human", "gpt"]
    rich = next(r for r in rows if r["trajectory_id"] == "job1/rich__0")
    assert rich["system"].startswith("You are an AI assistant") and len(rich["conversations"]) == 6
    assert all(r["system"] is None for r in rows if r is not rich)
    assert "tokens" not in summary["outputs"]["default"]
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert info == {"sft": {
        "file_name": "sft.jsonl", "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                 "assistant_tag": "gpt"}}}  # fmt: skip
    loaded = datasets.load_dataset("json", data_files=str(out), split="train",
                                   cache_dir=str(tmp_path / "hf"))  # fmt: skip
    assert loaded.num_rows == 7 and loaded[0]["conversations"][0]["from"] == "human"

    # drop: no reasoning left; other datasets in dataset_info.json are kept
    info["theirs"] = {"file_name": "other.json"}
    (tmp_path / "lf" / "dataset_info.json").write_text(json.dumps(info))
    dropped = tmp_path / "lf" / "nothink.parquet"
    export([data], dropped, ExportOptions(format="sft", target="sharegpt", reasoning="drop"))
    for row in pq.read_table(dropped).to_pylist():
        messages = sharegpt_messages(row)
        assert "<think>" not in json.dumps(messages)
        original = records[row["trajectory_id"]]["messages"]
        assert [m["role"] for m in messages] == [m["role"] for m in original]
        assert all(a["content"] == b["content"] for a, b in zip(messages, original, strict=True)
                   if a["role"] != "assistant")  # fmt: skip
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert set(info) == {"sft", "nothink", "theirs"}
    assert info["nothink"]["file_name"] == "nothink.parquet"

    # per-turn: one conversation per assistant turn, and LLaMA-Factory told to mask history
    turns = tmp_path / "turns.jsonl"
    summary = export([data], turns, ExportOptions(format="sft", target="sharegpt",
                                                  reasoning="per-turn"))  # fmt: skip
    assert summary["target"]["trainer"]["config"]["mask_history"] is True
    rows = [json.loads(x) for x in turns.read_text().splitlines()]
    n_turns = sum(sum(m["role"] == "assistant" for m in r["messages"]) for r in records.values())
    assert len(rows) == n_turns
    for row in rows:
        rid, n = row["trajectory_id"].split("#turn")
        messages = sharegpt_messages(row)
        original = records[rid]["messages"]
        assert messages == original[: len(messages)] and messages[-1]["role"] == "assistant"
        assert sum(m["role"] == "assistant" for m in messages) == int(n)


# -- every target: options, mixes, the CLI, PIPELINE.yaml ------------------------------------------


def test_mixes_fractions_and_source_selection_work_for_every_target(tmp_path, toks, data):
    def ids(path: Path) -> list[str]:
        if path.suffix == ".jsonl":
            return [json.loads(x)["trajectory_id"] for x in path.read_text().splitlines()]
        return pq.read_table(path, columns=["trajectory_id"]).column(0).to_pylist()

    picked = {}
    for target in ("ttgen", "trl", "verl", "sharegpt"):
        folder = tmp_path / target
        suffix = ".jsonl" if target == "sharegpt" else ".parquet"
        summary = export([data], folder / f"s{suffix}", ExportOptions(
            format="sft", target=target, tokenizer=_sft(toks["chatml"]), mix="curriculum",
            fractions=[0.5], exclude_sources=("dataset_adapters/code",)))  # fmt: skip
        assert summary["options"]["target"] == target
        files = sorted(p for p in folder.iterdir() if p.name.endswith(suffix))
        picked[target] = {p.name.replace(suffix, ""): ids(p) for p in files}
        if target == "sharegpt":
            info = json.loads((folder / "dataset_info.json").read_text())
            assert set(info) == set(picked[target]) == {"s.stage1.frac0.5", "s.stage2.frac0.5"}
    assert picked["ttgen"] == picked["trl"] == picked["verl"] == picked["sharegpt"]
    assert all(picked["ttgen"].values())  # both stages hold rows


def test_target_usage_errors_are_clear(tmp_path, toks, data):
    with pytest.raises(ExportError, match="unknown target 'axolotl' \\(choose one of ttgen, trl, "
                                          "verl, sharegpt\\)"):  # fmt: skip
        export([data], tmp_path / "x.parquet", ExportOptions(format="sft", target="axolotl",
                                                             tokenizer=_sft(toks["chatml"])))  # fmt: skip
    with pytest.raises(ExportError, match="--target trl is for --format sft"):
        export([data], tmp_path / "x.parquet", ExportOptions(target="trl"))
    for target in ("trl", "verl"):
        with pytest.raises(ExportError, match=f"--no-ids with --target {target}"):
            export([data], tmp_path / "x.parquet", ExportOptions(
                format="sft", target=target, with_ids=False, tokenizer=_sft(toks["chatml"])))  # fmt: skip
    with pytest.raises(ExportError, match=r"writes \.jsonl or \.parquet"):
        export([data], tmp_path / "x.jsonl.gz", ExportOptions(format="sft", target="sharegpt"))
    with pytest.raises(ExportError, match="needs --tokenizer"):
        export([data], tmp_path / "x.parquet", ExportOptions(format="sft", target="verl"))
    (tmp_path / "dataset_info.json").write_text("{not json")
    with pytest.raises(ExportError, match=r"dataset_info\.json: not readable JSON"):
        export([data], tmp_path / "x.jsonl", ExportOptions(format="sft", target="sharegpt"))
    assert not (tmp_path / "x.jsonl").exists()

    runner = CliRunner()

    def run(*args: str) -> str:
        res = runner.invoke(app, ["export", str(data), "--out", str(tmp_path / "c.parquet"),
                                  *args], env=WIDE)  # fmt: skip
        assert res.exit_code == 2, res.output
        return " ".join(res.output.split())

    assert "unknown target 'x' (choose one of ttgen, trl, verl, sharegpt)" in run(
        "--format", "sft", "--tokenizer", str(toks["chatml"]), "--target", "x")  # fmt: skip
    assert "--target verl is for --format sft (got --format corpus)" in run("--target", "verl")
    assert "--no-ids with --target trl" in run(
        "--format", "sft", "--tokenizer", str(toks["chatml"]), "--target", "trl", "--no-ids")  # fmt: skip
    assert "--reasoning per-turn is not expressible with --target verl" in run(
        "--format", "sft", "--tokenizer", str(toks["chatml"]), "--target", "verl",
        "--reasoning", "per-turn")  # fmt: skip


def test_cli_states_target_rule_and_verl_settings(tmp_path, toks, data):
    runner = CliRunner()
    out = tmp_path / "v.parquet"
    res = runner.invoke(app, ["export", str(data), "--format", "sft", "--tokenizer",
                              str(toks["qwen3"]), "--target", "verl", "--out", str(out),
                              "--workers", "2", "--template-arg", "enable_thinking=true"],
                        env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "export (sft, target verl)" in text
    assert "target: verl (columns: messages," in text and "rule: verl (veRL's" in text
    assert "reasoning: template (as the template renders an assistant message alone" in text
    assert "data.ignore_input_ids_mismatch=True" in text
    assert "+data.apply_chat_template_kwargs.enable_thinking=True" in text
    summary = json.loads((tmp_path / "v.parquet.export.json").read_text())
    assert summary["options"]["target"] == "verl" and summary["target"]["rule"] == "verl"
    assert summary["target"]["trainer"]["config"]["data.apply_chat_template_kwargs"] == {
        "enable_thinking": True}  # fmt: skip
    # two workers give the same rows as one
    one = tmp_path / "one.parquet"
    export([data], one, ExportOptions(format="sft", target="verl", tokenizer=_sft(
        toks["qwen3"], template_kwargs={"enable_thinking": True})))  # fmt: skip
    assert pq.read_table(one).to_pylist() == pq.read_table(out).to_pylist()

    res = runner.invoke(app, ["export", str(data), "--format", "sft", "--target", "sharegpt",
                              "--out", str(tmp_path / "g.jsonl")], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "target: sharegpt (columns: conversations, system," in text
    assert f"dataset_info: {tmp_path / 'dataset_info.json'}" in text


def test_pipeline_yaml_takes_the_target(tmp_path):
    import yaml

    from ttgen.pipeline.config import PipelineConfigError, load_pipeline

    def config(sft: dict):
        path = tmp_path / "p.yaml"
        path.write_text(yaml.safe_dump({"sources": [{"tasks": str(tmp_path)}],
                                        "export": {"sft": sft}}))  # fmt: skip
        return load_pipeline(path)

    assert config({"tokenizer": "toy", "target": "verl"}).export.sft.target == "verl"
    assert config({"target": "sharegpt"}).export.sft.tokenizer is None
    # left out of the dump (and of the run's fingerprints) at its default
    assert "target" not in config({"tokenizer": "toy"}).export.model_dump()["sft"]
    with pytest.raises(PipelineConfigError, match="tokenizer is required"):
        config({"target": "trl"})
    with pytest.raises(PipelineConfigError, match="per-turn is not expressible with target verl"):
        config({"tokenizer": "toy", "target": "verl", "reasoning": "per-turn"})
    with pytest.raises(PipelineConfigError, match="target"):
        config({"tokenizer": "toy", "target": "axolotl"})


def test_verl_rule_of_the_chat_tokenizer_directly(toks):
    """`encode_chat(rule="verl")` on a conversation: the ids are the messages' lone renderings
    concatenated (the BOS of llama3 once), the trained tokens the assistant renderings without
    the generation prompt."""
    from ttgen.export.chat import ChatTokenizer

    msgs = rich_conversation()
    for fmt in ("chatml", "llama3"):
        tok = ChatTokenizer.load(toks[fmt])
        chat = tok.encode_chat(msgs, rule="verl")
        text = tok.tokenizer.decode(chat.input_ids.tolist(), skip_special_tokens=False)
        assert text == tok.render(msgs) and not chat.rendering_differs
        trained = tok.tokenizer.decode(
            [i for i, m in zip(chat.input_ids.tolist(), chat.loss_mask.tolist(), strict=True) if m],
            skip_special_tokens=False,
        )
        ending = "<|im_end|>\n" if fmt == "chatml" else "<|eot_id|>"
        assert trained.count(ending) == 3 and "Café" not in trained
    with pytest.raises(ValueError, match="rule must be one of ttgen, verl"):
        tok.encode_chat(msgs, rule="axolotl")
