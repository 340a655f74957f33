"""`ttgen synth skills|seeds|taxonomy`: new tasks written by an LLM, from the skill taxonomy or
from seed problems, kept when they pass the quality gates."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ttgen.cli.common import (
    _check_executor,
    _fail,
    _kv,
    _preflight,
    _run_resumable,
    console,
    err_console,
)
from ttgen.cli.options import (
    Backend,
    BaseUrl,
    JsonOut,
    Preflight,
    RayAddress,
    TasksOut,
    takes_groups,
)
from ttgen.errors import TtgenError

synth_app = typer.Typer(
    help="Generate new tasks with an LLM: from seed problems or from the skill taxonomy.",
    no_args_is_help=True,
)


@dataclasses.dataclass(frozen=True)
class SynthLLMFlags:
    """The generator: its endpoint, sampling settings and prices."""

    model: Annotated[str, typer.Option(help="Generator model (the served name).")]
    base_url: BaseUrl
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = 0.7
    max_tokens: Annotated[
        int | None, typer.Option(help="Max output tokens per answer (a task is long: 8k-32k).")
    ] = None
    llm: Annotated[
        list[str] | None,
        typer.Option(
            "--llm",
            help="Other LLM client setting KEY=VALUE (JSON values), e.g. top_p=0.95, "
            'extra_body=\'{"chat_template_kwargs": {"enable_thinking": true}}\', '
            "timeout_sec=1200.",
        ),
    ] = None
    price_in: Annotated[float | None, typer.Option(help="USD per million input tokens.")] = None
    price_out: Annotated[float | None, typer.Option(help="USD per million output tokens.")] = None
    preflight: Preflight = True

    def config(self, concurrency: int):  # -> LLMConfig
        """The LLM client's settings (at most `concurrency` requests at once)."""
        from pydantic import ValidationError

        from ttgen.llm import LLMConfig

        values: dict[str, Any] = {
            "model": self.model,
            "base_url": self.base_url,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "price_input_per_mtok": self.price_in,
            "price_output_per_mtok": self.price_out,
            "max_concurrency": max(1, concurrency),
            **_kv(self.llm, "--llm", parse_json=True),
        }
        try:
            return LLMConfig(**values)
        except ValidationError as exc:
            from ttgen.task import format_validation_error

            raise _fail(f"LLM settings: {format_validation_error(exc)}") from None


@dataclasses.dataclass(frozen=True)
class SynthRunFlags:
    """How items are generated and checked: concurrency, quality gates, novelty, the written
    tasks' timeouts, where the Docker gates run."""

    concurrency: Annotated[int, typer.Option("-n", "--concurrency", min=1)] = 8
    gates: Annotated[
        str | None,
        typer.Option(
            help="Quality gates, comma-separated: static, leak, files, collect, validate; 'all' "
            "or 'none'. Default: static,leak,files,collect."
        ),
    ] = None
    validate_tasks: Annotated[
        bool,
        typer.Option(
            help="Also build each task's image and check that a do-nothing agent scores 0."
        ),
    ] = False
    novelty: Annotated[
        float,
        typer.Option(help="Near-duplicate threshold (Jaccard of word 5-grams, same domain)."),
    ] = 0.5
    novelty_retries: Annotated[
        int, typer.Option(help="Regenerations of a near-duplicate before it is dropped.")
    ] = 2
    agent_timeout: Annotated[float, typer.Option(help="task.toml agent timeout (seconds).")] = 900.0
    verifier_timeout: Annotated[float, typer.Option(help="task.toml verifier timeout (s).")] = 900.0
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            help="Where the Docker gates run: local (this machine's engine) or ray (the nodes of "
            "a Ray cluster, each building images on its own engine; the LLM calls stay here).",
        ),
    ] = "local"
    address: RayAddress = None
    per_node: Annotated[
        int | None,
        typer.Option(
            "--per-node",
            min=1,
            help="--executor ray: Docker gates at once on each node (default: its CPUs / 2).",
            show_default=False,
        ),
    ] = None
    backend: Backend = None


class _SynthProgress:
    """A progress bar with written / dropped / errors and the cost so far (lines off-TTY)."""

    def __init__(self, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.quiet = quiet
        self.live = console.is_terminal and not quiet
        self.counts = {"written": 0, "dropped": 0, "error": 0}
        self.cost = 0.0
        self.progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not self.live,
        )
        self.bar = self.progress.add_task("synth", total=None)

    def __enter__(self) -> _SynthProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def _describe(self) -> str:
        c = self.counts
        return (
            f"written {c['written']}  dropped {c['dropped']}  errors {c['error']}  ${self.cost:.4f}"
        )

    def started(self, total: int, already_done: int) -> None:
        self.progress.update(self.bar, total=total, completed=already_done)
        if already_done and not self.quiet:
            err_console.print(f"resuming: {already_done} of {total} item(s) already done")

    def finished(self, record: dict[str, Any]) -> None:
        status = record.get("status", "error")
        self.counts[status] = self.counts.get(status, 0) + 1
        self.cost += record.get("cost_usd") or 0.0
        self.progress.update(self.bar, advance=1, description=self._describe())
        if not self.live and not self.quiet:
            reason = f": {record.get('reason')}" if status != "written" else ""
            err_console.print(
                f"{record['id']} {status}{reason}"[:300], highlight=False, markup=False
            )


def _run_synth(
    items: list[Any], config: Any, out: Path, llm: SynthLLMFlags, run: SynthRunFlags,
    *, as_json: bool, label: str,
) -> None:  # fmt: skip
    """Generate `items` with `config` into `out`, print the summary, exit 1 on errors."""
    from ttgen.llm import check_endpoint
    from ttgen.sources.synth.engine import SynthOptions, synthesize
    from ttgen.sources.synth.gates import DOCKER_GATES, parse_gate_list

    try:
        gate_list = parse_gate_list(run.gates, validate=run.validate_tasks)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    _check_executor(run.executor, run.address, run.per_node)
    if run.executor == "ray" and not any(g in DOCKER_GATES for g in gate_list):
        raise _fail("--executor ray runs the Docker gates (collect, validate); none is selected")
    if llm.preflight:
        _preflight(lambda: check_endpoint(config), label)
    options = SynthOptions(
        out=out,
        concurrency=run.concurrency,
        novelty_threshold=run.novelty,
        novelty_retries=run.novelty_retries,
        agent_timeout_sec=run.agent_timeout,
        verifier_timeout_sec=run.verifier_timeout,
    )
    job = f"synth-{out.name}"

    async def go(progress: _SynthProgress) -> dict[str, Any]:
        return await synthesize(
            config,
            options,
            gate_list,
            items,
            job=job,
            events=progress,
            executor=run.executor,
            address=run.address,
            per_node=run.per_node,
            backend=run.backend,
            log=lambda message: err_console.print(message, highlight=False, markup=False),
            preparing=console.status,
        )

    kept = "finished tasks and their records are kept"
    summary = _run_resumable(_SynthProgress(quiet=as_json), go, kept)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        _print_summary(summary, out, label)
    raise typer.Exit(1 if summary["errors"] else 0)


def _print_summary(summary: dict[str, Any], out: Path, label: str) -> None:
    table = Table(title=escape(f"{label}: {out}"), show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("items", str(summary["n_items"]))
    table.add_row("written", str(summary["written"]))
    table.add_row("dropped", str(summary["dropped"]))
    for gate, n in sorted(summary["dropped_by"].items()):
        table.add_row(f"  by {gate}", str(n))
    table.add_row("errors (retried next run)", str(summary["errors"]))
    if summary["gate_failures"]:
        table.add_row(
            "gate failures (rounds)",
            ", ".join(f"{g} {n}" for g, n in sorted(summary["gate_failures"].items())),
        )
    table.add_row("repaired", str(summary["repaired"]))
    table.add_row("format retries", str(summary["format_retries"]))
    table.add_row("novelty regenerations", str(summary["novelty_regenerations"]))
    u = summary["usage"]
    cost = (
        "unknown (set --price-in/--price-out)"
        if summary["cost_usd"] is None
        else (f"${summary['cost_usd']:.4f}")
    )
    table.add_row(
        "LLM", f"{u['calls']} calls, {u['prompt_tokens']} in / {u['completion_tokens']} out"
    )
    table.add_row("cost", cost)
    table.add_row("wall time", f"{summary['wall_sec']:.1f}s")
    console.print(table)
    console.print(
        f"tasks in {out}; one generation record per item in {out / 'generation'}; "
        f"index {out / 'synth.jsonl'}",
        markup=False,
    )


@synth_app.command("skills")
@takes_groups
def synth_skills(
    *,
    out: TasksOut,
    domain: Annotated[
        str, typer.Option(help="Task domain(s): a name, a comma-separated list, or 'all'.")
    ] = "all",
    n: Annotated[int, typer.Option("--n", min=1, help="Tasks per domain.")] = 10,
    difficulty: Annotated[
        str, typer.Option(help="easy, medium, hard, or mixed (drawn per task).")
    ] = "medium",
    seed: Annotated[int, typer.Option(help="Seed of the skill sampler (reproducible).")] = 0,
    min_skills: Annotated[int, typer.Option(help="Fewest primitive skills per task.")] = 3,
    max_skills: Annotated[int, typer.Option(help="Most primitive skills per task.")] = 5,
    across_types: Annotated[
        bool, typer.Option(help="Draw the skills of a task from different skill types.")
    ] = True,
    taxonomy: Annotated[
        list[Path] | None,
        typer.Option(help="Extra taxonomy YAML file or folder (adds or replaces domains)."),
    ] = None,
    llm: SynthLLMFlags,
    run: SynthRunFlags,
    as_json: JsonOut = False,
) -> None:
    """Skill-based synthesis: per domain, N tasks that each combine 3-5 primitive skills drawn
    from the taxonomy, written by the LLM, checked by the quality gates.

    Task i of a domain always gets the same skills (for the same --seed), so a larger --n or a
    re-run extends the set instead of changing it. Exits 1 when items ended in an error
    (endpoint or Docker failures; re-run to retry them)."""
    from ttgen.sources.skills_taxonomy import load_taxonomy
    from ttgen.sources.synth.items import DIFFICULTY_CHOICES, skill_items

    if difficulty not in DIFFICULTY_CHOICES:
        raise _fail(f"--difficulty must be one of {', '.join(DIFFICULTY_CHOICES)}")
    config = llm.config(run.concurrency)
    try:
        tax = load_taxonomy(taxonomy or ())
        domains = tax.resolve(domain)
        items = skill_items(
            domains,
            n=n,
            difficulty=difficulty,
            seed=seed,
            k_min=min_skills,
            k_max=max_skills,
            across_types=across_types,
            model=llm.model,
        )
    except (TtgenError, ValueError) as exc:
        raise _fail(str(exc)) from None
    _run_synth(items, config, out, llm, run, as_json=as_json, label="synth skills")


@synth_app.command("seeds")
@takes_groups
def synth_seeds(
    *,
    seeds: Annotated[
        str,
        typer.Option(
            help="Seed problems: JSONL, parquet, a save_to_disk folder or a hub dataset, with "
            "problem, optional domain and reference_solution fields."
        ),
    ],
    out: TasksOut,
    field: Annotated[
        list[str] | None,
        typer.Option(
            "--field", help="Field mapping CANONICAL=SOURCE, e.g. problem=question (repeatable)."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Use at most this many seeds.")] = None,
    config_name: Annotated[str | None, typer.Option("--config", help="Hub dataset config.")] = None,
    split: Annotated[str | None, typer.Option(help="Dataset split.")] = None,
    image_domain: Annotated[
        str,
        typer.Option(help="Domain image for seeds whose domain is not a task domain."),
    ] = "scientific_computing",
    llm: SynthLLMFlags,
    run: SynthRunFlags,
    as_json: JsonOut = False,
) -> None:
    """Seed-based synthesis: the LLM adapts each seed problem into a terminal task with input
    files, output locations and weighted pytest tests; a reference solution informs the tests
    and never appears in the instruction. Bad seed records are listed and skipped."""
    from ttgen.sources.skills_taxonomy import load_taxonomy
    from ttgen.sources.synth.items import load_seeds, seed_items

    config = llm.config(run.concurrency)
    try:
        loaded = load_seeds(
            seeds,
            fields=_kv(field, "--field", parse_json=False),
            limit=limit,
            config=config_name,
            split=split,
        )
        items = seed_items(
            loaded.seeds, taxonomy=load_taxonomy(), image_domain=image_domain, model=llm.model
        )
    except (TtgenError, ValueError) as exc:
        raise _fail(str(exc)) from None
    for bad in loaded.bad[:20]:
        err_console.print(f"[yellow]skipped[/] {escape(str(bad))}", highlight=False)
    if len(loaded.bad) > 20:
        err_console.print(f"... and {len(loaded.bad) - 20} more bad seed records")
    if loaded.duplicates:
        err_console.print(f"dropped {loaded.duplicates} duplicate seed problem(s)")
    if not items:
        raise _fail(f"{seeds}: no usable seed records")
    _run_synth(items, config, out, llm, run, as_json=as_json, label="synth seeds")


@synth_app.command("taxonomy")
def synth_taxonomy(
    domain: Annotated[
        str | None, typer.Option(help="Show the primitive skills of this domain.")
    ] = None,
    taxonomy: Annotated[
        list[Path] | None, typer.Option(help="Extra taxonomy YAML file or folder.")
    ] = None,
) -> None:
    """List the task domains of the skill taxonomy, or one domain's primitive skills."""
    from ttgen.sources.skills_taxonomy import describe, load_taxonomy

    try:
        tax = load_taxonomy(taxonomy or ())
        picked = tax.get(domain) if domain else None
    except TtgenError as exc:
        raise _fail(str(exc)) from None
    if picked is None:
        table = Table(title="Task domains")
        for col in ("domain", "title", "primitives", "skill types", "image"):
            table.add_column(col, overflow="fold")
        for row in describe(tax):
            table.add_row(
                escape(row["id"]),
                escape(row["title"]),
                str(row["n_primitives"]),
                escape(", ".join(row["skill_types"])),
                escape(row["image"]),
            )
        console.print(table)
        return
    table = Table(title=escape(f"{picked.title}: {len(picked.primitives)} primitive skills"))
    for col in ("id", "type", "skill"):
        table.add_column(col, overflow="fold")
    for p in picked.primitives:
        table.add_row(escape(p.id), escape(p.type), escape(p.skill))
    console.print(table)
