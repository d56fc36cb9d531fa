"""Screenshot of a Veto trace, for docs/img/trace.png (shown on docs/telemetry.md).

    uv run python docs/trace_screenshot.py

Runs ``examples/otel_trace.py`` unchanged (its in-memory span exporter is shared with this
script, so the example prints its own span tree as usual), renders the finished spans as a
trace waterfall in an HTML page, and captures that page with Playwright driving Debian's
``/usr/bin/chromium`` (never a downloaded browser). The timings are whatever this run measured.
"""

from __future__ import annotations

import html
import importlib.util
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img" / "trace.png"
SHOWN = (
    "veto.effect",
    "veto.outcome",
    "veto.deciding_rule_ids",
    "veto.approval.state",
    "gen_ai.tool.call.id",
)


def _example() -> ModuleType:
    path = ROOT / "examples" / "otel_trace.py"
    spec = importlib.util.spec_from_file_location("otel_trace", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(spans: Sequence[ReadableSpan]) -> list[tuple[int, ReadableSpan]]:
    """(depth, span) in tree order, children by start time."""
    ids = {s.context.span_id for s in spans if s.context}
    children: dict[int | None, list[ReadableSpan]] = {}
    for s in sorted(spans, key=lambda s: s.start_time or 0):
        parent = s.parent.span_id if s.parent and s.parent.span_id in ids else None
        children.setdefault(parent, []).append(s)
    out: list[tuple[int, ReadableSpan]] = []

    def walk(parent: int | None, depth: int) -> None:
        for s in children.get(parent, []):
            out.append((depth, s))
            walk(s.context.span_id if s.context else None, depth + 1)

    walk(None, 0)
    return out


def _value(v: object) -> str:
    return str(list(v)) if isinstance(v, tuple) else str(v)


def render(spans: Sequence[ReadableSpan]) -> str:
    rows = _rows(spans)
    t0 = min(s.start_time or 0 for _, s in rows)
    total = max((s.end_time or 0) - t0 for _, s in rows) or 1
    body = []
    for depth, s in rows:
        start, end = (s.start_time or 0) - t0, (s.end_time or 0) - t0
        attrs = s.attributes or {}
        shown = " ".join(
            f'<span class="attr">{html.escape(k)}=<b>{html.escape(_value(attrs[k]))}</b></span>'
            for k in SHOWN
            if attrs.get(k) not in (None, ())
        )
        kind = str(attrs.get("veto.effect", "app" if depth == 0 else "wait"))
        body.append(
            f'<tr><td class="name" style="padding-left:{12 + 22 * depth}px">'
            f"{html.escape(s.name)}<div>{shown}</div></td>"
            f'<td class="lane"><div class="bar {html.escape(kind)}" style="left:{100 * start / total:.2f}%;'
            f'width:{max(100 * (end - start) / total, 0.5):.2f}%"></div>'
            f'<span class="ms">{(end - start) / 1e6:.1f} ms</span></td></tr>'
        )
    return f"""<!doctype html><html><head><meta charset="utf-8"><style>
body {{ font: 14px system-ui, sans-serif; margin: 24px; color: #1f2328; background: #fff; }}
h1 {{ font-size: 18px; margin: 0 0 4px; }} p {{ margin: 0 0 16px; color: #59636e; }}
table {{ border-collapse: collapse; width: 100%; }}
td {{ border-top: 1px solid #d1d9e0; padding: 8px; vertical-align: top; }}
td.name {{ width: 46%; font-family: ui-monospace, monospace; font-size: 13px; }}
td.name div {{ margin-top: 4px; }}
.attr {{ display: inline-block; margin: 2px 6px 2px 0; padding: 1px 6px; border-radius: 4px;
        background: #f6f8fa; color: #59636e; font-size: 11px; }}
.lane {{ position: relative; }}
.bar {{ position: absolute; top: 10px; height: 16px; border-radius: 3px; }}
.app {{ background: #8c959f; }} .allow {{ background: #1a7f37; }} .deny {{ background: #cf222e; }}
.require_approval {{ background: #bf8700; }} .wait {{ background: #0969da; }}
.ms {{ position: absolute; right: 8px; top: 30px; font-size: 11px; color: #59636e; }}
</style></head><body>
<h1>Trace: handle ticket #4711</h1>
<p>service.name=support-agent &middot; spans from <code>examples/otel_trace.py</code>
(OpenTelemetry SDK, in-memory exporter) &middot; one <code>execute_tool</code> span per Veto decision</p>
<table>{"".join(body)}</table></body></html>"""


def main() -> None:
    example = _example()
    exporter = InMemorySpanExporter()
    example.InMemorySpanExporter = lambda: exporter  # the example's own exporter, shared
    example.main()
    page_html = render(exporter.get_finished_spans())
    with tempfile.TemporaryDirectory() as tmp:
        page_path = Path(tmp) / "trace.html"
        page_path.write_text(page_html, encoding="utf-8")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium")
            page = browser.new_page(viewport={"width": 1280, "height": 560})
            page.goto(page_path.as_uri())
            OUT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(OUT), full_page=True)
            browser.close()
    print(f"wrote {OUT.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
