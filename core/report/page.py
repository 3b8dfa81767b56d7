"""The report's HTML pieces: escaping, tables, figures and the page around them.

Everything a report shows from disk (run, class and dataset names, paths, reasons) is
untrusted, so every piece of text goes through ``esc`` here, and the page loads nothing
from the network: plotly.js is inlined once in the head, the fonts are the system's.
"""

from __future__ import annotations

import html
import math

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1f2933;
background:#f7f8fa;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px 32px 64px;background:#fff}
h1{margin:0 0 4px;font-size:1.8rem}h2{margin-top:2.2rem;border-bottom:2px solid #e4e7eb;padding-bottom:4px}
h3{margin:1.4rem 0 .4rem;font-size:1.1rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.85rem}
th,td{border:1px solid #d9dde3;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5}td.num{text-align:right;font-variant-numeric:tabular-nums}td small{color:#616e7c;white-space:nowrap}
.muted{color:#616e7c;font-size:.9rem}.note{background:#eef4fb;border-left:4px solid #4c78a8;padding:8px 12px;margin:.6rem 0}
.warn{background:#fff6e5;border-left:4px solid #e8a33d;padding:8px 12px;margin:.6rem 0}
.good{background:#edf8f0;border-left:4px solid #3d9a5b;padding:8px 12px;margin:.6rem 0}
.grid{display:flex;flex-wrap:wrap;gap:12px}.grid>div{flex:0 0 360px}
nav a{margin-right:14px;color:#2f5f8f}dl{display:grid;grid-template-columns:200px 1fr;gap:4px 12px}dt{font-weight:600}
dd{margin:0}code{background:#f0f2f5;padding:1px 4px;border-radius:3px}
"""


def esc(value) -> str:
    """Any value as HTML text: untrusted names and reasons show as the characters they hold."""
    return html.escape("" if value is None else str(value), quote=True)


def number(value) -> float | None:
    """A finite float, or None for missing / NaN / text."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def pct(value, digits: int = 1) -> str:
    v = number(value)
    return "–" if v is None else f"{v * 100:.{digits}f}%"


class Safe(str):
    """HTML this module made from escaped parts: a table puts it in as it is."""


def figure_with_interval(value, low, high) -> Safe:
    """``95.1%`` over a small ``95% CI 83.9–98.7%``: the figure first, its interval under it."""
    v, lo, hi = number(value), number(low), number(high)
    if v is None:
        return Safe("–")
    tail = f"<br><small>95% CI {lo * 100:.1f}–{hi * 100:.1f}%</small>" if lo is not None and hi is not None else ""
    return Safe(f"{v:.1%}{tail}")


def table(header: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    """A plain table; every cell escaped (but ``Safe`` ones); columns in ``numeric`` right-aligned."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td{' class=num' if i in numeric else ''}>"
                                    f"{c if isinstance(c, Safe) else esc(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def box(kind: str, text: str) -> str:
    """A note, warning or good-news box around already escaped ``text``."""
    return f'<div class="{kind}">{text}</div>'


def bullets(lines) -> str:
    return "<ul>" + "".join(f"<li>{esc(line)}</li>" for line in lines) + "</ul>" if lines else ""


def figure(fig, toolbar: bool = True) -> str:
    """A Plotly figure as a div: plotly.js is in the page's head, so no figure carries it
    and none fetches it (no CDN); the toolbar (zoom, save as PNG) works offline."""
    return fig.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False,
                       config={"displaylogo": False, "responsive": True, "displayModeBar": toolbar})


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def document(title: str, subtitle: str, sections: list[tuple[str, str, str]], with_plotly: bool) -> str:
    """The whole page: a title, a contents line, the sections ``(anchor, heading, body html)``,
    and plotly.js inlined once when any figure needs it."""
    script = ""
    if with_plotly:
        from plotly.offline import get_plotlyjs

        script = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    contents = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _ in sections)
    parts = "".join(section(a, t, body) for a, t, body in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style>{script}</head>"
            f"<body><main><h1>{esc(title)}</h1><p class=\"muted\">{esc(subtitle)}</p>"
            f"<nav>{contents}</nav>{parts}</main></body></html>\n")
