"""TRL backend training throughput against a bare PyTorch loop on the same model and batches,
and peak memory.

    python benchmarks/train.py [--size small] [--seq 512] [--steps 20] [--repeat 3]

The data is generated here (fixed seed): a byte-level BPE (`ttgen.export.toy_tokenizer`, ChatML
template) and Terminus-2-like conversations longer than ``--seq`` tokens, tokenized into SFT
rows by ttgen's export functions; training truncates every row at ``--seq``, so every
micro-batch has the same shape and no padding (the batch order, which differs between the two,
then does not change the work). The model is a Qwen3-architecture model built from a config
(`ttgen.train.tiny`, ``--size``), float32, on the CPU. Measured in the same run, each in a fresh
process, taking turns:

* floor: the same model's bare loop on the same rows: ``model(input_ids, attention_mask,
  labels)`` (transformers' own loss), backward per micro-batch (loss scaled by the micro-batch's
  share of the step's trained tokens), gradient clipping, fused AdamW (the Trainer's default
  optimizer), cosine schedule with warmup, ``zero_grad``; no logging, no checkpoint;
* ours: `ttgen.train.trl_backend.TrlRun` (TRL's SFTTrainer with our callbacks), exactly as
  `ttgen train --backend trl` runs it: a metrics.jsonl line per step, TRL's fused LM head and
  its metrics; one checkpoint, at the end (after the timed window).

tokens/s = the tokens of steps k0+1..N over the wall time from the end of step k0 to the end of
step N (k0 = ``--warmup`` steps, left out: the first steps allocate), for both. Target: ours
over the floor >= 0.90. Peak RSS (``getrusage``) of each process, the Python interpreter and the
imported libraries included (torch + transformers + TRL + datasets in ours).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = ("ls -la /app", "cat README.md", "python3 main.py", "make test", "git status",
            "pytest -q tests/", "wc -l data.csv", "grep -rn TODO src/", "pip install -r req.txt",
            "tail -n 50 /var/log/syslog", "find . -name '*.py' | head", "echo $PATH")  # fmt: skip
_TEXT = (
    "the file was not found so I will check the directory first and then run the tests again "
    "after installing the missing package version error output server build command line value "
    "function return config path module parse result"
)
WORDS = tuple(_TEXT.split())


def make_records(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        msgs = [{"role": "system", "content": "You are an AI assistant in a Linux terminal."}]
        for t in range(12):
            cmd = rng.choice(COMMANDS)
            screen = "\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(3))
            msgs.append({"role": "user", "content": f"Task {i}.{t}: {screen}\nroot@box:/app# "})
            think = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 30)))
            msgs.append({"role": "assistant",
                         "content": f'<think>{think}</think>\n{{"analysis": "{think[:40]}", '
                                    f'"commands": [{{"keystrokes": "{cmd}\\n", "duration": 0.1}}],'
                                    ' "task_complete": false}'})  # fmt: skip
        out.append({"id": f"r{i}", "messages": msgs, "task": f"t{i}", "model": "teacher",
                    "subset": "synthetic", "source": "bench"})  # fmt: skip
    return out


def make_data(tmp: Path, args: argparse.Namespace) -> tuple[Path, Path, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ttgen.export.sft import TokenizerSpec, sft_record_batch, sft_row, tokenize_records
    from ttgen.export.toy_tokenizer import train_toy_tokenizer
    from ttgen.train.tiny import init_model

    tok = train_toy_tokenizer(tmp / "tok", vocab_size=args.vocab, template="chatml")
    rows = []
    for res in tokenize_records(make_records(args.rows, args.seed), TokenizerSpec(str(tok)),
                                max_len=None):  # fmt: skip
        assert res.chat is not None, res.error
        rows.append(sft_row(res.record, res.chat))
    short = min(len(r["input_ids"]) for r in rows)
    if short < args.seq:
        raise SystemExit(f"the shortest row has {short} tokens, fewer than --seq {args.seq}")
    data = tmp / "sft.parquet"
    pq.write_table(pa.Table.from_batches([sft_record_batch(rows)]), data)
    model = init_model(tok, tmp / "init-model", size=args.size, seed=args.seed)
    return tok, data, model


def config(args: argparse.Namespace, tok: Path):
    from ttgen.train.recipe import resolve

    return resolve("cpu-tiny", {
        "model": f"init:qwen3-{args.size}", "tokenizer": str(tok), "max_length": args.seq,
        "global_batch_size": args.micro * args.accum, "micro_batch_size": args.micro,
        "epochs": 1000, "max_steps": args.steps, "save_steps": 10**6, "seed": args.seed,
        "learning_rate": 1e-3,
    })  # fmt: skip


def child_ours(args: argparse.Namespace, tmp: Path, out: Path) -> dict:
    from ttgen.train.runfolder import read_metrics
    from ttgen.train.trl_backend import TrlRun

    cfg = config(args, tmp / "tok")
    TrlRun(out, cfg, [tmp / "sft.parquet"]).run()
    rows = read_metrics(out)
    k0 = args.warmup
    window = rows[k0:]
    sec = window[-1]["elapsed_s"] - rows[k0 - 1]["elapsed_s"]
    return {"sec": sec, "tokens": sum(r["tokens"] for r in window), "steps": len(rows),
            "loss": [rows[0]["loss"], rows[-1]["loss"]]}  # fmt: skip


def child_floor(args: argparse.Namespace, tmp: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, get_cosine_schedule_with_warmup

    from ttgen.train.data import load_token_table

    cfg = config(args, tmp / "tok")
    torch.manual_seed(cfg.seed)
    table = load_token_table([tmp / "sft.parquet"], cfg.max_length).table
    ids = torch.tensor(table.column("input_ids").to_pylist(), dtype=torch.long)
    labels = torch.tensor(table.column("labels").to_pylist(), dtype=torch.long)
    model = AutoModelForCausalLM.from_pretrained(tmp / "init-model", dtype=torch.float32)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=1e-8, fused=True,
    )  # fmt: skip
    steps = args.steps
    sched = get_cosine_schedule_with_warmup(opt, int(cfg.warmup_ratio * steps + 0.999), steps)
    m, g, n = args.micro, args.accum, len(ids)
    ends, losses, tokens = [], [], []
    cursor = 0
    for _ in range(steps):
        batches = []
        for _ in range(g):
            idx = [(cursor + j) % n for j in range(m)]
            cursor += m
            batches.append((ids[idx], labels[idx]))
        trained = sum(int((lb[:, 1:] != -100).sum()) for _, lb in batches)
        total = 0.0
        for x, lb in batches:
            share = int((lb[:, 1:] != -100).sum()) / trained
            out = model(input_ids=x, attention_mask=torch.ones_like(x), labels=lb)
            (out.loss * share).backward()
            total += float(out.loss.detach()) * share
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        ends.append(time.perf_counter())
        losses.append(total)
        tokens.append(sum(int(x.numel()) for x, _ in batches))
    k0 = args.warmup
    return {"sec": ends[-1] - ends[k0 - 1], "tokens": sum(tokens[k0:]), "steps": steps,
            "loss": [losses[0], losses[-1]]}  # fmt: skip


def child(args: argparse.Namespace) -> None:
    kind, tmp, out = args.child[0], Path(args.child[1]), Path(args.child[2])
    result = child_ours(args, tmp, out) if kind == "ours" else child_floor(args, tmp)
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def measure(kind: str, tmp: Path, args: argparse.Namespace, i: int) -> dict:
    out = tmp / f"run-{kind}-{i}"
    cmd = [sys.executable, __file__, "--child", kind, str(tmp), str(out)] + [
        f"--{k}={getattr(args, k)}" for k in ("size", "seq", "steps", "micro", "accum", "warmup",
                                              "seed", "vocab", "rows")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-4000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="small", help="tiny, small or 300m (ttgen.train.tiny)")
    ap.add_argument("--seq", type=int, default=512, help="tokens per row (rows cut to this)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3, help="first steps left out of the timing")
    ap.add_argument("--micro", type=int, default=4, help="rows per micro-batch")
    ap.add_argument("--accum", type=int, default=2, help="micro-batches per optimizer step")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=4000)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs per figure")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    tmp = Path(tempfile.mkdtemp(prefix="ttgen-bench-train-"))
    try:
        run(args, tmp)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: Path) -> None:
    from ttgen.train.plan import count_params

    t0 = time.perf_counter()
    _, _, model = make_data(tmp, args)
    conf = json.loads((model / "config.json").read_text())
    n_params = count_params(conf)
    print(
        f"data: {args.rows} rows cut to {args.seq} tokens; model qwen3-{args.size} "
        f"({n_params / 1e6:.2f}M parameters, vocabulary {conf['vocab_size']}), float32, CPU; "
        f"{args.steps} steps of {args.accum} x {args.micro} rows "
        f"({args.accum * args.micro * args.seq} tokens), timing from step {args.warmup + 1}; "
        f"made in {time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs"
    )
    runs: dict[str, list[dict]] = {"floor": [], "ours": []}
    for i in range(args.repeat):
        for kind in runs:
            runs[kind].append(measure(kind, tmp, args, i))
    best = {k: max(v, key=lambda m: m["tokens"] / m["sec"]) for k, v in runs.items()}
    assert best["floor"]["tokens"] == best["ours"]["tokens"], best  # the same work was timed
    rate = {k: m["tokens"] / m["sec"] for k, m in best.items()}
    for k in ("floor", "ours"):
        m = best[k]
        print(
            f"{k:5s}  {rate[k]:9,.0f} tokens/s  ({m['tokens']:,} tokens in {m['sec']:.2f} s; "
            f"loss {m['loss'][0]:.3f} -> {m['loss'][1]:.3f}; peak RSS {m['rss_mb']:,.0f} MB)"
        )
    ratio = rate["ours"] / rate["floor"]
    print(f"ours / floor: {ratio:.3f}   target >= 0.90   {'OK' if ratio >= 0.9 else 'MISSED'}")
    print(f"peak RSS ours / floor: {best['ours']['rss_mb'] / best['floor']['rss_mb']:.2f}x")
    print("all runs (tokens/s): " + "; ".join(
        f"{k} " + ", ".join(f"{m['tokens'] / m['sec']:,.0f}" for m in v) for k, v in runs.items()
    ))  # fmt: skip


if __name__ == "__main__":
    main()
