"""Terminus 2's context summarization: a three-call handoff when the context fills up.

Proactive (before a turn, when the free context drops below a threshold, default 8,000 tokens)
and passive (when the endpoint rejects a prompt as too long: drop the latest exchanges until at
least 4,000 tokens are free, then summarize). The handoff, as in Harbor:
  1. summary: the model, given its whole history, writes a summary for "another AI agent";
  2. questions: a fresh context (task + summary + current screen) asks at least five questions;
  3. answers: the history + the summary exchange answers them.
The main context then becomes [first prompt, questions prompt, questions] and the next user
message is the handoff with the answers. Passive summarization falls back to a short summary,
then to the task and the last 1,000 characters of the screen. The prompt texts are Harbor's,
word for word (including the odd indentation of the summary prompt): the model sees them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SUMMARY_PROMPT = """You are about to hand off your work to another AI agent.
            Please provide a comprehensive summary of what you have
            accomplished so far on this task:

Original Task: {instruction}

Based on the conversation history, please provide a detailed summary covering:
1. **Major Actions Completed** - List each significant command you executed
            and what you learned from it.
2. **Important Information Learned** - A summary of crucial findings, file
            locations, configurations, error messages, or system state discovered.
3. **Challenging Problems Addressed** - Any significant issues you
            encountered and how you resolved them.
4. **Current Status** - Exactly where you are in the task completion process.


Be comprehensive and detailed. The next agent needs to understand everything
            that has happened so far in order to continue."""

QUESTIONS_PROMPT = """You are picking up work from a previous AI agent on this task:

**Original Task:** {instruction}

**Summary from Previous Agent:**
{summary}

**Current Terminal Screen:**
{screen}

Please begin by asking several questions (at least five, more if necessary)
about the current state of the solution that are not answered in the summary
from the prior agent. After you ask these questions you will be on your own,
so ask everything you need to know."""

ANSWERS_PROMPT = (
    "The next agent has a few questions for you, please answer each of them one by one in "
    "detail:\n\n{questions}"
)

HANDOFF_PROMPT = (
    "Here are the answers the other agent provided.\n\n{answers}\n\n"
    "Continue working on this task from where the previous agent left off. You can no longer "
    "ask questions. Please follow the spec to interact with the terminal."
)

SHORT_SUMMARY_PROMPT = (
    "Briefly continue this task: {instruction}\n\nCurrent state: {screen}\n\n"
    "Next steps (2-3 sentences):"
)
SHORT_SUMMARY_HANDOFF = "{instruction}\n\nSummary: {summary}"
LAST_RESORT_HANDOFF = "{instruction}\n\nCurrent state: {screen}"
TECHNICAL_DIFFICULTIES = "Technical difficulties. Please continue with the task."

DEFAULT_CONTEXT_WINDOW = 1_000_000  # Harbor's fallback when the model's limit is unknown
PROACTIVE_THRESHOLD = 8000
UNWIND_TARGET_FREE = 4000


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """A tokenizer-free estimate (4 characters per token) for messages never sent yet."""
    return sum(len(m.get("content") or "") // 4 + 4 for m in messages)


@dataclass
class Handoff:
    """What one summarization produced: the new main context and the next user message."""

    chat: list[dict[str, str]]
    prompt: str
    kind: str  # "full" | "short" | "fallback"
    conversations: dict[str, list[dict[str, str]]] = field(default_factory=dict)


def unwind(chat: list[dict[str, str]], context_window: int, used_tokens: int) -> int:
    """Drop user/assistant pairs from the end (never the first prompt) until at least
    UNWIND_TARGET_FREE tokens are free; returns the estimated tokens still used."""
    used = used_tokens
    while len(chat) > 2 and context_window - used < UNWIND_TARGET_FREE:
        dropped = chat[-2:]
        del chat[-2:]
        used -= estimate_tokens(dropped)
    return max(used, estimate_tokens(chat))
