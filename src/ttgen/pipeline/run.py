"""`ttgen run PIPELINE.yaml`: every stage of the pipeline into one run folder.

    RUN/
      run.json          the manifest: the config, each stage's status, times, outputs, counts
      tasks/<source>/   tasks written by adapters and synthesis (task sources used in place)
      validation/       the validation job + validation.jsonl; kept.txt lists the kept tasks
      rollouts/         the rollout job (one folder per trial)
      curated/          records.jsonl, dropped.jsonl, curate.json
      export/           corpus / SFT files (+ .export.json)
      report/           index.html

Each stage runs the same code as its own command (`ttgen adapt`, `synth`, `validate`, `rollout`,
`curate`, `export`, `report`) and is resumable the same way. A stage that finished is skipped
when its settings and everything upstream are unchanged (a fingerprint in run.json); a stage
whose settings changed runs again (the resumable ones keep their finished work). ``until`` stops
after a stage; `plan` gives what would run and an LLM cost estimate without running anything.

Without a teacher (no model/base_url) synthesis sources are skipped and, by default, the rollouts
use the oracle agent as a *stand-in*: the reference solution typed into the terminal, on tasks
that have one. Its records say ``stand_in: true`` and ``agent: oracle`` all the way to the
exported rows: data to see the pipeline work, not teacher data.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ttgen import __version__
from ttgen.errors import TtgenError
from ttgen.formats.trial import now, write_json_atomic
from ttgen.pipeline.config import STAGES, PipelineConfig, Source

MANIFEST = "run.json"


class PipelineError(TtgenError):
    """A stage cannot run (bad input, missing teacher, ...); the message says which and why."""


Log = Callable[[str], None]


@dataclass
class StageResult:
    status: str  # done | skipped | failed
    outputs: dict[str, str] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    note: str = ""


# Where and how fast a stage runs does not change what it produces: not part of fingerprints
# (moving rollouts to Ray, or raising concurrency, does not redo finished stages).
_PLACEMENT = {"executor", "address", "per_node", "concurrency"}


# Settings added after fingerprints existed: left out while at their default, so that run
# folders made before them are not redone after an upgrade.
_LATER_DEFAULTS: dict[str, Any] = {
    "verifier_isolation": "snapshot",
    "keep_tampered": False,
    "include_sources": [],
    "exclude_sources": [],
    "harbor": None,
}


def _settings(model: Any) -> dict[str, Any]:
    return {
        k: v
        for k, v in model.model_dump(mode="json").items()
        if k not in _PLACEMENT and not (k in _LATER_DEFAULTS and _LATER_DEFAULTS[k] == v)
    }


def _fingerprint(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Runner:
    def __init__(
        self,
        config: PipelineConfig,
        run_dir: Path,
        *,
        log: Log = print,
        job_events: Callable[[str], Any] | None = None,
    ) -> None:
        self.config = config
        self.run = Path(run_dir)
        self.log = log
        self.job_events = job_events  # label -> JobEvents (the CLI's progress bar)
        self.manifest = self._load_manifest()

    # -- manifest ---------------------------------------------------------------------------

    def _load_manifest(self) -> dict[str, Any]:
        try:
            data = json.loads((self.run / MANIFEST).read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("kind") == "ttgen-run":
                return data
        except (OSError, ValueError):
            pass
        return {
            "kind": "ttgen-run",
            "name": self.config.name,
            "created_at": now().isoformat(),
            "stages": {},
        }

    def _save(self) -> None:
        self.manifest.update(
            name=self.config.name,
            updated_at=now().isoformat(),
            ttgen_version=__version__,
            config=self.config.model_dump(mode="json"),
            teacher=self._teacher_label(),
        )
        write_json_atomic(self.run / MANIFEST, self.manifest)

    def _teacher_label(self) -> str:
        t = self.config.teacher
        if t.configured:
            return f"{t.model} @ {t.base_url}"
        if self.config.rollouts.stand_in == "oracle":
            return "none: the oracle agent stands in (reference solutions, labelled stand_in)"
        return "none"

    def fingerprints(self) -> dict[str, str]:
        c = self.config
        teacher = c.teacher.model_dump(mode="json")
        out: dict[str, str] = {}
        out["sources"] = _fingerprint([_settings(s) for s in c.sources],
                                      teacher if any(s.synth for s in c.sources) else None)  # fmt: skip
        out["validation"] = _fingerprint(out["sources"], _settings(c.validation))
        out["rollouts"] = _fingerprint(out["validation"], _settings(c.rollouts), teacher)
        out["curation"] = _fingerprint(out["rollouts"], _settings(c.curation))
        out["export"] = _fingerprint(out["curation"], _settings(c.export))
        out["train"] = _fingerprint(out["export"], _settings(c.train) if c.train else None)
        out["eval"] = _fingerprint(out["train"], _settings(c.eval) if c.eval else None)
        # (without train/eval, as before they existed: old run folders keep their report)
        out["report"] = _fingerprint(out["eval"] if c.train or c.eval else out["export"], c.report)
        return out

    def stage_state(self, stage: str, fingerprints: dict[str, str]) -> str:
        entry = self.manifest.get("stages", {}).get(stage) or {}
        if (
            entry.get("status") in ("done", "skipped")
            and entry.get("fingerprint") == fingerprints[stage]
        ):
            return "done"
        return "pending"

    # -- running ----------------------------------------------------------------------------

    def execute(self, until: str | None = None) -> dict[str, Any]:
        """Run the stages in order (up to `until`), skipping the finished ones."""
        if until is not None and until not in STAGES:
            raise PipelineError(f"unknown stage {until!r} (stages: {', '.join(STAGES)})")
        self.run.mkdir(parents=True, exist_ok=True)
        prints = self.fingerprints()
        self.manifest.setdefault("stages", {})
        for stage in STAGES:
            if self.stage_state(stage, prints) == "done":
                self.log(f"[{stage}] done earlier: skipped")
            else:
                entry = {"status": "running", "started_at": now().isoformat()}
                self.manifest["stages"][stage] = entry
                self._save()
                t0 = time.monotonic()
                self.log(f"[{stage}] running")
                try:
                    res = getattr(self, f"_stage_{stage}")()
                except BaseException as exc:
                    entry.update(status="failed", finished_at=now().isoformat(),
                                 error=f"{type(exc).__name__}: {exc}"[:2000])  # fmt: skip
                    self._save()
                    raise
                entry.update(
                    status=res.status,
                    finished_at=now().isoformat(),
                    elapsed_sec=round(time.monotonic() - t0, 2),
                    outputs=res.outputs,
                    counts=res.counts,
                    fingerprint=prints[stage],
                )
                if res.note:
                    entry["note"] = res.note
                self._save()
                self.log(
                    f"[{stage}] {res.status}"
                    + (f": {brief}" if (brief := _brief(res.counts)) else "")
                    + (f" ({res.note})" if res.note else "")
                )
                if res.status == "stopped":
                    break
            if stage == until:
                break
        return self.manifest

    # -- stages -----------------------------------------------------------------------------

    def _task_roots(self) -> list[Path]:
        roots = []
        for s in self.config.sources:
            if s.tasks:
                roots.append(self.config.path(s.tasks))
            else:
                roots.append(self.run / "tasks" / s.folder_name)
        return roots

    def _stage_sources(self) -> StageResult:
        from ttgen.task import find_tasks

        counts: dict[str, Any] = {"by_source": {}}
        bad_total = 0
        notes = []
        for s in self.config.sources:
            dest = self.run / "tasks" / s.folder_name
            if s.adapter:
                n, bad = self._adapt(s, dest)
            elif s.synth:
                if not self.config.teacher.configured:
                    notes.append(
                        f"{s.folder_name} skipped: synthesis needs a teacher (--model/--base-url)"
                    )
                    counts["by_source"][s.folder_name] = 0
                    continue
                n, bad = self._synthesize(s, dest)
            else:
                path = self.config.path(s.tasks or "")
                if not path.exists():
                    raise PipelineError(f"sources: {path}: no such folder of tasks")
                n, bad = len(find_tasks([path])), 0
                # used in place: the report (and a reader of run.json) finds them here
                counts.setdefault("task_roots", {})[s.folder_name] = str(path)
            counts["by_source"][s.folder_name] = n
            bad_total += bad
        counts["generated"] = sum(counts["by_source"].values())
        counts["bad"] = bad_total
        if counts["generated"] == 0:
            raise PipelineError("sources produced no tasks")
        return StageResult("done", {"tasks": "tasks"}, counts, "; ".join(notes))

    def _adapt(self, s: Source, dest: Path) -> tuple[int, int]:
        from ttgen.sources.adapters import AdaptOptions, adapt

        defaults = AdaptOptions()
        options = AdaptOptions(
            image=s.image or defaults.image,
            fields=dict(s.fields),
            limit=s.limit,
            suffix=s.suffix,
        )
        src = s.input or ""
        local = self.config.path(src)
        summary = adapt(s.adapter or "", str(local) if local.exists() else src, dest, options)
        for bad in summary.bad[:5]:
            self.log(f"  skipped record {bad.origin}: {bad.problem}")
        return summary.tasks, summary.n_bad

    def _synthesize(self, s: Source, dest: Path) -> tuple[int, int]:
        import asyncio

        from ttgen.llm import LLMConfig, check_endpoint
        from ttgen.sources.skills_taxonomy import load_taxonomy
        from ttgen.sources.synth.engine import SynthOptions, synthesize
        from ttgen.sources.synth.gates import parse_gate_list
        from ttgen.sources.synth.items import load_seeds, seed_items, skill_items

        t = self.config.teacher
        llm = LLMConfig(
            model=t.model, base_url=t.base_url,
            price_input_per_mtok=t.price_input_per_mtok, price_output_per_mtok=t.price_output_per_mtok,
            **{k: v for k, v in t.params.items() if k in LLMConfig.model_fields},
        )  # fmt: skip
        taxonomy = load_taxonomy()
        if s.synth == "skills":
            ids = list(taxonomy.domains) if s.domains == ["all"] else s.domains
            try:
                domains = [taxonomy.get(d) for d in ids]
            except (KeyError, ValueError) as exc:
                raise PipelineError(f"sources {s.folder_name}: {exc}") from None
            items = skill_items(
                domains, n=s.n, difficulty=s.difficulty, seed=s.seed, model=t.model or ""
            )
        else:
            loaded = load_seeds(str(self.config.path(s.seeds or "")), limit=s.limit)
            items = seed_items(loaded.seeds, taxonomy=taxonomy, model=t.model or "")
        gates = parse_gate_list(s.gates, validate=False)
        options = SynthOptions(out=dest, concurrency=self.config.rollouts.concurrency)

        async def go() -> dict[str, Any]:
            await check_endpoint(llm)  # one short request: a wrong model or key stops here
            return await synthesize(
                llm,
                options,
                gates,
                items,
                job=f"synth-{self.run.name}",
                executor=s.executor,
                address=s.address,
                per_node=s.per_node,
                log=self.log,
            )

        summary = asyncio.run(go())
        return int(summary.get("written", 0)), int(summary.get("errors", 0))

    def _all_tasks(self) -> list[Path]:
        from ttgen.task import find_tasks

        return sorted(find_tasks([r for r in self._task_roots() if r.exists()]))

    def _stage_validation(self) -> StageResult:
        import asyncio

        from ttgen.rollout.validate import summarize, validate_tasks

        tasks = self._all_tasks()
        out = self.run / "validation"
        v = self.config.validation
        if not v.enabled:
            _write_lines(out / "kept.txt", [str(p) for p in tasks])
            return StageResult("skipped", {"kept": "validation/kept.txt"}, {"kept": len(tasks)},
                               "validation disabled: every task goes on")  # fmt: skip
        events = self.job_events("validate") if self.job_events else None
        verdicts = asyncio.run(_with_events(events, validate_tasks(
            tasks, out, _job_options(v), events=events)))  # fmt: skip
        kept = [vd.path for vd in verdicts if vd.verdict in v.keep]
        _write_lines(out / "kept.txt", kept)
        summary = summarize(verdicts)
        left = {verdict: n for verdict, n in summary.items() if verdict not in v.keep}
        counts = {"tasks": len(verdicts), "verdicts": summary, "kept": len(kept),
                  "left_out": left}  # fmt: skip
        note = (
            "left out (verdict not in validation.keep): "
            + ", ".join(f"{k} {n}" for k, n in left.items())
            if left
            else ""
        )
        return StageResult(
            "done", {"validation": "validation", "kept": "validation/kept.txt"}, counts, note
        )

    def _kept_tasks(self) -> list[Path]:
        kept = self.run / "validation" / "kept.txt"
        if not kept.exists():
            raise PipelineError("rollouts: no validation/kept.txt (run the validation stage)")
        return [Path(x) for x in kept.read_text(encoding="utf-8").splitlines() if x.strip()]

    def _stage_rollouts(self) -> StageResult:
        import asyncio

        from ttgen.agents import create_agent
        from ttgen.formats.trial import AgentSpec
        from ttgen.rollout.job import Job, load_tasks, rollout_specs

        r, t = self.config.rollouts, self.config.teacher
        tasks, bad = load_tasks(self._kept_tasks())
        note = ""
        left: dict[str, int] = {}
        if bad:
            left["unreadable task"] = len(bad)
        if t.configured:
            kwargs = {**t.params, **r.agent_kwargs, "model": t.model, "base_url": t.base_url}
            if t.price_input_per_mtok is not None:
                kwargs.setdefault("price_input_per_mtok", t.price_input_per_mtok)
            if t.price_output_per_mtok is not None:
                kwargs.setdefault("price_output_per_mtok", t.price_output_per_mtok)
            spec = AgentSpec(name=r.agent, kwargs=kwargs)
            agent = create_agent(r.agent, **kwargs)
            if hasattr(agent, "preflight"):
                asyncio.run(agent.preflight())
        elif r.stand_in == "oracle":
            with_solution = [x for x in tasks if x.solve_script is not None]
            if len(with_solution) < len(tasks):
                left["no reference solution for the oracle stand-in"] = (
                    len(tasks) - len(with_solution)
                )
            tasks = with_solution
            spec = AgentSpec(name="oracle", kwargs={"transcript": True})
            note = "no teacher: the oracle agent stands in (records labelled stand_in)"
        else:
            return StageResult("stopped", {}, {}, "no teacher and stand_in: none: stopping here")
        if not tasks:
            raise PipelineError("rollouts: no task to roll out (none kept by validation"
                                + (", or none has a reference solution for the stand-in)" if not t.configured else ")"))  # fmt: skip
        events = self.job_events(f"{spec.name} x{r.attempts}") if self.job_events else None
        job = Job(self.run / "rollouts", rollout_specs(tasks, spec, r.attempts),
                  _job_options(r), kind="rollout", events=events,
                  skipped_tasks=bad)  # fmt: skip
        result = asyncio.run(_with_events(events, job.run()))
        st = result["stats"]
        counts = {
            "tasks": len(tasks),
            "left_out": left,
            "trials": st.get("n_trials", len(job.specs)),
            "outcomes": st.get("outcomes", {}),
            "agent": spec.name,
            "stand_in": spec.name == "oracle",
            "cost_usd": st.get("cost_usd"),
        }
        return StageResult("done", {"rollouts": "rollouts"}, counts, note)

    def _stage_curation(self) -> StageResult:
        from ttgen.curate.curator import BenchmarkSpec, CurateError, CurateOptions, curate
        from ttgen.curate.filters import DEFAULT_IDENTITY_PATTERNS, FilterOptions

        c = self.config.curation
        options = CurateOptions(
            benchmarks=[BenchmarkSpec(self.config.path(b)) for b in c.benchmarks],
            decontaminate=c.decontaminate,
            bench_fields=tuple(c.bench_fields),
            ngram=c.ngram,
            filters=FilterOptions(
                identity=c.identity,
                identity_patterns=[*DEFAULT_IDENTITY_PATTERNS, *c.identity_patterns],
                cjk=c.cjk,
                complete_only=c.complete_only,
                success_only=c.success_only,
                max_turns=c.max_turns,
                max_tokens=c.max_tokens,
                keep_tampered=c.keep_tampered,
            ),
            dedup=c.dedup,
            dedup_threshold=c.dedup_threshold,
            dedup_adapters=c.dedup_adapters,
        )
        try:
            m = curate([self.run / "rollouts"], self.run / "curated", options)
        except CurateError as exc:
            raise PipelineError(f"curation: {exc} (in the pipeline: curation.benchmarks or "
                                "curation.decontaminate: false)") from None  # fmt: skip
        counts = {**m["counts"], "dropped_by": m["dropped"],
                  "decontaminated_tasks": m["decontamination"].get("tasks_matched", 0)}  # fmt: skip
        return StageResult("done", {"curated": "curated"}, counts)

    def _stage_export(self) -> StageResult:
        from ttgen.export.exporter import ExportOptions, export

        e = self.config.export
        data = self.run / "curated"
        out_dir = self.run / "export"
        outputs: dict[str, str] = {}
        counts: dict[str, Any] = {}
        note = ""
        common = {"mix": e.mix, "fractions": list(e.fractions), "seed": e.seed,
                  "include_sources": tuple(e.include_sources),
                  "exclude_sources": tuple(e.exclude_sources)}  # fmt: skip
        if e.corpus:
            s = export([data], out_dir / e.corpus, ExportOptions(format="corpus", **common))
            outputs["corpus"] = f"export/{e.corpus}"
            counts["corpus_rows"] = sum(o["rows"] for o in s["outputs"].values())
        if e.harbor is not None:
            from ttgen.export.harbor import HarborOptions

            s = export([data], out_dir / e.harbor.file,
                       ExportOptions(format="harbor",
                                     harbor=HarborOptions(episodes=e.harbor.episodes), **common))  # fmt: skip
            outputs["harbor"] = f"export/{e.harbor.file}"
            counts["harbor_rows"] = sum(o["rows"] for o in s["outputs"].values())
            if s["skipped"]:
                counts["harbor_skipped"] = s["skipped"]
        if e.sft is not None:
            from ttgen.export.sft import TokenizerSpec

            tok = e.sft.tokenizer
            spec = None  # none with target sharegpt and no tokenizer: the trainer tokenizes
            if tok == "toy":
                tok = str(self._toy_tokenizer(data, out_dir / "toy-tokenizer"))
                note = ("the SFT rows use a toy tokenizer trained on this run (to try the "
                        "pipeline; real data uses the student's tokenizer)")
            elif tok and not tok.startswith(("/", ".")) and self.config.path(tok).exists():
                tok = str(self.config.path(tok))
            if tok is not None:
                spec = TokenizerSpec(tok, chat_template=e.sft.chat_template,
                                     template_kwargs=dict(e.sft.template_args),
                                     reasoning=e.sft.reasoning)  # fmt: skip
            s = export([data], out_dir / e.sft.file,
                       ExportOptions(format="sft", tokenizer=spec, max_len=e.sft.max_len,
                                     target=e.sft.target, reasoning=e.sft.reasoning,
                                     **common))  # fmt: skip
            outputs["sft"] = f"export/{e.sft.file}"
            counts["sft_rows"] = sum(o["rows"] for o in s["outputs"].values())
            counts["sft_tokens"] = sum(o.get("tokens", 0) for o in s["outputs"].values())
            counts["sft_truncated"] = sum(o.get("truncated", 0) for o in s["outputs"].values())
            if s["skipped"]:
                counts["sft_skipped"] = s["skipped"]
        return StageResult("done", outputs, counts, note)

    def _sft_files(self) -> list[Path]:
        """The SFT files the export stage wrote (a mix writes one file per stage/fraction)."""
        sft = self.config.export.sft
        summary = self.run / "export" / f"{sft.file}.export.json" if sft else None
        files: list[Path] = []
        if summary is not None and summary.is_file():
            outputs = json.loads(summary.read_text(encoding="utf-8")).get("outputs") or {}
            files = [Path(str(o.get("path") or name)) for name, o in outputs.items()]
            files = [f if f.is_absolute() else self.run / "export" / f.name for f in files]
        if not files and sft is not None:
            files = [self.run / "export" / sft.file]
        return [f for f in files if f.is_file()]

    def _stage_train(self) -> StageResult:
        c = self.config.train
        if c is None:
            return StageResult("skipped", {}, {}, "no train section")
        try:
            from ttgen.train.recipe import resolve
            from ttgen.train.trl_backend import train_trl
        except ImportError as exc:
            raise PipelineError(f"train: needs the train extra ({exc}); install it with "
                                "pip install 'terminal-task-gen[train]'") from None  # fmt: skip
        files = self._sft_files()
        if not files:
            raise PipelineError("train: the export stage wrote no SFT file (export.sft)")
        overrides = dict(c.set)
        if c.model is not None:
            overrides["model"] = c.model
        try:
            cfg = resolve(c.preset, overrides)
        except TtgenError as exc:
            raise PipelineError(f"train: {exc}") from None
        if c.backend == "verl":
            from ttgen.train.verl_backend import write_verl

            written = write_verl(self.run / "train", cfg, files, cfg.model, cfg.tokenizer)
            return StageResult("done", {"train": "train"}, {"backend": "verl"},
                               f"veRL config and launch scripts written to {written.folder}; "
                               "run them on a GPU cluster")  # fmt: skip
        self._set_aside_other_training(cfg, files)
        result = train_trl(self.run / "train", cfg, files, echo=self.log)
        counts = {k: result.get(k) for k in ("steps", "first_loss_mean10", "final_loss_mean10",
                                             "trained_tokens", "tokens_per_s")}  # fmt: skip
        counts = {k: round(v, 4) if isinstance(v, float) else v for k, v in counts.items()}
        return StageResult("done", {"train": "train", "model": "train/model"},
                           {k: v for k, v in counts.items() if v is not None})  # fmt: skip

    def _set_aside_other_training(self, cfg: Any, files: list[Path]) -> None:
        """A train folder made with other settings or data (the file or the export changed) is
        renamed to train.<time>/, not deleted, and training starts afresh; one made with the
        same ones (an interrupted run) is resumed."""
        from ttgen.train.data import fingerprint
        from ttgen.train.runfolder import MANIFEST as TRAIN_MANIFEST
        from ttgen.train.runfolder import identity

        folder = self.run / "train"
        try:
            old = json.loads((folder / TRAIN_MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if old.get("identity") == identity(cfg, "trl", fingerprint(files)):
            return
        aside = folder.with_name(f"train.{time.strftime('%Y%m%d-%H%M%S')}")
        folder.rename(aside)
        self.log(f"[train] settings or data changed: the earlier training moved to {aside}")

    def _stage_eval(self) -> StageResult:
        import asyncio

        c = self.config.eval
        if c is None:
            return StageResult("skipped", {}, {}, "no eval section")
        from ttgen.formats.trial import AgentSpec
        from ttgen.rollout.evaluate import evaluate, task_category
        from ttgen.rollout.job import Job, load_tasks, rollout_specs
        from ttgen.task import find_tasks
        from ttgen.train.serve import ModelServer, port_free, previous_port

        model_dir = self.run / "train" / "model"
        if not (model_dir / "config.json").is_file():
            raise PipelineError(f"eval: no trained model in {model_dir} (the train stage "
                                "writes it; with backend verl, train on a GPU cluster first)")  # fmt: skip
        tasks, bad = load_tasks(find_tasks([self.config.path(t) for t in c.tasks]))
        if not tasks:
            raise PipelineError("eval: no valid task in eval.tasks")
        out = self.run / "eval"
        # An eval of another checkpoint or with other settings is set aside, never resumed
        # (its job would count the old model's trials as this one's).
        marker = out / "stage.json"
        want = {"fingerprint": self.fingerprints()["eval"]}
        try:
            have = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            have = None
        if out.exists() and have != want and any(out.iterdir()):
            aside = out.with_name(f"eval.{time.strftime('%Y%m%d-%H%M%S')}")
            out.rename(aside)
            self.log(f"[eval] the model or settings changed: the earlier eval moved to {aside}")
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(marker, want)
        server = ModelServer(model_dir, c.engine, log_path=out / "server.log")
        # the port of an earlier run of this stage, so that its job resumes (the job's identity
        # holds the base URL)
        port = previous_port(out / "job" / "config.json", server.model)
        server.port = port if port is not None and port_free(port) else None
        with server:
            kwargs = {**c.agent_kwargs, "model": server.model, "base_url": server.base_url}
            spec = AgentSpec(name="terminus-2", kwargs=kwargs)
            events = self.job_events(f"eval x{c.attempts}") if self.job_events else None
            options = _job_options(c)
            job = Job(out / "job", rollout_specs(tasks, spec, c.attempts), options,
                      kind="eval", events=events, skipped_tasks=bad)  # fmt: skip
            result = asyncio.run(_with_events(events, job.run()))
        summary = evaluate(job.summaries.values(),
                           {t.name: task_category(t.config.metadata) for t in tasks}, c.attempts)  # fmt: skip
        report = {
            "agent": "terminus-2",
            "model": server.model,
            "checkpoint": str(model_dir),
            "served_by": server.engine,
            "agent_kwargs": dict(c.agent_kwargs),
            "job_folder": str(out / "job"),
            "job_id": result["id"],
            "skipped_tasks": bad,
            **summary,
        }
        write_json_atomic(out / "eval.json", report)
        counts = {"tasks": summary["n_tasks"], "trials": summary["n_trials"],
                  "accuracy": summary["accuracy"], "missing": summary["n_missing"],
                  "outcomes": summary["outcomes"]}  # fmt: skip
        if summary["n_missing"]:
            raise PipelineError(f"eval: {summary['n_missing']} trial(s) missing after retries "
                                f"(infrastructure errors; see {out / 'job'}); re-run to resume")  # fmt: skip
        return StageResult("done", {"eval": "eval/eval.json"}, counts)

    def _toy_tokenizer(self, data: Path, dest: Path) -> Path:
        from ttgen.curate.curator import read_records
        from ttgen.export.toy_tokenizer import sample_texts, train_toy_tokenizer

        if (dest / "tokenizer.json").exists():
            return dest
        texts = [m["content"] for i, r in enumerate(read_records(data, [])) if i < 500
                 for m in r["messages"]]  # fmt: skip
        return train_toy_tokenizer(dest, vocab_size=4000, texts=[*texts, *sample_texts(500)])

    def _stage_report(self) -> StageResult:
        if not self.config.report:
            return StageResult("skipped", {}, {}, "report: false")
        from ttgen.report import write_report

        # The report shows run.json: mark this stage done in it first (a failure below marks it
        # failed again), so the page does not show its own stage as still running.
        entry = self.manifest["stages"]["report"]
        entry.update(status="done", finished_at=now().isoformat(),
                     outputs={"report": "report/index.html"})  # fmt: skip
        self._save()
        index = write_report(self.run, self.run / "report")
        return StageResult("done", {"report": str(Path(index).relative_to(self.run))}, {})

    # -- plan -------------------------------------------------------------------------------

    def plan(self) -> dict[str, Any]:
        """What `execute` would do, and an estimate of the LLM tokens and cost."""
        prints = self.fingerprints()
        c = self.config
        n_tasks, n_synth = self._count_planned_tasks()
        est = c.estimate
        teacher = c.teacher.configured
        trials = n_tasks * c.rollouts.attempts
        roll_in = trials * est.turns_per_trial * est.final_context_tokens / 2 if teacher else 0
        roll_out = trials * est.turns_per_trial * est.output_tokens_per_turn if teacher else 0
        syn_in = n_synth * est.synth_input_tokens if teacher else 0
        syn_out = n_synth * est.synth_output_tokens if teacher else 0
        cost = None
        if (
            teacher
            and c.teacher.price_input_per_mtok is not None
            and c.teacher.price_output_per_mtok is not None
        ):
            cost = ((roll_in + syn_in) * c.teacher.price_input_per_mtok
                    + (roll_out + syn_out) * c.teacher.price_output_per_mtok) / 1e6  # fmt: skip
        stages = [{"stage": s, "state": self.stage_state(s, prints)} for s in STAGES]
        return {
            "run": str(self.run),
            "teacher": self._teacher_label(),
            "stages": stages,
            "tasks_planned": n_tasks,
            "synthesis_items": n_synth,
            "trials_planned": trials,
            "estimate": {
                "input_tokens": round(roll_in + syn_in),
                "output_tokens": round(roll_out + syn_out),
                "cost_usd": round(cost, 2) if cost is not None else None,
                "assumptions": est.model_dump(),
            },
        }

    def _count_planned_tasks(self) -> tuple[int, int]:
        from ttgen.task import find_tasks

        n = synth = 0
        for s in self.config.sources:
            if s.tasks:
                p = self.config.path(s.tasks)
                n += len(find_tasks([p])) if p.exists() else 0
            elif s.adapter:
                p = self.config.path(s.input or "")
                lines = _count_lines(p) if p.is_file() else (s.limit or 0)
                n += min(lines, s.limit) if s.limit else lines
            elif s.synth == "skills":
                k = s.n * (11 if s.domains == ["all"] else len(s.domains))
                synth += k
                n += k if self.config.teacher.configured else 0
            elif s.synth == "seeds":
                p = self.config.path(s.seeds or "")
                k = _count_lines(p) if p.is_file() else 0
                k = min(k, s.limit) if s.limit else k
                synth += k
                n += k if self.config.teacher.configured else 0
        return n, synth


def _job_options(stage: Any) -> Any:
    from ttgen.rollout.job import job_options

    return job_options(
        concurrency=stage.concurrency,
        executor=getattr(stage, "executor", "local"),
        address=getattr(stage, "address", None),
        per_node=getattr(stage, "per_node", None),
        verifier_isolation=stage.verifier_isolation,
    )


async def _with_events(events: Any, coro: Any) -> Any:
    if events is None:
        return await coro
    with events:
        return await coro


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    tmp.replace(path)


def _brief(counts: dict[str, Any]) -> str:
    parts = []
    for k, v in counts.items():
        if v is None or k == "task_roots":  # nothing to say / paths (in run.json)
            continue
        if isinstance(v, dict):
            if not v:
                continue  # e.g. nothing left out
            v = ", ".join(f"{a} {b}" for a, b in v.items()) or "-"
            parts.append(f"{k}: {v}")
        else:
            parts.append(f"{k} {v}")
    return "; ".join(parts)
