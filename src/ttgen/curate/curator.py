"""`ttgen curate`: rollout folders → a curated data folder.

    trials ─► records (collect.py; infrastructure outcomes dropped) ─► decontamination (n-gram
    overlap of the task instruction with a benchmark) ─► filters (identity, CJK, complete-only,
    success-only, max turns/tokens) ─► near-duplicate tasks (MinHash LSH + exact Jaccard of the
    instructions; one task kept per cluster, with all its trajectories) ─► DATA/

DATA/ holds ``records.jsonl`` (the kept records, one JSON object per line, in input order),
``dropped.jsonl`` (id, task, reason, detail of every dropped record or trial: for
decontamination the benchmark item and the shared n-gram, for near-duplicates the kept task it
resembles) and ``curate.json`` (inputs, options, counts; written last). Everything streams: a
trial is read, judged and written before the next one, so memory holds only the decontamination
index, the verdicts per distinct instruction and the near-duplicate index. The three files are
written beside their final names and renamed into place at the end: an interrupted run leaves the
previous output as it was, and a re-run recomputes everything from the trial folders (which are
the ledger).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from ttgen import __version__
from ttgen.curate.decontaminate import (
    BENCH_FIELDS,
    DEFAULT_NGRAM,
    NGramIndex,
    load_benchmark,
)
from ttgen.curate.filters import FilterOptions, Filters
from ttgen.curate.trials import Drop, find_trials, looks_like_tasks, read_trial
from ttgen.fileio import temp_beside
from ttgen.formats.trial import now
from ttgen.textsim import NearDuplicateIndex

RECORDS = "records.jsonl"
DROPPED = "dropped.jsonl"
MANIFEST = "curate.json"


@dataclass
class BenchmarkSpec:
    path: Path
    name: str | None = None


@dataclass
class CurateOptions:
    benchmarks: list[BenchmarkSpec] = field(default_factory=list)
    decontaminate: bool = True
    bench_fields: tuple[str, ...] = ("instruction",)
    ngram: int = DEFAULT_NGRAM
    filters: FilterOptions = field(default_factory=FilterOptions)
    dedup: bool = True
    dedup_threshold: float = 0.8
    dedup_shingle_words: int = 5
    # The paper removes no near-duplicates from dataset-adapter prompts (their datasets were
    # deduplicated upstream): near-duplicate removal applies to synthesized tasks unless asked.
    dedup_adapters: bool = False


class CurateError(Exception):
    """A usage or input problem that stops curation before anything is written."""


class NothingKeptError(CurateError):
    """Every trajectory was dropped: the output folder is left as it was (an empty result where
    data was expected is an error); `manifest` says what was read and why each was dropped."""

    def __init__(self, message: str, manifest: dict[str, Any]) -> None:
        super().__init__(message)
        self.manifest = manifest


def _no_trials_message(inputs: list[Path], out: Path) -> str:
    names = ", ".join(str(p) for p in inputs)
    n_tasks = sum(looks_like_tasks(p) for p in inputs)
    if n_tasks:
        return (
            f"no trial folders in {names}: it holds {n_tasks} task folder(s) (task.toml), not "
            "rollouts. Curation reads rollout jobs: run the tasks first, e.g. `ttgen rollout "
            f"{names} --agent terminus-2 --model M --base-url URL --out JOB`, then `ttgen curate "
            f"JOB --out {out}`. Nothing was written."
        )
    return (
        f"no trial folders in {names}: curation reads rollout jobs (the --out folder of `ttgen "
        "rollout`, RUN/rollouts of `ttgen run`), single trials or folders of jobs. "
        "Nothing was written."
    )


def _nothing_kept_message(manifest: dict[str, Any], first: dict[str, str], out: Path) -> str:
    c = manifest["counts"]
    reasons = "; ".join(
        f"{reason} {n}" + (f" (e.g. {first[reason]})" if first.get(reason) else "")
        for reason, n in manifest["dropped"].items()
    )
    return (
        f"no record kept from {c['trials']} trial(s) ({c['records_in']} conversation(s) read): "
        f"dropped: {reasons or 'none'}. {out} was left as it was."
    )


def build_index(options: CurateOptions) -> tuple[NGramIndex | None, dict[str, Any]]:
    """The decontamination index of every benchmark (built once) and its summary."""
    if not options.decontaminate:
        return None, {"enabled": False}
    if not options.benchmarks:
        raise CurateError(
            "decontamination needs a benchmark: --benchmark PATH (a folder of Harbor or TB1 tasks, "
            "e.g. a Terminal-Bench 2.0 checkout, or a JSONL of texts), or --no-decontam"
        )
    bad_fields = [f for f in options.bench_fields if f not in BENCH_FIELDS]
    if bad_fields:
        raise CurateError(
            f"unknown benchmark field(s) {bad_fields} (choose from {list(BENCH_FIELDS)})"
        )
    index = NGramIndex(options.ngram)
    bad: list[dict[str, str]] = []
    for spec in options.benchmarks:
        try:
            items, bad_items = load_benchmark(
                spec.path, name=spec.name, fields=options.bench_fields
            )
        except ValueError as exc:
            raise CurateError(str(exc)) from exc
        index.add_all(items)
        bad += [{"origin": b.origin, "problem": b.problem} for b in bad_items]
    summary = {
        "enabled": True,
        "ngram": options.ngram,
        "fields": list(options.bench_fields),
        "benchmark_paths": [str(s.path) for s in options.benchmarks],
        **index.summary(),
        "bad_items": bad,
    }
    return index, summary


class _Output:
    """The three output files, written beside their final names and renamed at the end."""

    def __init__(self, out: Path) -> None:
        self._created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self._tmp: dict[str, Path] = {}
        self.files: dict[str, IO[str]] = {}
        for name in (RECORDS, DROPPED):
            fd, tmp = temp_beside(out / name)
            self._tmp[name] = tmp
            self.files[name] = os.fdopen(fd, "w", encoding="utf-8")

    def write(self, name: str, obj: dict[str, Any]) -> None:
        self.files[name].write(json.dumps(obj, ensure_ascii=False))
        self.files[name].write("\n")

    def commit(self, manifest: dict[str, Any]) -> None:
        for f in self.files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        for name, tmp in self._tmp.items():
            os.replace(tmp, self.out / name)
        from ttgen.formats.trial import write_json_atomic

        write_json_atomic(self.out / MANIFEST, manifest)

    def abort(self) -> None:
        for f in self.files.values():
            f.close()
        for tmp in self._tmp.values():
            tmp.unlink(missing_ok=True)
        if self._created:
            with contextlib.suppress(OSError):
                self.out.rmdir()  # only if still empty


def curate(
    inputs: Iterable[Path],
    out: Path,
    options: CurateOptions,
    *,
    progress: Callable[[dict[str, int]], None] | None = None,
) -> dict[str, Any]:
    """Run curation (see the module docstring); returns the manifest written to curate.json."""
    inputs = [Path(p) for p in inputs]
    started = time.perf_counter()
    index, decon_summary = build_index(options)
    filters = Filters(options.filters)
    dedup = (
        NearDuplicateIndex(options.dedup_threshold, shingle_words=options.dedup_shingle_words)
        if options.dedup
        else None
    )
    # Verdicts per distinct instruction (many trajectories share a task).
    decon_verdict: dict[str, dict[str, str] | None] = {}
    dup_verdict: dict[str, tuple[str, str, float] | None] = {}
    task_of_key: dict[str, str] = {}
    dup_tasks: set[str] = set()
    numbers_of: dict[str, tuple[str, ...]] = {}  # kept instruction -> its numbers
    distinct: set[str] = set()  # instructions read
    counts: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    kept_by: dict[str, Counter[str]] = {"subset": Counter(), "source": Counter()}
    matches: Counter[str] = Counter()
    first_detail: dict[str, str] = {}  # one example per drop reason, for an empty result
    trials = 0
    try:
        trial_iter = list(find_trials(inputs))
    except OSError as exc:
        raise CurateError(str(exc)) from exc
    if not trial_iter:
        raise CurateError(_no_trials_message(inputs, out))
    output = _Output(out)
    try:
        for trial_dir in trial_iter:
            trials += 1
            records, drops = read_trial(trial_dir)
            for d in drops:
                dropped[d.reason] += 1
                first_detail.setdefault(d.reason, d.detail)
                output.write(DROPPED, d.to_json())
            for rec in records:
                counts["records_in"] += 1
                key = hashlib.sha1(rec["instruction"].encode("utf-8")).hexdigest()
                distinct.add(key)
                rec["instruction_sha1"] = key
                drop = _judge(
                    rec, key, index, decon_verdict, filters,
                    dedup if options.dedup_adapters or rec["subset"] != ADAPTER_SUBSET else None,
                    dup_verdict, task_of_key, numbers_of,
                )
                if drop is not None:
                    dropped[drop.reason] += 1
                    first_detail.setdefault(drop.reason, drop.detail)
                    if drop.reason == "near_duplicate":
                        dup_tasks.add(rec["task"])
                    if drop.reason == "decontamination":
                        m = decon_verdict[key]
                        assert m is not None
                        matches[f"{m['benchmark']}/{m['item_id']}"] += 1
                    output.write(DROPPED, drop.to_json())
                    continue
                counts["kept"] += 1
                kept_by["subset"][rec["subset"]] += 1
                kept_by["source"][rec["source"]] += 1
                output.write(RECORDS, rec)
            if progress is not None:
                progress(
                    {"trials": trials, "kept": counts["kept"], "dropped": sum(dropped.values())}
                )
        manifest = {
            "kind": "curate",
            "created_at": now().isoformat(),
            "ttgen_version": __version__,
            "inputs": [str(p) for p in inputs],
            "options": {
                "decontaminate": options.decontaminate,
                "benchmarks": [{"path": str(b.path), "name": b.name} for b in options.benchmarks],
                "bench_fields": list(options.bench_fields),
                "ngram": options.ngram,
                "filters": options.filters.describe(),
                "identity_patterns": options.filters.identity_patterns
                if options.filters.identity
                else [],
                "dedup": options.dedup,
                "dedup_threshold": options.dedup_threshold,
                "dedup_shingle_words": options.dedup_shingle_words,
                "dedup_adapters": options.dedup_adapters,
            },
            "counts": {
                "trials": trials,
                "records_in": counts["records_in"],
                "kept": counts["kept"],
                "dropped": sum(dropped.values()),
                "distinct_instructions": len(distinct),
            },
            "dropped": dict(sorted(dropped.items())),
            "kept_by_subset": dict(sorted(kept_by["subset"].items())),
            "kept_by_source": dict(sorted(kept_by["source"].items())),
            "decontamination": {
                **decon_summary,
                "tasks_matched": sum(1 for v in decon_verdict.values() if v),
                "records_dropped": dropped.get("decontamination", 0),
                "matches_by_item": dict(matches.most_common()),
            },
            "dedup": {
                "enabled": options.dedup,
                "tasks_kept": len(dedup) if dedup is not None else None,
                "tasks_dropped": len(dup_tasks),
                "records_dropped": dropped.get("near_duplicate", 0),
            },
            "elapsed_sec": round(time.perf_counter() - started, 3),
        }
        if counts["kept"] == 0:
            raise NothingKeptError(_nothing_kept_message(manifest, first_detail, out), manifest)
        output.commit(manifest)
        return manifest
    except BaseException:
        output.abort()
        raise


def _judge(
    rec: dict[str, Any],
    key: str,
    index: NGramIndex | None,
    decon_verdict: dict[str, dict[str, str] | None],
    filters: Filters,
    dedup: NearDuplicateIndex | None,
    dup_verdict: dict[str, tuple[str, str, float] | None],
    task_of_key: dict[str, str],
    numbers_of: dict[str, tuple[str, ...]],
) -> Drop | None:
    rid, task = rec["id"], rec["task"]
    if index is not None:
        if key not in decon_verdict:
            match = index.check(rec["instruction"])
            decon_verdict[key] = asdict(match) if match is not None else None
        m = decon_verdict[key]
        if m is not None:
            detail = f'{m["benchmark"]}/{m["item_id"]} ({m["field"]}): "{m["ngram"]}"'
            return Drop(rid, "decontamination", detail, task, rec["outcome"])
    failed = filters.check(rec)
    if failed is not None:
        return Drop(rid, failed[0], failed[1], task, rec["outcome"])
    if dedup is not None:
        first = task_of_key.get(key)
        if first is not None and first != task:
            # The same instruction under another task name: an exact duplicate.
            return Drop(rid, "near_duplicate", f"same instruction as task {first} (Jaccard 1.000)",
                        task, rec["outcome"])  # fmt: skip
        if key not in dup_verdict:
            text = rec["instruction"]
            nums = numbers_in(text)
            hits = dedup.add_unless_near(key, text)
            # Problems that differ in a number are different problems (another answer), however
            # alike their words: only a match with the same numbers is a duplicate.
            same = [(k, sim) for k, sim in hits if numbers_of.get(str(k)) == nums]
            if hits and not same:
                dedup.add(key, text)
            if same:
                other, sim = same[0]
                dup_verdict[key] = (str(other), task_of_key.get(str(other), "?"), sim)
            else:
                dup_verdict[key] = None
                task_of_key[key] = task
                numbers_of[key] = nums
        d = dup_verdict[key]
        if d is not None:
            return Drop(rid, "near_duplicate", f"similar to task {d[1]} (Jaccard {d[2]:.3f})",
                        task, rec["outcome"])  # fmt: skip
    return None


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
ADAPTER_SUBSET = "dataset_adapters"


def numbers_in(text: str) -> tuple[str, ...]:
    """The numbers a text states, sorted (a problem's numbers, whatever their order)."""
    return tuple(sorted(_NUMBER.findall(text)))


def read_records(data: Path, problems: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """The kept records of a curated folder (or a records JSONL file), streamed. A broken line
    is reported as "file:line: problem" into `problems` and skipped (raises ValueError when no
    list is given)."""
    path = data / RECORDS if data.is_dir() else data
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no curated records (run `ttgen curate` first)")
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict) or not isinstance(rec.get("messages"), list):
                    raise ValueError("not a curated record (no messages)")
            except ValueError as exc:
                problem = f"{path}:{n}: {exc}"
                if problems is None:
                    raise ValueError(problem) from exc
                problems.append(problem)
                continue
            yield rec


def read_manifest(data: Path) -> dict[str, Any] | None:
    try:
        return json.loads((data / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
