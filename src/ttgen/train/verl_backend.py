"""The veRL backend: the paper's trainer (veRL's SFT trainer, FSDP, Ulysses, CPU offload).

`write_verl` writes into RUN/verl/:

* ``ttgen_sft.yaml``: a hydra config for ``verl.trainer.sft_trainer`` that starts from veRL's
  own ``sft_trainer_engine`` (found through ``hydra.searchpath: pkg://verl.trainer.config``, so
  every key we do not set keeps the installed veRL's default) and sets the recipe's values:
  data (train_files, messages_key, max_length, truncation, batch sizes,
  ignore_input_ids_mismatch), optim (lr, weight_decay, betas, clip_grad, warmup ratio, cosine),
  engine (Ulysses size, param/optimizer offload, dtype), model (path, gradient checkpointing),
  checkpoint (with an HF copy), trainer (epochs, nodes, GPUs, RUN/checkpoints, loggers,
  resume_mode auto);
* ``run_single_node.sh``: ``torchrun --standalone --nproc_per_node=N -m
  verl.trainer.sft_trainer --config-path RUN/verl --config-name ttgen_sft``;
* ``run_multi_node.sh``: torchrun with a c10d rendezvous from MASTER_ADDR/MASTER_PORT/NNODES
  (run it on every node);
* ``run_slurm.sbatch``: the same through ``srun``, one torchrun per node.

veRL reads the rows' ``messages`` and tokenizes them with the model's chat template (its
multi-turn dataset); the trainer reads no ttgen token column. veRL's checkpoints go to
RUN/checkpoints/global_step_N/ (``huggingface/`` inside holds the HF model), and its per-step
log to RUN/verl/metrics-<time>.jsonl (veRL's file logger), which `collect_metrics` turns into
RUN/metrics.jsonl.

`run_verl` writes all that and runs the single-node script on this machine's GPUs; without
CUDA it says so (`TrainError`) after writing the files, so they can be taken to a GPU machine.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ttgen.fileio import umask, write_json_atomic
from ttgen.train.data import fingerprint, resolve_files
from ttgen.train.recipe import TrainConfig
from ttgen.train.runfolder import (
    CHECKPOINTS,
    KIND,
    METRICS,
    RunLog,
    TrainError,
    check_folder,
    check_identity,
    identity,
    now,
    resolve_model,
    versions,
    write_manifest,
)

CONFIG_NAME = "ttgen_sft"
VERL_DIR = "verl"
BASE_CONFIG = "sft_trainer_engine"  # in verl/trainer/config/
ENTRY = "verl.trainer.sft_trainer"


@dataclass
class VerlFiles:
    folder: Path
    config: Path
    single_node: Path
    multi_node: Path
    slurm: Path


def verl_config(
    cfg: TrainConfig, run: Path, files: list[Path], model: str, tokenizer: str | None = None
) -> dict[str, Any]:
    """The hydra config (as a dict) for veRL's SFT trainer with the recipe's values."""
    run = run.resolve()
    model_section: dict[str, Any] = {
        "path": model,
        "enable_gradient_checkpointing": cfg.gradient_checkpointing,
        "use_remove_padding": True,  # Ulysses needs the padding-free path
    }
    if tokenizer and tokenizer != model:
        model_section["tokenizer_path"] = tokenizer
    return {
        "hydra": {
            "searchpath": ["pkg://verl.trainer.config"],
            "run": {"dir": str(run / VERL_DIR / "hydra")},
        },
        "defaults": [BASE_CONFIG, "_self_"],
        "data": {
            "train_files": [str(f.resolve()) for f in files],
            "val_files": None,
            "messages_key": "messages",
            "max_length": cfg.max_length,
            "truncation": cfg.truncation,
            "train_batch_size": cfg.global_batch_size,
            "micro_batch_size_per_gpu": cfg.micro_batch_size,
            "use_dynamic_bsz": False,  # the paper: micro-batch 1 per GPU
            "max_token_len_per_gpu": cfg.max_length,
            # Qwen3's template renders a thinking turn differently alone than in the whole chat:
            # veRL's per-turn tokenization then differs from the whole rendering; keep its ids
            "ignore_input_ids_mismatch": True,
        },
        "model": model_section,
        "optim": {
            "lr": cfg.learning_rate,
            "weight_decay": cfg.weight_decay,
            "betas": [cfg.adam_beta1, cfg.adam_beta2],
            "clip_grad": cfg.max_grad_norm,
            "lr_warmup_steps_ratio": cfg.warmup_ratio,
            "lr_scheduler_type": cfg.lr_scheduler,
            "min_lr_ratio": 0.0,
        },
        "engine": {
            "ulysses_sequence_parallel_size": cfg.sequence_parallel_size,
            "param_offload": cfg.param_offload,
            "optimizer_offload": cfg.optimizer_offload,
            "dtype": cfg.dtype,
            "seed": cfg.seed,
        },
        "checkpoint": {"save_contents": ["model", "optimizer", "extra", "hf_model"]},
        "trainer": {
            "default_local_dir": str(run / CHECKPOINTS),
            "project_name": "ttgen",
            "experiment_name": run.name,
            "total_epochs": cfg.epochs,
            "total_training_steps": cfg.max_steps if cfg.max_steps > 0 else None,
            "nnodes": cfg.nnodes,
            "n_gpus_per_node": cfg.gpus_per_node,
            "logger": ["console", "file"],
            "resume_mode": "auto",
            "save_freq": cfg.save_steps,
            "max_ckpt_to_keep": cfg.keep_checkpoints,
            "seed": cfg.seed,
            "device": "cuda",
        },
    }


_HEADER = """\
#!/usr/bin/env bash
# veRL SFT for {run} (written by `ttgen train --backend verl`).
# Needs the train extra on every node: pip install 'terminal-task-gen[train]'
# Config: {config} (veRL's {base} + the recipe's values).
set -euo pipefail
RUN_DIR={run_q}
export VERL_FILE_LOGGER_PATH="${{VERL_FILE_LOGGER_PATH:-$RUN_DIR/verl/metrics-$(date +%Y%m%d-%H%M%S)-${{SLURM_JOB_ID:-$$}}.jsonl}}"
"""


def _scripts(cfg: TrainConfig, run: Path, config: Path) -> dict[str, str]:
    run = run.resolve()
    head = _HEADER.format(run=run, run_q=shlex.quote(str(run)), config=config, base=BASE_CONFIG)
    entry = (f"-m {ENTRY} --config-path \"$RUN_DIR/{VERL_DIR}\" --config-name {CONFIG_NAME} "
             "trainer.nnodes=\"$NNODES\" trainer.n_gpus_per_node=\"$NPROC_PER_NODE\" \"$@\"")  # fmt: skip
    single = (
        head
        + f"""\
# One node: all of this node's GPUs (NPROC_PER_NODE, default {cfg.gpus_per_node}).
NNODES=1
NPROC_PER_NODE="${{NPROC_PER_NODE:-{cfg.gpus_per_node}}}"
exec torchrun --standalone --nnodes=1 --nproc_per_node="$NPROC_PER_NODE" \\
  {entry}
"""
    )
    multi = (
        head
        + f"""\
# Several nodes: run this script on every node with the same MASTER_ADDR (the first node's
# address), MASTER_PORT and NNODES; torchrun's c10d rendezvous assigns the ranks.
: "${{MASTER_ADDR:?set MASTER_ADDR to the address of the first node}}"
MASTER_PORT="${{MASTER_PORT:-29500}}"
NNODES="${{NNODES:-{cfg.nnodes}}}"
NPROC_PER_NODE="${{NPROC_PER_NODE:-{cfg.gpus_per_node}}}"
RDZV_ID="${{RDZV_ID:-ttgen-{run.name}}}"
exec torchrun --nnodes="$NNODES" --nproc_per_node="$NPROC_PER_NODE" \\
  --rdzv_backend=c10d --rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv_id="$RDZV_ID" \\
  {entry}
"""
    )
    slurm_head = head.replace(
        "#!/usr/bin/env bash\n",
        f"""#!/usr/bin/env bash
#SBATCH --job-name=ttgen-sft-{run.name}
#SBATCH --nodes={cfg.nnodes}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={cfg.gpus_per_node}
#SBATCH --exclusive
#SBATCH --output={run}/verl/slurm-%j.out
""",
        1,
    )
    slurm = (
        slurm_head
        + f"""\
# sbatch {run}/verl/run_slurm.sbatch  (one torchrun per node through srun)
NNODES="${{SLURM_NNODES:-{cfg.nnodes}}}"
NPROC_PER_NODE="${{NPROC_PER_NODE:-{cfg.gpus_per_node}}}"
MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
MASTER_PORT="${{MASTER_PORT:-29500}}"
export RUN_DIR NNODES NPROC_PER_NODE MASTER_ADDR MASTER_PORT
srun --kill-on-bad-exit=1 --ntasks-per-node=1 bash -c 'exec torchrun \\
  --nnodes="$NNODES" --nproc_per_node="$NPROC_PER_NODE" \\
  --rdzv_backend=c10d --rdzv_endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv_id="$SLURM_JOB_ID" \\
  -m {ENTRY} --config-path "$RUN_DIR/{VERL_DIR}" --config-name {CONFIG_NAME} \\
  trainer.nnodes="$NNODES" trainer.n_gpus_per_node="$NPROC_PER_NODE"'
"""
    )
    return {"run_single_node.sh": single, "run_multi_node.sh": multi, "run_slurm.sbatch": slurm}


def write_verl(
    run: Path, cfg: TrainConfig, files: list[Path], model: str, tokenizer: str | None = None
) -> VerlFiles:
    """Write the veRL config and launch scripts into RUN/verl/ (each file atomically)."""
    folder = run / VERL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / f"{CONFIG_NAME}.yaml"
    text = (
        f"# veRL SFT config written by `ttgen train --backend verl` (preset {cfg.preset}).\n"
        f"# python -m {ENTRY} --config-path {folder.resolve()} --config-name {CONFIG_NAME}\n"
        + yaml.safe_dump(verl_config(cfg, run, files, model, tokenizer), sort_keys=False)
    )
    write_json_atomic(config, text)
    paths = {}
    for name, body in _scripts(cfg, run, config.resolve()).items():
        write_json_atomic(folder / name, body)
        os.chmod(folder / name, 0o755 & ~umask())
        paths[name] = folder / name
    return VerlFiles(folder, config, paths["run_single_node.sh"], paths["run_multi_node.sh"],
                     paths["run_slurm.sbatch"])  # fmt: skip


def collect_metrics(run: Path) -> int:
    """veRL's per-step file logs (RUN/verl/metrics-*.jsonl, oldest first; a resumed attempt's
    steps replace the earlier ones) as RUN/metrics.jsonl rows; returns the number of steps."""
    rows: dict[int, dict[str, Any]] = {}
    for path in sorted((run / VERL_DIR).glob("metrics-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                step, data = int(entry["step"]), entry["data"]
            except (ValueError, KeyError, TypeError):
                continue
            if "train/loss" not in data:
                continue
            rows[step] = {
                "step": step,
                "epoch": None,
                "loss": data.get("train/loss"),
                "learning_rate": data.get("train/lr"),
                "grad_norm": data.get("train/grad_norm"),
                "tokens": data.get("train/global_tokens"),
                "trained_tokens": None,
                "tokens_per_s": None,
                "step_time_s": None,
                "elapsed_s": None,
                "mean_token_accuracy": None,
                "time": None,
            }
    if rows:
        text = "".join(json.dumps(rows[s]) + "\n" for s in sorted(rows))
        write_json_atomic(run / METRICS, text)
    return len(rows)


def run_verl(
    run: Path | str,
    cfg: TrainConfig,
    data: list[Path | str],
    *,
    echo: Any = None,
) -> dict[str, Any]:
    """Write the config and scripts, then train on this machine's GPUs (one node)."""
    run = Path(run)
    files = resolve_files(data)
    data_fp = fingerprint(files)
    ident = identity(cfg, "verl", data_fp)
    manifest = check_folder(run)
    if manifest is not None:
        check_identity(run, manifest, ident)
    resolve_model(run, cfg, files, build=False)  # checked before the folder is written to
    log = RunLog(run, echo)
    try:
        model, tok = resolve_model(run, cfg, files)
        written = write_verl(run, cfg, files, model, tok)
        manifest = manifest or {"kind": KIND, "version": 1, "backend": "verl", "identity": ident,
                                "created_at": now(), "attempts": []}  # fmt: skip
        manifest.update(
            status="prepared",
            config=cfg.to_dict(),
            model={"requested": cfg.model, "path": model, "tokenizer": tok},
            data=data_fp,
            verl={"config": str(written.config), "single_node": str(written.single_node),
                  "multi_node": str(written.multi_node), "slurm": str(written.slurm)},
            versions=versions(),
        )  # fmt: skip
        write_manifest(run, manifest)
        log.write(f"veRL config and launch scripts written to {written.folder}", show=True)
        import torch

        if not torch.cuda.is_available():
            raise TrainError(
                "the verl backend trains on CUDA GPUs and this machine has none (torch sees no "
                f"CUDA device). The config and launch scripts are in {written.folder}: run "
                f"{written.single_node.name} on a GPU node, {written.multi_node.name} on every "
                f"node, or `sbatch {written.slurm}`; or use --backend trl here"
            )
        nproc = torch.cuda.device_count()
        if cfg.n_gpus != nproc:
            log.write(f"one node here: {nproc} GPU(s) instead of the recipe's {cfg.n_gpus}",
                      show=True)  # fmt: skip
        dp = nproc // cfg.sequence_parallel_size
        if nproc % cfg.sequence_parallel_size or cfg.global_batch_size % (
            dp * cfg.micro_batch_size
        ):
            raise TrainError(
                f"{nproc} GPU(s) here: global_batch_size={cfg.global_batch_size} must be a "
                f"multiple of (GPUs / sequence_parallel_size) x micro_batch_size; change "
                "--set global_batch_size or sequence_parallel_size"
            )
        manifest["status"] = "running"
        manifest["attempts"].append({"started_at": now(), "pid": os.getpid(), "gpus": nproc})
        write_manifest(run, manifest)
        env = {**os.environ, "NPROC_PER_NODE": str(nproc)}
        with subprocess.Popen(["bash", str(written.single_node)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env) as proc:  # fmt: skip
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line.rstrip("\n"), show=echo is not None)
            rc = proc.wait()
        steps = collect_metrics(run)
        manifest["status"] = "done" if rc == 0 else "failed"
        manifest["attempts"][-1].update(finished_at=now(), returncode=rc)
        manifest["result"] = {"steps": steps, "returncode": rc,
                              "checkpoints_dir": str(run / CHECKPOINTS)}  # fmt: skip
        write_manifest(run, manifest)
        if rc != 0:
            raise TrainError(f"veRL's trainer exited with status {rc}; see {run / 'train.log'}")
        return manifest["result"]
    finally:
        log.close()
