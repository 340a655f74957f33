"""The curated record: one trajectory with its provenance, a line of DATA/records.jsonl.

`ttgen curate` writes these (curate/trials.py builds them from trial folders, ttgen's or
Harbor's); export, stats, the report and training read them. The fields, in the order they are
written (the two big ones last, so readers that need only provenance can stop early):
"""

from __future__ import annotations

RECORD_FIELDS: tuple[str, ...] = (
    "id",  # <run_id>/<trial_name>, + #ctxN for an earlier context of a summarized trial
    "task",
    "subset",  # dataset_adapters | skill_based | seed_based | other
    "domain",
    "difficulty",
    "source",  # as the release's folders: dataset_adapters/math, skill_based/medium/security
    "agent",
    "stand_in",  # an agent that is no teacher (oracle, nop)
    "model",
    "model_provider",
    "run_id",  # the job id
    "trial_name",
    "attempt",
    "date",
    "reward",
    "outcome",
    "passed",
    "completed",  # the agent confirmed task_complete
    "ended",
    "n_turns",
    "context",
    "n_contexts",
    "n_tokens",
    "n_tokens_by",  # estimate | tokenizer
    "enable_thinking",
    "cost_usd",
    "task_path",
    "task_checksum",
    "trial_dir",
    "instruction",
    "messages",
    "instruction_sha1",  # added by curate: the key its decontamination and dedup verdicts share
)
# Written only when present.
OPTIONAL_RECORD_FIELDS: tuple[str, ...] = ("tamper_evidence",)
