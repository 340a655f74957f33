"""SFT export targets: the columns that let a trainer read the file with no glue code.

``ttgen export --format sft --target T``:

* ``ttgen`` (default): messages, metadata, counts, ``input_ids`` and ``loss_mask`` under our rule
  (`ttgen.export.chat`: the conversation rendered once; trained: each assistant turn's text and
  its end-of-turn marker).
* ``trl``: the same rows with the mask named ``assistant_masks``: TRL's SFTTrainer takes a
  dataset with an ``input_ids`` column as tokenized (it does not re-tokenize ``messages``) and
  builds ``labels`` = input_ids where assistant_masks is 1, -100 elsewhere. The other columns
  are dropped by its Trainer (``remove_unused_columns``) or ignored by its collator.
* ``verl``: ``messages`` for veRL's ``MultiTurnSFTDataset`` (which re-tokenizes them, one message
  at a time) and our ``input_ids``/``loss_mask`` computed under veRL's rule
  (``ChatTokenizer.encode_chat(rule="verl")``): token for token what veRL trains.
* ``sharegpt``: ``{"conversations": [{"from": "human"|"gpt", "value": ...}], "system": ...}`` and
  the metadata, for LLaMA-Factory-style trainers, with a ``dataset_info.json`` beside the file;
  no tokens (the trainer tokenizes).

`check_target` validates the combination of options; `reasoning_meaning` and `trainer_notes`
are what the summary (export.json, the CLI) says about it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from ttgen.fileio import write_json_atomic

TARGETS = ("ttgen", "trl", "verl", "sharegpt")
# The rule that decides the trained tokens of each target (sharegpt: the trainer's).
RULES: dict[str, str | None] = {"ttgen": "ttgen", "trl": "ttgen", "verl": "verl", "sharegpt": None}
RULE_TEXT = {
    "ttgen": "ttgen's: the conversation rendered once with the chat template; trained: each "
    "assistant turn's text as the template renders it and its end-of-turn marker, not the "
    "generation prompt, not the whitespace after the marker",
    "verl": "veRL's (MultiTurnSFTDataset): each message rendered alone with the chat template, "
    "the template's default system prompt (or BOS) dropped from the messages after the first; "
    "trained: every token of an assistant message's rendering but the generation prompt's, so "
    "also the whitespace the template writes after the end-of-turn marker",
}
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                 "assistant_tag": "gpt"}  # fmt: skip
_SHAREGPT_ROLE = {"user": SHAREGPT_TAGS["user_tag"], "assistant": SHAREGPT_TAGS["assistant_tag"]}
_FROM_SHAREGPT = {v: k for k, v in _SHAREGPT_ROLE.items()}
DATASET_INFO = "dataset_info.json"

# The provenance columns every SFT target carries (sft.py's schema uses the same list).
METADATA_FIELDS = [
    pa.field("trajectory_id", pa.string()),
    pa.field("task_group_id", pa.string()),
    pa.field("model_name", pa.string()),
    pa.field("subset", pa.string()),
    pa.field("domain", pa.string(), nullable=True),
    pa.field("difficulty", pa.string(), nullable=True),
    pa.field("source", pa.string()),
]
SHAREGPT_SCHEMA = pa.schema([
    pa.field("conversations", pa.list_(pa.struct([("from", pa.string()),
                                                  ("value", pa.string())]))),
    pa.field("system", pa.string(), nullable=True),
    *METADATA_FIELDS,
])  # fmt: skip


def check_target(
    target: str,
    *,
    fmt: str,
    with_ids: bool,
    reasoning: str,
    overlong: str = "truncate",
    out: Path | None = None,
) -> None:
    """Raise ValueError, saying what to do, unless ``target`` fits the other options."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r} (choose one of {', '.join(TARGETS)})")
    if target == "ttgen":
        return
    if fmt != "sft":
        raise ValueError(f"--target {target} is for --format sft (got --format {fmt})")
    if target in ("trl", "verl") and not with_ids:
        raise ValueError(
            f"--no-ids with --target {target}: that target's columns are the token ids "
            f"(drop --no-ids, or use --target sharegpt or ttgen --no-ids for text only)"
        )
    if target == "verl" and reasoning == "per-turn":
        raise ValueError(
            "--reasoning per-turn is not expressible with --target verl: veRL's dataset trains "
            "every assistant message of a row. Use --target ttgen or trl with --reasoning "
            "per-turn, or --reasoning template, keep or drop with --target verl"
        )
    if target == "sharegpt" and overlong == "drop":
        raise ValueError(
            "--overlong drop needs token counts, and --target sharegpt writes text (the trainer "
            "tokenizes and cuts at its own cutoff_len)"
        )
    if target == "sharegpt" and out is not None:
        name = out.name.lower()
        if not name.endswith((".jsonl", ".parquet")):
            raise ValueError(
                f"{out}: --target sharegpt writes .jsonl or .parquet (LLaMA-Factory reads json, "
                f"jsonl, csv, parquet and arrow files, not compressed ones)"
            )


# -- sharegpt -------------------------------------------------------------------------------------


def metadata(record: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata columns of a row (as `ttgen.export.sft.sft_row` names them)."""
    return {
        "trajectory_id": record.get("id"),
        "task_group_id": record.get("task"),
        "model_name": record.get("model"),
        "subset": record.get("subset"),
        "domain": record.get("domain"),
        "difficulty": record.get("difficulty"),
        "source": record.get("source"),
    }


def sharegpt_row(record: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> dict:
    """A row of `SHAREGPT_SCHEMA`: a leading system message goes to ``system`` (None when there
    is none), user turns (Terminus's terminal observations are user turns) become ``human``,
    assistant turns ``gpt``. ``messages`` must pass `check_sft_messages`."""
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    turns = messages[1:] if system is not None else messages
    conversations = [{"from": _SHAREGPT_ROLE[m["role"]], "value": m["content"]} for m in turns]
    return {
        "conversations": conversations,
        "system": system,
        **metadata(record),
    }


def sharegpt_messages(row: Mapping[str, Any]) -> list[dict[str, str]]:
    """The messages a `sharegpt_row` row holds (the inverse of `sharegpt_row`)."""
    out = [] if row.get("system") is None else [{"role": "system", "content": row["system"]}]
    for turn in row["conversations"]:
        out.append({"role": _FROM_SHAREGPT[turn["from"]], "content": turn["value"]})
    return out


def dataset_info_entry(path: Path) -> dict[str, Any]:
    """How LLaMA-Factory's dataset_info.json describes a sharegpt file of ours."""
    return {
        "file_name": path.name,
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system"},
        "tags": dict(SHAREGPT_TAGS),
    }


def dataset_name(path: Path) -> str:
    """The dataset's name in dataset_info.json: the file name without its suffix."""
    name = path.name
    for suffix in (".jsonl", ".parquet"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_dataset_info(folder: Path) -> dict[str, Any]:
    """The dataset_info.json in ``folder`` ({} when there is none); ValueError when it is not a
    JSON object (it is not overwritten then)."""
    path = folder / DATASET_INFO
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not readable JSON ({exc}); move it away or fix it") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object; move it away or fix it")
    return data


def write_dataset_info(paths: Sequence[Path]) -> dict[Path, list[str]]:
    """Add (or replace) an entry per file in the dataset_info.json beside it, keeping the other
    datasets listed there; returns the names written per dataset_info.json."""
    by_folder: dict[Path, list[Path]] = {}
    for p in paths:
        by_folder.setdefault(p.parent, []).append(p)
    written: dict[Path, list[str]] = {}
    for folder, files in by_folder.items():
        info = read_dataset_info(folder)
        for f in files:
            info[dataset_name(f)] = dataset_info_entry(f)
        write_json_atomic(folder / DATASET_INFO, info, fsync=False)
        written[folder / DATASET_INFO] = [dataset_name(f) for f in files]
    return written


# -- what the summary says ------------------------------------------------------------------------

_OURS = {
    "template": "as the chat template renders it: a template like Qwen3's drops it from "
    "assistant turns before the last user message",
    "keep": "every assistant turn's reasoning kept and trained",
    "drop": "no reasoning in any turn",
    "per-turn": "one row per assistant turn, rendered as at inference, that turn trained",
}
_SHAREGPT = {
    "template": "the text left as it is, think blocks included: what is trained is what the "
    "trainer's chat template makes of it",
    "keep": "the text left as it is, think blocks included: what is trained is what the "
    "trainer's chat template makes of it",
    "drop": "think blocks removed from the assistant turns' text",
    "per-turn": "one conversation per assistant turn (its context up to that turn); set "
    "LLaMA-Factory's mask_history: true so that only the last turn of each is trained",
}


def reasoning_meaning(target: str, reasoning: str, lone_keeps: bool | None = None) -> str:
    """What ``--reasoning`` means under ``target``; ``lone_keeps`` (verl): whether the template
    keeps the reasoning of an assistant message rendered alone."""
    if target == "sharegpt":
        return _SHAREGPT[reasoning]
    if target != "verl":
        return _OURS[reasoning]
    if reasoning == "drop":
        return ("think blocks removed from the messages written (veRL reads those): no turn's "
                "reasoning is rendered or trained")  # fmt: skip
    if reasoning == "keep":
        return ("every assistant turn's reasoning kept and trained: this template keeps it in an "
                "assistant message rendered alone, as veRL renders each message")  # fmt: skip
    if lone_keeps:
        return ("as the template renders an assistant message alone (veRL's rendering): this "
                "template keeps its reasoning, so every turn's reasoning is trained")  # fmt: skip
    return ("as the template renders an assistant message alone (veRL's rendering): this "
            "template drops its reasoning, so no turn's reasoning is trained")  # fmt: skip


_PLAIN = re.compile(r"[\w./:+-]+")


def _hydra_value(value: Any) -> str:
    """A value as a Hydra command-line override writes it: True/False, null, numbers, plain
    words and paths bare, other strings double-quoted, lists in brackets."""
    if isinstance(value, bool):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, str) and not _PLAIN.fullmatch(value):
        return json.dumps(value)
    return str(value)


def _hydra(key: str, value: Any) -> str:
    return f"{key}={_hydra_value(value)}"


def trainer_notes(
    target: str,
    *,
    files: Mapping[str, Path],
    max_len: int | None,
    overlong: str,
    reasoning: str,
    template_kwargs: Mapping[str, Any] | None = None,
    template_override: bool = False,
    ignore_mismatch: bool = False,
    dataset_info: Mapping[Path, list[str]] | None = None,
    prompt_is_exact: bool = True,
) -> dict[str, Any] | None:
    """How the trainer of ``target`` reads the files (``files``: output name -> path; the files
    of a curriculum or of scaling subsets are one training run each): its settings and notes
    (None for ttgen)."""
    if target == "trl":
        return {
            "trainer": "trl.SFTTrainer",
            "reads": "input_ids (taken as tokenized: messages are not re-tokenized) and "
            "assistant_masks (labels = input_ids where 1, -100 elsewhere)",
            "config": {"max_length": max_len},
            "notes": [
                "SFTConfig's default max_length (1024) truncates longer rows: set "
                f"SFTConfig(max_length={max_len}) (or None)",
                "the other columns are dropped by the Trainer (remove_unused_columns) or ignored "
                "by the collator",
            ],
        }
    if target == "verl":
        config: dict[str, Any] = {
            "data.messages_key": "messages",
            "data.pad_mode": "no_padding",
            "data.max_length": max_len,
            "data.truncation": "right" if overlong == "truncate" else "error",
            "data.ignore_input_ids_mismatch": ignore_mismatch,
        }
        kwargs = dict(template_kwargs or {})
        if kwargs:
            config["data.apply_chat_template_kwargs"] = kwargs
        overrides = [_hydra(k, v) for k, v in config.items() if not isinstance(v, dict)]
        overrides += [_hydra(f"+data.apply_chat_template_kwargs.{k}", v) for k, v in kwargs.items()]
        notes = [
            "veRL re-tokenizes messages itself; input_ids/loss_mask are what it will train, "
            "computed here under its rule (to count and check, not read by veRL)",
        ]
        if len(files) == 1:
            overrides.insert(0, _hydra("data.train_files", str(next(iter(files.values())))))
        else:
            notes.append("one training run per file (train_files): add "
                         "data.train_files=<file> to the overrides")  # fmt: skip
        if ignore_mismatch:
            notes.append(
                "this chat template renders messages alone differently from the whole "
                "conversation (Qwen3-style): veRL refuses such rows unless "
                "data.ignore_input_ids_mismatch=True"
            )
        if not prompt_is_exact:
            notes.append(
                "veRL leaves as many tokens untrained at the start of each assistant message as "
                "the generation prompt has, and with this template (and its arguments) an "
                "assistant message does not start with that prompt (e.g. enable_thinking=false "
                "adds an empty think block to the prompt only): the first tokens of each reply "
                "go untrained, in veRL and in these rows' loss_mask"
            )
        if kwargs:
            notes.append(
                "template arguments go to data.apply_chat_template_kwargs, not to an "
                "enable_thinking column: veRL computes the generation prompt it masks from "
                "apply_chat_template_kwargs only"
            )
        if template_override:
            notes.append(
                "this export used a chat template override: veRL renders with the model's "
                "tokenizer's own template, so save the override as the tokenizer's "
                "chat_template (chat_template.jinja) first"
            )
        return {
            "trainer": "veRL sft_trainer (verl.utils.dataset.multiturn_sft_dataset."
            "MultiTurnSFTDataset)",
            "reads": "messages",
            "train_files": {name: str(path) for name, path in files.items()},
            "config": config,
            "overrides": overrides,
            "notes": notes,
        }
    if target == "sharegpt":
        infos = dict(dataset_info or {})
        names = [dataset_name(path) for path in files.values()]
        config = {
            "dataset_dir": str(next(iter(infos)).parent) if infos else None,
            "dataset": names[0] if len(names) == 1 else None,
            "cutoff_len": max_len,
        }
        if reasoning == "per-turn":
            config["mask_history"] = True
        return {
            "trainer": "LLaMA-Factory (sharegpt format)",
            "reads": "conversations, system",
            "dataset_info": [str(p) for p in infos],
            "datasets": {name: dataset_name(path) for name, path in files.items()},
            "config": config,
            "notes": [
                "no token columns: the trainer tokenizes with its own template (set `template` "
                "to the model's); --max-len is not applied, set cutoff_len (its default, 2048, "
                "truncates long trajectories)",
            ],
        }
    return None
