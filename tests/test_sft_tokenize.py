"""SFT tokenization: chat templates, exact assistant-only loss masks, the parallel streaming map.

The tokenizers are trained here (`ttgen.export.toy_tokenizer`); nothing is downloaded. Each mask is
checked against an expected rendering written by hand per template format, as (text, trained)
pieces: the render must equal their concatenation, every token must be trained exactly when its
first character is in a trained piece, and the trained tokens must decode to the trained pieces.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from ttgen.errors import TtgenError
from ttgen.export import sft
from ttgen.export.chat import (
    ChatTemplateError,
    ChatTokenizer,
    ConversationError,
    TokenizerLoadError,
    mask_from_encoding,
    mask_from_offsets,
)
from ttgen.export.sft import (
    SFT_SCHEMA,
    TokenizerSpec,
    check_sft_messages,
    sft_record_batch,
    sft_row,
    sft_schema,
    tokenize_records,
)
from ttgen.export.toy_tokenizer import CHATML_TEMPLATE, train_toy_tokenizer

FORMATS = ("chatml", "qwen3", "llama3")


@pytest.fixture(scope="session")
def tok_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tokenizers")
    return {f: train_toy_tokenizer(root / f, template=f) for f in FORMATS}


def conversation() -> list[dict]:
    """System, three exchanges; unicode (split into byte tokens), JSON, think blocks, a reply
    with leading space and trailing whitespace."""
    return [
        {"role": "system", "content": "You are an AI assistant in a Linux terminal."},
        {"role": "user", "content": "Task: count the files in /app. Café ☕ 数据"},
        {
            "role": "assistant",
            "content": '<think>\nI will list the files first.\n</think>\n\n{"analysis": "start", '
            '"commands": [{"keystrokes": "ls -la /app\\n", "duration": 0.1}]}',
        },
        {"role": "user", "content": "total 8\n-rw-r--r-- 1 root root 12 a.txt\nroot@box:/app# "},
        {"role": "assistant", "content": " plain reply with é and 🙂, no think  "},
        {"role": "user", "content": "ok, now say you are done"},
        {
            "role": "assistant",
            "content": '<think>Two files were listed; done.</think>\n\n{"task_complete": true}',
        },
    ]


def _split_think(content: str) -> tuple[str, str]:
    """What our Qwen3-like template does with a reply: (reasoning, visible content)."""
    if "</think>" not in content:
        return "", content
    reasoning = content.split("</think>")[0].split("<think>")[-1].strip("\n")
    return reasoning, content.split("</think>")[-1].lstrip("\n")


def expected_pieces(fmt: str, messages: list[dict], **kwargs) -> list[tuple[str, bool]]:
    """The rendering of ``messages`` by the test template ``fmt``, written out by hand."""
    out: list[tuple[str, bool]] = []
    if fmt == "llama3":
        out.append(("<|begin_of_text|>", False))
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    for i, m in enumerate(messages):
        role, content = m["role"], m["content"]
        trained = role == "assistant"
        if fmt == "llama3":
            out += [(f"<|start_header_id|>{role}<|end_header_id|>\n\n", False)]
            out += [(content.strip(), trained), ("<|eot_id|>", trained)]
            continue
        out.append((f"<|im_start|>{role}\n", False))
        if fmt == "qwen3" and trained:
            reasoning, content = _split_think(content)
            if i > last_user and (i == len(messages) - 1 or reasoning):
                head = "<think>\n" + reasoning + "\n</think>\n\n"
                if kwargs.get("enable_thinking") is False and not reasoning:
                    out.append((head, False))  # the generation prompt holds the empty block
                else:
                    content = head + content
        out += [(content, trained), ("<|im_end|>", trained), ("\n", False)]
    return [(text, trained) for text, trained in out if text]


def check_mask(tok: ChatTokenizer, messages: list[dict], pieces: list[tuple[str, bool]]) -> None:
    """The render is the pieces; the mask marks exactly the trained pieces' tokens."""
    text = tok.render(messages)
    assert text == "".join(p for p, _ in pieces)
    chat = tok.encode_chat(messages, max_len=None)
    enc = tok.tokenizer.encode(text, add_special_tokens=False)
    assert chat.input_ids.tolist() == enc.ids
    assert chat.input_ids.dtype == np.int32 and chat.loss_mask.dtype == np.int8
    char_trained = np.concatenate([np.full(len(p), t, dtype=np.int8) for p, t in pieces])
    starts = [s for s, _ in enc.offsets]
    assert chat.loss_mask.tolist() == char_trained[starts].tolist()
    # No token straddles a piece boundary in this data, so the text splits exactly.
    trained_text = "".join(p for p, t in pieces if t)
    other_text = "".join(p for p, t in pieces if not t)
    keep = chat.loss_mask == 1
    assert tok.tokenizer.decode(chat.input_ids[keep].tolist(), skip_special_tokens=False) == (
        trained_text
    )
    # From the offsets: each token's new characters (byte tokens of one character share it).
    pieces_of_tokens, covered = [], 0
    for start, end in enc.offsets:
        pieces_of_tokens.append(text[max(start, covered) : end])
        covered = max(covered, end)
    assert "".join(pieces_of_tokens) == text
    assert "".join(p for p, m in zip(pieces_of_tokens, keep, strict=True) if m) == trained_text
    assert "".join(p for p, m in zip(pieces_of_tokens, keep, strict=True) if not m) == other_text
    assert chat.n_trained_tokens == int(chat.loss_mask.sum()) > 0
    assert chat.n_tokens == chat.n_tokens_full == len(enc.ids)
    assert chat.n_assistant_turns == sum(m["role"] == "assistant" for m in messages)
    assert not chat.truncated


@pytest.mark.parametrize("fmt", FORMATS)
def test_mask_covers_exactly_the_assistant_turns(tok_dirs, fmt):
    tok = ChatTokenizer.load(tok_dirs[fmt])
    messages = conversation()
    check_mask(tok, messages, expected_pieces(fmt, messages))
    # Both methods find the same spans here.
    text = tok.render(messages)
    fast = tok.assistant_spans(messages, text, method="delimiters")
    assert fast == tok.assistant_spans(messages, text, method="incremental")


def test_qwen3_drops_earlier_think_and_masks_what_it_renders(tok_dirs):
    tok = ChatTokenizer.load(tok_dirs["qwen3"])
    messages = conversation()
    text = tok.render(messages)
    assert "I will list the files first." not in text  # an earlier turn: think dropped
    assert "<think>\nTwo files were listed; done.\n</think>\n\n" in text  # the last turn
    spans = tok.assistant_spans(messages, text)
    assert text[spans[0][0] : spans[0][1]].startswith('{"analysis": "start"')
    assert text[spans[2][0] : spans[2][1]].startswith("<think>\nTwo files")
    # A final reply without reasoning gets the template's empty think block, trained.
    short = [*messages[:5]]
    check_mask(tok, short, expected_pieces("qwen3", short))
    assert "<think>\n\n</think>\n\n plain reply" in tok.render(short)


def test_qwen3_enable_thinking_false(tok_dirs):
    """The generation prompt then holds an empty think block that earlier turns never render:
    not delimiter-separable, and the turn starts after the empty block where it is rendered."""
    tok = ChatTokenizer.load(tok_dirs["qwen3"], template_kwargs={"enable_thinking": False})
    messages = [m for m in conversation() if m["role"] != "system"][:4]
    # A visible reply that starts like the empty think block does.
    messages[1] = {"role": "assistant", "content": "<think>x</think>\n\n<response>ok</response>"}
    pieces = expected_pieces("qwen3", messages, enable_thinking=False)
    with pytest.raises(ChatTemplateError):
        tok.assistant_spans(messages, method="delimiters")
    check_mask(tok, messages, pieces)


def test_fast_mask_equals_reference_on_random_conversations(tok_dirs):
    rng = random.Random(7)
    alphabet = 'abc xyz\n\t{}[]":,é数🙂<>/|_-.0123456789 '
    for fmt in FORMATS:
        tok = ChatTokenizer.load(tok_dirs[fmt])
        for _ in range(40):
            messages = []
            for turn in range(rng.randint(1, 5)):
                for role in ("user", "assistant"):
                    body = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
                    if role == "assistant" and rng.random() < 0.5:
                        body = f"<think>{body[:10]}</think>\n\n{body[10:]}"
                    messages.append({"role": role, "content": body + str(turn)})
            text = tok.render(messages)
            chat = tok.encode_chat(messages, max_len=None)
            enc = tok.tokenizer.encode(text, add_special_tokens=False)
            spans = tok.assistant_spans(messages, text, method="incremental")
            reference = mask_from_offsets([s for s, _ in enc.offsets], spans)
            assert chat.loss_mask.tolist() == reference.tolist(), (fmt, messages)


def test_uncovered_boundary_character_takes_the_offsets_path(tok_dirs):
    """A character no token covers (a normalizer dropped it) at a span boundary: the mask comes
    from all offsets instead, the same rule."""
    tok = ChatTokenizer.load(tok_dirs["chatml"])
    messages = conversation()
    text = tok.render(messages)
    enc = tok.tokenizer.encode(text, add_special_tokens=False)
    spans = tok.assistant_spans(messages, text)

    class Holes:
        """The encoding, with the characters at span starts covered by no token."""

        offsets = enc.offsets

        def __len__(self) -> int:
            return len(enc)

        def char_to_token(self, pos: int) -> int | None:
            return None if any(pos == s for s, _ in spans) else enc.char_to_token(pos)

        def token_to_chars(self, t: int) -> tuple[int, int]:
            return enc.token_to_chars(t)

    expected = mask_from_offsets([s for s, _ in enc.offsets], spans)
    assert mask_from_encoding(enc, spans, len(text)).tolist() == expected.tolist()
    assert mask_from_encoding(Holes(), spans, len(text)).tolist() == expected.tolist()


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncation_keeps_the_first_tokens(tok_dirs, fmt):
    tok = ChatTokenizer.load(tok_dirs[fmt])
    messages = conversation()
    full = tok.encode_chat(messages, max_len=None)
    cut = full.n_tokens_full // 2
    chat = tok.encode_chat(messages, max_len=cut)
    assert chat.truncated and chat.n_tokens == cut == len(chat.input_ids) == len(chat.loss_mask)
    assert chat.n_tokens_full == full.n_tokens_full
    assert chat.input_ids.tolist() == full.input_ids[:cut].tolist()
    assert chat.loss_mask.tolist() == full.loss_mask[:cut].tolist()
    assert chat.n_trained_tokens == int(full.loss_mask[:cut].sum()) < full.n_trained_tokens
    assert chat.n_assistant_turns == 3
    same = tok.encode_chat(messages, max_len=full.n_tokens_full)
    assert not same.truncated and same.n_tokens == full.n_tokens_full


@pytest.mark.parametrize("fmt", ["chatml", "qwen3", "llama3"])
def test_delimiters_inside_contents_fall_back_to_the_exact_method(tok_dirs, fmt):
    tok = ChatTokenizer.load(tok_dirs[fmt])
    end = "<|eot_id|>" if fmt == "llama3" else "<|im_end|>"
    prompt = (
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        if fmt == "llama3"
        else "<|im_start|>assistant\n"
    )
    messages = conversation()
    messages[2] = {"role": "assistant", "content": f"grep -n '{end}' template.jinja"}
    messages[3] = {"role": "user", "content": f"template.jinja:3:{prompt}fake reply{end}"}
    with pytest.raises(ChatTemplateError):
        tok.assistant_spans(messages, method="delimiters")
    check_mask(tok, messages, expected_pieces(fmt, messages))


NUMBERED_TEMPLATE = """\
{%- set ns = namespace(n=0) %}
{%- for message in messages %}
{%- if message.role == 'assistant' %}{% set ns.n = ns.n + 1 %}
{{- '<|im_start|>assistant (turn ' ~ ns.n ~ ')\\n' + message.content + '<|im_end|>\\n' }}
{%- else %}
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
{{- '<|im_start|>assistant (turn ' ~ (ns.n + 1) ~ ')\\n' }}
{%- endif %}
"""


def test_template_without_fixed_delimiters_uses_the_exact_method(tok_dirs):
    """A generation prompt that changes from turn to turn (given as a chat_template override)."""
    tok = ChatTokenizer.load(tok_dirs["chatml"], chat_template=NUMBERED_TEMPLATE)
    messages = conversation()
    pieces: list[tuple[str, bool]] = []
    n = 0
    for m in messages:
        if m["role"] == "assistant":
            n += 1
            pieces += [(f"<|im_start|>assistant (turn {n})\n", False), (m["content"], True)]
            pieces += [("<|im_end|>", True), ("\n", False)]
        else:
            pieces += [(f"<|im_start|>{m['role']}\n{m['content']}", False)]
            pieces += [("<|im_end|>\n", False)]
    with pytest.raises(ChatTemplateError):
        tok.assistant_spans(messages, method="delimiters")
    check_mask(tok, messages, pieces)


def test_inconsistent_template_is_a_clear_error(tok_dirs):
    """A template whose system header depends on the number of messages: no prefix render
    matches the full one, so no mask can be derived."""
    template = (
        "{{- '<|im_start|>system\\n' ~ (messages|length) ~ ' messages<|im_end|>\\n' }}"
        + CHATML_TEMPLATE
    )
    tok = ChatTokenizer.load(tok_dirs["chatml"], chat_template=template)
    messages = conversation()[1:]
    with pytest.raises(ChatTemplateError, match=r"message 1 \(assistant\).*does not start with"):
        tok.encode_chat(messages, max_len=None)


# -- loading ---------------------------------------------------------------------------------------


def test_train_toy_tokenizer_rejects_unknown_formats(tmp_path):
    with pytest.raises(ValueError, match="unknown test template 'gemma'"):
        train_toy_tokenizer(tmp_path, template="gemma")


def test_load_errors_are_clear(tok_dirs, tmp_path):
    with pytest.raises(TokenizerLoadError, match="no such tokenizer folder"):
        ChatTokenizer.load(tmp_path / "missing")
    with pytest.raises(TokenizerLoadError, match=r"no tokenizer\.json"):
        ChatTokenizer.load(tmp_path)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "tokenizer.json").write_bytes((tok_dirs["chatml"] / "tokenizer.json").read_bytes())
    (bare / "tokenizer_config.json").write_text('{"eos_token": "<|im_end|>"}')
    with pytest.raises(TokenizerLoadError, match=rf"{bare}: no chat template"):
        ChatTokenizer.load(bare)
    with pytest.raises(TokenizerLoadError, match="no such file"):
        ChatTokenizer.load(bare, chat_template=tmp_path / "nope.jinja")
    with pytest.raises(TokenizerLoadError, match="does not compile"):
        ChatTokenizer.load(bare, chat_template="{% for m in messages %}")
    (bare / "tokenizer.json").write_text("{}")
    with pytest.raises(TokenizerLoadError, match=r"tokenizer\.json: not a tokenizer"):
        ChatTokenizer.load(bare, chat_template=CHATML_TEMPLATE)


def test_template_sources_and_override(tok_dirs, tmp_path):
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes((tok_dirs["chatml"] / "tokenizer.json").read_bytes())
    config = {"bos_token": {"content": "<|endoftext|>"}, "eos_token": "<|im_end|>"}
    config["chat_template"] = [
        {"name": "tool_use", "template": "TOOLS"},
        {"name": "default", "template": "{{ bos_token }}|{{ pad_token is defined }}|DEFAULT"},
    ]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    msgs = [{"role": "user", "content": "hi"}]
    assert ChatTokenizer.load(folder).render(msgs) == "<|endoftext|>|False|DEFAULT"
    (folder / "chat_template.jinja").write_text("JINJA {{ eos_token }}")
    assert ChatTokenizer.load(folder).render(msgs) == "JINJA <|im_end|>"
    override = tmp_path / "mine.jinja"
    override.write_text("MINE {{ messages[0].content }}")
    assert ChatTokenizer.load(folder, chat_template=override).render(msgs) == "MINE hi"
    assert ChatTokenizer.load(folder, chat_template=str(override)).render(msgs) == "MINE hi"
    as_json = tmp_path / "chat_template.json"
    as_json.write_text(json.dumps({"chat_template": "JSON {{ messages|length }}"}))
    assert ChatTokenizer.load(folder, chat_template=as_json).render(msgs) == "JSON 1"
    text = "TEXT {{ add_generation_prompt }}"
    assert ChatTokenizer.load(folder, chat_template=text).render(msgs, True) == "TEXT True"
    # Only chat_template.json left: it is used.
    (folder / "chat_template.jinja").unlink()
    (folder / "tokenizer_config.json").write_text("{}")
    (folder / "chat_template.json").write_text(as_json.read_text())
    assert ChatTokenizer.load(folder / "tokenizer.json").render(msgs) == "JSON 1"


def test_environment_matches_transformers(tok_dirs):
    template = (
        "{{ messages[0] | tojson }}|{{ {'b': [1, 2]} | tojson(indent=2) }}|{{ tools }}|"
        "{{ enable_thinking }}|{{ strftime_now('%Y') | length }}|"
        "{% for m in messages %}{% if loop.first %}{% continue %}{% endif %}{{ m.content }}"
        "{% endfor %}|{% generation %}G{% endgeneration %}"
    )
    tok = ChatTokenizer.load(tok_dirs["chatml"], chat_template=template)
    msgs = [{"role": "user", "content": "é <b>"}, {"role": "assistant", "content": "x"}]
    out = tok.render(msgs, enable_thinking=False)
    assert out == '{"role": "user", "content": "é <b>"}|{\n  "b": [\n    1,\n    2\n  ]\n}|' + (
        "None|False|4|x|G"
    )
    refusing = ChatTokenizer.load(
        tok_dirs["chatml"], chat_template="{{ raise_exception('only one user turn') }}"
    )
    with pytest.raises(ChatTemplateError, match="refused: only one user turn"):
        refusing.render(msgs)
    # The sandbox forbids mutating lists and reaching internals, as transformers' does (also
    # once its verdict for the attribute is cached).
    mutating = ChatTokenizer.load(tok_dirs["chatml"], chat_template="{{ messages.append(1) }}")
    for _ in range(2):
        with pytest.raises(ChatTemplateError, match="failed"):
            mutating.render(msgs)
    internals = ChatTokenizer.load(
        tok_dirs["chatml"], chat_template="{{ messages.__class__ }}|{{ raise_exception.__code__ }}"
    )
    assert internals.render(msgs) == internals.render(msgs) == "|"


def test_hub_ids(tok_dirs, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(TokenizerLoadError, match=r"terminal-task-gen\[hf\]"):
        ChatTokenizer.load("someone/some-model")
    calls = []

    def unreachable(**kwargs):
        calls.append(kwargs)
        raise OSError("network is unreachable")

    fake = types.ModuleType("huggingface_hub")
    fake.snapshot_download = unreachable
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake)
    with pytest.raises(TokenizerLoadError, match=r"Hub failed.*unreachable.*local folder"):
        ChatTokenizer.load("someone/some-model", revision="v1")
    assert calls[0]["repo_id"] == "someone/some-model" and calls[0]["revision"] == "v1"
    assert "tokenizer.json" in calls[0]["allow_patterns"]
    assert not any(p.endswith(".safetensors") for p in calls[0]["allow_patterns"])
    fake.snapshot_download = lambda **kwargs: str(tok_dirs["chatml"])
    assert ChatTokenizer.load("someone/some-model").folder == tok_dirs["chatml"]


# -- SFT rows and the streaming map ----------------------------------------------------------------


def make_record(i: int, messages: list[dict] | None = None) -> dict:
    if messages is None:
        messages = [
            {"role": "user", "content": f"Task {i}: " + "run the tests " * (i % 7 + 1)},
            {"role": "assistant", "content": f'<think>step {i}</think>\n\n{{"k": {i}}}'},
            {"role": "user", "content": f"output {i}\n" * (i % 3 + 1)},
            {"role": "assistant", "content": f'{{"task_complete": true, "n": {i}}}'},
        ]
    return {
        "id": f"job/t{i}__0", "task": f"t{i}", "instruction": "...", "subset": "skill_based",
        "domain": "math" if i % 2 else None, "difficulty": None, "source": "skills/math",
        "model": "m", "messages": messages, "reward": 1.0,
    }  # fmt: skip


def bad_records() -> dict[int, dict]:
    return {
        5: {"id": "bad/no-messages", "task": "x"},
        9: make_record(9, [{"role": "assistant", "content": "hi"}]),
        10: make_record(10, [{"role": "user", "content": "hi"}]),
        14: make_record(14, [{"role": "user", "content": None},
                             {"role": "assistant", "content": "x"}]),
        17: "not a record",
    }  # fmt: skip


def records(n: int = 40) -> list:
    bad = bad_records()
    return [bad.get(i) or make_record(i) for i in range(n)]


def test_check_sft_messages():
    check_sft_messages([{"role": "system", "content": ""}, *make_record(1)["messages"]])
    for messages, problem in [
        ([], "no messages"),
        ([{"role": "system", "content": "s"}], "only a system"),
        (
            [{"role": "assistant", "content": "a"}],
            "message 0 has role 'assistant', expected 'user'",
        ),
        (
            [{"role": "user", "content": "u"}, {"role": "user", "content": "u"}],
            "message 1 has role",
        ),
        ([{"role": "user", "content": "u"}], "ends with a user message"),
        ([{"role": "user", "content": 3}], "content is int"),
    ]:
        with pytest.raises(ConversationError, match=problem):
            check_sft_messages(messages)


@pytest.mark.parametrize("start_method", [None, "spawn"])
def test_parallel_map_matches_serial_and_reports_bad_records(tok_dirs, start_method):
    spec = TokenizerSpec(str(tok_dirs["qwen3"]))
    pickle.loads(pickle.dumps(spec))
    data = records(40)
    serial = list(tokenize_records(data, spec, max_len=64, workers=1))
    parallel = list(
        tokenize_records(data, spec, max_len=64, workers=2, chunk_size=3, start_method=start_method)
    )
    assert len(serial) == len(parallel) == 40
    for i, (a, b) in enumerate(zip(serial, parallel, strict=True)):
        assert a.record is data[i] and b.record is data[i]
        assert a.error == b.error
        if i in bad_records():
            assert a.chat is None and b.chat is None and a.error
            continue
        assert a.error is None
        assert a.chat.input_ids.tolist() == b.chat.input_ids.tolist()
        assert a.chat.loss_mask.tolist() == b.chat.loss_mask.tolist()
        assert (a.chat.n_tokens_full, a.chat.truncated) == (b.chat.n_tokens_full, b.chat.truncated)
    errors = {i: r.error for i, r in enumerate(serial) if r.error}
    assert set(errors) == set(bad_records())
    assert "no messages" in errors[5]
    assert "expected 'user'" in errors[9]
    assert "ends with a user message" in errors[10]
    assert "content is NoneType" in errors[14]
    assert any(r.chat is not None and r.chat.truncated for r in serial)


def test_template_errors_do_not_stop_the_stream(tok_dirs, tmp_path):
    template = "{% if messages|length > 2 %}{{ raise_exception('too long') }}{% endif %}" + (
        CHATML_TEMPLATE
    )
    spec = TokenizerSpec(str(tok_dirs["chatml"]), chat_template=template)
    data = [make_record(0), make_record(1, make_record(1)["messages"][:2]), make_record(2)]
    for workers in (1, 2):
        out = list(tokenize_records(data, spec, max_len=None, workers=workers, chunk_size=1))
        assert [r.error is None for r in out] == [False, True, False]
        assert "refused: too long" in out[0].error


def _die(messages: Any, max_len: int | None) -> None:
    os._exit(3)


def test_a_dead_worker_is_a_clear_error(tok_dirs, monkeypatch):
    """A worker killed (e.g. by the OOM killer) ends the stream with the records it had."""
    monkeypatch.setattr(
        sft, "_tokenize_one", lambda tok, messages, max_len, *_: _die(messages, max_len)
    )
    spec = TokenizerSpec(str(tok_dirs["chatml"]))
    stream = tokenize_records(
        [make_record(i) for i in range(4)], spec, max_len=None, workers=2, chunk_size=2
    )
    with pytest.raises(
        TtgenError, match=r"worker process died .*records from (job/t0__0|the first record) on"
    ):
        list(stream)


def test_map_reads_the_input_lazily(tok_dirs):
    spec = TokenizerSpec(str(tok_dirs["chatml"]))
    consumed = 0

    def source(n: int):
        nonlocal consumed
        for i in range(n):
            consumed += 1
            yield make_record(i)

    first = next(iter(tokenize_records(source(10_000), spec, max_len=None, workers=1)))
    assert first.chat is not None and consumed == 1
    consumed = 0
    stream = tokenize_records(source(10_000), spec, max_len=None, workers=2, chunk_size=5)
    assert next(stream).record["id"] == "job/t0__0"
    # 2 x workers chunks in flight, plus the one submitted when the first came back.
    assert consumed <= (2 * 2 + 1) * 5
    t0 = time.monotonic()
    stream.close()  # stops the workers; does not read on
    assert consumed <= (2 * 2 + 1) * 5 and time.monotonic() - t0 < 30


def test_sft_rows_and_record_batch(tok_dirs):
    tok = ChatTokenizer.load(tok_dirs["chatml"])
    recs = [make_record(i) for i in range(3)]
    chats = [tok.encode_chat(r["messages"], max_len=40) for r in recs]
    rows = [sft_row(r, c) for r, c in zip(recs, chats, strict=True)]
    assert rows[0]["trajectory_id"] == "job/t0__0" and rows[0]["task_group_id"] == "t0"
    assert rows[0]["model_name"] == "m" and rows[1]["domain"] == "math"
    batch = sft_record_batch(rows)
    assert batch.schema == SFT_SCHEMA and batch.num_rows == 3
    table = pa.Table.from_batches([batch]).to_pylist()
    for row, chat, rec in zip(table, chats, recs, strict=True):
        assert row["input_ids"] == chat.input_ids.tolist()
        assert row["loss_mask"] == chat.loss_mask.tolist()
        assert row["n_trained_tokens"] == sum(row["loss_mask"])
        assert row["messages"] == [
            {"role": m["role"], "content": m["content"]} for m in rec["messages"]
        ]
        assert row["truncated"] is chat.truncated and row["n_tokens_full"] == chat.n_tokens_full
    slim = sft_record_batch(
        [sft_row(r, c, with_ids=False) for r, c in zip(recs, chats, strict=True)], with_ids=False
    )
    assert slim.schema == sft_schema(False) and "input_ids" not in slim.schema.names
    assert pa.Table.from_pylist(rows, schema=SFT_SCHEMA).to_pylist() == table


def thinking_trajectory() -> list[dict]:
    """A 3-turn Terminus-like trajectory, each assistant turn with its own <think> reasoning
    ("reason{i} about step {i}") and action ('"analysis": "turn {i}"')."""
    msgs = [{"role": "user", "content": "Task: count the files in /app."}]
    for i in range(3):
        msgs.append({"role": "assistant", "content": f"<think>reason{i} about step {i}</think>\n\n"
                     f'{{"analysis": "turn {i}", "commands": []}}'})  # fmt: skip
        if i < 2:
            msgs.append({"role": "user", "content": f"output of step {i}\nroot@box:/app# "})
    return msgs


def _runs(tok: ChatTokenizer, chat) -> tuple[str, str]:
    """(the whole sequence, the trained tokens) as text."""
    ids = chat.input_ids.tolist()
    trained = [i for i, m in zip(ids, chat.loss_mask.tolist(), strict=True) if m]
    return tok.tokenizer.decode(ids, skip_special_tokens=False), tok.tokenizer.decode(
        trained, skip_special_tokens=False
    )


@pytest.mark.parametrize(
    ("mode", "in_sequence", "trained"),
    [
        # Qwen3's rule: reasoning only after the last user message (the third turn)
        ("template", [False, False, True], [False, False, True]),
        ("keep", [True, True, True], [True, True, True]),
        ("drop", [False, False, False], [False, False, False]),
    ],
)
def test_reasoning_of_every_turn_is_an_explicit_choice(tok_dirs, mode, in_sequence, trained):
    """A 3-turn Terminus-like trajectory, each assistant turn with its own <think> reasoning,
    through a template with Qwen3's rule: per choice, which turns' reasoning is in the
    sequence and which is trained."""
    tok = ChatTokenizer.load(tok_dirs["qwen3"])
    msgs = thinking_trajectory()
    chat = tok.encode_chat(msgs, reasoning=mode)
    text, learned = _runs(tok, chat)
    assert [f"reason{i} about step {i}" in text for i in range(3)] == in_sequence
    assert [f"reason{i} about step {i}" in learned for i in range(3)] == trained
    # every turn's action is trained whatever the choice; no user text ever is
    assert all(f'"analysis": "turn {i}"' in learned for i in range(3))
    assert "output of step" not in learned and "count the files" not in learned
    if mode == "keep":  # the earlier reasoning is the teacher's text, verbatim
        assert "<think>reason0 about step 0</think>\n\n" in text


def test_per_turn_samples_train_each_turn_with_its_own_reasoning_as_at_inference(tok_dirs):
    """`per-turn`: one sample per assistant turn, cut after it; with Qwen3's rule that turn
    keeps its reasoning (it follows the last user message) and only it is trained, while the
    earlier turns of its context appear as the template renders them at inference (no
    reasoning)."""
    from ttgen.export.chat import per_turn_samples

    tok = ChatTokenizer.load(tok_dirs["qwen3"])
    msgs = thinking_trajectory()
    samples = per_turn_samples(msgs)
    assert [len(s) for s in samples] == [2, 4, 6]
    for n, sample in enumerate(samples):
        chat = tok.encode_chat(sample, reasoning="per-turn")
        text, learned = _runs(tok, chat)
        # the sequence is exactly the template's render of that context
        assert text == tok.render(sample)
        assert [f"reason{i} about step {i}" in text for i in range(n + 1)] == [False] * n + [True]
        assert f"reason{n} about step {n}" in learned
        assert f'"analysis": "turn {n}"' in learned
        assert all(f'"analysis": "turn {i}"' not in learned for i in range(n))
