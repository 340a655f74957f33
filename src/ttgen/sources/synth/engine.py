"""The generation loop shared by seed- and skill-based synthesis.

One work item (a seed, or a domain + sampled primitive skills + difficulty) becomes at most one
task. Per item:

    generate ─► parse ── malformed ──► one format retry (the problems are sent back)
                 │
                 ├─ near-duplicate of a task of the same domain ──► regenerate (up to
                 │  `novelty_retries` times, told which titles to avoid), then drop
                 │
                 └─ stage the task ─► gates ── failed ──► one repair round (the problems are
                                        │                sent back), then drop with the reason
                                        └─ passed ──► OUT/<id>/ (renamed into place)

Every item leaves a generation record, OUT/generation/<id>.json (written atomically): the
messages sent, each raw answer, model, token usage, cost, the parse problems, near-duplicate
matches and gate results of every round, and the final status:

    written   the task is at OUT/<id>/
    dropped   a final decision (malformed twice, near-duplicate, gates failed after the repair)
    error     infrastructure (the endpoint failed after its retries, a Docker gate could not
              run): not the task's fault; the next run retries it

The records are the ledger: re-running the same command skips written and dropped items and
redoes the rest, so an interrupted run (Ctrl-C, kill -9, a crash) continues where it stopped
and nothing finished is lost or paid for twice. `OUT/synth.jsonl` (one summary line per item)
and `OUT/synth_summary.json` are rewritten at the end of every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ttgen import __version__
from ttgen.errors import LLMError, TtgenError
from ttgen.formats.trial import write_json_atomic
from ttgen.llm import LLMClient, LLMConfig, LLMResponse, LLMUsage
from ttgen.settings import Settings
from ttgen.sources.synth import prompts
from ttgen.sources.synth.answer import AnswerFormatError, TaskDraft, parse_answer
from ttgen.sources.synth.build import draft_to_task
from ttgen.sources.synth.gates import GateInfraError, GateResult, GateRunner
from ttgen.textsim import NearDuplicateIndex

RECORDS_DIR = "generation"
STAGING_DIR = "generation/.staging"
LEDGER_FILE = "synth.jsonl"
SUMMARY_FILE = "synth_summary.json"
FINAL_STATUSES = ("written", "dropped")


@dataclass
class WorkItem:
    """One task to generate."""

    id: str
    kind: str  # "skills" | "seeds"
    system: str
    user: str
    novelty_key: str  # tasks are compared with others of the same key (the domain)
    image: str
    metadata: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)  # recorded as is (skills, seed, ...)
    reference_solution: str | None = None


@dataclass
class SynthOptions:
    out: Path
    concurrency: int = 8
    novelty_threshold: float = 0.5
    novelty_retries: int = 2
    agent_timeout_sec: float = 900.0
    verifier_timeout_sec: float = 900.0
    cpus: float = 1
    memory_mb: int = 2048
    allow_internet: bool = True


class SynthEvents(Protocol):
    def started(self, total: int, already_done: int) -> None: ...
    def finished(self, record: dict[str, Any]) -> None: ...


class _NoEvents:
    def started(self, total: int, already_done: int) -> None:
        pass

    def finished(self, record: dict[str, Any]) -> None:
        pass


def _now() -> str:
    return datetime.now(UTC).isoformat()


def read_records(out: Path) -> dict[str, dict[str, Any]]:
    """The generation records in `out` by item id (unreadable ones are ignored: redone)."""
    records: dict[str, dict[str, Any]] = {}
    folder = out / RECORDS_DIR
    if not folder.is_dir():
        return records
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            records[data["id"]] = data
    return records


def is_done(record: dict[str, Any] | None, out: Path) -> bool:
    if not record or record.get("status") not in FINAL_STATUSES:
        return False
    if record["status"] == "written":
        return (out / record["id"] / "task.toml").is_file()
    return True


class Synthesizer:
    """Runs work items through the LLM and the gates into task folders."""

    def __init__(
        self,
        llm_config: LLMConfig,
        options: SynthOptions,
        gates: GateRunner,
        *,
        events: SynthEvents | None = None,
    ) -> None:
        self.llm_config = llm_config
        self.options = options
        self.gates = gates
        self.events = events or _NoEvents()
        self.out = options.out
        self._indexes: dict[str, NearDuplicateIndex] = {}
        self._titles: dict[str, str] = {}

    # -- novelty ---------------------------------------------------------------------------

    def _index(self, key: str) -> NearDuplicateIndex:
        index = self._indexes.get(key)
        if index is None:
            index = self._indexes[key] = NearDuplicateIndex(self.options.novelty_threshold)
        return index

    def _load_existing(self, records: dict[str, dict[str, Any]]) -> None:
        """Tasks written by earlier runs count for novelty."""
        for rec in records.values():
            if rec.get("status") != "written":
                continue
            instruction = self.out / rec["id"] / "instruction.md"
            try:
                text = instruction.read_text(encoding="utf-8")
            except OSError:
                continue
            self._index(rec.get("novelty_key", "")).add(rec["id"], text)
            self._titles[rec["id"]] = rec.get("title") or rec["id"]

    # -- the run ---------------------------------------------------------------------------

    async def run(self, items: Iterable[WorkItem]) -> dict[str, Any]:
        out = self.out
        out.mkdir(parents=True, exist_ok=True)
        (out / RECORDS_DIR).mkdir(exist_ok=True)
        shutil.rmtree(out / STAGING_DIR, ignore_errors=True)
        records = read_records(out)
        self._load_existing(records)
        items = list(items)
        seen: set[str] = set()
        for item in items:
            if item.id in seen:
                raise TtgenError(f"two work items share the id {item.id!r}")
            seen.add(item.id)
        pending = [it for it in items if not is_done(records.get(it.id), out)]
        self.events.started(len(items), len(items) - len(pending))
        t0 = time.monotonic()
        queue: Iterator[WorkItem] = iter(pending)
        async with LLMClient(self.llm_config) as llm:

            async def worker() -> None:
                for item in queue:
                    record = await self._generate(llm, item)
                    records[item.id] = record
                    self.events.finished(record)

            await asyncio.gather(*(worker() for _ in range(max(1, self.options.concurrency))))
        shutil.rmtree(out / STAGING_DIR, ignore_errors=True)
        summary = self._summary([records[it.id] for it in items if it.id in records])
        summary["wall_sec"] = round(time.monotonic() - t0, 2)
        summary["n_generated_this_run"] = len(pending)
        lines = "".join(
            json.dumps(_ledger_line(records[it.id])) + "\n" for it in items if it.id in records
        )
        write_json_atomic(out / LEDGER_FILE, lines)
        write_json_atomic(out / SUMMARY_FILE, summary)
        return summary

    def _summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        status = Counter(r.get("status") for r in records)
        usage = LLMUsage()
        for r in records:
            u = r.get("usage") or {}
            part = LLMUsage(**{k: v for k, v in u.items() if k in LLMUsage.__dataclass_fields__})
            usage.merge(part)
        rejected_by_gate: Counter[str] = Counter()
        rounds_failed: Counter[str] = Counter()
        repaired = 0
        for r in records:
            failed_first = False
            for attempt in r.get("attempts", []):
                for g in attempt.get("gates") or []:
                    if not g["ok"]:
                        rounds_failed[g["gate"]] += 1
                        failed_first = True
            if r.get("status") == "dropped" and r.get("dropped_by"):
                rejected_by_gate[r["dropped_by"]] += 1
            if r.get("status") == "written" and failed_first:
                repaired += 1
        return {
            "n_items": len(records),
            "written": status.get("written", 0),
            "dropped": status.get("dropped", 0),
            "errors": status.get("error", 0),
            "dropped_by": dict(rejected_by_gate),
            "gate_failures": dict(rounds_failed),
            "repaired": repaired,
            "format_retries": sum(
                1 for r in records for a in r.get("attempts", []) if a["stage"] == "format_retry"
            ),
            "novelty_regenerations": sum(
                1 for r in records for a in r.get("attempts", []) if a["stage"] == "novelty_retry"
            ),
            "usage": asdict(usage),
            "cost_usd": usage.cost_usd,
            "model": self.llm_config.model,
        }

    # -- one item --------------------------------------------------------------------------

    def _save_record(self, record: dict[str, Any]) -> None:
        record["finished_at"] = _now()
        path = self.out / RECORDS_DIR / f"{record['id']}.json"
        write_json_atomic(path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")

    async def _generate(self, llm: LLMClient, item: WorkItem) -> dict[str, Any]:
        usage = LLMUsage()
        record: dict[str, Any] = {
            "id": item.id,
            "kind": item.kind,
            "status": "error",
            "reason": "",
            "dropped_by": None,
            "task": None,
            "title": None,
            "novelty_key": item.novelty_key,
            "image": item.image,
            **item.info,
            "model": self.llm_config.model,
            "base_url": self.llm_config.base_url,
            "attempts": [],
            "usage": {},
            "cost_usd": None,
            "started_at": _now(),
            "ttgen_version": __version__,
        }
        try:
            await self._attempts(llm, item, record, usage)
        except LLMError as exc:
            record.update(status="error", reason=f"LLM: {exc}")
        except GateInfraError as exc:
            record.update(status="error", reason=str(exc))
        except asyncio.CancelledError:
            record.update(status="error", reason="interrupted")
            record["usage"], record["cost_usd"] = asdict(usage), usage.cost_usd
            self._save_record(record)
            raise
        except Exception as exc:  # a bug must not lose the batch: record it, go on
            record.update(status="error", reason=f"unexpected error: {exc!r}")
        finally:
            self._discard_staging(item.id)
        record["usage"], record["cost_usd"] = asdict(usage), usage.cost_usd
        self._save_record(record)
        return record

    def _discard_staging(self, item_id: str) -> None:
        shutil.rmtree(self.out / STAGING_DIR / item_id, ignore_errors=True)

    async def _ask(
        self,
        llm: LLMClient,
        messages: list[dict[str, str]],
        stage: str,
        record: dict[str, Any],
        usage: LLMUsage,
    ) -> tuple[LLMResponse, dict[str, Any]]:
        response = await llm.chat(messages)
        usage.add(response)
        attempt = {
            "stage": stage,
            "messages": messages,
            "answer": response.content,
            "reasoning": response.reasoning,
            "finish_reason": response.finish_reason,
            "usage": asdict(response.usage),
            "cost_usd": response.cost_usd,
            "latency_sec": round(response.latency_sec, 3),
        }
        record["attempts"].append(attempt)
        return response, attempt

    async def _attempts(
        self, llm: LLMClient, item: WorkItem, record: dict[str, Any], usage: LLMUsage
    ) -> None:
        base = [
            {"role": "system", "content": item.system},
            {"role": "user", "content": item.user},
        ]
        messages = list(base)
        stage = "generate"
        format_retried = repaired = False
        novelty_left = self.options.novelty_retries
        avoid: list[str] = []
        index = self._index(item.novelty_key)
        while True:
            response, attempt = await self._ask(llm, messages, stage, record, usage)
            try:
                if response.finish_reason == "length":
                    raise AnswerFormatError(
                        [
                            "the answer was cut off at the output token limit; keep input files "
                            "and tests shorter so the whole <task> fits"
                        ]
                    )
                draft = parse_answer(response.content)
            except AnswerFormatError as exc:
                attempt["parse_problems"] = exc.problems
                if format_retried:
                    record.update(
                        status="dropped",
                        dropped_by="format",
                        reason="malformed answer after a retry: " + "; ".join(exc.problems),
                    )
                    return
                format_retried = True
                messages = [
                    *messages,
                    {"role": "assistant", "content": response.content},
                    {"role": "user", "content": prompts.format_retry_message(exc.problems)},
                ]
                stage = "format_retry"
                continue
            record["title"] = draft.title

            matches = index.query(draft.instruction, exclude=item.id)
            if matches:
                attempt["novelty"] = [
                    {"task": str(k), "title": self._titles.get(str(k)), "jaccard": round(s, 3)}
                    for k, s in matches[:5]
                ]
                if novelty_left <= 0:
                    best, sim = matches[0]
                    record.update(
                        status="dropped",
                        dropped_by="novelty",
                        reason=f"near-duplicate of {best} (word 5-gram Jaccard {sim:.2f})",
                    )
                    return
                novelty_left -= 1
                for k, _ in matches[:5]:
                    title = self._titles.get(str(k), str(k))
                    if title not in avoid:
                        avoid.append(title)
                messages = [
                    base[0],
                    {"role": "user", "content": item.user + "\n" + prompts.novelty_note(avoid)},
                ]
                stage = "novelty_retry"
                continue
            # Reserve the scenario so concurrent items of the domain do not produce a twin.
            index.add(item.id, draft.instruction)
            self._titles[item.id] = draft.title

            staged = await self._stage(item, draft)
            results = await self.gates.run(
                draft,
                staged,
                self.out / STAGING_DIR / f"{item.id}.work",
                reference_solution=item.reference_solution,
            )
            attempt["gates"] = [r.to_dict() for r in results]
            failed = [r for r in results if not r.ok]
            if not failed:
                self._publish(item, staged)
                record.update(status="written", task=str(self.out / item.id), reason="")
                return
            index.discard(item.id)
            if repaired:
                record.update(
                    status="dropped",
                    dropped_by=failed[0].gate,
                    reason=_gate_reason(failed),
                    draft=draft.to_dict(),
                )
                return
            repaired = True
            problems = [f"[{r.gate}] {p}" for r in failed for p in r.problems]
            messages = [
                *messages,
                {"role": "assistant", "content": response.content},
                {"role": "user", "content": prompts.repair_message(problems)},
            ]
            stage = "repair"

    async def _stage(self, item: WorkItem, draft: TaskDraft) -> Path:
        o = self.options
        task = draft_to_task(
            draft,
            name=item.id,
            image=item.image,
            metadata=item.metadata,
            agent_timeout_sec=o.agent_timeout_sec,
            verifier_timeout_sec=o.verifier_timeout_sec,
            cpus=o.cpus,
            memory_mb=o.memory_mb,
            allow_internet=o.allow_internet,
        )
        dest = self.out / STAGING_DIR / item.id
        self._discard_staging(item.id)
        return await asyncio.to_thread(task.save, dest)

    def _publish(self, item: WorkItem, staged: Path) -> None:
        final = self.out / item.id
        if final.exists():
            shutil.rmtree(final)
        os.replace(staged, final)


def _gate_reason(failed: list[GateResult]) -> str:
    parts = []
    for r in failed:
        first = r.problems[0].splitlines()[0] if r.problems else "failed"
        more = f" (+{len(r.problems) - 1} more)" if len(r.problems) > 1 else ""
        parts.append(f"{r.gate}: {first}{more}")
    return "gates failed after a repair round: " + "; ".join(parts)


def _ledger_line(record: dict[str, Any]) -> dict[str, Any]:
    usage = record.get("usage") or {}
    return {
        "id": record["id"],
        "status": record.get("status"),
        "title": record.get("title"),
        "reason": record.get("reason"),
        "dropped_by": record.get("dropped_by"),
        "attempts": len(record.get("attempts", [])),
        "prompt_tokens": usage.get("prompt_tokens", 0),
        "completion_tokens": usage.get("completion_tokens", 0),
        "cost_usd": record.get("cost_usd"),
    }


async def synthesize(
    llm_config: LLMConfig,
    options: SynthOptions,
    gates: tuple[str, ...],
    items: Iterable[WorkItem],
    *,
    job: str,
    events: SynthEvents | None = None,
    executor: str = "local",
    address: str | None = None,
    per_node: int | None = None,
    log: Callable[[str], None] | None = None,
    preparing: Callable[[str], AbstractContextManager[Any]] | None = None,
    settings: Settings | None = None,
    backend: str | None = None,
) -> dict[str, Any]:
    """Run the items with their gates, setting up (and cleaning after) what the Docker gates
    need: this machine's engine and the items' domain images (`executor="local"`), or runners
    on the nodes of the Ray cluster at `address` (`"ray"`; each node builds the images it
    needs). Containers are labelled with `job`; `preparing(what)` wraps the slow set-up;
    `settings` (default: ttgen's configuration) go to the engine or the nodes; `backend` names
    the sandbox backend there (None: the settings' `backend`)."""
    from ttgen.sources.synth.gates import DOCKER_GATES

    items = list(items)
    say = log or (lambda message: None)
    if not any(g in DOCKER_GATES for g in gates):
        return await Synthesizer(llm_config, options, GateRunner(gates), events=events).run(items)
    wrap = preparing or (lambda what: contextlib.nullcontext())
    if executor == "ray":
        from ttgen.rollout.executors import RayExecutor

        ray = RayExecutor(
            address, per_node=per_node, settings=settings, cache_archives=False, backend=backend
        )
        try:
            with wrap("starting runners on the Ray nodes"):
                await ray.start(job, say)
            runner = GateRunner(gates, job=job, executor=ray)
            return await Synthesizer(llm_config, options, runner, events=events).run(items)
        finally:
            with contextlib.suppress(Exception):
                await ray.cleanup(job)
            await ray.close()
    if executor != "local":
        raise TtgenError(f"unknown executor {executor!r}: use local or ray")
    from ttgen.sandbox import open_backend
    from ttgen.sandbox.domains import ensure_domain_bases

    async with open_backend(backend, settings) as engine:
        await engine.ping()
        images = sorted({it.image for it in items})
        with wrap(f"domain images: {', '.join(images)} (first build takes minutes)"):
            await ensure_domain_bases(engine, images, who=job)
        runner = GateRunner(gates, engine, job=job)
        try:
            return await Synthesizer(llm_config, options, runner, events=events).run(items)
        finally:
            await engine.gc(job=job)
