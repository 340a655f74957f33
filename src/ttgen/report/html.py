"""The report folder: one self-contained index.html (styles, script and data inline).

The page opens from file:// with no server and no network: a Content-Security-Policy forbids
every fetch, the data sits in a ``<script type="application/json">`` block (every ``<``, ``>``
and ``&`` written as a JSON escape, so no text in it can close the block or open a tag), and the
script builds the DOM with textContent only. It records errors into ``<body data-errors>`` and sets
``<body data-ready="1">`` when everything is drawn (what the headless-browser test reads).
"""

from __future__ import annotations

import html
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

from ttgen import __version__
from ttgen.formats.trial import write_json_atomic
from ttgen.report.figures import ReportOptions, collect_report

INDEX = "index.html"
_PLACEHOLDER = re.compile(r"\{\{(TITLE|VERSION|CSS|JS|DATA)\}\}")


def _asset(name: str) -> str:
    return (resources.files("ttgen.report") / "assets" / name).read_text(encoding="utf-8")


def _finite(value: Any) -> Any:
    """NaN and infinities (which JSON.parse refuses) as null, everywhere in `value`."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def script_json(data: Any) -> str:
    """JSON that is safe inside a <script> element: no ``<``, ``>`` or ``&`` characters at all
    (JSON.parse turns the escapes back), and no line separators that old parsers choke on."""
    text = json.dumps(_finite(data), ensure_ascii=False, separators=(",", ":"), default=str)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):  # fmt: skip
        text = text.replace(ch, esc)
    return text


def render_html(data: dict[str, Any]) -> str:
    """The report page for `data` (what `collect_report` returns)."""
    js = _asset("report.js")
    css = _asset("report.css")
    if "</script" in js.lower() or "</style" in css.lower():
        raise AssertionError("report assets must not close their own element")
    name = str((data.get("input") or {}).get("name") or "")
    values = {
        "TITLE": html.escape(f"ttgen report: {name}", quote=True),
        "VERSION": html.escape(__version__, quote=True),
        "CSS": css,
        "JS": js,
        "DATA": script_json(data),
    }
    # One pass: inserted text is never scanned for placeholders again.
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], _asset("index.html"))


def write_report(path: Path, out: Path | None = None, options: ReportOptions | None = None) -> Path:
    """Collect the report of `path` and write it into `out` (default PATH/report/); returns the
    path of index.html."""
    path = Path(path)
    out = Path(out) if out is not None else path / "report"
    data = collect_report(path, options)
    page = render_html(data)
    out.mkdir(parents=True, exist_ok=True)
    index = out / INDEX
    write_json_atomic(index, page, fsync=False)
    return index
