"""Terminus 2's one history: every message of a run, in order, with what its ATIF step says.

Each entry is one message: the first prompt, a model answer of the main loop, an observation
(the next user message: terminal output, parse-error or output-length feedback, completion
check), a summarization's questions exchange or handoff, or a summarization marker (role
"system", an ATIF step only). Everything the agent writes or sends is derived from it:

* the context sent to the model (`chat`, answers without reasoning) and the SFT row
  (`messages`: what the model saw and said, answers with reasoning as <think>): the entries
  whose `context` is the current one; context 0 is the run's start, each summarization opens the
  next, and every context after the first begins again with the first prompt;
* the ATIF trajectory (`steps`): one step per entry with `step` set (the first prompt, each
  answer of the main loop, each summarization), in order, across all contexts. An answer's
  observation is the user entry right after it, whether or not it was sent: after a proactive
  summarization the handoff replaces it, and the final screen after the confirmed completion is
  never sent.

An entry's `context` is None while it is in no context: an observation not sent yet (or never
sent), a prompt the endpoint refused as too long, the exchanges unwound before a passive
summarization (still ATIF steps), and the summarization markers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ttgen.llm import LLMResponse, TokenUsage, with_reasoning

SUMMARIZATION_MESSAGE = "Performed context summarization and handoff to continue task."
HANDOFF_CALLS = ("summary", "questions", "answers")  # summarization-N-{name}.json


@dataclass(eq=False)
class Entry:
    """One message of the run, or a summarization marker. The fields from `usage` on are a model
    answer's facts for its ATIF step (`parse_error` is the history's own: Terminus 2's ATIF
    mapping has no field for it, the observation says it)."""

    role: str  # "user" | "assistant" | "system" (a summarization marker: an ATIF step only)
    content: str  # an answer without its reasoning (the ATIF message)
    reasoning: str | None = None
    context: int | None = None  # the context that holds it; None: in none (see above)
    step: bool = False  # an ATIF step of its own
    timestamp: str = ""  # of the ATIF step
    # A model answer of the main loop: its metrics and what became of it.
    usage: TokenUsage | None = None
    cost_usd: float | None = None
    latency_sec: float = 0.0
    token_details: dict[str, list[Any]] | None = None  # with collect_rollout_details
    cut: bool = False  # cut at the output limit: nothing executed, asked again
    parse_error: bool = False  # nothing executed, the parser's errors sent back
    tool_calls: list[dict[str, Any]] | None = None  # what it executed
    command_wait_sec: float | None = None  # None until its commands have all run
    commands_ended_early: int = 0
    # A summarization marker: ("proactive" | "passive", its number).
    summarization: tuple[str, int] | None = None

    @classmethod
    def answer(cls, response: LLMResponse, *, timestamp: str, context: int, details: bool) -> Entry:
        """A model answer of the main loop, sent in `context` (an ATIF agent step); `details`:
        keep its token ids and logprobs."""
        return cls(
            "assistant",
            response.content,
            reasoning=response.reasoning,
            context=context,
            step=True,
            timestamp=timestamp,
            usage=response.usage,
            cost_usd=response.cost_usd,
            latency_sec=response.latency_sec,
            token_details=(response.token_details() or {}) if details else None,
        )

    def message(self, *, reasoning: bool) -> dict[str, str]:
        if reasoning and self.role == "assistant":
            return {"role": self.role, "content": with_reasoning(self.reasoning, self.content)}
        return {"role": self.role, "content": self.content}


class History:
    """The entries of one run and the number of its current context."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.current = 0  # the current context: the number of summarizations so far

    def add(self, entry: Entry) -> Entry:
        self.entries.append(entry)
        return entry

    @property
    def last(self) -> Entry:
        return self.entries[-1]

    def context(self, n: int | None = None) -> list[Entry]:
        """The entries of context `n` (default: the current one), in order."""
        n = self.current if n is None else n
        held = [e for e in self.entries if e.context == n]
        return held if n == 0 else [self.entries[0], *held]

    def messages(self, n: int | None = None) -> list[dict[str, str]]:
        """What the model saw and said in context `n`: answers with their reasoning."""
        return [e.message(reasoning=True) for e in self.context(n)]

    def chat(self) -> list[dict[str, str]]:
        """The current context as it is sent: no reasoning in past answers."""
        return [e.message(reasoning=False) for e in self.context()]

    def steps(self, model_name: str) -> list[dict[str, Any]]:
        """The ATIF steps (Terminus 2's mapping)."""
        steps: list[dict[str, Any]] = []
        entries = self.entries
        for i, e in enumerate(entries):
            if not e.step:
                continue
            step: dict[str, Any] = {"step_id": len(steps) + 1, "timestamp": e.timestamp}
            if e.role == "user":
                step.update(source="user", message=e.content)
            elif e.role == "system":
                assert e.summarization is not None
                kind, n = e.summarization
                refs = [{"trajectory_path": f"summarization-{n}-{name}.json"}
                        for name in HANDOFF_CALLS]  # fmt: skip
                step.update(source="system", message=e.content, observation={"results": [
                    {"content": f"{kind} summarization {n}", "subagent_trajectory_ref": refs}
                ]})  # fmt: skip
            else:
                step.update(source="agent", model_name=model_name, message=e.content,
                            metrics=_metrics(e))  # fmt: skip
                if e.reasoning:
                    step["reasoning_content"] = e.reasoning
                if e.tool_calls is not None:
                    step["tool_calls"] = e.tool_calls
                nxt = entries[i + 1] if i + 1 < len(entries) else None
                if nxt is not None and nxt.role == "user":
                    step["observation"] = {"results": [{"content": nxt.content}]}
            steps.append(step)
        return steps


def _metrics(e: Entry) -> dict[str, Any]:
    usage = e.usage or TokenUsage()
    extra: dict[str, Any] = {"latency_sec": round(e.latency_sec, 4)}
    if e.cut:
        extra["finish_reason"] = "length"
    if e.command_wait_sec is not None:
        extra["command_wait_sec"] = round(e.command_wait_sec, 3)
        # how many of those waits ended because the shell was back at its prompt
        extra["commands_ended_early"] = e.commands_ended_early
    metrics: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_tokens": usage.cached_tokens,
        "cost_usd": e.cost_usd,
        "extra": extra,
    }
    metrics.update(e.token_details or {})
    return metrics
