"""PIPELINE.yaml: one file describing a whole run (sources → validation → rollouts → curation →
export → report). Strict: an unknown key or a wrong type is an error naming the file and the key.

    name: quickstart
    out: runs/quickstart                # the run folder (--out overrides)
    teacher:                            # the LLM for synthesis and rollouts (--model/--base-url)
      model: null
      base_url: null
      params: {temperature: 0.6}        # Terminus 2 / LLM options (as `--ak`)
    sources:                            # each writes tasks under RUN/tasks/<name>/
      - adapter: math                   #   dataset adapters: math | code | swe | generic
        input: examples/adapters/math.jsonl
      - tasks: examples/tasks           #   existing Harbor task folders (used in place)
      - synth: skills                   #   skill-based synthesis (needs the teacher)
        domains: [data_processing]
        n: 4
      - synth: seeds                    #   seed-based synthesis (needs the teacher)
        seeds: examples/synth/seeds.jsonl
    validation: {keep: [valid, no_solution, no_tests]}
    rollouts: {attempts: 1, stand_in: oracle}
    curation: {benchmarks: [examples/benchmarks/demo-benchmark.jsonl]}
    export: {corpus: corpus.parquet, sft: {tokenizer: toy}}
    train: {preset: cpu-tiny}           # `ttgen train` on the SFT export (needs the train extra)
    eval: {tasks: [examples/tasks]}     # serve the trained model, `ttgen eval` it (Terminus 2)
    report: true

Relative paths are relative to the YAML file's folder.
"""

from __future__ import annotations

import difflib
import os
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_serializer,
    model_validator,
)

from ttgen.errors import TtgenError
from ttgen.pipeline.stages import STAGE_NAMES

STAGES = STAGE_NAMES  # the stages' names, in order (declared in ttgen.pipeline.stages)


class PipelineConfigError(TtgenError):
    """PIPELINE.yaml cannot be used: the message names the file and what is wrong."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Teacher(_Strict):
    model: str | None = None
    base_url: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    price_input_per_mtok: float | None = None
    price_output_per_mtok: float | None = None

    @property
    def configured(self) -> bool:
        return bool(self.model and self.base_url)


class Executor(_Strict):
    """Where a stage's containers run (trials; synthesis's Docker gates): this machine's Docker
    engine, or the nodes of a Ray cluster."""

    executor: Literal["local", "ray"] = "local"
    address: str | None = None  # Ray: an address, "auto", or None (RAY_ADDRESS / a local Ray)
    per_node: int | None = Field(default=None, ge=1)


class Source(Executor):
    """One task source; exactly one of adapter / tasks / synth. Synthesis runs its Docker gates
    where `executor` says (local, or ray with address / per_node)."""

    name: str | None = None  # folder under RUN/tasks (default from the kind)
    adapter: Literal["math", "code", "swe", "generic"] | None = None
    input: str | None = None
    limit: int | None = Field(default=None, ge=1)
    fields: dict[str, str] = Field(default_factory=dict)
    suffix: str | None = None
    image: str | None = None
    tasks: str | None = None
    synth: Literal["skills", "seeds"] | None = None
    domains: list[str] = Field(default_factory=list)
    n: int = Field(default=4, ge=1)
    difficulty: str = "mixed"
    seeds: str | None = None
    seed: int = 0
    gates: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        kinds = [k for k in ("adapter", "tasks", "synth") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError("a source needs exactly one of adapter, tasks, synth")
        if self.adapter and not self.input:
            raise ValueError(f"adapter {self.adapter}: `input` is required")
        if self.synth == "seeds" and not self.seeds:
            raise ValueError("synth seeds: `seeds` is required")
        if self.synth == "skills" and not self.domains:
            raise ValueError("synth skills: `domains` is required (a list, or [all])")
        if not self.synth and (
            self.executor != "local" or self.address is not None or self.per_node is not None
        ):
            raise ValueError("executor, address and per_node apply to synth sources only")
        return self

    @property
    def kind(self) -> str:
        if self.adapter:
            return f"adapter-{self.adapter}"
        if self.synth:
            return f"synth-{self.synth}"
        return "tasks"

    @property
    def folder_name(self) -> str:
        return self.name or self.kind


class Validation(Executor):
    enabled: bool = True
    verifier_isolation: Literal["snapshot", "shared"] = "snapshot"
    keep: list[str] = Field(default_factory=lambda: ["valid", "no_solution", "no_tests"])
    concurrency: int = Field(default=4, ge=1)


class Rollouts(Executor):
    agent: str = "terminus-2"
    verifier_isolation: Literal["snapshot", "shared"] = "snapshot"
    attempts: int = Field(default=1, ge=1)
    concurrency: int = Field(default=4, ge=1)
    agent_kwargs: dict[str, Any] = Field(default_factory=dict)
    # Without a teacher: "oracle" runs the reference solution (labelled as a stand-in in the
    # data) on the tasks that have one; "none" stops the pipeline before rollouts.
    stand_in: Literal["oracle", "none"] = "oracle"


class Curation(_Strict):
    benchmarks: list[str] = Field(default_factory=list)
    decontaminate: bool = True
    bench_fields: list[str] = Field(default_factory=lambda: ["instruction"])
    ngram: int = Field(default=14, ge=1)
    identity: bool = True
    identity_patterns: list[str] = Field(default_factory=list)
    cjk: bool = True
    complete_only: bool = False
    success_only: bool = False
    max_turns: int | None = None
    max_tokens: int | None = None
    keep_tampered: bool = False
    dedup: bool = True
    dedup_threshold: float = Field(default=0.8, gt=0, le=1)
    dedup_adapters: bool = False


class Sft(_Strict):
    # a folder, a hub name, or "toy" (a small BPE trained on the run's data); optional only for
    # target sharegpt (the trainer tokenizes)
    tokenizer: str | None = None
    file: str = "sft.parquet"
    max_len: int = Field(default=32768, ge=1)
    chat_template: str | None = None
    template_args: dict[str, Any] = Field(default_factory=dict)
    reasoning: Literal["template", "keep", "drop", "per-turn"] = "template"
    # the columns, for a trainer (`ttgen export --target`): ttgen | trl | verl | sharegpt
    target: Literal["ttgen", "trl", "verl", "sharegpt"] = "ttgen"

    @model_validator(mode="after")
    def _tokenizer_needed(self) -> Sft:
        if self.tokenizer is None and self.target != "sharegpt":
            raise ValueError(f"tokenizer is required (target {self.target} writes token ids)")
        if self.target == "verl" and self.reasoning == "per-turn":
            raise ValueError("reasoning per-turn is not expressible with target verl (veRL "
                             "trains every assistant message): use target ttgen or trl")  # fmt: skip
        return self

    @model_serializer(mode="wrap")
    def _without_default_target(self, handler: Any) -> dict[str, Any]:
        # target came after run fingerprints existed: left out at its default, so that run
        # folders made before it are not re-exported after an upgrade
        data = handler(self)
        if data.get("target") == "ttgen":
            data.pop("target")
        return data


class HarborRows(_Strict):
    """Harbor-style rows (`ttgen export --format harbor`): what `harbor traces export` makes of
    the curated trials, one row per episode."""

    file: str = "harbor.parquet"
    episodes: Literal["all", "last"] = "all"


class Export(_Strict):
    corpus: str | None = "corpus.parquet"
    sft: Sft | None = None
    harbor: HarborRows | None = None
    mix: Literal["mixed", "curriculum"] = "mixed"
    fractions: list[float] = Field(default_factory=list)
    seed: int = 0
    include_sources: list[str] = Field(default_factory=list)
    exclude_sources: list[str] = Field(default_factory=list)


class Train(_Strict):
    """`ttgen train` on the export's SFT file: a recipe preset (the paper's qwen3-8b/14b/32b, or
    cpu-tiny for a CPU loop), the backend, and overrides of any recipe value."""

    preset: str = "cpu-tiny"
    backend: Literal["trl", "verl"] = "trl"
    model: str | None = None  # default: the preset's
    set: dict[str, Any] = Field(default_factory=dict)  # recipe overrides, as `--set key=value`


class Eval(_Strict):
    """Serve the trained checkpoint and evaluate it Terminal-Bench style through Terminus 2."""

    tasks: list[str] = Field(min_length=1)  # task folders or folders of tasks (with tests)
    attempts: int = Field(default=1, ge=1)
    concurrency: int = Field(default=2, ge=1)
    agent_kwargs: dict[str, Any] = Field(default_factory=dict)
    engine: Literal["auto", "transformers", "vllm"] = "auto"
    verifier_isolation: Literal["snapshot", "shared"] = "snapshot"


class Estimate(_Strict):
    """Assumptions of `--dry-run`'s cost estimate (defaults: the paper's Terminal-Corpus means)."""

    turns_per_trial: float = 16.3
    final_context_tokens: float = 17400
    output_tokens_per_turn: float = 700
    synth_input_tokens: float = 4000
    synth_output_tokens: float = 6000


class PipelineConfig(_Strict):
    name: str = "run"
    out: str | None = None
    teacher: Teacher = Field(default_factory=Teacher)
    sources: list[Source] = Field(min_length=1)
    validation: Validation = Field(default_factory=Validation)
    rollouts: Rollouts = Field(default_factory=Rollouts)
    curation: Curation = Field(default_factory=Curation)
    export: Export = Field(default_factory=Export)
    train: Train | None = None
    eval: Eval | None = None
    report: bool = True
    estimate: Estimate = Field(default_factory=Estimate)
    base_dir: Path = Field(default=Path("."), exclude=True)

    def path(self, value: str) -> Path:
        """A path from the file, relative to the file's folder."""
        p = Path(value).expanduser()
        return Path(os.path.normpath(p if p.is_absolute() else self.base_dir / p))


def _key_path(loc: tuple[int | str, ...]) -> str:
    """("sources", 0, "input") → "sources[0].input", as the key is written in the YAML."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    """The message for a key the section does not have: the nearest known key, or the known
    keys when none is close."""
    model: type[BaseModel] | None = PipelineConfig
    for part in loc[:-1]:
        if model is None:
            break
        if isinstance(part, str):
            field = model.model_fields.get(part)
            model = _model_in(field.annotation) if field is not None else None
    if model is None:
        return "unknown key"
    known = [name for name, f in model.model_fields.items() if not f.exclude]
    close = difflib.get_close_matches(str(loc[-1]).lower(), known, n=1, cutoff=0.6)
    if close:
        return f'unknown key; did you mean "{close[0]}"?'
    return f"unknown key (known here: {', '.join(known)})"


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The settings model inside a field's type (Teacher, list[Source], Sft | None, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if model := _model_in(arg):
            return model
    return None


def load_pipeline(path: Path) -> PipelineConfig:
    """Read and check PIPELINE.yaml."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PipelineConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise PipelineConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise PipelineConfigError(f"{path}: expected a mapping of settings at the top")
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = _key_path(err["loc"]) or "(top)"
            if err["type"] == "extra_forbidden":
                problems.append(f"{where}: {_unknown_key(err['loc'])}")
            else:
                problems.append(f"{where}: {err['msg']}")
        raise PipelineConfigError(f"{path}: " + "; ".join(problems)) from None
    config.base_dir = path.resolve().parent
    names = [s.folder_name for s in config.sources]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise PipelineConfigError(
            f"{path}: sources share the folder name(s) {dup}; give them distinct `name`s"
        )
    if config.train is not None and config.export.sft is None:
        raise PipelineConfigError(
            f"{path}: train: needs SFT data; add an export.sft section (e.g. "
            "`sft: {tokenizer: toy}`)"
        )
    if config.train is not None and config.export.sft.target == "sharegpt":
        raise PipelineConfigError(
            f"{path}: train: reads token ids, and export.sft.target sharegpt writes none; use "
            "target ttgen, trl or verl"
        )
    if config.eval is not None and config.train is None:
        raise PipelineConfigError(
            f"{path}: eval: evaluates the model the train stage makes; add a train section "
            "(to evaluate another model, run `ttgen eval --model M --base-url URL`)"
        )
    _check_paths(path, config)
    return config


def _check_paths(path: Path, config: PipelineConfig) -> None:
    """Every input the file names must exist now (not after an hour of rollouts): the error
    names the YAML file, the key, the value and the path it resolved to."""
    wanted: list[tuple[str, str | None, str]] = []  # (key, value, what it should be)
    for i, s in enumerate(config.sources):
        wanted.append((f"sources[{i}].input", s.input, "the adapter's input file"))
        wanted.append((f"sources[{i}].tasks", s.tasks, "a task folder or a folder of tasks"))
        wanted.append((f"sources[{i}].seeds", s.seeds, "the seed problems file"))
    for i, b in enumerate(config.curation.benchmarks):
        wanted.append((f"curation.benchmarks[{i}]", b, "a benchmark folder or JSONL file"))
    if config.export.sft is not None:
        wanted.append(("export.sft.chat_template", config.export.sft.chat_template,
                       "a chat template file"))  # fmt: skip
    if config.eval is not None:
        for i, t in enumerate(config.eval.tasks):
            wanted.append((f"eval.tasks[{i}]", t, "a task folder or a folder of tasks"))
    problems = []
    for key, value, what in wanted:
        if not value:
            continue
        resolved = config.path(value)
        if not resolved.exists():
            problems.append(f"{key}: {value!r} does not exist (resolved to {resolved}; {what}; "
                            "relative paths are relative to this file's folder)")  # fmt: skip
    if problems:
        raise PipelineConfigError(f"{path}: " + "; ".join(problems))
