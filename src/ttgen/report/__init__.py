"""`ttgen report`: a static HTML report of a pipeline run (or a rollout job, or a curated folder).

`figures.collect_report` gathers every figure into one JSON-able dict (unit-testable);
`html.write_report` writes it into a folder whose index.html opens from file:// with no server
and no network (data, script and styles inline; charts drawn as inline SVG and HTML by our own
code).
"""

from ttgen.report.figures import ReportError, ReportOptions, collect_report, detect_kind
from ttgen.report.html import render_html, write_report

__all__ = [
    "ReportError",
    "ReportOptions",
    "collect_report",
    "detect_kind",
    "render_html",
    "write_report",
]
