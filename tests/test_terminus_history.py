"""Terminus 2's one history (agents/terminus2/history.py) without a container: the chat sent, the
messages.json of each context and the ATIF steps, all derived from the same entries."""

from __future__ import annotations

from ttgen.agents.terminus2.history import SUMMARIZATION_MESSAGE, Entry, History
from ttgen.llm import LLMResponse, TokenUsage


def answer(h: History, content: str, reasoning: str | None = None, **facts) -> Entry:
    r = LLMResponse(content=content, reasoning=reasoning, finish_reason=None,
                    usage=TokenUsage(100, 10, 5), cost_usd=0.5, latency_sec=0.123456,
                    n_retries=0, model="m", raw={})  # fmt: skip
    e = h.add(Entry.answer(r, timestamp=f"t{len(h.entries)}", context=h.current, details=False))
    for k, v in facts.items():
        setattr(e, k, v)
    return e


def send(h: History, text: str) -> None:
    h.add(Entry("user", text, context=h.current))


def test_contexts_chat_messages_and_atif_come_from_one_history():
    h = History()
    h.add(Entry("user", "TASK", step=True, timestamp="t0")).context = 0
    answer(h, "A1", "think 1", tool_calls=[{"tool_call_id": "call_1_1"}], command_wait_sec=0.5)
    send(h, "OUT 1")
    answer(h, "A2", cut=True)
    h.add(Entry("user", "OUT 2"))  # the observation, replaced by the handoff: never sent
    # a proactive summarization: the next context opens with the first prompt and the questions
    h.current = 1
    h.add(Entry("user", "QUESTIONS PROMPT", context=1))
    h.add(Entry("assistant", "QUESTIONS", "q-think", context=1))
    h.add(Entry("system", SUMMARIZATION_MESSAGE, step=True, timestamp="t9",
                summarization=("proactive", 1)))  # fmt: skip
    send(h, "HANDOFF")
    answer(h, "A3", tool_calls=[])
    h.add(Entry("user", "FINAL SCREEN"))  # the last observation, never sent

    assert h.chat() == [
        {"role": "user", "content": "TASK"},
        {"role": "user", "content": "QUESTIONS PROMPT"},
        {"role": "assistant", "content": "QUESTIONS"},
        {"role": "user", "content": "HANDOFF"},
        {"role": "assistant", "content": "A3"},
    ]
    assert h.messages()[2]["content"] == "<think>\nq-think\n</think>\n\nQUESTIONS"
    assert [m["content"] for m in h.messages(0)] == [
        "TASK", "<think>\nthink 1\n</think>\n\nA1", "OUT 1", "A2",
    ]  # fmt: skip

    steps = h.steps("m")
    assert [(s["step_id"], s["source"]) for s in steps] == [
        (1, "user"), (2, "agent"), (3, "agent"), (4, "system"), (5, "agent"),
    ]  # fmt: skip
    first, a1, a2, marker, a3 = steps
    assert first == {"step_id": 1, "timestamp": "t0", "source": "user", "message": "TASK"}
    assert list(a1) == ["step_id", "timestamp", "source", "model_name", "message", "metrics",
                        "reasoning_content", "tool_calls", "observation"]  # fmt: skip
    assert a1["metrics"] == {
        "prompt_tokens": 100, "completion_tokens": 10, "cached_tokens": 5, "cost_usd": 0.5,
        "extra": {"latency_sec": 0.1235, "command_wait_sec": 0.5, "commands_ended_early": 0},
    }  # fmt: skip
    assert a1["observation"] == {"results": [{"content": "OUT 1"}]}
    # cut at the output limit: nothing executed; its observation was never sent (the handoff was)
    assert a2["metrics"]["extra"] == {"latency_sec": 0.1235, "finish_reason": "length"}
    assert "tool_calls" not in a2 and a2["observation"] == {"results": [{"content": "OUT 2"}]}
    assert marker["observation"]["results"][0]["content"] == "proactive summarization 1"
    assert marker["observation"]["results"][0]["subagent_trajectory_ref"][2] == {
        "trajectory_path": "summarization-1-answers.json"
    }
    assert a3["tool_calls"] == [] and a3["observation"]["results"][0]["content"] == "FINAL SCREEN"


def test_a_prompt_taken_back_and_unwound_exchanges_leave_the_context_not_the_trajectory():
    h = History()
    h.add(Entry("user", "TASK", step=True, timestamp="t0")).context = 0
    answer(h, "A1")
    send(h, "OUT 1")
    answer(h, "A2")
    send(h, "TOO LONG")
    h.last.context = None  # refused as too long
    for e in h.context()[-2:]:
        e.context = None  # unwound before a passive summarization
    assert h.chat() == [{"role": "user", "content": "TASK"}, {"role": "assistant", "content": "A1"}]
    steps = h.steps("m")
    assert [s["message"] for s in steps] == ["TASK", "A1", "A2"]
    assert steps[2]["observation"]["results"][0]["content"] == "TOO LONG"
    # before anything is sent, the first prompt is a step but in no context yet
    fresh = History()
    fresh.add(Entry("user", "TASK", step=True, timestamp="t0"))
    assert fresh.messages() == [] and len(fresh.steps("m")) == 1
