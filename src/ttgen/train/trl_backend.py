"""The TRL backend: `trl.SFTTrainer` on one machine (CPU included) on ttgen's token rows.

The trainer reads our tokens as they are: `ttgen.train.data.load_token_table` turns
``input_ids`` + ``loss_mask`` (or TRL's ``assistant_masks``) into ``input_ids`` + ``labels``
(-100 where the mask is 0), truncated at ``max_length``, and the trainer is told to skip its own
dataset preparation (``skip_prepare_dataset``): nothing is re-tokenized or re-templated. The loss
of a step is TRL's: the sum of the trained tokens' negative log-likelihoods over the step's
micro-batches divided by the step's number of trained tokens (the mean over trained tokens).

Run folder: see `ttgen.train.runfolder`. Each optimizer step appends a line to metrics.jsonl;
every ``save_steps`` steps (and at the end) a Hugging Face checkpoint is written under
checkpoints/ and marked complete last; the final model goes to model/ (renamed into place).

Resuming: re-running the same command on the same run folder continues from the last complete
checkpoint (model, optimizer, scheduler, RNG states, trainer state), with the data order of an
uninterrupted run: the sampler is seeded (accelerate's seedable sampler, ``data_seed``) and the
Trainer skips the batches the checkpoint has seen; metrics.jsonl is cut back to that checkpoint's
steps first. A folder made with another config or other data is refused before anything in it
changes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import AutoTokenizer, PrinterCallback, TrainerCallback
from transformers.utils import logging as hf_logging
from trl import SFTConfig, SFTTrainer

from ttgen.fileio import make_dir_temp
from ttgen.train.data import TokenTable, fingerprint, load_token_table, resolve_files
from ttgen.train.recipe import TrainConfig
from ttgen.train.runfolder import (
    CHECKPOINTS,
    KIND,
    MODEL,
    MetricsWriter,
    RunLog,
    TrainError,
    check_folder,
    check_identity,
    identity,
    mark_complete,
    now,
    prepare_resume,
    read_metrics,
    replace_dir,
    resolve_model,
    rotate,
    versions,
    write_manifest,
)

Echo = Callable[[str], None]


def _summary(run: Path) -> dict[str, Any]:
    rows = read_metrics(run)
    if not rows:
        return {"steps": 0}
    last10 = [r["loss"] for r in rows[-10:]]
    first10 = [r["loss"] for r in rows[:10]]
    step_time = sum(r.get("step_time_s") or 0.0 for r in rows)
    tokens = sum(r.get("tokens") or 0 for r in rows)
    return {
        "steps": rows[-1]["step"],
        "final_loss": rows[-1]["loss"],
        "final_loss_mean10": sum(last10) / len(last10),
        "first_loss_mean10": sum(first10) / len(first10),
        "tokens": tokens,
        "trained_tokens": sum(r.get("trained_tokens") or 0 for r in rows),
        "train_seconds": round(step_time, 3),
        "tokens_per_s": tokens / step_time if step_time > 0 else None,
    }


class TrlRun:
    """One `ttgen train --backend trl` run: ``TrlRun(run, cfg, data).run()``. After `run`,
    ``trainer`` holds the SFTTrainer (its model is the trained one)."""

    backend = "trl"

    def __init__(
        self,
        run: Path | str,
        cfg: TrainConfig,
        data: list[Path | str],
        *,
        echo: Echo | None = None,
    ) -> None:
        self.run_dir = Path(run)
        self.cfg = cfg
        self.data = list(data)
        self.echo = echo
        self.trainer: Any = None

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        run, cfg = self.run_dir, self.cfg
        files = resolve_files(self.data)
        data_fp = fingerprint(files)
        ident = identity(cfg, self.backend, data_fp)
        manifest = check_folder(run)
        if manifest is not None:
            check_identity(run, manifest, ident)  # refuses before anything changes
            if manifest.get("status") == "done" and (run / MODEL / "config.json").is_file():
                return {**(manifest.get("result") or {}), "already_done": True}
        # everything that can be checked is checked before the folder is written to
        if torch.cuda.device_count() > 1 and "WORLD_SIZE" not in os.environ:
            raise TrainError(
                f"{torch.cuda.device_count()} GPUs are visible: the trl backend runs one "
                "process on one device; make one visible (CUDA_VISIBLE_DEVICES=0) or use "
                "--backend verl"
            )
        model_path, tok_path = resolve_model(run, cfg, files, build=False)
        tokens = load_token_table(files, cfg.max_length, cfg.truncation)
        self._check_vocab(model_path, tok_path, tokens)
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        hf_logging.disable_progress_bar()  # "Writing model shards" bars at every checkpoint
        log = RunLog(run, self.echo)
        handler = self._attach_library_log(run)
        try:
            return self._train(run, cfg, files, data_fp, ident, manifest, tokens, log)
        finally:
            for name in ("transformers", "trl"):
                logging.getLogger(name).removeHandler(handler)
            handler.close()
            log.close()

    def _attach_library_log(self, run: Path) -> logging.Handler:
        handler = logging.FileHandler(run / "train.log", encoding="utf-8")
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        for name in ("transformers", "trl"):
            logging.getLogger(name).addHandler(handler)
        return handler

    def _train(
        self,
        run: Path,
        cfg: TrainConfig,
        files: list[Path],
        data_fp: dict[str, Any],
        ident: dict[str, Any],
        manifest: dict[str, Any] | None,
        tokens: TokenTable,
        log: RunLog,
    ) -> dict[str, Any]:
        model_path, tok_path = resolve_model(run, cfg, files)  # builds init:... models
        ckpt, start_step = prepare_resume(run)
        steps = self._steps(tokens.table.num_rows)
        if manifest is None:
            manifest = {
                "kind": KIND,
                "version": 1,
                "backend": self.backend,
                "identity": ident,
                "created_at": now(),
                "attempts": [],
            }
        manifest.update(
            status="running",
            config=cfg.to_dict(),
            model={"requested": cfg.model, "path": model_path, "tokenizer": tok_path},
            data={
                **data_fp,
                "rows": tokens.rows_read,
                "rows_used": tokens.table.num_rows,
                "rows_without_trained_tokens": tokens.skipped_no_trained,
                "rows_truncated": tokens.truncated,
            },
            optimizer_steps=steps,
            versions=versions(),
        )
        resumed = ckpt.name if ckpt else None
        manifest["attempts"].append({"started_at": now(), "pid": os.getpid(),
                                     "resumed_from": resumed})  # fmt: skip
        write_manifest(run, manifest)
        if ckpt is not None:
            log.write(f"resuming from {ckpt.name} (step {start_step} of {steps})", show=True)
        else:
            log.write(
                f"training {cfg.model} on {tokens.table.num_rows} example(s): {steps} optimizer "
                f"step(s), global batch {cfg.global_batch_size}", show=True
            )  # fmt: skip
        if tokens.skipped_no_trained:
            log.write(f"{tokens.skipped_no_trained} row(s) without a trained token: skipped",
                      show=True)  # fmt: skip
        if cfg.sequence_parallel_size > 1 or cfg.param_offload or cfg.optimizer_offload:
            log.write(
                "note: sequence parallelism and CPU offload are veRL settings; the trl backend "
                "runs one process without them"
            )
        try:
            self.trainer = self._trainer(run, cfg, model_path, tok_path, tokens, steps,
                                         start_step, log)  # fmt: skip
            self.trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
            tmp = make_dir_temp(run, f".{MODEL}.")
            self.trainer.save_model(str(tmp))
            replace_dir(tmp, run / MODEL)
        except BaseException as exc:
            stopped = isinstance(exc, KeyboardInterrupt | SystemExit)
            manifest["status"] = "stopped" if stopped else "failed"
            manifest["attempts"][-1]["error"] = f"{type(exc).__name__}: {exc}"
            write_manifest(run, manifest)
            log.write(f"{manifest['status']}: {type(exc).__name__}: {exc}")
            raise
        result = {**_summary(run), "model_dir": str(run / MODEL),
                  "checkpoints_dir": str(run / CHECKPOINTS)}  # fmt: skip
        manifest.update(status="done", result=result)
        manifest["attempts"][-1]["finished_at"] = now()
        write_manifest(run, manifest)
        log.write(
            f"done: {result['steps']} steps, final loss {result.get('final_loss', float('nan')):.4f}"
            f", model in {run / MODEL}"
        )
        return result

    # -- pieces -------------------------------------------------------------------------------

    def _steps(self, rows: int) -> int:
        cfg = self.cfg
        steps = math.ceil(rows / cfg.global_batch_size) * cfg.epochs
        return min(steps, cfg.max_steps) if cfg.max_steps > 0 else steps

    def _check_vocab(self, model_path: str, tok_path: str, tokens: TokenTable) -> None:
        """The data's token ids must fit the model's embeddings (for init:..., the
        tokenizer's vocabulary, which the built model will have)."""
        from ttgen.train.tiny import INIT_PREFIX, _tokenizer_specials

        vocab: Any = None
        config = Path(model_path) / "config.json"
        if self.cfg.model.startswith(INIT_PREFIX):
            vocab = _tokenizer_specials(Path(tok_path))["vocab_size"]
        elif config.is_file():
            conf = json.loads(config.read_text(encoding="utf-8"))
            vocab = (conf.get("text_config") or conf).get("vocab_size")
        if isinstance(vocab, int) and tokens.max_token_id >= vocab:
            raise TrainError(
                f"the data holds token id {tokens.max_token_id} but the model has a vocabulary "
                f"of {vocab} ({model_path}): the data was exported with another tokenizer"
            )

    def _trainer(
        self,
        run: Path,
        cfg: TrainConfig,
        model_path: str,
        tok_path: str,
        tokens: TokenTable,
        steps: int,
        start_step: int,
        log: RunLog,
    ) -> Any:
        tokenizer = AutoTokenizer.from_pretrained(tok_path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        scheduler = "cosine" if cfg.lr_scheduler == "cosine" else "constant_with_warmup"
        args = SFTConfig(
            output_dir=str(run / CHECKPOINTS),
            per_device_train_batch_size=cfg.micro_batch_size,
            gradient_accumulation_steps=cfg.global_batch_size // cfg.micro_batch_size,
            num_train_epochs=cfg.epochs,
            max_steps=steps,
            learning_rate=cfg.learning_rate,
            weight_decay=cfg.weight_decay,
            adam_beta1=cfg.adam_beta1,
            adam_beta2=cfg.adam_beta2,
            lr_scheduler_type=scheduler,
            warmup_steps=cfg.warmup_ratio,  # below 1: a ratio of the steps (ceil)
            max_grad_norm=cfg.max_grad_norm,
            logging_strategy="steps",
            logging_steps=1,
            logging_nan_inf_filter=False,
            save_strategy="steps",
            save_steps=cfg.save_steps,
            save_total_limit=None,  # ours: rotate() after a checkpoint is complete
            seed=cfg.seed,
            data_seed=cfg.seed,
            use_cpu=not torch.cuda.is_available(),
            bf16=cfg.dtype == "bfloat16",  # autocast; on CPU too
            fp16=False,
            gradient_checkpointing=cfg.gradient_checkpointing,
            max_length=cfg.max_length,
            packing=False,
            padding_free=False,
            dataset_kwargs={"skip_prepare_dataset": True},  # our ids and labels, as they are
            model_init_kwargs={"dtype": "float32"},
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=torch.cuda.is_available(),
        )
        dataset = datasets.Dataset(tokens.table)
        callback = _StepMetrics(run, cfg, steps, start_step, log)
        trainer = _TtgenSFTTrainer(
            model=model_path,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[callback],
        )
        trainer.remove_callback(PrinterCallback)  # our progress lines instead of its dicts
        callback.trainer = trainer
        return trainer


# Off CUDA, a micro-batch whose logits take at most this many bytes gets the model's own loss
# (full logits); larger ones, and every one on CUDA, TRL's fused LM head.
PLAIN_LOSS_MAX_LOGITS_BYTES = 256 << 20


class _TtgenSFTTrainer(SFTTrainer):
    """SFTTrainer counting each optimizer step's tokens and trained tokens.

    The loss is the same either way: the sum of the trained tokens' negative log-likelihoods
    over the step's number of trained tokens (``num_items_in_batch``). TRL computes it with a
    fused LM head that never builds the [tokens, vocabulary] logits: on CUDA (Triton) it scores
    only the trained positions; elsewhere it scores every position in tiles and recomputes
    each tile in the backward pass, ~20% of a small CPU model's step. So off CUDA, where the
    micro-batch's logits are small (`PLAIN_LOSS_MAX_LOGITS_BYTES`), the model's own loss is
    used instead (transformers' causal-LM loss with the same normalization).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.step_tokens = 0
        self.step_trained = 0

    def _plain_loss(self, model, inputs) -> bool:
        ids = inputs["input_ids"]
        if ids.device.type == "cuda" or "attention_mask" not in inputs:
            return False
        vocab = model.config.get_text_config().vocab_size
        return ids.numel() * vocab * 4 <= PLAIN_LOSS_MAX_LOGITS_BYTES

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.step_tokens += int(inputs["attention_mask"].sum())
            self.step_trained += int((inputs["labels"][:, 1:] != -100).sum())
        if return_outputs or not self._plain_loss(model, inputs):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs["labels"]
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                        labels=labels, num_items_in_batch=num_items_in_batch, use_cache=False)  # fmt: skip
        with torch.no_grad():
            target = labels[:, 1:]
            keep = target != -100
            hits = (outputs.logits[:, :-1].argmax(-1) == target) & keep
            n = int(keep.sum())
        mode = "train" if model.training else "eval"
        self._metrics[mode]["mean_token_accuracy"].append(int(hits.sum()) / n if n else 0.0)
        return outputs.loss

    def pop_step_counts(self) -> tuple[int, int]:
        out = (self.step_tokens, self.step_trained)
        self.step_tokens = self.step_trained = 0
        return out


class _StepMetrics(TrainerCallback):
    """A metrics.jsonl line per optimizer step, progress lines, and the completion mark +
    rotation of each checkpoint."""

    def __init__(self, run: Path, cfg: TrainConfig, steps: int, start_step: int, log: RunLog):
        self.run, self.cfg, self.steps, self.log = run, cfg, steps, log
        self.last_step = start_step
        self.trainer: Any = None
        self.writer: MetricsWriter | None = None
        self.t_step = self.t_begin = time.perf_counter()
        self.step_time = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.writer = MetricsWriter(self.run)
        self.t_begin = time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        self.t_step = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_time = time.perf_counter() - self.t_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        step = state.global_step
        if "loss" not in logs or step <= self.last_step or self.writer is None:
            return
        tokens, trained = self.trainer.pop_step_counts()
        dt = self.step_time
        row = {
            "step": step,
            "epoch": round(float(state.epoch or 0.0), 6),
            "loss": float(logs["loss"]),
            "learning_rate": float(logs.get("learning_rate", 0.0)),
            "grad_norm": float(logs["grad_norm"]) if logs.get("grad_norm") is not None else None,
            "tokens": tokens,
            "trained_tokens": trained,
            "tokens_per_s": round(tokens / dt, 2) if dt > 0 else None,
            "step_time_s": round(dt, 6),
            # seconds since this attempt's training loop began, at the end of the step
            "elapsed_s": round(time.perf_counter() - self.t_begin, 6),
            "mean_token_accuracy": logs.get("mean_token_accuracy"),
            "time": now(),
        }
        self.writer.write(row)
        self.last_step = step
        every = self.cfg.log_every
        if step == 1 or step % every == 0 or step == self.steps:
            tps = f"{row['tokens_per_s']:,.0f}" if row["tokens_per_s"] else "-"
            grad = f"{row['grad_norm']:.3g}" if row["grad_norm"] is not None else "-"
            self.log.write(
                f"step {step}/{self.steps}  epoch {row['epoch']:.2f}  loss {row['loss']:.4f}  "
                f"lr {row['learning_rate']:.3g}  grad {grad}  {tps} tok/s",
                show=True,
            )

    def on_save(self, args, state, control, **kwargs):
        ckpt = self.run / CHECKPOINTS / f"checkpoint-{state.global_step}"
        if ckpt.is_dir():
            mark_complete(ckpt, {"step": state.global_step, "epoch": state.epoch})
            removed = rotate(self.run, self.cfg.keep_checkpoints)
            self.log.write(
                f"checkpoint {ckpt.name} complete"
                + (f"; removed {', '.join(p.name for p in removed)}" if removed else "")
            )

    def on_train_end(self, args, state, control, **kwargs):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def train_trl(
    run: Path | str, cfg: TrainConfig, data: list[Path | str], *, echo: Echo | None = None
) -> dict[str, Any]:
    """Train with TRL into ``run``; returns the result (final loss, tokens/s, model folder)."""
    return TrlRun(run, cfg, data, echo=echo).run()
