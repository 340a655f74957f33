"""`ttgen train`: the paper's recipe as presets, the dry-run plan, the TRL backend on CPU (real
TRL, real torch, a Qwen3-architecture model built from a config) and the veRL config checked by
veRL's own loader.

The data is made here: a BPE tokenizer trained on the spot (`ttgen.export.toy_tokenizer`), and
conversations with a learnable structure (every assistant turn is a JSON action naming the
command the user asked for) tokenized into SFT rows by ttgen's export functions.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from ttgen.cli import app
from ttgen.export.sft import TokenizerSpec, sft_record_batch, sft_row, tokenize_records
from ttgen.export.toy_tokenizer import train_toy_tokenizer
from ttgen.train.data import load_token_table, scan
from ttgen.train.plan import make_plan
from ttgen.train.recipe import PRESETS, RecipeError, TrainConfig, parse_sets, resolve
from ttgen.train.runfolder import METRIC_FIELDS, TrainError, read_metrics
from ttgen.train.trl_backend import TrlRun

COMMANDS = ("ls -la /app", "cat README.md", "python3 main.py", "make test", "git status",
            "pytest -q tests/", "wc -l data.csv", "echo done")  # fmt: skip


def _records(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        msgs = [{"role": "system", "content": "You are an AI assistant in a Linux terminal."}]
        for t in range(3):
            cmd = rng.choice(COMMANDS)
            msgs.append(
                {
                    "role": "user",
                    "content": f"Task {i}.{t}: please run {cmd} and report what it prints",
                }
            )
            msgs.append({"role": "assistant",
                         "content": '{"analysis": "I will run the command", "commands": '
                                    f'[{{"keystrokes": "{cmd}\\n", "duration": 0.1}}], '
                                    '"task_complete": false}'})  # fmt: skip
        out.append({"id": f"r{i}", "messages": msgs, "task": f"t{i}", "model": "teacher",
                    "subset": "synthetic", "source": "test"})  # fmt: skip
    return out


def _write_sft(records: list[dict], tok: Path, path: Path) -> Path:
    rows = []
    for res in tokenize_records(records, TokenizerSpec(str(tok)), max_len=4096):
        assert res.chat is not None, res.error
        rows.append(sft_row(res.record, res.chat))
    pq.write_table(pa.Table.from_batches([sft_record_batch(rows)]), path)
    return path


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Path:
    return train_toy_tokenizer(tmp_path_factory.mktemp("tok") / "chatml", template="chatml")


@pytest.fixture(scope="module")
def data(tok, tmp_path_factory) -> Path:
    return _write_sft(_records(32), tok, tmp_path_factory.mktemp("data") / "sft.parquet")


def _cfg(tok: Path, **over) -> TrainConfig:
    return resolve("cpu-tiny", {"tokenizer": str(tok), **over})


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(run)]


# -- recipe -------------------------------------------------------------------------------------


def test_presets_hold_the_papers_recipe_and_bad_values_name_the_key():
    for name, gpus in (("qwen3-8b", 32), ("qwen3-14b", 32), ("qwen3-32b", 128)):
        c = resolve(name)
        assert (c.learning_rate, c.weight_decay, c.epochs, c.max_length) == (2e-5, 1e-4, 2, 32768)
        assert (c.global_batch_size, c.micro_batch_size, c.adam_beta1, c.adam_beta2) == (
            128, 1, 0.9, 0.95)  # fmt: skip
        assert (c.lr_scheduler, c.warmup_ratio, c.max_grad_norm) == ("cosine", 0.1, 1.0)
        assert (c.sequence_parallel_size, c.param_offload, c.optimizer_offload) == (2, True, True)
        assert c.n_gpus == gpus and c.model == f"Qwen/Qwen3-{name.split('-')[1].upper()}"
    assert resolve("cpu-tiny").model == "init:qwen3-tiny" and "cpu-tiny" in PRESETS
    c = resolve("qwen3-8b", parse_sets(["learning_rate=1e-5", "param_offload=false", "epochs=3"]))
    assert (c.learning_rate, c.param_offload, c.epochs) == (1e-5, False, 3)
    for sets, words in (
        (["learning_rate=fast"], "learning_rate='fast': expected a number"),
        (["warmup_ratio=1.5"], "warmup_ratio=1.5: must be in [0, 1)"),
        (["lr_scheduler=linear"], "lr_scheduler='linear'"),
        (["global_batch_size=100"], "global_batch_size=100: must be a multiple of"),
        (["epochs=1.5"], "epochs='1.5': expected an integer"),
        (["no_such_key=1"], "unknown train config key 'no_such_key'"),
    ):
        with pytest.raises(RecipeError) as err:
            resolve("qwen3-8b", parse_sets(sets))
        assert words in str(err.value)
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        parse_sets(["epochs"])


# -- dry run ------------------------------------------------------------------------------------


def _handmade(path: Path, lengths: list[int], trained_every: int, *, counts: bool = True,
              mask_name: str = "loss_mask") -> Path:  # fmt: skip
    ids, masks = [], []
    for n in lengths:
        ids.append(list(range(3, 3 + n)))
        masks.append([1 if j % trained_every == 0 else 0 for j in range(n)])
    cols = {"input_ids": pa.array(ids, type=pa.list_(pa.int32())),
            mask_name: pa.array(masks, type=pa.list_(pa.int8()))}  # fmt: skip
    if counts:
        cols["n_tokens"] = pa.array(lengths, type=pa.int32())
        cols["n_trained_tokens"] = pa.array([sum(m) for m in masks], type=pa.int32())
    pq.write_table(pa.table(cols), path)
    return path


def test_dry_run_plan_figures_on_known_data_and_nothing_written(tmp_path):
    f = _handmade(tmp_path / "a.parquet", [100, 200, 5000], trained_every=4)
    g = _handmade(tmp_path / "b.parquet", [100, 200, 5000], trained_every=4, counts=False,
                  mask_name="assistant_masks")  # fmt: skip
    cfg = resolve("qwen3-8b", {"max_length": 4096, "global_batch_size": 16, "epochs": 2,
                               "n_params": 1e9})  # fmt: skip
    plan = make_plan([f], cfg)
    other = make_plan([g], cfg)  # TRL's columns, no count columns: the same figures
    assert other.to_dict() | {"files": None} == plan.to_dict() | {"files": None}
    p = plan.to_dict()
    assert (p["examples"], p["tokens"], p["trained_tokens"]) == (3, 5300, 25 + 50 + 1250)
    assert p["tokens_after_truncation"] == 100 + 200 + 4096
    assert p["trained_tokens_after_truncation"] == 25 + 50 + 1024
    assert (p["optimizer_steps"], p["warmup_steps"], p["verl_optimizer_steps"]) == (2, 1, 0)
    d = 4396 * 2
    flops = 6 * 1e9 * d + 6 * 36 * 4096 * (100**2 + 200**2 + 4096**2) * 2
    assert p["tokens_processed"] == d and p["flops"] == pytest.approx(flops)
    assert p["gpu_hours"] == pytest.approx(flops / (989e12 * 0.35) / 3600)
    assert p["wall_hours"] == pytest.approx(p["gpu_hours"] / 32)

    before = sorted(tmp_path.rglob("*"))
    res = CliRunner().invoke(app, ["train", str(f), "--dry-run", "--preset", "qwen3-8b",
                                   "--set", "max_length=4096", "--set", "global_batch_size=16",
                                   "--out", str(tmp_path / "run")])  # fmt: skip
    assert res.exit_code == 0, res.output
    out = res.output
    assert "examples: 3 (1 longer than 4,096: truncated)" in out
    assert "tokens: 5,300 total, 1,325 trained" in out
    assert "after truncation at 4,096: 4,396 tokens, 1,099 trained" in out
    assert "optimizer steps: 2 = ceil(3 / 16) x 2 epoch(s)" in out
    assert "FLOPs = 6·N·D + 6·L·d·Σn²·epochs;  GPU-hours = FLOPs / (peak x MFU) / 3600" in out
    assert "N = 8.200e09 parameters (Qwen/Qwen3-8B (published size))" in out
    assert "989 TFLOP/s x MFU 0.35" in out
    assert sorted(tmp_path.rglob("*")) == before  # a dry run writes nothing

    res = CliRunner().invoke(app, ["train", str(g), "--dry-run", "--json", "--preset", "qwen3-8b",
                                   "--set", "max_length=4096", "--set", "global_batch_size=16"])  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["plan"]["optimizer_steps"] == 2 and doc["config"]["max_length"] == 4096
    assert doc["plan"]["gpu_hours"] > 0 and doc["plan"]["n_params"] == 8.2e9

    bad = CliRunner().invoke(app, ["train", str(f), "--dry-run", "--set", "mfu=2"])
    assert bad.exit_code == 2 and "mfu=2.0: must be in (0, 1]" in bad.output


# -- TRL backend --------------------------------------------------------------------------------


def test_loss_falls_checkpoints_reload_and_the_run_folder_is_complete(tok, data, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path / "run"
    # a mistake found before training leaves no trace: the same --out then works
    with pytest.raises(TrainError, match="give --tokenizer FOLDER"):
        TrlRun(run, resolve("cpu-tiny", {"max_steps": 30}), [data]).run()
    assert not run.exists()
    cfg = _cfg(tok, epochs=20, max_steps=30, save_steps=15)
    job = TrlRun(run, cfg, [data])
    result = job.run()
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 31))
    first, last = np.mean(_losses(run)[:10]), np.mean(_losses(run)[-10:])
    assert last < 0.7 * first, (first, last)
    r = rows[-1]
    assert tuple(r) == METRIC_FIELDS
    assert 0 < r["trained_tokens"] < r["tokens"] and r["tokens_per_s"] > 0
    assert rows[1]["learning_rate"] > rows[-1]["learning_rate"] >= 0  # warmup then cosine decay
    assert result["final_loss"] == r["loss"] and result["model_dir"] == str(run / "model")

    manifest = json.loads((run / "train.json").read_text())
    assert manifest["status"] == "done" and manifest["backend"] == "trl"
    assert manifest["config"]["learning_rate"] == 3e-3 and manifest["versions"]["trl"]
    assert manifest["data"]["fingerprint"] and manifest["data"]["rows_used"] == 32
    assert "step 30/30" in (run / "train.log").read_text()

    ckpt = run / "checkpoints" / "checkpoint-30"
    assert (ckpt / "ttgen-complete.json").is_file() and (ckpt / "tokenizer.json").is_file()
    batch = torch.tensor([load_token_table([data], 4096).table.column("input_ids")[0].as_py()])
    job.trainer.model.eval()
    with torch.no_grad():
        trained = job.trainer.model(input_ids=batch).logits
        for folder in (run / "model", ckpt):
            model = AutoModelForCausalLM.from_pretrained(folder)
            assert torch.equal(model(input_ids=batch).logits, trained)
    assert AutoTokenizer.from_pretrained(run / "model").eos_token == "<|im_end|>"

    # Done: the same command again says so; another config is refused, nothing changed.
    assert TrlRun(run, cfg, [data]).run()["already_done"] is True
    snapshot = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    with pytest.raises(TrainError, match=r"config\.learning_rate: 0\.003 -> 0\.001"):
        TrlRun(run, _cfg(tok, epochs=20, max_steps=30, learning_rate=1e-3), [data]).run()
    other = _write_sft(_records(33), tok, tmp_path / "other.parquet")
    with pytest.raises(TrainError, match="different config or data"):
        TrlRun(run, cfg, [other]).run()
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == snapshot


def _append_masked(src: Path, dst: Path, seed: int, *, change_trained: bool = False) -> Path:
    """Each row of ``src`` with 16 untrained tokens of random ids appended (or, with
    ``change_trained``, one trained token changed instead)."""
    rng = np.random.default_rng(seed)
    t = pq.read_table(src, columns=["input_ids", "loss_mask"]).to_pylist()
    for row in t:
        if change_trained:
            k = max(i for i, m in enumerate(row["loss_mask"]) if m)
            row["input_ids"][k] = (row["input_ids"][k] + 7) % 1000 + 3
        row["input_ids"] += rng.integers(3, 1900, 16).tolist()
        row["loss_mask"] += [0] * 16
    pq.write_table(pa.table({"input_ids": pa.array([r["input_ids"] for r in t], pa.list_(pa.int32())),
                             "loss_mask": pa.array([r["loss_mask"] for r in t], pa.list_(pa.int8()))}),
                   dst)  # fmt: skip
    return dst


def test_tokens_outside_the_mask_contribute_nothing(tok, data, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    import ttgen.train.trl_backend as trl_backend

    a = _append_masked(data, tmp_path / "a.parquet", seed=1)
    b = _append_masked(data, tmp_path / "b.parquet", seed=2)
    c = _append_masked(data, tmp_path / "c.parquet", seed=1, change_trained=True)
    # one step = all 32 rows, whatever the order: step 1's loss is checked by hand below
    over = {"global_batch_size": 32, "micro_batch_size": 8, "epochs": 2, "save_steps": 100}
    runs = {}
    for name, f in (("a", a), ("b", b), ("c", c)):
        TrlRun(tmp_path / name, _cfg(tok, **over), [f]).run()
        runs[name] = read_metrics(tmp_path / name)
    la, lb, lc = ([r["loss"] for r in runs[k]] for k in "abc")
    assert len(la) == 2 and la == pytest.approx(lb, rel=1e-6, abs=1e-7)
    assert [r["grad_norm"] for r in runs["a"]] == pytest.approx(
        [r["grad_norm"] for r in runs["b"]], rel=1e-5)  # fmt: skip
    assert [r["tokens"] for r in runs["a"]] == [r["tokens"] for r in runs["b"]]
    assert abs(lc[0] - la[0]) > 1e-4  # a changed trained token changes the loss
    # TRL's fused LM head (CUDA, or large logits) gives the same losses as the model's own loss
    monkeypatch.setattr(trl_backend, "PLAIN_LOSS_MAX_LOGITS_BYTES", 0)
    TrlRun(tmp_path / "fused", _cfg(tok, **over), [a]).run()
    assert _losses(tmp_path / "fused") == pytest.approx(la, rel=1e-5)

    # step 1's loss = the mean negative log-likelihood of the trained tokens under the
    # initial model, computed here directly
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a" / "init-model").eval()
    total, count = 0.0, 0
    table = load_token_table([a], 4096).table
    with torch.no_grad():
        for ids, labels in zip(table.column("input_ids").to_pylist(),
                               table.column("labels").to_pylist(), strict=True):  # fmt: skip
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
            target = torch.tensor(labels[1:])
            keep = target != -100
            logp = torch.log_softmax(logits.double(), -1)[keep, target[keep]]
            total += float(-logp.sum())
            count += int(keep.sum())
    assert runs["a"][0]["trained_tokens"] == count
    assert la[0] == pytest.approx(total / count, rel=1e-4)


def test_trl_columns_give_the_same_labels_as_ttgen_columns(data, tmp_path):
    t = pq.read_table(data, columns=["input_ids", "loss_mask"])
    trl = tmp_path / "trl.parquet"
    pq.write_table(t.rename_columns(["input_ids", "assistant_masks"]), trl)
    ours, theirs = load_token_table([data], 4096), load_token_table([trl], 4096)
    assert ours.table.equals(theirs.table)
    row = ours.table.slice(0, 1).to_pylist()[0]
    mask = t.column("loss_mask")[0].as_py()
    assert row["labels"] == [i if m else -100 for i, m in zip(row["input_ids"], mask, strict=True)]
    short = load_token_table([data], 100)  # truncation keeps the first 100 tokens
    assert max(len(x) for x in short.table.column("input_ids").to_pylist()) == 100
    assert short.truncated == 32
    with pytest.raises(Exception, match="more than max_length=100"):
        load_token_table([data], 100, truncation="error")
    assert scan([trl], 4096).trained_tokens == scan([data], 4096).trained_tokens


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ttgen.cli", "train", *args]


def test_kill_9_then_rerun_resumes_with_the_same_steps_and_weights(tok, data, tmp_path):
    from safetensors.torch import load_file

    sets = ["--set", "epochs=20", "--set", "max_steps=30", "--set", "save_steps=5",
            "--set", "keep_checkpoints=3"]  # fmt: skip
    ref = tmp_path / "ref"
    TrlRun(ref, _cfg(tok, epochs=20, max_steps=30, save_steps=5, keep_checkpoints=3),
           [data]).run()  # fmt: skip

    run = tmp_path / "run"
    cmd = _cli(str(data), "--out", str(run), "--tokenizer", str(tok), *sets)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 180
    marker = run / "checkpoints" / "checkpoint-5" / "ttgen-complete.json"
    while not marker.exists():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 180 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    manifest = json.loads((run / "train.json").read_text())
    assert manifest["status"] == "running" and not (run / "model").exists()
    assert len(read_metrics(run)) < 30

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from checkpoint-" in again.stderr
    assert "final loss" in again.stdout and str(run / "model") in again.stdout
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 31))  # each step exactly once
    assert _losses(run) == pytest.approx(_losses(ref), rel=1e-5)
    mine, theirs = load_file(run / "model" / "model.safetensors"), load_file(
        ref / "model" / "model.safetensors")  # fmt: skip
    assert mine.keys() == theirs.keys()
    for k in mine:
        torch.testing.assert_close(mine[k], theirs[k], rtol=1e-5, atol=1e-6)
    attempts = json.loads((run / "train.json").read_text())["attempts"]
    assert len(attempts) == 2 and attempts[1]["resumed_from"].startswith("checkpoint-")
    assert json.loads((run / "train.json").read_text())["status"] == "done"


def test_without_the_train_extra_the_command_says_what_to_install(data, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "trl" else real(name, *a))  # fmt: skip
    res = CliRunner().invoke(app, ["train", str(data), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert "pip install 'terminal-task-gen[train]'" in res.output and "trl" in res.output
    assert not (tmp_path / "r").exists()


# -- veRL backend -------------------------------------------------------------------------------


def test_verl_config_is_accepted_by_verls_own_loader(tok, data, tmp_path):
    from hydra import compose, initialize_config_dir
    from verl.trainer.config import CheckpointConfig
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.config import FSDPEngineConfig, FSDPOptimizerConfig, HFModelConfig

    from ttgen.train.tiny import init_model
    from ttgen.train.verl_backend import collect_metrics, run_verl, write_verl

    model = init_model(tok, tmp_path / "tiny-model")
    cfg = resolve("qwen3-8b", {"model": str(model), "learning_rate": 1.5e-5,
                               "warmup_ratio": 0.05, "max_steps": 40})  # fmt: skip
    run = tmp_path / "run"
    files = write_verl(run, cfg, [data], str(model))
    with initialize_config_dir(config_dir=str(files.folder.resolve()), version_base=None):
        conf = compose(config_name=files.config.stem)
    # as veRL's SFTTrainer._build_config converts them
    m = omega_conf_to_dataclass(conf.model)
    e = omega_conf_to_dataclass(conf.engine)
    o = omega_conf_to_dataclass(conf.optim)
    ck = omega_conf_to_dataclass(conf.checkpoint)
    omega_conf_to_dataclass(conf.profiler)
    assert isinstance(m, HFModelConfig) and isinstance(e, FSDPEngineConfig)
    assert isinstance(o, FSDPOptimizerConfig) and isinstance(ck, CheckpointConfig)
    assert (o.lr, list(o.betas), o.weight_decay, o.clip_grad) == (1.5e-5, [0.9, 0.95], 1e-4, 1.0)
    assert (o.lr_warmup_steps_ratio, o.lr_scheduler_type) == (0.05, "cosine")
    assert (e.ulysses_sequence_parallel_size, e.param_offload, e.optimizer_offload) == (
        2,
        True,
        True,
    )
    assert m.path == str(model) and m.tokenizer is not None and "hf_model" in ck.save_contents
    d, t = conf.data, conf.trainer
    assert d.train_files == [str(data.resolve())] and d.messages_key == "messages"
    assert (d.max_length, d.truncation, d.train_batch_size, d.micro_batch_size_per_gpu) == (
        32768, "right", 128, 1)  # fmt: skip
    assert d.ignore_input_ids_mismatch is True
    assert (t.total_epochs, t.nnodes, t.n_gpus_per_node, t.resume_mode) == (2, 4, 8, "auto")
    assert t.total_training_steps == 40 and t.default_local_dir == str(
        (run / "checkpoints").resolve()
    )
    assert "file" in t.logger
    for script in (files.single_node, files.multi_node, files.slurm):
        check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, (script.name, check.stderr)
    single = files.single_node.read_text()
    assert "torchrun --standalone" in single and "-m verl.trainer.sft_trainer" in single
    assert f'--config-path "$RUN_DIR/verl" --config-name {files.config.stem}' in single
    assert '--rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT"' in files.multi_node.read_text()
    assert "#SBATCH --nodes=4" in files.slurm.read_text()

    # veRL's per-step file logs -> metrics.jsonl (a resumed attempt's steps replace the first's)
    logs = run / "verl"
    (logs / "metrics-20260101-000000-1.jsonl").write_text("".join(
        json.dumps({"step": k, "data": {"train/loss": 9.0 - k, "train/lr": 1e-5,
                                        "train/grad_norm": 1.0, "train/global_tokens": 100}}) + "\n"
        for k in (1, 2, 3)))  # fmt: skip
    (logs / "metrics-20260101-010000-2.jsonl").write_text(json.dumps(
        {"step": 3, "data": {"train/loss": 5.0, "train/lr": 1e-5}}) + "\n")  # fmt: skip
    assert collect_metrics(run) == 3
    assert [(r["step"], r["loss"]) for r in read_metrics(run)] == [(1, 8.0), (2, 7.0), (3, 5.0)]

    if not torch.cuda.is_available():  # the usual CI machine: a clear message, files written
        with pytest.raises(TrainError, match="no CUDA device"):
            run_verl(tmp_path / "run2", cfg, [data])
        assert (tmp_path / "run2" / "verl" / "run_single_node.sh").is_file()
        res = CliRunner().invoke(app, ["train", str(data), "--backend", "verl", "--preset",
                                       "qwen3-8b", "--model", str(model),
                                       "--out", str(tmp_path / "run3")])  # fmt: skip
        assert res.exit_code == 2 and "no CUDA device" in res.output
