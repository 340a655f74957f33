"""SFT rows: curated records tokenized with a chat template, in order, in parallel, streaming.

`tokenize_records` maps records to `TokenizeResult`s (record, `TokenizedChat` or an error) in
input order. Memory stays flat however long the input is: the input is read a chunk at a time
and at most ``max_in_flight`` chunks (2 x workers) are in the pool, besides the one being
yielded.
(``multiprocessing.Pool.imap`` would read the whole input eagerly.) With ``workers > 1`` the
chunks go to processes, each of which loads the tokenizer once, in its initializer; only the
messages travel to the workers and only the tokenized arrays come back (the records stay here).

Chunks are small (16 records): a Terminus 2 conversation is ~10k tokens, ~10 ms to tokenize, so
a chunk is ~0.2 s of work, and at the end of the input no worker waits long for another's last
chunk (64-record chunks cost ~12% of the throughput of a 200-record run on 2 cores). Workers
are forked where the platform can (Linux): a spawned worker first imports the main module and
ttgen again, ~0.3 s of a 2-core machine per worker, most of a small export's overhead. The workers
run only the tokenizer's single-sequence encode and the template, so what fork cannot carry
over (other threads, including tokenizers' own thread pool, which tokenizers turns off in a
forked child) is not used there. ``start_method="spawn"`` (or "forkserver") is there for a
parent that holds locks its children would need.

A bad record (no messages, roles out of order, a template that raises) does not stop the
stream: it comes back with ``chat=None`` and ``error`` saying what is wrong, for the caller to
report as "record id: problem".

`sft_row` builds a row of `sft_schema(with_ids, target)` (`SFT_SCHEMA`: the ttgen target's);
`sft_record_batch` turns rows into an Arrow record batch. The columns per target (see
`ttgen.export.targets`): ``ttgen`` and ``verl`` write input_ids and loss_mask (under our rule
and under veRL's), ``trl`` writes them as input_ids and assistant_masks, the names TRL's
SFTTrainer reads.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any, NamedTuple

import pyarrow as pa

from ttgen.errors import TtgenError
from ttgen.export.chat import ChatTokenizer, ConversationError, TokenizedChat, check_messages
from ttgen.export.targets import METADATA_FIELDS

_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
# The name of the loss mask column per target: TRL's SFTTrainer builds its labels from
# "assistant_masks" (and would ignore a "loss_mask" column).
MASK_COLUMN = {"ttgen": "loss_mask", "verl": "loss_mask", "trl": "assistant_masks"}


def _id_fields(target: str) -> list[pa.Field]:
    return [
        pa.field("input_ids", pa.list_(pa.int32())),
        pa.field(MASK_COLUMN[target], pa.list_(pa.int8())),
    ]


def sft_schema(with_ids: bool = True, target: str = "ttgen") -> pa.Schema:
    """The SFT row schema of ``target`` (ttgen, trl or verl); ``with_ids=False`` (ttgen only)
    leaves out input_ids and loss_mask (the counts stay), for exports that are re-tokenized by
    the trainer."""
    if target not in MASK_COLUMN:
        raise ValueError(f"no token columns for target {target!r}")
    fields = [
        pa.field("messages", pa.list_(_MESSAGE)),
        *METADATA_FIELDS,
        pa.field("n_tokens", pa.int32()),
        pa.field("n_trained_tokens", pa.int32()),
        pa.field("n_assistant_turns", pa.int32()),
        pa.field("n_tokens_full", pa.int32()),
        pa.field("truncated", pa.bool_()),
    ]
    return pa.schema(fields + (_id_fields(target) if with_ids else []))


SFT_SCHEMA = sft_schema(True)


def sft_row(
    record: Mapping[str, Any],
    tok: TokenizedChat,
    *,
    with_ids: bool = True,
    target: str = "ttgen",
) -> dict:
    """A row of `sft_schema(with_ids, target)` for a record and its tokenization. The token
    arrays stay numpy arrays, which pyarrow takes without converting element by element."""
    row = {
        "messages": [{"role": m["role"], "content": m["content"]} for m in record["messages"]],
        "trajectory_id": record.get("id"),
        "task_group_id": record.get("task"),
        "model_name": record.get("model"),
        "subset": record.get("subset"),
        "domain": record.get("domain"),
        "difficulty": record.get("difficulty"),
        "source": record.get("source"),
        "n_tokens": tok.n_tokens,
        "n_trained_tokens": tok.n_trained_tokens,
        "n_assistant_turns": tok.n_assistant_turns,
        "n_tokens_full": tok.n_tokens_full,
        "truncated": tok.truncated,
    }
    if with_ids:
        row["input_ids"] = tok.input_ids
        row[MASK_COLUMN[target]] = tok.loss_mask
    return row


def sft_record_batch(
    rows: list[dict], *, with_ids: bool = True, target: str = "ttgen"
) -> pa.RecordBatch:
    """`sft_row` rows as one record batch of `sft_schema(with_ids, target)` (pyarrow copies the
    numpy token arrays as blocks: ~1 ms for 50 rows of 13k tokens, against ~0.8 s to tokenize
    them)."""
    return pa.RecordBatch.from_pylist(rows, schema=sft_schema(with_ids, target))


# -- tokenizing a stream of records ---------------------------------------------------------------


@dataclass(frozen=True)
class TokenizerSpec:
    """What a worker process needs to load the same `ChatTokenizer` (picklable)."""

    name_or_path: str
    chat_template: str | None = None  # a file or template text; None: the folder's
    revision: str | None = None
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    # what happens to the <think> part of assistant turns: template | keep | drop | per-turn
    # (ChatTokenizer.encode_chat)
    reasoning: str = "template"
    # which tokens are trained: ttgen (ours) | verl (veRL's MultiTurnSFTDataset's)
    rule: str = "ttgen"

    def load(self) -> ChatTokenizer:
        return ChatTokenizer.load(
            self.name_or_path,
            chat_template=self.chat_template,
            revision=self.revision,
            template_kwargs=self.template_kwargs,
        )


class TokenizeResult(NamedTuple):
    """A record and its tokenization; ``chat`` is None and ``error`` says why for a bad one."""

    record: Any
    chat: TokenizedChat | None
    error: str | None = None


def check_sft_messages(messages: Any) -> None:
    """Raise `ConversationError` unless ``messages`` is an SFT conversation: {role, content}
    strings, an optional system message first, then user and assistant alternating, from a user
    message to an assistant message."""
    check_messages(messages)
    first = 1 if messages[0]["role"] == "system" else 0
    if first == len(messages):
        raise ConversationError("only a system message")
    for i in range(first, len(messages)):
        want = "user" if (i - first) % 2 == 0 else "assistant"
        if messages[i]["role"] != want:
            raise ConversationError(
                f"message {i} has role {messages[i]['role']!r}, expected {want!r}"
            )
    if messages[-1]["role"] != "assistant":
        raise ConversationError("the conversation ends with a user message, not an assistant one")


def _tokenize_one(
    tok: ChatTokenizer,
    messages: Any,
    max_len: int | None,
    reasoning: str = "template",
    rule: str = "ttgen",
) -> TokenizedChat | str:
    """A tokenization, or the problem as text (a bad record must not stop the stream)."""
    try:
        check_sft_messages(messages)
        return tok.encode_chat(messages, max_len=max_len, reasoning=reasoning, rule=rule)
    except TtgenError as exc:  # ours say what is wrong already
        return str(exc)
    except Exception as exc:  # a worker must survive whatever one record does
        return f"{type(exc).__name__}: {exc}"


def _record_id(record: Any) -> str:
    return str(record.get("id")) if isinstance(record, dict) else repr(record)[:60]


def _messages_of(record: Any) -> Any:
    return record.get("messages") if isinstance(record, dict) else None


def _result(record: Any, out: TokenizedChat | str) -> TokenizeResult:
    if isinstance(out, str):
        return TokenizeResult(record, None, out)
    return TokenizeResult(record, out, None)


_WORKER_TOKENIZER: ChatTokenizer | None = None
_WORKER_REASONING = "template"
_WORKER_RULE = "ttgen"
_DEFAULT_START = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _init_worker(spec: TokenizerSpec) -> None:
    global _WORKER_TOKENIZER, _WORKER_REASONING, _WORKER_RULE
    # Each worker is one of several processes: tokenizers' own thread pool would oversubscribe.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _WORKER_TOKENIZER = spec.load()
    _WORKER_REASONING = spec.reasoning
    _WORKER_RULE = spec.rule


def _work(chunk: list[Any], max_len: int | None) -> list[TokenizedChat | str]:
    assert _WORKER_TOKENIZER is not None, "worker not initialized"
    return [_tokenize_one(_WORKER_TOKENIZER, messages, max_len, _WORKER_REASONING, _WORKER_RULE)
            for messages in chunk]  # fmt: skip


def tokenize_records(
    records: Iterable[Any],
    spec: TokenizerSpec,
    *,
    max_len: int | None,
    workers: int = 1,
    chunk_size: int = 16,
    max_in_flight: int | None = None,
    start_method: str | None = None,
) -> Iterator[TokenizeResult]:
    """Tokenize ``records`` (dicts with "messages") with ``spec``'s tokenizer, keeping the first
    ``max_len`` tokens; yields a `TokenizeResult` per record, in input order.

    ``workers=1`` runs here, reading one record ahead. ``workers>1`` uses that many processes,
    ``chunk_size`` records per task, with at most ``max_in_flight`` chunks (default 2 x workers)
    in the pool besides the one being yielded, started with ``start_method`` (default: fork
    where available, else spawn). The tokenizer is loaded here first either way (at the first
    ``next``: this is a generator), so a bad tokenizer fails before any record is read, and a
    Hub id is downloaded once; the workers load the folder it resolved to."""
    if workers < 1 or chunk_size < 1:
        raise ValueError("workers and chunk_size must be >= 1")
    tok = spec.load()
    if workers == 1:
        for record in records:
            out = _tokenize_one(tok, _messages_of(record), max_len, spec.reasoning, spec.rule)
            yield _result(record, out)
        return
    # Workers load what was loaded here: the local folder and the template text.
    local = replace(
        spec, name_or_path=str(tok.folder), chat_template=tok.chat_template, revision=None
    )
    limit = max_in_flight or 2 * workers
    source = iter(records)
    pending: deque[tuple[list[Any], Future]] = deque()
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context(start_method or _DEFAULT_START),
        initializer=_init_worker,
        initargs=(local,),
    )

    def submit() -> bool:
        chunk = list(islice(source, chunk_size))
        if not chunk:
            return False
        pending.append((chunk, pool.submit(_work, [_messages_of(r) for r in chunk], max_len)))
        return True

    unyielded: Any = None  # the first record not yet yielded, for the error below
    try:
        while len(pending) < limit and submit():
            pass
        while pending:
            chunk, future = pending[0]
            unyielded = chunk[0]
            outs = future.result()
            pending.popleft()
            submit()  # keep the workers busy while the caller handles this chunk
            for record, out in zip(chunk, outs, strict=True):
                yield _result(record, out)
    except BrokenProcessPool as exc:
        where = "the first record" if unyielded is None else _record_id(unyielded)
        raise TtgenError(
            f"a tokenizer worker process died (out of memory?); records from {where} on were "
            f"not tokenized: {exc}"
        ) from exc
    finally:
        # Also on an early close (the caller stopped reading) or an error: drop queued chunks.
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
