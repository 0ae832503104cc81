"""Pieces every view page shares: the static files, numbers as text, and one
self-contained HTML document (scripts and styles inside, nothing fetched)."""

from __future__ import annotations

import html
import json
import math
from importlib import resources

import numpy as np


def static_text(name: str) -> str:
    return resources.files("otel_benchlab.views").joinpath("static", name).read_text("utf-8")


def uplot_version() -> str:
    return static_text("uplot/VERSION").strip()


def fmt(value: float | int | None, digits: int = 4) -> str:
    """A figure as the pages show it: 4 significant digits, '—' where unknown."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}" if abs(value) < 1e6 else f"{value:,.0f}"


def cell(value: float | int | None, key: str = "", cls: str = "") -> str:
    """A table cell that carries its exact value (``data-value``) for machines."""
    attrs = f' data-key="{html.escape(key)}"' if key else ""
    if value is not None and not (isinstance(value, float) and not math.isfinite(value)):
        attrs += f' data-value="{value!r}"'
    if cls:
        attrs += f' class="{cls}"'
    return f"<td{attrs}>{fmt(value)}</td>"


def rounded(values: np.ndarray | list, digits: int = 5) -> list[float | None]:
    """Chart values to ``digits`` significant digits (the HTML stays small); NaN -> null."""
    arr = np.asarray(values, np.float64)
    out = np.full(arr.shape, np.nan)
    ok = np.isfinite(arr) & (arr != 0)
    mag = np.floor(np.log10(np.abs(arr[ok])))
    scale = 10.0 ** (digits - 1 - mag)
    out[ok] = np.round(arr[ok] * scale) / scale
    out[np.isfinite(arr) & (arr == 0)] = 0.0
    values = out.tolist()
    if np.isnan(out).any():
        values = [None if not math.isfinite(v) else v for v in values]
    return values


def json_for_script(obj: object) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def document(title: str, body: str, data: object, script: str, theme_toggle: bool = False
             ) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="otel-benchlab, uPlot {uplot_version()}">
<title>{html.escape(title)}</title>
<style>{static_text("uplot/uPlot.min.css")}
{static_text("views.css")}</style></head>
<body>
{body}
<script>{static_text("uplot/uPlot.iife.min.js")}</script>
<script type="application/json" id="report-data">{json_for_script(data)}</script>
<script>{script}</script>
</body></html>
"""
