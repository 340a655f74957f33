"""A tokenizer with its chat template, and exact assistant-only loss masks.

`ChatTokenizer` loads a Hugging Face tokenizer folder (or fetches one from the Hub) with the
`tokenizers` library and renders conversations with the folder's Jinja chat template the way
transformers' ``apply_chat_template`` does (same sandbox, options, filters and variables), so the
token ids are the ones a trainer using transformers would see, without transformers.

Here: `ChatTokenizer` and the assistant spans; the Jinja environment and the loading of a
tokenizer folder are in chat_template.py, spans to token masks in masks.py, the message checks
and what the reasoning modes do to messages in messages.py (names re-exported here).

Loss masks
----------
The trained tokens of a conversation are, for each assistant message, the tokens the model must
generate for that turn: the assistant text *as the template renders it* (a Qwen3-style template
keeps ``<think>...</think>`` only in the turns after the last user message; ours is whatever the
template produced) plus the template's end-of-turn marker (``<|im_end|>``, ``<|eot_id|>``), and
not the generation prompt (``<|im_start|>assistant\\n``), not the whitespace the template puts
after the marker, nothing of the other turns.

The conversation is rendered once and tokenized once; the mask comes from character ranges:

1. *Delimiters* (the fast path). Once per tokenizer, probe renders teach us the template's
   generation prompt ``G`` (``render([user], add_generation_prompt=True)`` minus
   ``render([user])``) and its end marker ``E`` (what follows the assistant text in
   ``render([user, assistant])``, trailing whitespace dropped; the same must close a turn in
   the middle of a conversation). In the full render each assistant turn is then the text
   between an occurrence of ``G`` and the next ``E``. It is used only when it is checkably right:
   no message contains ``G`` and no assistant message contains ``E``, there are exactly as many
   such spans as assistant messages, and each span holds the end of its message's text.
2. *Incremental* (exact, slower, used when a check fails). For assistant message ``i`` the turn
   starts where ``render(messages[:i], add_generation_prompt=True)`` ends, which must be a
   prefix of the full render. (If only ``render(messages[:i])`` is, as with a generation prompt
   that only the final turn gets, e.g. Qwen3's empty think block under
   ``enable_thinking=false``, the turn starts where the full render leaves the generation
   prompt, at a token boundary of the prompt.) It ends at the last end marker before the next
   message begins: taken from ``render(messages[:i+1])`` when that is a prefix of the full
   render, else from where ``render(messages[:i+1] + [sentinel user])`` stops agreeing with the
   full render (Qwen3-style templates render a turn differently once a user message follows
   it). A template for which even this is inconsistent (one that renders earlier messages
   differently depending on what follows) is reported as a `ChatTemplateError` naming the
   message. This costs two or three renders of a prefix per assistant turn: about as much as
   the tokenization for a 30-turn conversation.

Character ranges become a token mask as masks.py says (a token belongs to the range its
first character is in).

veRL's rule (``encode_chat(rule="verl")``)
-----------------------------------------
veRL's multi-turn SFT dataset (``verl.utils.dataset.multiturn_sft_dataset``) does not render the
conversation: it renders and tokenizes each message *alone* (``[message]``, no generation
prompt), drops the first ``S`` tokens of every message after the first that is not a system
message, concatenates, and trains every token of an assistant message's tokens but its first
``P``. ``S`` and ``P`` are token counts it learns once from probe renders of an empty user
message: ``S`` = what ``render([u])`` has beyond one turn (the template's default system prompt,
a BOS token), ``P`` = what ``render([u], add_generation_prompt=True)`` adds (the generation
prompt). So the trained part of an assistant turn is its lone rendering minus the prompt: the
text, the end marker *and* whatever the template writes after the marker (``"\n"`` after
``<|im_end|>``), which our rule leaves out. Where rendering messages alone differs from rendering
the conversation (a Qwen3-style template keeps a lone assistant message's reasoning but drops it
from earlier turns of a conversation), the ids differ from the conversation's, and veRL refuses
the row unless ``data.ignore_input_ids_mismatch=True``; `TokenizedChat.rendering_differs` says
so per row. `_encode_verl` reproduces this with the same counts and slices, without transformers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from jinja2.exceptions import TemplateError
from tokenizers import Tokenizer

from ttgen.errors import TtgenError
from ttgen.export.chat_template import (
    SPECIAL_TOKEN_NAMES,
    TOKENIZER_FILES,
    TemplateRaised,
    TokenizerLoadError,
    compile_template,
    find_template,
    read_json_object,
    resolve_tokenizer_folder,
    special_tokens_of,
    template_override,
)
from ttgen.export.masks import common_prefix_end, mask_from_encoding, mask_from_offsets
from ttgen.export.messages import (
    CLOSE_HIDDEN,
    OPEN_HIDDEN,
    REASONING_MODES,
    ConversationError,
    check_messages,
    drop_reasoning,
    hide_early_reasoning,
    per_turn_samples,
)

__all__ = [  # the names this module has always offered
    "REASONING_MODES",
    "SPECIAL_TOKEN_NAMES",
    "TOKENIZER_FILES",
    "TRAINING_RULES",
    "ChatTemplateError",
    "ChatTokenizer",
    "ConversationError",
    "TokenizedChat",
    "TokenizerLoadError",
    "check_messages",
    "compile_template",
    "drop_reasoning",
    "mask_from_encoding",
    "mask_from_offsets",
    "per_turn_samples",
    "resolve_tokenizer_folder",
]

_PROBE_USER = "ttgen probe: a user message"
_PROBE_ASSISTANT = "ttgen probe: an assistant reply"
# Follows an assistant turn in the incremental method; chosen to agree with no real text.
_SENTINEL = "\x00ttgen\x01sentinel\x02"


class ChatTemplateError(TtgenError, ValueError):
    """The chat template failed on a conversation, or its rendering does not let us tell which
    tokens the assistant generates."""


@dataclass(slots=True, eq=False)
class TokenizedChat:
    """One conversation as token ids and a loss mask (1 = trained), after right truncation."""

    input_ids: np.ndarray  # int32
    loss_mask: np.ndarray  # int8
    n_tokens: int  # after truncation
    n_tokens_full: int  # before truncation
    n_trained_tokens: int  # loss_mask.sum(), after truncation
    n_assistant_turns: int  # assistant messages in the conversation
    truncated: bool
    # rule="verl": the messages rendered one by one give other ids than the conversation rendered
    # whole (veRL then needs data.ignore_input_ids_mismatch=True); False under our rule
    rendering_differs: bool = False


# Which tokens are trained: ours (the conversation rendered once, assistant text + end marker) or
# veRL's (each message rendered alone; see the module docstring).
TRAINING_RULES = ("ttgen", "verl")
_PROBE_REASONING = "ttgen probe: some reasoning"


@dataclass(frozen=True, slots=True)
class _Delimiters:
    gen_prompt: str  # G
    end_marker: str  # E


def _tokenized(
    ids: np.ndarray,
    mask: np.ndarray,
    messages: Sequence[Mapping[str, Any]],
    max_len: int | None,
    *,
    rendering_differs: bool = False,
) -> TokenizedChat:
    """The `TokenizedChat` of a whole sequence, keeping its first ``max_len`` tokens."""
    n_full = len(ids)
    truncated = max_len is not None and n_full > max_len
    if truncated:
        ids = ids[:max_len].copy()
        mask = mask[:max_len].copy()
    return TokenizedChat(
        input_ids=ids,
        loss_mask=mask,
        n_tokens=len(ids),
        n_tokens_full=n_full,
        n_trained_tokens=int(mask.sum()),
        n_assistant_turns=sum(1 for m in messages if m["role"] == "assistant"),
        truncated=truncated,
        rendering_differs=rendering_differs,
    )


class ChatTokenizer:
    """A `tokenizers.Tokenizer` with a chat template; see the module docstring for the masks."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        chat_template: str,
        *,
        special_tokens: Mapping[str, str] | None = None,
        name: str = "tokenizer",
        folder: Path | None = None,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.special_tokens = dict(special_tokens or {})
        self.name = name
        self.folder = folder
        self.template_kwargs = dict(template_kwargs or {})
        try:
            self._template = compile_template(chat_template)
        except TemplateError as exc:
            raise TokenizerLoadError(f"{name}: the chat template does not compile: {exc}") from exc
        self._delimiters: _Delimiters | None = None
        self._probed = False
        self._verl_counts: tuple[int, int] | None = None

    @classmethod
    def load(
        cls,
        name_or_path: str | Path,
        *,
        chat_template: str | Path | None = None,
        revision: str | None = None,
        template_kwargs: Mapping[str, Any] | None = None,
    ) -> ChatTokenizer:
        """Load a tokenizer folder (tokenizer.json + a chat template in tokenizer_config.json,
        chat_template.jinja or chat_template.json) or a Hub id ``owner/name`` (tokenizer files
        only; needs huggingface_hub). ``chat_template`` (a file or template text) overrides the
        folder's; ``template_kwargs`` (e.g. enable_thinking) are passed to every render.
        ``revision`` applies to Hub ids only."""
        folder = resolve_tokenizer_folder(name_or_path, revision)
        tok_file = folder / "tokenizer.json"
        if not tok_file.is_file():
            raise TokenizerLoadError(
                f"{folder}: no tokenizer.json (a Hugging Face 'fast' tokenizer file is needed)"
            )
        try:
            tokenizer = Tokenizer.from_file(str(tok_file))
        except Exception as exc:
            raise TokenizerLoadError(
                f"{tok_file}: not a tokenizer the tokenizers library reads: {exc}"
            ) from exc
        config = read_json_object(folder / "tokenizer_config.json")
        template = (
            template_override(chat_template)
            if chat_template is not None
            else find_template(folder, config)
        )
        return cls(
            tokenizer,
            template,
            special_tokens=special_tokens_of(folder, config),
            name=str(name_or_path),
            folder=folder,
            template_kwargs=template_kwargs,
        )

    # -- rendering ---------------------------------------------------------------------------

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = False,
        **kwargs: Any,
    ) -> str:
        """The template's text for ``messages``, with transformers' variables: messages,
        add_generation_prompt, the set special tokens, tools and documents (None), the template
        kwargs given at load time and ``kwargs``."""
        context = {
            **self.special_tokens,
            "tools": None,
            "documents": None,
            **self.template_kwargs,
            **kwargs,
        }
        try:
            return self._template.render(
                messages=messages, add_generation_prompt=add_generation_prompt, **context
            )
        except TemplateRaised as exc:
            raise ChatTemplateError(f"the chat template of {self.name} refused: {exc}") from None
        except Exception as exc:
            raise ChatTemplateError(
                f"the chat template of {self.name} failed: {type(exc).__name__}: {exc}"
            ) from exc

    def _learned_delimiters(self) -> _Delimiters | None:
        """G and E from probe renders, once; None when the template does not show them plainly
        (every conversation then takes the incremental method)."""
        if self._probed:
            return self._delimiters
        self._probed = True
        user = {"role": "user", "content": _PROBE_USER}
        reply = {"role": "assistant", "content": _PROBE_ASSISTANT}
        try:
            bare = self.render([user])
            prompted = self.render([user], add_generation_prompt=True)
            answered = self.render([user, reply])
            followed = self.render([user, reply, {"role": "user", "content": _PROBE_USER + "2"}])
        except ChatTemplateError:
            return None
        if not prompted.startswith(bare) or len(prompted) == len(bare):
            return None
        gen_prompt = prompted[len(bare) :]
        if not answered.startswith(prompted):
            return None
        k = answered.find(_PROBE_ASSISTANT, len(prompted))
        if k < 0:
            return None
        end_marker = answered[k + len(_PROBE_ASSISTANT) :].rstrip()
        k2 = followed.find(_PROBE_ASSISTANT)
        if k2 < 0 or not end_marker:
            return None
        if not followed.startswith(end_marker, k2 + len(_PROBE_ASSISTANT)):
            return None
        self._delimiters = _Delimiters(gen_prompt, end_marker)
        return self._delimiters

    def _delimiter_spans(
        self, messages: Sequence[Mapping[str, Any]], text: str
    ) -> list[tuple[int, int]] | None:
        """Assistant spans from G ... E, or None when a check says they may be wrong."""
        delims = self._learned_delimiters()
        if delims is None:
            return None
        g, e = delims.gen_prompt, delims.end_marker
        replies = []
        for m in messages:
            content = m["content"]
            if g in content:
                return None
            if m["role"] == "assistant":
                if e in content:
                    return None
                replies.append(content)
        spans = []
        pos = 0
        for content in replies:
            start = text.find(g, pos)
            if start < 0:
                return None
            start += len(g)
            end = text.find(e, start)
            if end < 0:
                return None
            end += len(e)
            # The span must hold the end of this reply's text (a template that put G somewhere
            # else, or dropped the text, fails this).
            tail = content.rstrip()[-16:]
            if tail and text.find(tail, start, end) < 0:
                return None
            spans.append((start, end))
            pos = end
        if text.find(g, pos) >= 0:
            return None
        return spans

    def _incremental_spans(
        self, messages: Sequence[Mapping[str, Any]], text: str
    ) -> list[tuple[int, int]]:
        """Assistant spans from prefix renders (see the module docstring); exact or an error."""
        delims = self._learned_delimiters()
        end_marker = delims.end_marker if delims else None
        spans: list[tuple[int, int]] = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before = self.render(messages[:i], add_generation_prompt=True)
            if text.startswith(before):
                start = len(before)
            else:
                # A generation prompt that only the final turn gets (Qwen3's empty think block
                # with enable_thinking=false): the turn starts where the full render leaves the
                # generation prompt, provided everything before the prompt agrees.
                bare = self.render(messages[:i])
                if not text.startswith(bare):
                    raise ChatTemplateError(
                        f"message {i} (assistant): the chat template of {self.name} renders the "
                        f"messages before it as text that the full conversation does not start "
                        f"with (it renders earlier messages differently depending on what "
                        f"follows); cannot tell which tokens the assistant generates"
                    )
                # Where the full render leaves the generation prompt, snapped back to a token
                # boundary of the prompt (a reply starting with "<" shares a character with a
                # think block, not a token).
                prompt = before[len(bare) :]
                agree = common_prefix_end(before, text, len(bare)) - len(bare)
                ends = self.tokenizer.encode(prompt, add_special_tokens=False).offsets
                agree = max([e for _, e in ends if e <= agree], default=0)
                if agree == 0:
                    raise ChatTemplateError(
                        f"message {i} (assistant): the chat template of {self.name} does not "
                        f"render the turn after its generation prompt {prompt!r}"
                    )
                start = len(bare) + agree
            through = self.render(messages[: i + 1])
            if len(through) > start and text.startswith(through):
                region_end = len(through)
            elif i + 1 < len(messages) and end_marker:
                # The turn renders differently once something follows it: compare with the same
                # turn followed by a sentinel user message.
                probe = self.render([*messages[: i + 1], {"role": "user", "content": _SENTINEL}])
                region_end = common_prefix_end(probe, text, start)
            else:
                raise ChatTemplateError(
                    f"message {i} (assistant): the chat template of {self.name} renders the "
                    f"conversation up to it as text that is not a prefix of the full "
                    f"conversation; cannot tell where the turn ends"
                )
            if end_marker:
                k = text.rfind(end_marker, start, region_end)
                end = k + len(end_marker) if k >= 0 else -1
            else:
                end = start + len(text[start:region_end].rstrip())
            if end <= start or (spans and start < spans[-1][1]):
                raise ChatTemplateError(
                    f"message {i} (assistant): no end of turn found in the rendering of "
                    f"{self.name}'s chat template"
                )
            spans.append((start, end))
        return spans

    def assistant_spans(
        self,
        messages: Sequence[Mapping[str, Any]],
        text: str | None = None,
        *,
        method: str = "auto",
    ) -> list[tuple[int, int]]:
        """The ``[start, end)`` character spans of the assistant turns (text + end marker) in
        ``text`` (the full render of ``messages``). ``method``: auto (delimiters, falling back
        to incremental), delimiters (None-free: raises when it cannot be used), incremental."""
        if text is None:
            text = self.render(messages)
        if method in ("auto", "delimiters"):
            spans = self._delimiter_spans(messages, text)
            if spans is not None:
                return spans
            if method == "delimiters":
                raise ChatTemplateError(f"{self.name}: the delimiter method does not apply here")
        elif method != "incremental":
            raise ValueError(f"unknown method {method!r}")
        return self._incremental_spans(messages, text)

    # -- encoding ----------------------------------------------------------------------------

    def encode_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        max_len: int | None = None,
        reasoning: str = "template",
        rule: str = "ttgen",
    ) -> TokenizedChat:
        """Render ``messages`` once, tokenize once (no special tokens added: a chat template
        writes its own, as with transformers) and mask all but the assistant turns; keep the
        first ``max_len`` tokens. ``rule="verl"``: veRL's ids and mask instead (`_encode_verl`).

        ``reasoning`` says what happens to the ``<think>…</think>`` part of assistant turns:
        ``template`` leaves it to the chat template (Qwen3's drops it from every assistant turn
        before the last user message, as it does at inference); ``keep`` keeps it, verbatim and
        trained, in every turn (the template never sees it in the earlier turns); ``drop``
        removes it from every turn; ``per-turn`` expects the conversation cut after one
        assistant turn (`per_turn_samples`) and trains that last turn only, rendered as at
        inference: its own context, its own reasoning."""
        check_messages(messages)
        if reasoning not in REASONING_MODES:
            raise ValueError(f"reasoning must be one of {', '.join(REASONING_MODES)}")
        if rule == "verl":
            return self._encode_verl(messages, max_len=max_len, reasoning=reasoning)
        if rule != "ttgen":
            raise ValueError(f"rule must be one of {', '.join(TRAINING_RULES)}")
        last_only = reasoning == "per-turn"
        if reasoning == "drop":
            messages = drop_reasoning(messages)
        hidden = reasoning == "keep" and hide_early_reasoning(messages)
        if hidden:
            messages = hidden
        text = self.render(messages)
        spans = self.assistant_spans(messages, text)
        if hidden:  # same lengths: the spans hold for the restored text
            text = text.replace(OPEN_HIDDEN, "<think>").replace(CLOSE_HIDDEN, "</think>")
        if last_only:
            spans = spans[-1:]
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        mask = mask_from_encoding(enc, spans, len(text))
        ids = np.array(enc.ids, dtype=np.int32)
        return _tokenized(ids, mask, messages, max_len)

    # -- veRL's rule -------------------------------------------------------------------------

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def verl_prompt_counts(self) -> tuple[int, int]:
        """``(S, P)``: the tokens veRL drops from each message after the first (the template's
        default system prompt, a BOS token) and the generation prompt's tokens it leaves out of
        an assistant message's loss, computed as veRL's ``extract_system_prompt_and_generation``
        does (with the same slices, so the same edge cases)."""
        if self._verl_counts is None:
            empty = {"role": "user", "content": ""}
            one = self._ids(self.render([empty]))
            two = self._ids(self.render([empty, empty]))
            prompted = self._ids(self.render([empty], add_generation_prompt=True))
            system = one[: -(len(two) - len(one))]
            self._verl_counts = (len(system), len(prompted[len(one) :]))
        return self._verl_counts

    def lone_message_keeps_reasoning(self) -> bool:
        """Whether the template keeps the ``<think>`` part of an assistant message rendered
        alone, as veRL renders every message (Qwen3's drops it: a lone message comes after no
        user message; ours for tests keeps it)."""
        reply = f"<think>{_PROBE_REASONING}</think>\n\n{_PROBE_ASSISTANT}"
        return _PROBE_REASONING in self._render_alone({"role": "assistant", "content": reply}, 0)

    def verl_rendering_differs(self) -> bool:
        """Whether, on a probe conversation with reasoning in two turns, rendering the messages
        one by one (veRL) gives other ids than rendering the conversation (veRL's own check then
        fails: it needs ``data.ignore_input_ids_mismatch=True``)."""
        reply = f"<think>{_PROBE_REASONING}</think>\n\n{_PROBE_ASSISTANT}"
        probe = [{"role": "user", "content": _PROBE_USER}, {"role": "assistant", "content": reply},
                 {"role": "user", "content": _PROBE_USER + " 2"},
                 {"role": "assistant", "content": reply}]  # fmt: skip
        return self._encode_verl(probe, max_len=None, reasoning="template").rendering_differs

    def verl_prompt_is_exact(self) -> bool:
        """Whether the ``P`` tokens veRL leaves untrained at the start of an assistant message
        are the generation prompt. Not when the generation prompt differs from how the template
        opens an assistant message (Qwen3's ``enable_thinking=false`` adds an empty think block
        to the prompt only): veRL then leaves the reply's first tokens untrained instead."""
        empty = {"role": "user", "content": ""}
        one = self._ids(self.render([empty]))
        prompt = self._ids(self.render([empty], add_generation_prompt=True))[len(one) :]
        n_system, n_prompt = self.verl_prompt_counts()
        reply = f"<think>{_PROBE_REASONING}</think>\n\n{_PROBE_ASSISTANT}"
        ids = self._ids(self._render_alone({"role": "assistant", "content": reply}, 1))
        return ids[n_system : n_system + n_prompt] == prompt

    def _render_alone(self, message: Mapping[str, Any], i: int) -> str:
        try:
            return self.render([message])
        except ChatTemplateError as exc:
            raise ChatTemplateError(
                f"message {i} ({message['role']}): veRL renders each message alone, and {exc} "
                f"(veRL then renders it after a dummy user message given as a list of parts, "
                f"which ttgen does not reproduce; use --target ttgen or trl with this template)"
            ) from None

    def _encode_verl(
        self, messages: Sequence[Mapping[str, Any]], *, max_len: int | None, reasoning: str
    ) -> TokenizedChat:
        """veRL's ids and loss mask for ``messages`` (see the module docstring), truncated to
        the first ``max_len`` tokens as veRL's ``truncation=right`` does. ``reasoning``:
        ``template`` (what the template renders for a lone assistant message), ``keep`` (the
        same, refused when the template drops a lone message's reasoning), ``drop`` (think
        blocks removed from the messages first); ``per-turn`` is not expressible (veRL trains
        every assistant message) and refused."""
        if reasoning == "per-turn":
            raise ValueError(
                "reasoning=per-turn is not expressible under veRL's rule: veRL trains every "
                "assistant message of a row; use --target ttgen or trl with --reasoning per-turn, "
                "or template, keep or drop with --target verl"
            )
        if reasoning == "keep" and not self.lone_message_keeps_reasoning():
            raise ChatTemplateError(
                f"reasoning=keep cannot be trained by veRL with the chat template of {self.name}: "
                f"it drops the <think> part of an assistant message rendered alone, as veRL "
                f"renders every message; use --target ttgen or trl with --reasoning keep, or "
                f"--reasoning template or drop with --target verl"
            )
        if reasoning == "drop":
            messages = drop_reasoning(messages)
        n_system, n_prompt = self.verl_prompt_counts()
        id_parts: list[np.ndarray] = []
        mask_parts: list[np.ndarray] = []
        for i, m in enumerate(messages):
            # only role and content: what the exported messages column holds for veRL
            message = {"role": m["role"], "content": m["content"]}
            ids = np.array(self._ids(self._render_alone(message, i)), dtype=np.int32)
            if i != 0 and m["role"] != "system":
                ids = ids[n_system:]
            mask = np.zeros(len(ids), dtype=np.int8)
            if m["role"] == "assistant":
                mask[n_prompt:] = 1
            id_parts.append(ids)
            mask_parts.append(mask)
        ids = np.concatenate(id_parts)
        mask = np.concatenate(mask_parts)
        whole = self._ids(self.render(messages))
        differs = len(whole) != len(ids) or not np.array_equal(ids, np.asarray(whole))
        return _tokenized(ids, mask, messages, max_len, rendering_differs=differs)
