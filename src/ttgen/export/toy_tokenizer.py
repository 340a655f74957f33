"""The toy tokenizer: a small real tokenizer trained on the spot (nothing is downloaded), for
trying the SFT export and `ttgen train` where no model's tokenizer is at hand (`export.sft.
tokenizer: toy` in PIPELINE.yaml trains one on the run's own texts; the tests and benchmarks use
it too). Data exported with it trains only models built with it (the quickstart's tiny model).

`train_toy_tokenizer` trains a byte-level BPE (the kind Qwen, Llama 3 and GPT use) with the
`tokenizers` library, adds the special tokens of the chosen chat format and writes a Hugging Face
style folder: ``tokenizer.json`` + ``tokenizer_config.json`` holding a chat template. The
templates are written here, after the formats they imitate:

* ``chatml``: ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message;
* ``qwen3``: ChatML, but an assistant message's ``<think>...</think>`` part is moved out of the
  content and rendered as Qwen3's template does: kept only for assistant turns after the last
  user message, dropped for earlier turns; ``enable_thinking=false`` puts an empty think block
  in the generation prompt (so that template is not prefix-consistent, as Qwen3's is not);
* ``llama3``: a ``bos_token`` first, then
  ``<|start_header_id|>{role}<|end_header_id|>\\n\\n{content|trim}<|eot_id|>`` per message.

The offsets are not trimmed (``ByteLevel(trim_offsets=False)``), as in Qwen's and Llama 3's
tokenizer files, so a token's offsets cover exactly the characters it encodes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

CHATML_TEMPLATE = (
    "{%- for message in messages %}\n"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "{{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)

QWEN3_TEMPLATE = """\
{%- set ns = namespace(last_user=-1) %}
{%- for message in messages %}
    {%- if message.role == 'user' %}
        {%- set ns.last_user = loop.index0 %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if message.role == 'assistant' %}
        {%- set content = message.content %}
        {%- set reasoning = '' %}
        {%- if '</think>' in content %}
            {%- set reasoning = content.split('</think>')[0].split('<think>')[-1].strip('\\n') %}
            {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
        {%- endif %}
        {%- if loop.index0 > ns.last_user and (loop.last or reasoning) %}
            {{- '<|im_start|>assistant\\n<think>\\n' + reasoning + '\\n</think>\\n\\n' + content }}
        {%- else %}
            {{- '<|im_start|>assistant\\n' + content }}
        {%- endif %}
        {{- '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}
"""

LLAMA3_TEMPLATE = """\
{{- bos_token }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}
    {{- message['content'] | trim }}
    {{- '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

TEMPLATES = {"chatml": CHATML_TEMPLATE, "qwen3": QWEN3_TEMPLATE, "llama3": LLAMA3_TEMPLATE}

# Per format: the special tokens, the non-special added tokens, and the tokenizer_config fields.
_SPECIALS = {
    "chatml": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], []),
    "qwen3": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"], ["<think>", "</think>"]),
    "llama3": (
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
         "<|eot_id|>"],
        [],
    ),
}  # fmt: skip
_CONFIG = {
    "chatml": {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "qwen3": {"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "llama3": {
        # The object form, as Llama's tokenizer_config.json has it for some fields (with the
        # "__type" marker that transformers needs to read it as a token).
        "bos_token": {"__type": "AddedToken", "content": "<|begin_of_text|>", "lstrip": False,
                      "normalized": False, "rstrip": False, "single_word": False,
                      "special": True},
        "eos_token": "<|eot_id|>",
        "pad_token": None,
    },
}

_WORD_TEXT = (
    "the of and to in is that for it as with was on be by this are from at or an have not "
    "which but all were when there can more if no out so what up its about into than them only "
    "some could time these two may first then do any like my now over such our man me even "
    "most made after also did many before must through back years where much your way well "
    "down should because each just those people how too little state good very make world "
    "still own see men work long get here between both life being under never day same "
    "another know while last might us great old year off come since against go came right "
    "used take three file files directory install package version error output run running "
    "test tests script python data model server build command line value function return "
    "config path check missing create update import module parse result results task agent "
    "terminal shell process memory network request response table column row query index"
)
_WORDS = tuple(_WORD_TEXT.split())
_COMMANDS = (
    "ls -la", "cd /app", "cat README.md", "python3 main.py", "pip install -r requirements.txt",
    "grep -rn 'TODO' src/", "find . -name '*.py' | head", "git status", "make test",
    "pytest -q tests/", "echo $PATH", "mkdir -p out && cd out", "tail -n 50 /var/log/syslog",
    "sed -i 's/foo/bar/g' config.ini", "curl -s http://localhost:8000/health",
    "chmod +x run.sh && ./run.sh", "wc -l data/*.csv", "apt-get install -y jq",
    "python3 -c 'import sys; print(sys.version)'", "tar -xzf archive.tar.gz",
)  # fmt: skip


def sample_texts(n: int = 3000, *, seed: int = 0) -> Iterator[str]:
    """``n`` deterministic snippets of English-like prose, shell sessions and JSON: enough for
    a BPE of a few thousand tokens to learn words, paths, numbers and punctuation."""
    rng = random.Random(seed)
    for i in range(n):
        kind = i % 3
        if kind == 0:
            words = [rng.choice(_WORDS) for _ in range(rng.randint(20, 80))]
            words[0] = words[0].capitalize()
            yield " ".join(words) + rng.choice([".", "!", "?", ":"])
        elif kind == 1:
            lines = []
            for _ in range(rng.randint(2, 8)):
                lines.append(f"root@{rng.getrandbits(48):012x}:/app# {rng.choice(_COMMANDS)}")
                lines.append(
                    f"-rw-r--r-- 1 root root {rng.randint(0, 99999):>6} "
                    f"{rng.choice(_WORDS)}_{rng.randint(0, 99)}.{rng.choice(['py', 'txt', 'csv'])}"
                )
            yield "\n".join(lines) + "\n"
        else:
            obj = {
                "analysis": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 25))),
                "plan": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 15))),
                "commands": [{"keystrokes": rng.choice(_COMMANDS) + "\n",
                              "duration": rng.choice([0.1, 1.0, 5.0])}],
                "task_complete": rng.random() < 0.1,
            }  # fmt: skip
            yield json.dumps(obj, indent=rng.choice([None, 2]))


def train_toy_tokenizer(
    dest: Path,
    *,
    vocab_size: int = 2000,
    texts: Iterable[str] | None = None,
    template: str = "chatml",
) -> Path:
    """Train a byte-level BPE on ``texts`` (`sample_texts` when None) and write a tokenizer
    folder with ``template``'s chat template and special tokens to ``dest``; returns ``dest``."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown test template {template!r}; one of {sorted(TEMPLATES)}")
    specials, added = _SPECIALS[template]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts if texts is not None else sample_texts(), trainer)
    if added:
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in added])
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tok.save(str(dest / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 131072,
        **_CONFIG[template],
        "chat_template": TEMPLATES[template],
    }
    (dest / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return dest
