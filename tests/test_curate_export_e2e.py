"""From rollout folders of the bundled examples to training data, through the CLI as a user runs it:

adapt the bundled math prompts → roll out a scripted teacher through Terminus 2 in real containers
(the bundled example tasks + the adapted ones, 2 attempts each) → `ttgen curate` against a
benchmark with a planted 14-gram → `ttgen export` to Terminal-Corpus parquet (loaded with
`datasets`) and to SFT rows (masks checked token by token) → `ttgen stats`.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from test_cli import scripted_server
from ttgen.cli import app
from ttgen.export.sft import TokenizerSpec
from ttgen.export.toy_tokenizer import train_toy_tokenizer
from ttgen.testing import Reply

REPO = Path(__file__).resolve().parents[1]
WIDE = {"COLUMNS": "400"}
# 14 words of examples/tasks/csv-report/instruction.md, planted in the benchmark
PLANTED = "a JSON object mapping each region to its total revenue (the sum of units price"


def _teacher(tasks_dir: Path):
    """Solves every task through the terminal: types solve.sh when the task has one, else writes
    an answer file; reasons in <think>. The first hello-world trajectory has the teacher name
    itself (an identity leak), fix-offline-repo's has it think in Chinese."""
    solutions = {}
    for task in sorted(p for p in tasks_dir.rglob("instruction.md")):
        solve = task.parent / "solution" / "solve.sh"
        solutions[task.read_text().strip()] = (
            task.parent.name,
            solve.read_text() if solve.exists() else None,
        )
    lock = threading.Lock()
    leaked: set[str] = set()

    def action(commands, complete=False):
        return json.dumps({
            "analysis": "I see the prompt.", "plan": "Do the work, then check it.",
            "commands": [{"keystrokes": k, "duration": d} for k, d in commands],
            "task_complete": complete,
        })  # fmt: skip

    def teacher(body: dict) -> Reply:
        msgs = body["messages"]
        first = msgs[0]["content"]
        hit = next(((n, s) for instr, (n, s) in solutions.items() if instr in first), None)
        if hit is None:
            return Reply("ok")  # the pre-flight request
        name, solve = hit
        turn = sum(m["role"] == "assistant" for m in msgs)
        if turn == 0:
            reasoning = f"The task {name} needs a few commands."
            with lock:
                if name == "hello-world" and name not in leaked:
                    leaked.add(name)
                    reasoning = "I am DeepSeek, and I will solve this quickly."
            if name == "fix-offline-repo":
                reasoning = "先看看仓库里有什么文件。"
            if solve is not None:
                keys = [(f"cat > /tmp/solve.sh <<'TTGEN_EOF'\n{solve}TTGEN_EOF\n", 0.5),
                        ("bash /tmp/solve.sh; echo exit=$?\n", 30)]  # fmt: skip
            else:
                keys = [("echo 42 > /app/solution.txt\n", 0.5)]
            return Reply(action(keys), reasoning=reasoning)
        return Reply(action([], complete=True), reasoning="The output looks right; done.")

    return teacher


def test_rollouts_of_the_bundled_examples_become_corpus_and_sft_data(
    docker_ready, tmp_path, monkeypatch
):
    monkeypatch.chdir(REPO)  # the repository's ttgen.toml maps the examples' base images
    runner = CliRunner()
    tasks = tmp_path / "tasks"
    shutil.copytree(REPO / "examples" / "tasks", tasks / "examples")
    res = runner.invoke(app, ["adapt", "math", "--input", "examples/adapters/math.jsonl",
                              "--out", str(tasks / "math"), "--limit", "3"], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    job = tmp_path / "job"
    with scripted_server([], default=_teacher(tasks)) as server:
        res = runner.invoke(app, [
            "rollout", str(tasks), "-a", "terminus-2", "--model", "deepseek-ai/DeepSeek-V3.2",
            "--base-url", server.base_url, "-k", "2", "-n", "4", "--out", str(job),
        ], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    results = [json.loads(p.read_text()) for p in job.glob("*/result.json")]
    assert len(results) == 12
    assert {r["outcome"] for r in results} == {"passed"}  # every task here has tests

    bench = tmp_path / "tb2"
    (bench / "revenue-report").mkdir(parents=True)
    (bench / "revenue-report" / "instruction.md").write_text(
        f"Given orders.csv, produce {PLANTED} for every order, as a JSON file.\n"
    )
    (bench / "kernel").mkdir()
    (bench / "kernel" / "instruction.md").write_text("Build the kernel module and load it.\n")

    data = tmp_path / "data"
    res = runner.invoke(app, ["curate", str(job), "--out", str(data), "--benchmark",
                              f"tb2={bench}", "--json"], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    manifest = json.loads(res.stdout)
    dropped = [json.loads(x) for x in (data / "dropped.jsonl").read_text().splitlines()]
    by_reason: dict[str, list[str]] = {}
    for d in dropped:
        by_reason.setdefault(d["reason"], []).append(d["task"].split("/")[-1])
    assert sorted(by_reason) == ["cjk", "decontamination", "identity"]
    assert by_reason["decontamination"] == ["csv-report", "csv-report"]
    assert by_reason["cjk"] == ["fix-offline-repo", "fix-offline-repo"]
    assert by_reason["identity"] == ["hello-world"]  # only the first trajectory leaked
    decon = next(d for d in dropped if d["reason"] == "decontamination")
    assert decon["detail"] == (
        'tb2/revenue-report (instruction): "a json object mapping each region to its total '
        'revenue the sum of units"'
    )
    assert manifest["decontamination"]["tasks_matched"] == 1
    records = [json.loads(x) for x in (data / "records.jsonl").read_text().splitlines()]
    assert len(records) == 7  # 12 - 2 decontaminated - 2 CJK - 1 identity
    # hand-written tasks: subset "other", their task.toml category as the domain
    assert sorted({r["source"] for r in records}) == [
        "dataset_adapters/math",
        "other/file-operations",
    ]
    math = [r for r in records if r["source"] == "dataset_adapters/math"]
    assert len(math) == 6 and all(r["model"] == "deepseek-ai/DeepSeek-V3.2" for r in math)
    assert all(r["completed"] and r["n_turns"] == 3 for r in records)

    # Terminal-Corpus parquet, loaded with datasets
    corpus = tmp_path / "export" / "corpus.parquet"
    res = runner.invoke(app, ["export", str(data), "--format", "corpus", "--out", str(corpus)],
                        env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(corpus), split="train",
                               cache_dir=str(tmp_path / "hf"))  # fmt: skip
    assert ds.num_rows == 7
    assert ds.column_names == ["conversations", "agent", "model", "model_provider", "date", "task",
                               "episode", "run_id", "trial_name", "enable_thinking", "source"]  # fmt: skip
    row = ds[0]
    assert row["agent"] == "terminus-2" and row["episode"] == "episode-2"
    assert (
        row["conversations"][0]["role"] == "user"
        and "Task Description:" in row["conversations"][0]["content"]
    )
    assert row["conversations"][1]["content"].startswith("<think>")
    assert row["enable_thinking"] is True

    # SFT rows with our own tokenizer and chat template: masks cover exactly the assistant tokens
    tok_dir = train_toy_tokenizer(tmp_path / "tok", vocab_size=1500, template="qwen3")
    sft = tmp_path / "export" / "sft.parquet"
    res = runner.invoke(app, ["export", str(data), "--format", "sft", "--tokenizer", str(tok_dir),
                              "--out", str(sft), "--workers", "2"], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    chat = TokenizerSpec(str(tok_dir)).load()
    rows = pq.read_table(sft).to_pylist()
    assert len(rows) == 7
    for r in rows:
        text = chat.render(r["messages"])
        spans = chat.assistant_spans(r["messages"], text)
        assert len(spans) == r["n_assistant_turns"] == 3
        ids, mask = r["input_ids"], r["loss_mask"]
        assert len(ids) == len(mask) == r["n_tokens"] and sum(mask) == r["n_trained_tokens"]
        trained = _runs(ids, mask, 1)
        untrained = _runs(ids, mask, 0)
        assert [chat.tokenizer.decode(run, skip_special_tokens=False) for run in trained] == [
            text[a:b] for a, b in spans
        ]
        starts = [0] + [b for _, b in spans]
        ends = [a for a, _ in spans] + [len(text)]
        rest = [text[a:b] for a, b in zip(starts, ends, strict=True) if b > a]
        assert [chat.tokenizer.decode(run, skip_special_tokens=False) for run in untrained] == rest
        assert not r["truncated"] and r["n_tokens"] == r["n_tokens_full"]
    # truncation at --max-len: counted and reported
    short = tmp_path / "export" / "sft-short.jsonl"
    res = runner.invoke(app, ["export", str(data), "--format", "sft", "--tokenizer", str(tok_dir),
                              "--out", str(short), "--max-len", "300", "--json"], env=WIDE)  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["outputs"]["default"]["truncated"] == 7
    assert all(json.loads(x)["n_tokens"] == 300 for x in short.read_text().splitlines())

    # statistics of the curated folder and of the SFT file
    res = runner.invoke(app, ["stats", str(data), "--json"], env=WIDE)
    assert res.exit_code == 0, res.output
    st = json.loads(res.stdout)
    assert st["records"] == 7 and st["by_subset"] == {"dataset_adapters": 6, "other": 1}
    assert st["turns"]["histogram"][0] == 7  # 3 turns each: the 0-4 bin
    assert st["curation"]["dropped"] == {"cjk": 2, "decontamination": 2, "identity": 1}
    assert st["completion_rate"] == 1.0
    res = runner.invoke(app, ["stats", str(sft), "--json"], env=WIDE)
    st = json.loads(res.stdout)
    assert st["tokens"]["n"] == 7
    assert st["tokens"]["mean"] == pytest.approx(sum(r["n_tokens"] for r in rows) / 7, abs=0.05)
    res = runner.invoke(app, ["stats", str(data)], env=WIDE)
    assert (
        "0-5K" in res.stdout and "50+" in res.stdout and "decontamination (14-gram)" in res.stdout
    )


def _runs(ids: list[int], mask: list[int], value: int) -> list[list[int]]:
    runs: list[list[int]] = []
    prev = None
    for i, m in zip(ids, mask, strict=True):
        if m == value:
            if prev != value:
                runs.append([])
            runs[-1].append(i)
        prev = m
    return runs
