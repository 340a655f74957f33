"""`ttgen export`: curated records → Terminal-Corpus rows, Harbor-style rows or SFT rows, in one
or more files.

    DATA/records.jsonl ─► (mix / fraction routing, mixes.py) ─► corpus_row        ─► writers
                                                            ├► trial_rows (harbor) ──┤
                                                            └► tokenize (parallel) ─► sft_row ─┘

``--format harbor`` (`ttgen.export.harbor`) writes the rows `harbor traces export` makes of the
trials the curated records come from: one per episode, from each trial's ATIF trajectory.

Everything streams: records are read line by line, tokenized in bounded chunks on worker
processes (results come back in input order), and written in row groups, so memory does not grow
with the input. Each record is tokenized once, whatever number of files it goes to. Files are
written beside their final names and renamed into place when complete; a summary
(``<out>.export.json``: rows per file, tokens, truncations, skipped records) is written last.
``--save-to-disk`` / ``--push-to-hub`` then load the finished files with `datasets` (memory-mapped)
and save or upload them.

``--target`` (`ttgen.export.targets`) picks the SFT columns for a trainer: ttgen (ours), trl
(input_ids + assistant_masks), verl (messages for veRL, ids and mask under veRL's rule) or
sharegpt (conversations + system, no tokens, and a dataset_info.json beside the files).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ttgen import __version__
from ttgen.curate.curator import RECORDS, read_manifest, read_records
from ttgen.errors import TtgenError
from ttgen.export.corpus import CORPUS_SCHEMA, corpus_row
from ttgen.export.harbor import HarborOptions
from ttgen.export.mixes import (
    DEFAULT_STAGE1,
    OutputPlan,
    Strata,
    plan_outputs,
    scan_strata,
    source_selected,
    targets,
)
from ttgen.export.targets import check_target
from ttgen.export.writers import RowWriter, format_of
from ttgen.formats.trial import now, write_json_atomic

EXPORT_FORMATS = ("corpus", "harbor", "sft")


class ExportError(TtgenError):
    """A usage or input problem that stops the export before anything is written."""


@dataclass
class ExportOptions:
    format: str = "corpus"
    mix: str = "mixed"
    stage1_subsets: tuple[str, ...] = DEFAULT_STAGE1
    fractions: list[float] = field(default_factory=list)
    seed: int = 0
    # source selection (the paper's per-source ablations): prefixes of `source` on `/`
    include_sources: tuple[str, ...] = ()
    exclude_sources: tuple[str, ...] = ()
    # sft
    tokenizer: Any = None  # a TokenizerSpec (ttgen.export.sft)
    target: str = "ttgen"  # the columns, for a trainer: ttgen | trl | verl | sharegpt
    # sharegpt without a tokenizer: the reasoning choice (otherwise the TokenizerSpec's)
    reasoning: str | None = None
    max_len: int | None = 32768
    overlong: str = "truncate"  # or "drop"
    with_ids: bool = True
    workers: int = 1
    rows_per_group: int = 256
    # harbor: the options of `harbor traces export` (episodes all|last, optional columns)
    harbor: HarborOptions = field(default_factory=HarborOptions)
    # datasets
    save_to_disk: Path | None = None
    push_to_hub: str | None = None
    hub_private: bool = False
    hub_token: str | None = None


@dataclass
class _Out:
    plan: OutputPlan
    writer: RowWriter
    rows: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    truncated: int = 0
    by_source: Counter[str] = field(default_factory=Counter)

    def write(self, row: dict[str, Any], source: str) -> None:
        self.writer.write(row)
        self.rows += 1
        self.by_source[source] += 1


def _record_files(inputs: list[Path]) -> list[Path]:
    files = []
    for p in inputs:
        f = p / RECORDS if p.is_dir() else p
        if not f.is_file():
            raise ExportError(
                f"{p}: no curated records here (expected {RECORDS}; run `ttgen curate`)"
            )
        files.append(f)
    return files


def _lines(files: list[Path]) -> Iterator[str]:
    for f in files:
        with f.open(encoding="utf-8") as fh:
            yield from fh


def export(
    inputs: Iterable[Path],
    out: Path,
    options: ExportOptions,
    *,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run the export (see the module docstring); returns the summary."""
    inputs = [Path(p) for p in inputs]
    if options.format not in EXPORT_FORMATS:
        raise ExportError(f"unknown format {options.format!r} (choose corpus, harbor or sft)")
    if options.format == "harbor":
        try:
            options.harbor.check()
        except ValueError as exc:
            raise ExportError(str(exc)) from None
    try:
        format_of(out)
        plans = plan_outputs(out, options.mix, options.fractions)
    except ValueError as exc:
        raise ExportError(str(exc)) from exc
    if options.overlong not in ("truncate", "drop"):
        raise ExportError(f"--overlong must be truncate or drop, got {options.overlong!r}")
    target = options.target
    reasoning = _reasoning_of(options)
    try:
        check_target(target, fmt=options.format, with_ids=options.with_ids, reasoning=reasoning,
                     overlong=options.overlong, out=out)  # fmt: skip
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if options.format == "sft" and options.tokenizer is None and target != "sharegpt":
        raise ExportError("--format sft needs --tokenizer (a hub name or a local folder)")
    tokenizing = options.format == "sft" and target != "sharegpt"
    spec = options.tokenizer
    verl_probe: dict[str, bool] = {}
    if tokenizing and target == "verl":
        spec, verl_probe = _verl_spec(spec, reasoning)
    if target == "sharegpt":
        from ttgen.export.targets import read_dataset_info

        try:  # a dataset_info.json we could not update must fail before anything is written
            for folder in {p.path.parent for p in plans}:
                read_dataset_info(folder)
        except ValueError as exc:
            raise ExportError(str(exc)) from None
    files = _record_files(inputs)
    started = time.perf_counter()
    strata: Strata | None = None
    def keep(source: str) -> bool:
        return source_selected(source, options.include_sources, options.exclude_sources)

    selecting = bool(options.include_sources or options.exclude_sources)
    if options.fractions:
        strata = scan_strata(_lines(files), options.fractions, options.seed,
                             keep if selecting else None)  # fmt: skip

    schema = CORPUS_SCHEMA
    batch_builder = None
    if options.format == "harbor":
        from ttgen.export.harbor import harbor_schema

        schema = harbor_schema(options.harbor)
    elif target == "sharegpt":
        from ttgen.export.targets import SHAREGPT_SCHEMA

        schema = SHAREGPT_SCHEMA
    elif options.format == "sft":
        from ttgen.export import sft

        # (tokenize_records loads the tokenizer before reading the first record: a bad one
        # fails there, and the outputs opened so far are dropped)
        schema = sft.sft_schema(options.with_ids, target)
        with_ids = options.with_ids

        def batch_builder(rows: list[dict[str, Any]]) -> Any:
            return sft.sft_record_batch(rows, with_ids=with_ids, target=target)

    problems: list[str] = []
    outs: dict[str, _Out] = {}
    try:
        for p in plans:
            writer = RowWriter(p.path, schema=schema, rows_per_group=options.rows_per_group,
                               batch_builder=batch_builder)  # fmt: skip
            outs[p.name] = _Out(p, writer)
        counts: Counter[str] = Counter()

        def routed() -> Iterator[tuple[dict[str, Any], list[OutputPlan]]]:
            for f in files:
                for rec in read_records(f, problems):
                    counts["records"] += 1
                    if selecting and not keep(str(rec.get("source") or "other")):
                        counts["not_selected"] += 1
                        counts["unselected_source"] += 1
                        continue
                    dest = targets(rec, plans, strata, options.stage1_subsets)
                    if dest:
                        yield rec, dest
                    else:
                        counts["not_selected"] += 1

        n_done = 0
        if options.format == "harbor":
            n_done = _write_harbor(files, outs, options, problems, counts, progress,
                                   keep if selecting else None, strata, plans)  # fmt: skip
        elif options.format == "corpus":
            for rec, dest in routed():
                try:
                    row = corpus_row(rec)
                except (KeyError, TypeError, ValueError) as exc:
                    problems.append(f"{rec.get('id', '?')}: {exc}")
                    continue
                for p in dest:
                    outs[p.name].write(row, row["source"])
                n_done += 1
                if progress is not None and n_done % 256 == 0:
                    progress(n_done)
        elif target == "sharegpt":
            n_done = _write_sharegpt(routed(), outs, reasoning, problems, progress)
        else:
            from ttgen.export import sft

            # Results come back in input order: the destinations wait in a FIFO beside them.
            destinations: deque[list[OutputPlan]] = deque()

            from ttgen.export.chat import drop_reasoning, per_turn_samples

            per_turn = reasoning == "per-turn"
            # veRL reads the messages column: with drop it must hold what was tokenized
            strip_written = target == "verl" and reasoning == "drop"

            def records_only() -> Iterator[dict[str, Any]]:
                for rec, dest in routed():
                    if not per_turn:
                        destinations.append(dest)
                        yield rec
                        continue
                    # one sample per assistant turn, in order, all going where the record goes
                    for n, msgs in enumerate(per_turn_samples(rec.get("messages") or []), 1):
                        destinations.append(dest)
                        yield {**rec, "id": f"{rec.get('id')}#turn{n}", "messages": msgs}

            for rec, tok, error in sft.tokenize_records(
                records_only(),
                spec,
                max_len=options.max_len,
                workers=options.workers,
            ):
                dest = destinations.popleft()
                if error is not None or tok is None:
                    problems.append(f"{rec.get('id', '?')}: {error}")
                    continue
                if options.overlong == "drop" and tok.n_tokens_full > (options.max_len or 0) > 0:
                    counts["dropped_overlong"] += 1
                    continue
                if strip_written:
                    rec = {**rec, "messages": drop_reasoning(rec["messages"])}
                row = sft.sft_row(rec, tok, with_ids=options.with_ids, target=target)
                counts["rendering_differs"] += int(tok.rendering_differs)
                for p in dest:
                    o = outs[p.name]
                    o.write(row, row["source"])
                    o.tokens += tok.n_tokens
                    o.trained_tokens += tok.n_trained_tokens
                    o.truncated += int(tok.truncated)
                n_done += 1
                if progress is not None and n_done % 64 == 0:
                    progress(n_done)
        # An empty file where data was expected is an error (nothing is written); a scaling
        # subset too small to hold a row is only a warning.
        empty = [o for o in outs.values() if o.rows == 0 and o.plan.fraction is None]
        if empty:
            raise ExportError(_empty_message(inputs, files, empty, counts, problems, options))
        for o in outs.values():
            o.writer.close()
    except BaseException:
        for o in outs.values():
            o.writer.abort()
        raise
    dataset_info = None
    if target == "sharegpt":
        from ttgen.export.targets import write_dataset_info

        dataset_info = write_dataset_info([o.plan.path for o in outs.values()])
    summary: dict[str, Any] = {
        "kind": "export",
        "format": options.format,
        "created_at": now().isoformat(),
        "ttgen_version": __version__,
        "inputs": [str(p) for p in inputs],
        "options": {
            "mix": options.mix,
            "stage1_subsets": list(options.stage1_subsets),
            "fractions": sorted(options.fractions),
            "seed": options.seed,
            "include_sources": list(options.include_sources),
            "exclude_sources": list(options.exclude_sources),
            "tokenizer": _describe_tokenizer(options.tokenizer),
            "target": target if options.format == "sft" else None,
            "reasoning": reasoning if options.format == "sft" else None,
            "max_len": options.max_len if options.format == "sft" else None,
            "overlong": options.overlong if options.format == "sft" else None,
            "with_ids": options.with_ids if tokenizing else None,
            "workers": options.workers,
        },
        "records": counts["records"],
        "not_selected": counts["not_selected"],
        "dropped_overlong": counts["dropped_overlong"],
        "skipped": len(problems),
        "problems": problems[:1000],
        "outputs": {
            name: {
                "path": str(o.plan.path),
                "stage": o.plan.stage,
                "fraction": o.plan.fraction,
                "rows": o.rows,
                **(
                    {
                        "tokens": o.tokens,
                        "trained_tokens": o.trained_tokens,
                        "truncated": o.truncated,
                    }
                    if tokenizing
                    else {}
                ),
                "by_source": dict(sorted(o.by_source.items())),
            }
            for name, o in outs.items()
        },
        "warnings": [
            f"{o.plan.path}: 0 rows (the {o.plan.fraction:g} subset of {counts['records']} "
            "record(s) rounds to none)"
            for o in outs.values()
            if o.rows == 0 and o.plan.fraction is not None
        ],
        "elapsed_sec": round(time.perf_counter() - started, 3),
    }
    if options.format == "harbor":
        summary["options"]["harbor"] = {
            "episodes": options.harbor.episodes,
            "filter": options.harbor.filter,
            "columns": _harbor_columns(options.harbor),
        }
        summary["trials"] = counts["trials"]
        summary["partly_curated_trials"] = counts["partly_curated_trials"]
        summary["filtered_trials"] = counts["filtered_trials"]
    if options.format == "sft":
        summary["target"] = _describe_target(options, reasoning, outs, counts, verl_probe,
                                             dataset_info)  # fmt: skip
    if options.save_to_disk is not None or options.push_to_hub:
        summary["datasets"] = publish(list(outs.values()), options)
    write_json_atomic(summary_path(out), summary)
    return summary


def _empty_message(
    inputs: list[Path],
    files: list[Path],
    empty: list[_Out],
    counts: Counter[str],
    problems: list[str],
    options: ExportOptions,
) -> str:
    """Why an output would have no rows (an empty file where data was expected is an error)."""
    names = ", ".join(str(o.plan.path) for o in empty)
    if counts["records"] == 0:
        why = []
        for f in files:
            manifest = read_manifest(f if f.is_dir() else f.parent)
            if manifest and manifest.get("kind") == "curate":
                c = manifest.get("counts", {})
                drops = ", ".join(f"{k} {v}" for k, v in (manifest.get("dropped") or {}).items())
                why.append(
                    f"{f}: curation kept {c.get('kept', 0)} of {c.get('records_in', 0)} "
                    f"conversation(s) from {c.get('trials', 0)} trial(s)"
                    + (f" (dropped: {drops})" if drops else "")
                )
            else:
                why.append(f"{f}: no records")
        reason = "the input holds no records: " + "; ".join(why) if why else "no input"
    elif counts["records"] == len(problems) or counts["records"] == counts["dropped_overlong"]:
        reason = (
            f"all {counts['records']} record(s) were skipped"
            + (f" (e.g. {problems[0]})" if problems else f" as longer than {options.max_len}")
        )
    elif (
        options.format == "harbor"
        and not counts["trials"]
        and (counts["partly_curated_trials"] or counts["filtered_trials"] or problems)
    ):
        reason = (
            f"no trial gave Harbor rows ({counts['partly_curated_trials']} partly dropped by "
            f"curation, {counts['filtered_trials']} left out by the {options.harbor.filter} "
            f"filter, {len(problems)} record(s) skipped"
            + (f", e.g. {problems[0]}" if problems else "")
            + ")"
        )
    elif counts["unselected_source"] == counts["records"]:
        reason = (
            f"none of the {counts['records']} record(s) is of the selected sources "
            f"(include {list(options.include_sources) or 'all'}, exclude "
            f"{list(options.exclude_sources) or 'none'})"
        )
    else:
        stages = {o.plan.stage for o in empty}
        reason = f"none of the {counts['records']} record(s) goes there"
        if 1 in stages:
            reason += f" (no record of subsets {', '.join(options.stage1_subsets)} for stage 1)"
        elif 2 in stages:
            reason += f" (every record is of subsets {', '.join(options.stage1_subsets)}: stage 1)"
    return f"{names} would have 0 rows: {reason}. Nothing was written."


def _reasoning_of(options: ExportOptions) -> str:
    """The reasoning choice: the tokenizer spec's, else the option's (sharegpt), else template."""
    if options.tokenizer is not None and getattr(options.tokenizer, "reasoning", None):
        return str(options.tokenizer.reasoning)
    return options.reasoning or "template"


def _verl_spec(spec: Any, reasoning: str) -> tuple[Any, dict[str, bool]]:
    """The spec with veRL's rule, and what the template does under it (probed once here: a
    reasoning choice veRL cannot train fails before anything is written)."""
    from dataclasses import replace

    tok = spec.load()
    probe = {
        "lone_message_keeps_reasoning": tok.lone_message_keeps_reasoning(),
        "rendering_differs": tok.verl_rendering_differs(),
        "prompt_is_exact": tok.verl_prompt_is_exact(),
    }
    if reasoning == "keep" and not probe["lone_message_keeps_reasoning"]:
        raise ExportError(
            f"--reasoning keep with --target verl: the chat template of {tok.name} drops the "
            f"<think> part of an assistant message rendered alone, as veRL renders each message, "
            f"so veRL cannot train it. Use --target ttgen or trl with --reasoning keep, or "
            f"--reasoning template or drop with --target verl"
        )
    # workers load what was loaded here
    local = replace(spec, name_or_path=str(tok.folder), chat_template=tok.chat_template,
                    revision=None, rule="verl")  # fmt: skip
    return local, probe


def _describe_target(
    options: ExportOptions,
    reasoning: str,
    outs: dict[str, _Out],
    counts: Counter[str],
    verl_probe: dict[str, bool],
    dataset_info: Any,
) -> dict[str, Any]:
    """The summary's account of the target: its columns, rule, reasoning and trainer settings."""
    from ttgen.export.targets import RULE_TEXT, RULES, reasoning_meaning, trainer_notes

    target = options.target
    rule = RULES[target]
    if target == "sharegpt":
        from ttgen.export.targets import SHAREGPT_SCHEMA

        columns = list(SHAREGPT_SCHEMA.names)
    else:
        from ttgen.export.sft import sft_schema

        columns = list(sft_schema(options.with_ids, target).names)
    spec = options.tokenizer
    ignore_mismatch = bool(verl_probe.get("rendering_differs")) or counts["rendering_differs"] > 0
    out: dict[str, Any] = {
        "name": target,
        "rule": rule,
        "rule_text": RULE_TEXT.get(rule or "", "the trainer tokenizes the text and decides "
                                   "what is trained"),
        "columns": columns,
        "reasoning": reasoning,
        "reasoning_text": reasoning_meaning(
            target, reasoning, verl_probe.get("lone_message_keeps_reasoning")
        ),
    }
    if target == "verl":
        out["rows_rendering_differs"] = counts["rendering_differs"]
        out["ignore_input_ids_mismatch"] = ignore_mismatch
        out["template_rendering_differs"] = bool(verl_probe.get("rendering_differs"))
        out["generation_prompt_exact"] = bool(verl_probe.get("prompt_is_exact"))
    if target == "sharegpt" and spec is not None:
        out["tokenizer_note"] = "not used: the trainer tokenizes"
    trainer = trainer_notes(
        target,
        files={name: o.plan.path for name, o in outs.items()},
        max_len=options.max_len,
        overlong=options.overlong,
        reasoning=reasoning,
        template_kwargs=getattr(spec, "template_kwargs", None),
        template_override=getattr(spec, "chat_template", None) is not None,
        ignore_mismatch=ignore_mismatch,
        dataset_info=dataset_info,
        prompt_is_exact=verl_probe.get("prompt_is_exact", True),
    )
    if trainer is not None:
        out["trainer"] = trainer
    return out


def _write_sharegpt(
    routed: Iterable[tuple[dict[str, Any], list[OutputPlan]]],
    outs: dict[str, _Out],
    reasoning: str,
    problems: list[str],
    progress: Callable[[int], None] | None,
) -> int:
    """Write sharegpt rows (no tokenization): one per record, or one per assistant turn with
    reasoning=per-turn; think blocks removed with reasoning=drop. Returns the records done."""
    from ttgen.export.chat import ConversationError, drop_reasoning, per_turn_samples
    from ttgen.export.sft import check_sft_messages
    from ttgen.export.targets import sharegpt_row

    n_done = 0
    for rec, dest in routed:
        messages = rec.get("messages")
        try:
            check_sft_messages(messages)
        except ConversationError as exc:
            problems.append(f"{rec.get('id', '?')}: {exc}")
            continue
        if reasoning == "drop":
            messages = drop_reasoning(messages)
        if reasoning == "per-turn":
            samples = [({**rec, "id": f"{rec.get('id')}#turn{n}"}, msgs)
                       for n, msgs in enumerate(per_turn_samples(messages), 1)]  # fmt: skip
        else:
            samples = [(rec, messages)]
        for sample, msgs in samples:
            row = sharegpt_row(sample, msgs)
            for p in dest:
                outs[p.name].write(row, row["source"])
        n_done += 1
        if progress is not None and n_done % 256 == 0:
            progress(n_done)
    return n_done


def _write_harbor(
    files: list[Path],
    outs: dict[str, _Out],
    options: ExportOptions,
    problems: list[str],
    counts: Counter[str],
    progress: Callable[[int], None] | None,
    keep: Callable[[str], bool] | None,
    strata: Strata | None,
    plans: list[OutputPlan],
) -> int:
    """Write Harbor-style rows: the trials of the records (grouped: a trial's summarized
    contexts and final conversation are one trajectory), routed by the trial's final record.
    Returns the trials done."""
    from ttgen.export.harbor import HarborRowError, JobCache, group_trials, trial_rows, whole_trial

    def records() -> Iterator[dict[str, Any]]:
        for f in files:
            for rec in read_records(f, problems):
                counts["records"] += 1
                yield rec

    cache = JobCache()
    n_done = 0
    for group in group_trials(records()):
        final = group[-1]
        source = str(final.get("source") or "other")
        if keep is not None and not keep(source):
            counts["not_selected"] += len(group)
            counts["unselected_source"] += len(group)
            continue
        dest = targets(final, plans, strata, options.stage1_subsets)
        if not dest:
            counts["not_selected"] += len(group)
            continue
        if not whole_trial(group):
            counts["partly_curated_trials"] += 1
            continue
        try:
            if not final.get("trial_dir"):
                raise HarborRowError("the record names no trial folder")
            rows = trial_rows(Path(final["trial_dir"]), options.harbor, cache=cache)
        except HarborRowError as exc:
            problems.extend(f"{r.get('id', '?')}: {exc}" for r in group)
            continue
        if not rows:
            counts["filtered_trials"] += 1
            continue
        counts["trials"] += 1
        for row in rows:
            for p in dest:
                outs[p.name].write(row, source)
        n_done += 1
        if progress is not None and n_done % 64 == 0:
            progress(n_done)
    return n_done


def _harbor_columns(o: HarborOptions) -> list[str]:
    from ttgen.export.harbor import harbor_schema

    return list(harbor_schema(o).names)


def summary_path(out: Path) -> Path:
    return out.with_name(out.name + ".export.json")


def _describe_tokenizer(spec: Any) -> Any:
    if spec is None:
        return None
    return getattr(spec, "name_or_path", str(spec))


def publish(outs: list[_Out], options: ExportOptions) -> dict[str, Any]:
    """Load the written files with `datasets` and save them to disk and/or push them to the hub
    (one configuration per file: "default", "stage1", "frac0.01", ...)."""
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ExportError(
            "--save-to-disk/--push-to-hub need the `datasets` package: "
            "pip install 'terminal-task-gen[hf]'"
        ) from exc
    done: dict[str, Any] = {}
    for o in outs:
        path = str(o.plan.path)
        fmt = format_of(o.plan.path)
        if fmt == "parquet":
            ds = datasets.Dataset.from_parquet(path)
        else:
            ds = datasets.Dataset.from_json(path)
        entry: dict[str, Any] = {"rows": len(ds)}
        if options.save_to_disk is not None:
            target = options.save_to_disk if len(outs) == 1 else options.save_to_disk / o.plan.name
            ds.save_to_disk(str(target))
            entry["saved_to"] = str(target)
        if options.push_to_hub:
            ds.push_to_hub(
                options.push_to_hub,
                config_name=o.plan.name,
                split="train",
                private=options.hub_private,
                token=options.hub_token,
            )
            entry["pushed_to"] = f"{options.push_to_hub} (config {o.plan.name})"
        done[o.plan.name] = entry
    return done
