"""Chat templates compiled as transformers' ``apply_chat_template`` compiles them (same sandbox,
options, filters and globals), and tokenizer folders read as transformers reads them
(tokenizer.json, the special tokens, the chat template in its order of precedence), or fetched
from the Hugging Face Hub. Used by `ttgen.export.chat.ChatTokenizer`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import TemplateError
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ttgen.errors import TtgenError

# Files of a tokenizer folder; what a Hub download fetches (no weights).
TOKENIZER_FILES = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
]
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "pad_token", "unk_token")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class TokenizerLoadError(TtgenError, ValueError):
    """A tokenizer folder, Hub id or chat template cannot be loaded; says what to do."""


# -- the Jinja environment, as transformers builds it -------------------------------------------


class TemplateRaised(TemplateError):
    """The template called ``raise_exception``."""


def _raise_exception(message: str) -> None:
    raise TemplateRaised(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own tojson escapes HTML characters; transformers replaces it with plain json.dumps.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class _GenerationTag(Extension):
    """``{% generation %}...{% endgeneration %}``: transformers marks assistant text with it for
    its own masks; here it renders its body, so templates that use it load."""

    tags = {"generation"}

    def parse(self, parser: Any) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class _Sandbox(ImmutableSandboxedEnvironment):
    """transformers' sandbox, with its attribute verdicts cached: they depend only on the type
    and the attribute name (underscore names, function/frame internals, mutating methods of
    known mutable types), and checking them on every access is a third of a render."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._verdicts: dict[tuple[type, str], bool] = {}

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        key = (type(obj), attr)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._verdicts[key] = super().is_safe_attribute(obj, attr, value)
        return verdict


def compile_template(text: str) -> Any:
    """Compile a chat template in the environment transformers' ``apply_chat_template`` uses."""
    env = _Sandbox(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationTag, "jinja2.ext.loopcontrols"],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(text)


# -- loading --------------------------------------------------------------------------------------


def read_json_object(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerLoadError(f"{path}: not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise TokenizerLoadError(f"{path}: expected a JSON object")
    return data


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def special_tokens_of(folder: Path, config: Mapping[str, Any]) -> dict[str, str]:
    """bos/eos/pad/unk that are set (an unset one stays undefined in the template, as in
    transformers, rather than rendering as "None")."""
    fallback = read_json_object(folder / "special_tokens_map.json")
    out = {}
    for name in SPECIAL_TOKEN_NAMES:
        text = _token_text(config.get(name)) or _token_text(fallback.get(name))
        if text is not None:
            out[name] = text
    return out


def _pick_template(value: Any, where: Path) -> str:
    """tokenizer_config.json's chat_template: a string, or a list of {name, template}."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        if isinstance(named.get("default"), str):
            return named["default"]
        raise TokenizerLoadError(
            f"{where}: chat_template lists templates {sorted(map(str, named))} but none named "
            f"'default'; pass the one to use as chat_template"
        )
    raise TokenizerLoadError(f"{where}: chat_template is neither a string nor a list")


def find_template(folder: Path, config: Mapping[str, Any]) -> str:
    """The folder's chat template, in transformers' order of precedence (chat_template.jinja
    over tokenizer_config.json); chat_template.json (a processor's file) last."""
    jinja_file = folder / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8")
    if config.get("chat_template") is not None:
        return _pick_template(config["chat_template"], folder / "tokenizer_config.json")
    json_file = folder / "chat_template.json"
    data = read_json_object(json_file)
    if data.get("chat_template") is not None:
        return _pick_template(data["chat_template"], json_file)
    raise TokenizerLoadError(
        f"{folder}: no chat template (looked for chat_template.jinja, chat_template in "
        f"tokenizer_config.json, chat_template.json); pass one as chat_template (a file or the "
        f"template text)"
    )


def template_override(value: str | Path) -> str:
    """A chat_template argument: a file (.jinja/text, or JSON with "chat_template") or the
    template text itself (anything with Jinja markup)."""
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise TokenizerLoadError(
            f"chat template {str(value)!r}: no such file (and not template text: no Jinja markup)"
        )
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = read_json_object(path)
        if "chat_template" not in data:
            raise TokenizerLoadError(f"{path}: JSON without a chat_template field")
        return _pick_template(data["chat_template"], path)
    return text


def _hub_download(repo_id: str, revision: str | None) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise TokenizerLoadError(
            f"{repo_id}: not a local folder, and fetching it from the Hugging Face Hub needs "
            f"huggingface_hub: pip install 'terminal-task-gen[hf]', or pass a local folder that "
            f"holds tokenizer.json"
        ) from None
    try:
        path = snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=TOKENIZER_FILES)
    except Exception as exc:
        raise TokenizerLoadError(
            f"{repo_id}: not a local folder, and fetching it from the Hugging Face Hub failed "
            f"({type(exc).__name__}: {exc}). Check the id and the network (HF_TOKEN for gated "
            f"models), or pass a local folder that holds tokenizer.json"
        ) from exc
    return Path(path)


def resolve_tokenizer_folder(name_or_path: str | Path, revision: str | None = None) -> Path:
    """A local tokenizer folder (or its tokenizer.json), or a Hub id fetched into the cache."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.is_file() and path.name == "tokenizer.json":
        return path.parent
    if _HUB_ID.fullmatch(name):
        return _hub_download(name, revision)
    raise TokenizerLoadError(
        f"{name}: no such tokenizer folder (expected a local folder with tokenizer.json, or a "
        f"Hugging Face Hub id such as Qwen/Qwen3-8B)"
    )
