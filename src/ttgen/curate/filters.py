"""Trajectory filters of curation (paper §4.4 and the §5.4 ablations), each one on or off.

Defaults are the paper's adopted setting: identity leaks and CJK characters are removed, no
completion or success filter, no turn or token cap (long trajectories are truncated at SFT time,
not dropped).

* ``identity``: an assistant turn in which the model names itself (or its maker) as another
  model, e.g. "I am DeepSeek", "I'm Claude, made by Anthropic", "as an AI developed by OpenAI".
  The patterns are case-insensitive regular expressions on assistant turns only (user turns hold
  terminal output and task text, which may name any model); ``--identity-pattern`` adds more.
* ``cjk``: an assistant turn containing CJK characters (Han ideographs, kana, hangul, CJK and
  full-width punctuation): the teacher switching language. With ``cjk_allow_echo`` characters
  that also occur in the conversation's user turns (a task about Chinese text) are allowed.
* ``complete_only``: the teacher confirmed ``task_complete`` (twice, as Terminus 2 asks).
* ``success_only``: the verifier's reward is 1. Trajectories of tasks without tests (adapter
  tasks: nothing to pass) are kept, as in the paper, where this filter applies where tests exist.
* ``max_turns`` / ``max_tokens``: caps on assistant turns and on the record's token count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# Models and makers a teacher may claim to be (or be made by).
_MODELS = (
    r"deep\s?seek|chat\s?gpt|gpt-?[345](?:\.\d+)?(?:-?[a-z]+)?|o[134](?:-mini)?|claude|qwen\d*(?:\.\d+)?"
    r"|tongyi|gemini|bard|llama|kimi|glm-?\d*|chatglm|mistral|mixtral|grok|doubao|ernie|wenxin"
    r"|minimax|hunyuan|baichuan|internlm|phi-?\d"
)
_MAKERS = (
    r"deep\s?seek(?:\s+ai)?|openai|anthropic|alibaba(?:\s+cloud)?|qwen\s+team|google(?:\s+deepmind)?"
    r"|meta(?:\s+ai)?|moonshot(?:\s+ai)?|zhipu(?:\s+ai)?|mistral\s+ai|xai|bytedance|baidu|tencent"
    r"|minimax|microsoft"
)
DEFAULT_IDENTITY_PATTERNS: tuple[str, ...] = (
    # "I am DeepSeek", "I'm an AI assistant called Claude", "my name is Qwen"
    rf"\b(?:i\s+am|i'm|i\u2019m|my\s+name\s+is)\s+(?:an?\s+|the\s+)?(?:ai\s+|large\s+)?"
    rf"(?:language\s+model|assistant|model|chatbot)?\s*(?:called\s+|named\s+)?(?:{_MODELS})\b",
    # "I was developed by OpenAI", "I am a model trained by DeepSeek"
    rf"\b(?:i\s+(?:was|am)|i'm|i\u2019m)\s+(?:\w+\s+){{0,5}}?(?:developed|created|made|built|trained)"
    rf"\s+by\s+(?:{_MAKERS})\b",
    # "As DeepSeek, I ...", "as an AI developed by Anthropic"
    rf"\bas\s+(?:an?\s+)?(?:ai|assistant|language\s+model)\s+(?:\w+\s+){{0,3}}?"
    rf"(?:developed|created|made|built|trained)\s+by\s+(?:{_MAKERS})\b",
    rf"^\s*as\s+(?:{_MODELS})\s*,",
)

# Every default pattern ends in a model or maker name: a message containing none of these
# (lowercased) cannot match one, and is cleared without running the regular expressions.
_NAME_KEYWORDS = (
    "deep", "gpt", "claude", "qwen", "tongyi", "gemini", "bard", "llama", "kimi", "glm",
    "mistral", "mixtral", "grok", "doubao", "ernie", "wenxin", "minimax", "hunyuan", "baichuan",
    "internlm", "phi", "o1", "o3", "o4", "openai", "anthropic", "alibaba", "google", "meta",
    "moonshot", "zhipu", "xai", "bytedance", "baidu", "tencent", "microsoft",
)  # fmt: skip

# Han ideographs (+ extensions and compatibility), kana, hangul, CJK symbols and punctuation,
# full-width forms.
CJK_RE = re.compile(
    "[\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
    "\uf900-\ufaff\uff01-\uff60\U00020000-\U0002fa1f]"
)


@dataclass
class FilterOptions:
    identity: bool = True
    identity_patterns: list[str] = field(default_factory=lambda: list(DEFAULT_IDENTITY_PATTERNS))
    cjk: bool = True
    cjk_allow_echo: bool = False
    complete_only: bool = False
    success_only: bool = False
    max_turns: int | None = None
    max_tokens: int | None = None
    keep_tampered: bool = False  # trajectories whose trial was flagged `tampered` (dropped)

    def describe(self) -> dict[str, Any]:
        return {
            "keep_tampered": self.keep_tampered,
            "identity": self.identity,
            "identity_patterns": len(self.identity_patterns) if self.identity else 0,
            "cjk": self.cjk,
            "cjk_allow_echo": self.cjk_allow_echo,
            "complete_only": self.complete_only,
            "success_only": self.success_only,
            "max_turns": self.max_turns,
            "max_tokens": self.max_tokens,
        }


class Filters:
    """Applies `FilterOptions` to records; `check` gives the first failing filter and a detail."""

    def __init__(self, options: FilterOptions) -> None:
        self.options = options
        self._identity: re.Pattern[str] | None = None  # the defaults (keyword prefilter)
        self._identity_extra: re.Pattern[str] | None = None  # the user's own, always run
        if options.identity and options.identity_patterns:
            bad = []
            for p in options.identity_patterns:
                try:
                    re.compile(p)
                except re.error as exc:
                    bad.append(f"{p!r}: {exc}")
            if bad:
                raise ValueError("bad identity pattern: " + "; ".join(bad))
            defaults = [p for p in options.identity_patterns if p in DEFAULT_IDENTITY_PATTERNS]
            extra = [p for p in options.identity_patterns if p not in DEFAULT_IDENTITY_PATTERNS]
            if defaults:
                self._identity = re.compile("|".join(f"(?:{p})" for p in defaults), re.I | re.M)
            if extra:
                self._identity_extra = re.compile("|".join(f"(?:{p})" for p in extra), re.I | re.M)

    def check(self, record: dict[str, Any]) -> tuple[str, str] | None:
        o = self.options
        if not o.keep_tampered and record.get("outcome") == "tampered":
            ev = record.get("tamper_evidence") or [{}]
            return "tampered", f"{ev[0].get('path', '?')}: {ev[0].get('why', '')}"
        messages = record.get("messages") or []
        if self._identity is not None or self._identity_extra is not None:
            # one keyword pass over all assistant text clears most records at once
            joined = "\n".join(m["content"] for m in messages if m["role"] == "assistant").lower()
            named = self._identity is not None and any(k in joined for k in _NAME_KEYWORDS)
            for i, m in enumerate(messages):
                if m["role"] == "assistant" and (hit := self._identity_hit(m["content"], named)):
                    return (
                        "identity",
                        f"message {i}: {_excerpt(m['content'], hit.start(), hit.end())}",
                    )
        if o.cjk:
            allowed: set[str] | None = None
            for i, m in enumerate(messages):
                if m["role"] != "assistant":
                    continue
                for hit in CJK_RE.finditer(m["content"]):
                    if o.cjk_allow_echo:
                        if allowed is None:
                            allowed = set(
                                CJK_RE.findall(
                                    "".join(
                                        x["content"] for x in messages if x["role"] != "assistant"
                                    )
                                )
                            )
                        if hit.group() in allowed:
                            continue
                    return "cjk", f"message {i}: {_excerpt(m['content'], hit.start(), hit.end())}"
        if o.complete_only and not record.get("completed"):
            return "complete_only", f"not completed (ended: {record.get('ended')})"
        if o.success_only and record.get("outcome") != "unverified":
            reward = record.get("reward")
            if reward is None or reward < 1:
                return "success_only", f"reward {reward} ({record.get('outcome')})"
        if o.max_turns is not None and record.get("n_turns", 0) > o.max_turns:
            return "max_turns", f"{record.get('n_turns')} turns > {o.max_turns}"
        if o.max_tokens is not None and (record.get("n_tokens") or 0) > o.max_tokens:
            return "max_tokens", f"{record.get('n_tokens')} tokens > {o.max_tokens}"
        return None

    def _identity_hit(self, text: str, named: bool) -> re.Match[str] | None:
        if named and self._identity is not None and (hit := self._identity.search(text)):
            return hit
        if self._identity_extra is not None:
            return self._identity_extra.search(text)
        return None


def _excerpt(text: str, start: int, end: int, width: int = 40) -> str:
    a, b = max(0, start - width), min(len(text), end + width)
    snippet = text[a:b].replace("\n", " ")
    return ("…" if a else "") + snippet + ("…" if b < len(text) else "")
