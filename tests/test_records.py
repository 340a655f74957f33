"""Reading prompt datasets: every input form, origins, bad records, field mapping."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ttgen.sources.records import (
    MISSING,
    BadRecord,
    FieldMap,
    Record,
    SourceError,
    get_path,
    iter_records,
    normalized_key,
)


def write_jsonl(path: Path, lines: list[str | dict]) -> Path:
    path.write_text(
        "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines),
        encoding="utf-8",
    )
    return path


def origins(entries) -> list[str]:
    return [e.origin for e in entries]


# -- JSONL ----------------------------------------------------------------------------------------


def test_jsonl_bad_lines_are_reported_and_reading_goes_on(tmp_path):
    src = write_jsonl(
        tmp_path / "math.jsonl",
        [{"problem": "a"}, '{"problem": "b",', "", "[1, 2]", {"problem": "c"}],
    )
    with src.open("ab") as f:
        f.write(b'{"problem": "\xff"}\n{"problem": "d"}\n')
    entries = list(iter_records(src))
    good = [e for e in entries if isinstance(e, Record)]
    bad = [e for e in entries if isinstance(e, BadRecord)]
    assert [(r.origin, r.data["problem"]) for r in good] == [
        ("math.jsonl:1", "a"), ("math.jsonl:5", "c"), ("math.jsonl:7", "d"),
    ]  # fmt: skip
    assert [b.origin for b in bad] == ["math.jsonl:2", "math.jsonl:4", "math.jsonl:6"]
    assert "invalid JSON" in bad[0].problem
    assert "expected a JSON object, got list" in bad[1].problem
    assert "not valid UTF-8" in bad[2].problem
    assert str(bad[0]).startswith("math.jsonl:2: invalid JSON")


def test_json_array_and_gzip_files(tmp_path):
    arr = tmp_path / "data.json"
    arr.write_text(json.dumps([{"q": 1}, "oops", {"q": 3}]))
    got = list(iter_records(arr))
    assert origins(got) == ["data.json:item 0", "data.json:item 1", "data.json:item 2"]
    assert isinstance(got[1], BadRecord) and got[2].data == {"q": 3}

    gz = tmp_path / "prompts.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write('{"q": "x"}\n{"q": "y"}\n')
    assert [r.data["q"] for r in iter_records(gz)] == ["x", "y"]


def test_limit_counts_entries(tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", [{"i": i} for i in range(10)])
    assert [r.data["i"] for r in iter_records(src, limit=3)] == [0, 1, 2]


# -- parquet --------------------------------------------------------------------------------------


def test_parquet_rows_across_batches_keep_their_numbers(tmp_path):
    n = 2600  # more than two read batches
    table = pa.table(
        {
            "question": [f"q{i}" for i in range(n)],
            "meta": [{"answer": str(i * 2), "level": i % 5} for i in range(n)],
        }
    )
    pq.write_table(table, tmp_path / "data.parquet", row_group_size=700)
    entries = list(iter_records(tmp_path / "data.parquet"))
    assert len(entries) == n
    assert entries[0].origin == "data.parquet:row 0"
    assert entries[2049].origin == "data.parquet:row 2049"
    assert entries[2049].data == {"question": "q2049", "meta": {"answer": "4098", "level": 4}}


def test_unreadable_inputs_name_the_file(tmp_path):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"this is not parquet")
    with pytest.raises(SourceError, match=r"broken\.parquet: not a readable parquet file"):
        iter_records(bad)
    with pytest.raises(SourceError, match=r"missing\.jsonl: no such file or directory"):
        iter_records(tmp_path / "missing.jsonl")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SourceError, match=r"notes\.txt: unsupported file type"):
        iter_records(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"no \.jsonl, \.json, \.parquet"):
        iter_records(tmp_path / "empty")


# -- save_to_disk ---------------------------------------------------------------------------------


def test_save_to_disk_dataset_with_shards(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"problem": f"p{i}", "answer": i} for i in range(7)]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"), num_shards=3)
    entries = list(iter_records(tmp_path / "ds"))
    assert origins(entries) == [f"ds:row {i}" for i in range(7)]  # counted across shards
    assert [e.data for e in entries] == rows


def test_save_to_disk_dataset_dict_needs_a_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list([{"q": "t0"}, {"q": "t1"}]),
            "test": datasets.Dataset.from_list([{"q": "s0"}]),
        }
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(SourceError, match=r"splits train, test; pick one with --split"):
        iter_records(tmp_path / "dd")
    with pytest.raises(SourceError, match=r"no split 'dev'; the splits are train, test"):
        iter_records(tmp_path / "dd", split="dev")
    got = list(iter_records(tmp_path / "dd", split="test"))
    assert [(e.origin, e.data) for e in got] == [("dd/test:row 0", {"q": "s0"})]

    single = datasets.DatasetDict({"train": datasets.Dataset.from_list([{"q": "only"}])})
    single.save_to_disk(str(tmp_path / "one"))
    assert origins(iter_records(tmp_path / "one")) == ["one/train:row 0"]


# -- folders of files -----------------------------------------------------------------------------


def test_folder_of_files_with_splits_and_a_bad_file(tmp_path):
    root = tmp_path / "repo"
    (root / "data").mkdir(parents=True)
    pq.write_table(pa.table({"q": ["a", "b"]}), root / "data" / "train-00000-of-00002.parquet")
    pq.write_table(pa.table({"q": ["c"]}), root / "data" / "train-00001-of-00002.parquet")
    write_jsonl(root / "data" / "test.jsonl", [{"q": "t"}])
    (root / "data" / "train-00002-broken.parquet").write_bytes(b"garbage")
    (root / "README.md").write_text("not data")

    all_entries = list(iter_records(root))
    assert len(all_entries) == 5
    train = list(iter_records(root, split="train"))
    assert [(e.origin, getattr(e, "data", None)) for e in train] == [
        ("data/train-00000-of-00002.parquet:row 0", {"q": "a"}),
        ("data/train-00000-of-00002.parquet:row 1", {"q": "b"}),
        ("data/train-00001-of-00002.parquet:row 0", {"q": "c"}),
        ("data/train-00002-broken.parquet", None),
    ]
    assert "not a readable parquet file" in train[-1].problem
    assert [e.data for e in iter_records(root, split="test")] == [{"q": "t"}]
    with pytest.raises(SourceError, match=r"no files for split 'dev'; splits seen: .*test.*train"):
        iter_records(root, split="dev")


# -- hub ------------------------------------------------------------------------------------------


def test_hub_name_without_datasets_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails as if not installed
    with pytest.raises(SourceError, match=r"pip install 'terminal-task-gen\[hf\]'"):
        iter_records("nvidia/Nemotron-Cascade-SFT")


def test_hub_dataset_is_streamed_with_config_and_split(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load(name, config=None, split=None, streaming=False):
        calls.append((name, config, split, streaming))
        rows = [{"question": "q0"}, {"question": "q1"}]
        ds = datasets.IterableDataset.from_generator(lambda: iter(rows))
        return ds if split else datasets.IterableDatasetDict({"train": ds, "test": ds})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    got = list(iter_records("owner/name", config="math", split="train"))
    assert calls == [("owner/name", "math", "train", True)]
    assert origins(got) == ["hub owner/name[math]/train:row 0", "hub owner/name[math]/train:row 1"]
    with pytest.raises(SourceError, match=r"splits train, test; pick one with --split"):
        iter_records("owner/name")


def test_local_options_that_do_not_apply_are_errors(tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", [{"q": 1}])
    with pytest.raises(SourceError, match="--config applies only to hub datasets"):
        iter_records(src, config="x")
    with pytest.raises(SourceError, match="--split applies to folders and hub datasets"):
        iter_records(src, split="train")


# -- fields ---------------------------------------------------------------------------------------


def test_dotted_paths_lists_and_json_strings():
    data = {
        "meta": {"answer": "42", "tags": ["a", "b"]},
        "a.b": "literal key",
        "extra": json.dumps({"func_name": "solve"}),
        "messages": [{"role": "user", "content": "hi"}],
    }
    assert get_path(data, "meta.answer") == "42"
    assert get_path(data, "meta.tags.1") == "b"
    assert get_path(data, "a.b") == "literal key"
    assert get_path(data, "extra.func_name") == "solve"
    assert get_path(data, "messages.0.content") == "hi"
    assert get_path(data, "meta.missing") is MISSING
    assert get_path(data, "meta.tags.9") is MISSING


def test_prompt_aliases_overrides_and_chat_records():
    fields = FieldMap({"prompt": ("prompt", "question", "problem"), "answer": ("answer",)})
    assert fields.prompt({"question": "Q?", "problem": "P?"}) == "Q?"
    assert fields.prompt({"prompt": "", "problem": "P?"}) == "P?"  # empty counts as missing
    chat = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "Solve "}, {"type": "text", "text": "x+1=2"}]},
            {"role": "user", "content": "second turn"},
        ]
    }  # fmt: skip
    assert fields.prompt(chat) == "Solve x+1=2"
    sharegpt = {"conversations": [{"from": "human", "value": "What is 2+2?"}, {"from": "gpt", "value": "4"}]}  # fmt: skip
    assert fields.prompt(sharegpt) == "What is 2+2?"

    mapped = FieldMap(fields.aliases, {"prompt": "data.text", "answer": "meta.final"})
    rec = {"question": "ignored", "data": {"text": "mapped"}, "meta": {"final": "7"}}
    assert mapped.prompt(rec) == "mapped"
    assert mapped.get(rec, "answer") == "7"
    assert mapped.prompt({"question": "ignored"}) is None  # a mapping is not a fallback
    with pytest.raises(
        SourceError, match=r"unknown field 'answr'; this adapter reads prompt, answer"
    ):
        FieldMap(fields.aliases, {"answr": "x"})


def test_duplicate_key_ignores_whitespace_only():
    assert normalized_key("What is  1+1?\n") == normalized_key(" What is 1+1?")
    assert normalized_key("What is 1+1?") != normalized_key("what is 1+1?")
