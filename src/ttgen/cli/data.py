"""`ttgen curate` (trajectories of rollout jobs to a curated data folder) and `ttgen stats`
(what a data folder, export or job holds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ttgen.cli.common import _fail, _Ticker, console, err_console
from ttgen.cli.options import JsonOut, out_option


def _benchmark_specs(values: list[str] | None) -> list[Any]:
    from ttgen.curate.curator import BenchmarkSpec

    specs = []
    for v in values or []:
        name, sep, path = v.partition("=")
        if sep and name and "/" not in name:
            specs.append(BenchmarkSpec(Path(path), name))
        else:
            specs.append(BenchmarkSpec(Path(v)))
    return specs


def curate_cmd(
    jobs: Annotated[
        list[Path],
        typer.Argument(
            metavar="JOB...", help="Rollout job folders (or trials, or folders of jobs)."
        ),
    ],
    out: Annotated[Path, out_option("Output data folder.")],
    benchmark: Annotated[
        list[str] | None,
        typer.Option(
            "--benchmark",
            "-b",
            help="Benchmark to decontaminate against: a folder of Harbor/TB1 tasks or a JSONL of "
            "texts, optionally NAME=PATH (repeatable).",
        ),
    ] = None,
    no_decontam: Annotated[
        bool, typer.Option("--no-decontam", help="Skip decontamination.")
    ] = False,
    bench_fields: Annotated[
        str,
        typer.Option(help="Benchmark texts to match: instruction, tests, solution (comma list)."),
    ] = "instruction",
    ngram: Annotated[int, typer.Option(min=1, help="Shared words that count as overlap.")] = 14,
    identity: Annotated[
        bool, typer.Option("--identity/--no-identity", help="Drop identity leaks.")
    ] = True,
    identity_pattern: Annotated[
        list[str] | None,
        typer.Option(help="Extra identity-leak regex on assistant turns (repeatable)."),
    ] = None,
    cjk: Annotated[
        bool, typer.Option("--cjk/--no-cjk", help="Drop trajectories with CJK in assistant turns.")
    ] = True,
    cjk_allow_echo: Annotated[
        bool,
        typer.Option(help="Allow CJK characters that also occur in the user turns (task text)."),
    ] = False,
    complete_only: Annotated[
        bool, typer.Option(help="Keep only trajectories the teacher marked complete.")
    ] = False,
    success_only: Annotated[
        bool, typer.Option(help="Keep only trajectories with reward 1 (where tests exist).")
    ] = False,
    max_turns: Annotated[int | None, typer.Option(min=1, help="Drop longer trajectories.")] = None,
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="Drop trajectories with more tokens (estimate).")
    ] = None,
    keep_tampered: Annotated[
        bool,
        typer.Option(help="Keep trajectories of trials flagged `tampered` (dropped by default)."),
    ] = False,
    dedup: Annotated[
        bool, typer.Option("--dedup/--no-dedup", help="Remove near-duplicate tasks.")
    ] = True,
    dedup_threshold: Annotated[
        float,
        typer.Option(min=0.05, max=1.0, help="Jaccard of word 5-grams that makes a duplicate."),
    ] = 0.8,
    dedup_adapters: Annotated[
        bool,
        typer.Option(
            help="Also remove near-duplicates among dataset-adapter tasks (the paper does not: "
            "their prompt sets were deduplicated upstream)."
        ),
    ] = False,
    as_json: JsonOut = False,
) -> None:
    """Gather trajectories from rollout folders into a curated data folder: decontaminate
    against benchmarks, filter (identity leaks, CJK; optional complete-only, success-only, caps),
    remove near-duplicate tasks.

    Writes OUT/records.jsonl (kept), OUT/dropped.jsonl (every drop and why) and OUT/curate.json.
    Infrastructure outcomes are always dropped. Defaults are the paper's adopted setting."""
    from ttgen.curate.curator import CurateError, CurateOptions, curate
    from ttgen.curate.filters import DEFAULT_IDENTITY_PATTERNS, FilterOptions

    fields = tuple(f.strip() for f in bench_fields.split(",") if f.strip())
    options = CurateOptions(
        benchmarks=_benchmark_specs(benchmark),
        decontaminate=not no_decontam,
        bench_fields=fields,
        ngram=ngram,
        filters=FilterOptions(
            identity=identity,
            identity_patterns=[*DEFAULT_IDENTITY_PATTERNS, *(identity_pattern or [])],
            cjk=cjk,
            cjk_allow_echo=cjk_allow_echo,
            complete_only=complete_only,
            success_only=success_only,
            max_turns=max_turns,
            max_tokens=max_tokens,
            keep_tampered=keep_tampered,
        ),
        dedup=dedup,
        dedup_threshold=dedup_threshold,
        dedup_adapters=dedup_adapters,
    )
    from ttgen.curate.curator import NothingKeptError

    ticker = _Ticker(quiet=as_json)
    try:
        with ticker:
            manifest = curate(
                jobs, out, options,
                progress=lambda c: ticker.tick(
                    f"{c['trials']} trials: {c['kept']} kept, {c['dropped']} dropped"
                ),
            )  # fmt: skip
    except NothingKeptError as exc:
        raise _fail(str(exc), code=1) from None
    except (CurateError, ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        console.print_json(json.dumps(manifest))
        return
    c = manifest["counts"]
    table = Table(title=escape(f"curated {out}"))
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_row("trials", str(c["trials"]))
    table.add_row("records read", str(c["records_in"]))
    for reason, n in manifest["dropped"].items():
        table.add_row(escape(f"dropped: {reason}"), str(n))
    table.add_row("[bold]kept[/]", f"[bold]{c['kept']}[/]")
    console.print(table)
    if manifest["kept_by_source"]:
        console.print(
            "kept by source: "
            + ", ".join(f"{k} {v}" for k, v in manifest["kept_by_source"].items()),
            highlight=False,
            markup=False,
        )
    decon = manifest["decontamination"]
    if decon.get("enabled"):
        console.print(
            f"decontamination: {decon.get('tasks_matched', 0)} task(s) share a {decon['ngram']}-gram "
            f"with the benchmark ({decon.get('records_dropped', 0)} record(s) dropped); "
            f"see {out / 'dropped.jsonl'}",
            highlight=False,
            markup=False,
        )
        for bad in decon.get("bad_items", [])[:10]:
            err_console.print(f"[yellow]benchmark item skipped[/] {escape(str(bad['origin']))}: "
                              f"{escape(str(bad['problem']))}", highlight=False)  # fmt: skip


def stats_cmd(
    data: Annotated[
        Path,
        typer.Argument(
            metavar="DATA",
            help="A curated folder, its records.jsonl, an exported SFT file, or a rollout job "
            "folder (ttgen's or Harbor's).",
        ),
    ],
    as_json: JsonOut = False,
) -> None:
    """Counts per subset/domain/difficulty, token and turn distributions (the paper's bins),
    completion and success rates, and what curation dropped."""
    from ttgen.curate.data_stats import compute_stats

    try:
        st = compute_stats(data)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        console.print_json(json.dumps(st))
        return
    console.print(f"[bold]{st['records']}[/] record(s) in {escape(str(data))}", highlight=False)
    for key in ("by_subset", "by_source", "by_domain", "by_difficulty"):
        if st[key]:
            console.print(
                f"{key[3:]}: " + ", ".join(f"{k} {v}" for k, v in st[key].items()),
                highlight=False,
                markup=False,
            )
    dist = Table(title="distributions")
    for col in ("subset", "n", "tokens mean", "tokens median", "turns mean", "turns median",
                "completed", "passed (verified)"):  # fmt: skip
        dist.add_column(col, justify="right" if col != "subset" else "left")

    def _row(name: str, tokens: dict, turns: dict, comp: Any, succ: Any, verified: int) -> None:
        dist.add_row(
            escape(name),
            str(turns.get("n", 0)),
            str(tokens.get("mean", "-")),
            str(tokens.get("median", "-")),
            str(turns.get("mean", "-")),
            str(turns.get("median", "-")),
            f"{comp:.1%}" if comp is not None else "-",
            f"{succ:.1%} ({verified})" if succ is not None else "-",
        )

    for name, s in st["per_subset"].items():
        _row(name, s["tokens"], s["turns"], s["completion_rate"], s["success_rate"], s["verified"])
    _row(
        "all", st["tokens"], st["turns"], st["completion_rate"], st["success_rate"], st["verified"]
    )
    console.print(dist)
    for what, labels in (("tokens", st["token_bins"]), ("turns", st["turn_bins"])):
        hist = st[what].get("histogram")
        if not hist:
            continue
        table = Table(title=escape(f"{what} histogram" + (
            f" (counted by: {', '.join(st['tokens_counted_by'])})" if what == "tokens" else "")))  # fmt: skip
        table.add_column("bin")
        table.add_column("count", justify="right")
        table.add_column("")
        top = max(hist) or 1
        for label, count in zip(labels, hist, strict=True):
            table.add_row(label, str(count), "#" * round(30 * count / top))
        console.print(table)
    if st["truncated"]:
        console.print(f"truncated at export: {st['truncated']}", highlight=False, markup=False)
    if st.get("tampered"):
        console.print(
            f"tampered (kept with --keep-tampered; rewards not trusted): {st['tampered']}",
            highlight=False,
            markup=False,
        )
    cur = st.get("curation")
    if cur:
        console.print(
            f"curation: {cur['trials']} trials, {cur['records_in']} records read, {cur['kept']} kept; "
            "dropped: " + (", ".join(f"{k} {v}" for k, v in cur["dropped"].items()) or "none"),
            highlight=False,
            markup=False,
        )
        d = cur["decontamination"]
        if d.get("enabled"):
            console.print(
                f"decontamination ({d.get('ngram')}-gram): {d.get('tasks_matched')} task(s), "
                f"{d.get('records_dropped')} record(s) dropped",
                highlight=False,
            )
    for p in st["problems"][:20]:
        err_console.print(f"[yellow]skipped[/] {escape(str(p))}", highlight=False)
