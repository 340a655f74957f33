"""The messages of a conversation as the chat templates and masks need them
(`check_messages`), and what the reasoning modes do to them (``reasoning=drop``,
``per-turn``, ``keep``; see `ttgen.export.chat.ChatTokenizer.encode_chat`)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ttgen.errors import TtgenError


class ConversationError(TtgenError, ValueError):
    """A message list is malformed (not a list of {role, content} with string contents)."""


def check_messages(messages: Any) -> None:
    """Raise `ConversationError` unless ``messages`` is a non-empty list of {role, content}
    dicts with string roles and contents (what the templates and the masks rely on)."""
    if not isinstance(messages, list) or not messages:
        raise ConversationError("no messages (expected a non-empty list)")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ConversationError(f"message {i} is a {type(m).__name__}, not an object")
        if not isinstance(m.get("role"), str):
            raise ConversationError(f"message {i} has no role")
        if not isinstance(m.get("content"), str):
            raise ConversationError(
                f"message {i} ({m['role']}): content is {type(m.get('content')).__name__}, "
                f"not a string"
            )


REASONING_MODES = ("template", "keep", "drop", "per-turn")
# A leading <think>...</think> block and the blank space after it.
_THINK = re.compile(r"^\s*<think>.*?</think>\s*", re.S)


def drop_reasoning(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The messages with the leading ``<think>...</think>`` block (and the blank space after it)
    removed from every assistant message (``reasoning=drop``)."""
    return [
        {**m, "content": _THINK.sub("", m["content"], count=1)} if m["role"] == "assistant"
        else dict(m)
        for m in messages
    ]  # fmt: skip


# Stand-ins of the same length for the think tags: a template that strips reasoning from earlier
# turns (Qwen3 looks for '</think>') leaves the text alone, and the offsets stay exact.
OPEN_HIDDEN, CLOSE_HIDDEN = "<\x1ehink>", "</\x1ehink>"


def per_turn_samples(messages: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """One conversation per assistant turn: the messages up to and including it (its context as
    the model saw it when it wrote that turn; a template then renders it as at inference)."""
    return [list(messages[: i + 1]) for i, m in enumerate(messages) if m["role"] == "assistant"]


def hide_early_reasoning(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    """The messages with the think tags of assistant turns before the last user message hidden
    (None when there is nothing to hide)."""
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not users:
        return None
    last_user = users[-1]
    out: list[dict[str, Any]] = []
    changed = False
    for i, m in enumerate(messages):
        content = m["content"]
        if "\x1e" in content:
            raise ConversationError(
                f"message {i} holds the character \\x1e, which reasoning=keep uses as a marker"
            )
        if i < last_user and m["role"] == "assistant" and "</think>" in content:
            content = content.replace("<think>", OPEN_HIDDEN).replace("</think>", CLOSE_HIDDEN)
            changed = True
        out.append({**m, "content": content})
    return out if changed else None
