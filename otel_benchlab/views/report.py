"""``otel-benchlab report``: one self-contained HTML file (and, with ``--json``, the same
figures for machines) for one or more sessions.

Statistics come from every row (summary.py); only what is drawn is thinned: per display
bucket the min, mean and max (no peak hides), a random sample for the scatter.

A pair is drawn across its streams first (its frames of every stream together), then the
slowest ``WORST_DRAWN`` streams' latency and histogram; every stream's own charts are in
the file, thinned further (``STREAM_BUCKETS``), and drawn when its row is opened. So 64
cameras make a page of ~25 charts, not ~770, and a file of a few MB."""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path

import numpy as np

from otel_benchlab.session.temp_files import replace_with
from otel_benchlab.views.digest import PairDigest
from otel_benchlab.views.llm import PHASE_OF, PHASE_RANK, pair_title, phase_of
from otel_benchlab.views.page import cell, document, fmt, rounded, static_text
from otel_benchlab.views.sessions import PairRows, SessionView
from otel_benchlab.views.stats import (
    cdf,
    frame_times_ms,
    histogram,
    minmax_buckets,
    sample_indices,
)
from otel_benchlab.views.summary import session_summary

BUCKETS = 800
SCATTER_POINTS = 3000
STREAM_BUCKETS = 150  # a stream's own series, drawn when opened
WORST_DRAWN = 3  # streams of a pair drawn when the report opens (the slowest p95)


def _series(t: np.ndarray, y: np.ndarray, scale: float = 1.0,
            buckets: int = BUCKETS) -> dict | None:
    mid, lo, mean, hi = minmax_buckets(t, y * scale, buckets)
    if not len(mid):
        return None
    return {"t": rounded(mid, 6), "min": rounded(lo), "mean": rounded(mean), "max": rounded(hi)}


def _title(p: PairRows | PairDigest) -> str:
    """An LLM request's phase by its name; other pairs as they are named everywhere."""
    phase = (p.stage_from, p.stage_to) in PHASE_OF
    return pair_title(p.pipeline, p.stage_from, p.stage_to, p.stream) if phase else p.name


def pair_charts(view: SessionView, p: PairRows) -> dict:
    origin = view.origin_ns
    t_end = (p.end_ns - origin) / 1e9
    primary = next((s for s in view.sources if s in p.energy_j or s in p.power_w), None)
    out: dict = {"name": _title(p), "power_source": primary,
                 "latency_time": _series(t_end, p.latency_ms)}
    if primary and primary in view.power:
        ts, w = view.power[primary]
        out["power_time"] = _series((ts - origin) / 1e9, w)
    h = histogram(p.latency_ms)
    out["histogram"] = {"edges": rounded(h["edges"]), "counts": h["counts"], "over": h["over"]}
    x, y = cdf(p.latency_ms)
    out["cdf"] = {"x": rounded(x), "y": rounded(y, 4)}
    if primary in p.power_w:
        idx = sample_indices(len(p.latency_ms), SCATTER_POINTS)
        px, py = p.power_w[primary][idx], p.latency_ms[idx]
        ok = np.isfinite(px) & np.isfinite(py)
        order = np.argsort(px[ok], kind="stable")
        out["scatter"] = {"x": rounded(px[ok][order]), "y": rounded(py[ok][order])}
    if primary in p.energy_j:
        out["energy_time"] = _series(t_end, p.energy_j[primary], 1e3)
    out["frame_time"] = _series((p.end_ns[1:] - origin) / 1e9, frame_times_ms(p.end_ns))
    return out


def stream_charts(view: SessionView, p: PairRows) -> dict:
    """A stream's own charts, thinner than a pair's: drawn only when it is opened."""
    origin = view.origin_ns
    t_end = (p.end_ns - origin) / 1e9
    primary = next((s for s in view.sources if s in p.energy_j), None)
    h = histogram(p.latency_ms, 30)
    x, y = cdf(p.latency_ms, 60)
    return {"stream": p.stream, "key": [p.pipeline, p.stage_from, p.stage_to, p.stream],
            "power_source": primary,
            "latency_time": _series(t_end, p.latency_ms, buckets=STREAM_BUCKETS),
            "histogram": {"edges": rounded(h["edges"], 4), "counts": h["counts"],
                          "over": h["over"]},
            "cdf": {"x": rounded(x, 4), "y": rounded(y, 3)},
            "energy_time": _series(t_end, p.energy_j[primary], 1e3, STREAM_BUCKETS)
            if primary else None,
            "frame_time": _series((p.end_ns[1:] - origin) / 1e9, frame_times_ms(p.end_ns),
                                  buckets=STREAM_BUCKETS)}


def pair_groups(view: SessionView) -> list[list[PairRows]]:
    """The session's pairs, each with every stream of it, in the order first seen."""
    groups: dict[tuple[str, str, str], list[PairRows]] = {}
    for p in view.pairs:
        groups.setdefault((p.pipeline, p.stage_from, p.stage_to), []).append(p)
    return list(groups.values())


def merged(rows: list[PairRows]) -> PairRows:
    """Every stream of one pair as one: their frames together, in end order."""
    if len(rows) == 1:
        return rows[0]
    end = np.concatenate([r.end_ns for r in rows])
    order = np.argsort(end, kind="stable")

    def joined(get) -> np.ndarray:  # noqa: ANN001 - a PairRows -> array
        return np.concatenate([get(r) for r in rows])[order]

    def per_source(field: str) -> dict[str, np.ndarray]:
        labels = dict.fromkeys(s for r in rows for s in getattr(r, field))
        return {s: joined(lambda r, s=s: getattr(r, field).get(
            s, np.full(len(r.end_ns), np.nan))) for s in labels}

    first = rows[0]
    return PairRows(first.pipeline, "", first.stage_from, first.stage_to,
                    joined(lambda r: r.start_ns), end[order], joined(lambda r: r.latency_ms),
                    per_source("power_w"), per_source("energy_j"))


def _digest_charts(view: SessionView) -> list[dict]:
    """``session_charts``' pairs from a digested session (``digest.py``)."""
    origin = view.origin_ns
    out = []
    primary = view.sources[0] if view.sources else None
    for d in view.digest.pairs:
        charts = {"name": _title(d), "power_source": primary if primary in d.energy or
                  primary in d.power else None}
        charts["latency_time"] = d.series["latency"].series(origin) \
            if "latency" in d.series else None
        if charts["power_source"] and primary in view.power:
            ts, w = view.power[primary]
            charts["power_time"] = _series((ts - origin) / 1e9, w)
        charts["histogram"] = d.histogram(60)
        charts["cdf"] = d.cdf(300)
        if d.scatter is not None:
            order = np.argsort(d.scatter[1], kind="stable")
            charts["scatter"] = {"x": rounded(d.scatter[1][order]),
                                 "y": rounded(d.scatter[2][order])}
        if "energy" in d.series:
            charts["energy_time"] = d.series["energy"].series(origin, 1e3)
        charts["frame_time"] = d.series["frame_time"].series(origin) \
            if "frame_time" in d.series else None
        mine = [s for s in view.digest.streams if (s.pipeline, s.stage_from, s.stage_to) ==
                (d.pipeline, d.stage_from, d.stage_to)]
        if len(mine) > 1:
            charts["name"] += f" ({len(mine)} streams)"
            mine.sort(key=lambda s: -(s.summary()["latency_ms"]["p95"] or 0.0))
            charts["streams"] = [{
                "stream": s.stream, "key": [s.pipeline, s.stage_from, s.stage_to, s.stream],
                "power_source": primary if primary in s.energy else None,
                "latency_time": s.series["latency"].series(origin)
                if "latency" in s.series else None,
                "histogram": s.histogram(30), "cdf": s.cdf(60),
                "energy_time": s.series["energy"].series(origin, 1e3)
                if "energy" in s.series else None,
                "frame_time": s.series["frame_time"].series(origin)
                if "frame_time" in s.series else None} for s in mine]
        out.append(charts)
    return out


def session_charts(view: SessionView) -> dict:
    origin = view.origin_ns
    pairs = [] if view.digest is None else _digest_charts(view)
    for rows in pair_groups(view):
        charts = pair_charts(view, merged(rows))
        if len(rows) > 1:
            charts["name"] += f" ({len(rows)} streams)"
            slowest = sorted(rows, key=lambda r: -np.nanpercentile(r.latency_ms, 95)
                             if len(r.latency_ms) else 0.0)
            charts["streams"] = [stream_charts(view, r) for r in slowest]
        pairs.append(charts)
    return {"pairs": pairs,
            "power": {label: _series((ts - origin) / 1e9, w)
                      for label, (ts, w) in view.power.items() if len(ts)}}


# -- HTML -------------------------------------------------------------------------------
def _header_table(s: dict) -> str:
    ended = s["end_reason"] or "—"
    badge = ' <span class="badge bad">crashed</span>' if s["crashed"] else \
        ' <span class="badge">running</span>' if s.get("running") else ""
    sources = "<br>".join(
        html.escape(src["name"]) + (": " + "; ".join(
            ", ".join(f"{k} {v}" for k, v in d.items() if v not in ("", None, {}))
            for d in src["devices"]) if src["devices"] else "")
        for src in s["sources"]) or "—"
    losses = s["losses"]
    loss_text = ", ".join(
        [f"unpaired {k} {v}" for k, v in losses["unpaired"].items() if v]
        + [f"dropped {losses['queue_dropped']}"] * bool(losses["queue_dropped"])
        + [f"late {k} {v}" for k, v in losses["late"].items() if v]
        + [f"rejected {k}: {v}" for k, v in losses["rejected_input"].items()]) or "none"
    rows = [("Session", html.escape(s["id"])), ("Host", html.escape(str(s["host"] or "—"))),
            ("Started", html.escape(str(s["started_at"] or "—"))),
            ("Ended", html.escape(str(s["ended_at"] or "—"))),
            ("Duration", f"{fmt(s['duration_s'])} s" if s["duration_s"] else "—"),
            ("How it ended", html.escape(ended) + badge),
            ("Agent version", html.escape(str(s["agent_version"] or "—"))),
            ("Pairs", ", ".join(f"{a}→{b}" for a, b in s["pairs_configured"]) or "—"),
            ("Power sources", ", ".join(s["power_sources"]) or "no power source"),
            ("Devices", sources), ("Losses", html.escape(loss_text))]
    if s.get("window"):
        w = s["window"]
        rows.insert(5, ("Window", f"{html.escape(w['since'] or 'the start')} to "
                                  f"{html.escape(w['until'] or 'the end')}"))
    if s.get("empty_pairs") and _has_frames(s):  # an LLM server's session has no marks
        rows.append(("No rows", ", ".join(f"{a}→{b}" for a, b in s["empty_pairs"])
                     + (" (in this window)" if s.get("window") else "")))
    if s["measured_from_marks"]:
        rows.append(("Measured", "paired here from the session's marks (no aligned rows)"))
    return '<table class="header">' + "".join(
        f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


LAT_KEYS = ("min", "p50", "p90", "p95", "p99", "max", "mean", "stddev")


def _pairs_table(s: dict, llm: bool = False) -> str:
    """The pairs' figures: frames' pairs, or (``llm``) LLM requests' phases, a request
    each (no 1 % low: requests are not frames)."""
    sources = s["power_sources"]
    unit = "request" if llm else "frame"
    head = (f"<tr><th>pair</th><th>{unit}s</th><th>{unit}s/s</th>"
            + "".join(f"<th>{k} ms</th>" for k in LAT_KEYS)
            + ("" if llm else "<th>1 % low fps</th>")
            + "".join(f"<th>{src} W</th><th>{src} mJ/{unit} mean</th><th>p50</th><th>p95</th>"
                      f"<th>{src} J</th>" for src in sources) + "</tr>")
    rows = []
    mine = [(i, p) for i, p in enumerate(s["pairs"]) if (phase_of(p) is not None) == llm]
    if llm:  # a model's phases in their order, the request last
        mine.sort(key=lambda ip: (ip[1]["pipeline"], ip[1]["stream"],
                                  PHASE_RANK[(ip[1]["from"], ip[1]["to"])]))
    for i, p in mine:
        name = pair_title(p["pipeline"], p["from"], p["to"], p["stream"])
        cells = [f"<td>{html.escape(name)}</td>", cell(p["frames"], "frames"),
                 cell(p["fps"], "fps")]
        cells += [cell(p["latency_ms"][k], f"latency_ms.{k}") for k in LAT_KEYS]
        if not llm:
            cells.append(cell(p["frame_time"]["low1_fps"], "frame_time.low1_fps"))
        for src in sources:
            e = p["energy_j_per_frame"].get(src)
            cells.append(cell(p["power_w"].get(src), f"power_w.{src}"))
            if e is None:
                cells += ['<td class="muted" colspan="3">no power source</td>']
            else:
                cells += [f'<td data-key="energy_j_per_frame.{src}.{k}" '
                          f'data-value="{e[k]!r}">{fmt(e[k] * 1e3)}</td>'
                          for k in ("mean", "p50", "p95")]
            cells.append(cell(p["energy_j"].get(src), f"energy_j.{src}"))
        rows.append(f'<tr data-pair="{i}">' + "".join(cells) + "</tr>")
    if not rows:
        return "<p class=muted>no stage pairs with frames in this session</p>"
    if not sources:
        rows.append('<tr><td colspan="12" class="muted">no power source: latencies only'
                    '</td></tr>')
    # Focusable, and named: a keyboard can scroll a table wider than the page.
    label = "LLM request phases" if llm else "per pair figures"
    return (f'<div class="scroll" tabindex="0" role="region" aria-label="{label}">'
            f'<table class="pairs">{head}{"".join(rows)}</table></div>')


def _llm_table(s: dict) -> str:
    """Per model: requests and tokens, their latencies, and joules per request and per
    output token (each request's attributed share, and the machine's meter over all the
    output tokens, idle included, as aggregate meters count it)."""
    sources = s["power_sources"]
    head = ("<tr><th>model</th><th>requests</th><th>requests/s</th><th>output tokens/s</th>"
            "<th>TTFT p50 ms</th><th>TTFT p95 ms</th><th>TPOT p50 ms</th><th>TPOT p95 ms</th>"
            + "".join(f"<th>{src} J/request</th><th>{src} J/output token</th>"
                      f"<th>{src} machine J/output token</th>" for src in sources) + "</tr>")
    rows = []
    for m in s["llm"]:
        cells = [f"<td>{html.escape(m['model'])}</td>", cell(m["requests"], "requests"),
                 cell(m["requests_per_s"], "requests_per_s"),
                 cell(m["output_tokens_per_s"], "output_tokens_per_s")]
        cells += [cell(m[k][q], f"{k}.{q}") for k in ("ttft_ms", "tpot_ms")
                  for q in ("p50", "p95")]
        for src in sources:
            cells += [cell(m["energy_j_per_request"].get(src), f"energy_j_per_request.{src}"),
                      cell(m["energy_j_per_output_token"].get(src),
                           f"energy_j_per_output_token.{src}"),
                      cell(m["machine_energy_j_per_output_token"].get(src),
                           f"machine_energy_j_per_output_token.{src}")]
        rows.append(f'<tr data-model="{html.escape(m["model"])}">' + "".join(cells) + "</tr>")
    return (f'<div class="scroll" tabindex="0" role="region" '
            f'aria-label="LLM requests by model">'
            f'<table class="llm">{head}{"".join(rows)}</table></div>')


def summary_csv(s: dict) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    sources = s["power_sources"]
    w.writerow(["session", "pipeline", "stream", "from", "to", "frames", "fps"]
               + [f"latency_{k}_ms" for k in LAT_KEYS]
               + [f"{c}_{src}" for src in sources for c in
                  ("power_w", "energy_j_per_frame_mean", "energy_j_per_frame_p50",
                   "energy_j_per_frame_p95")])
    for p in s["pairs"]:
        row = [s["id"], p["pipeline"], p["stream"], p["from"], p["to"], p["frames"], p["fps"]]
        row += [p["latency_ms"][k] for k in LAT_KEYS]
        for src in sources:
            e = p["energy_j_per_frame"].get(src) or {}
            row += [p["power_w"].get(src), e.get("mean"), e.get("p50"), e.get("p95")]
        w.writerow(["" if v is None else v for v in row])
    return out.getvalue()


def _phase_order(group: list[dict]) -> int:
    """An LLM request's phases in their order; other pairs as they come (a stable sort)."""
    return PHASE_RANK.get((group[0]["from"], group[0]["to"]), 0)


def _has_frames(s: dict) -> bool:
    """Whether a session's report shows pairs of frames (an LLM server's has only its
    requests' phases)."""
    return not s.get("llm") or any(phase_of(p) is None for p in s["pairs"])


def _where_it_goes(s: dict) -> str:
    """Per pipeline (and stream, up to a few): the pairs' median time and energy per frame,
    stacked; a pipeline of many streams is one stack of the medians over its streams."""
    # Darker than the charts' lines: white text on each meets 4.5:1 (axe-core's contrast).
    colors = ["#1d4ed8", "#b91c1c", "#15803d", "#b45309", "#6d28d9", "#0e7490"]
    streams: dict[str, set[str]] = {}
    for p in s["pairs"]:
        streams.setdefault(p["pipeline"], set()).add(p["stream"])
    groups: dict[tuple[str, str], list[list[dict]]] = {}
    for p in s["pairs"]:
        if phase_of(p) == "request":
            continue  # its phases make it up: stacked, they are the request
        many = len(streams[p["pipeline"]]) > WORST_DRAWN
        pairs = groups.setdefault((p["pipeline"], "" if many else p["stream"]), [])
        same = next((g for g in pairs if (g[0]["from"], g[0]["to"]) == (p["from"], p["to"])),
                    None)
        if same is None:
            pairs.append([p])
        else:
            same.append(p)
    primary = s["power_sources"][0] if s["power_sources"] else None
    out = []
    for (pipe, stream), pairs in groups.items():
        n = len(streams[pipe])
        title = f" [{html.escape(stream)}]" if stream else (f" (median over its {n} streams)"
                                                          if n > 1 else "")
        out.append(f"<h3>{html.escape(pipe)}{title}</h3>")
        for what, unit, get in (
                ("time", "ms", lambda p: p["latency_ms"]["p50"]),
                ("energy", "mJ", lambda p: (p["energy_j_per_frame"].get(primary) or {})
                 .get("p50", 0) * 1e3 if primary else None)):
            vals = [(g[0], float(np.median([get(p) or 0.0 for p in g])))
                    for g in sorted(pairs, key=_phase_order)]
            total = sum(v for _, v in vals)
            if total <= 0:
                continue
            names = [html.escape(phase_of(p) or f'{p["from"]}→{p["to"]}') for p, _ in vals]
            segs = "".join(
                f'<div style="flex:{v / total:.4f};background:{colors[i % len(colors)]}" '
                f'title="{names[i]}: {fmt(v)} {unit}">{names[i]} {fmt(v)} {unit}</div>'
                for i, (_, v) in enumerate(vals) if v > 0)
            per = "frame" if phase_of(vals[0][0]) is None else "request"
            label = f"median {what} per {per}: {fmt(total)} {unit}" + (
                f" ({primary}, attributed)" if what == "energy" else "")
            out.append(f'<div class="muted">{label}</div><div class="stack">{segs}</div>')
    return "".join(out)


def _streams_section(s: dict, p: dict, prefix: str) -> str:
    """The slowest streams' latency and histogram, and a row a stream that opens its
    charts (drawn from the file's data when opened)."""
    figures = {(q["pipeline"], q["from"], q["to"], q["stream"]): q for q in s["pairs"]}
    worst = "".join(
        f'<div class="chart" id="{prefix}-w{j}-{k}"></div>'
        for j in range(min(WORST_DRAWN, len(p["streams"]))) for k in ("latency", "hist"))
    head = ("<tr><th>stream</th><th>frames</th><th>p50 ms</th><th>p95 ms</th>"
            "<th>p99 ms</th><th>mJ/frame</th><th></th></tr>")
    rows = []
    for j, st in enumerate(p["streams"]):
        q = figures[tuple(st["key"])]
        e = (q.get("energy_j_per_frame") or {}).get(st["power_source"] or "") or {}
        rows.append(
            f'<tr data-stream="{html.escape(st["stream"])}"><td>{html.escape(st["stream"])}'
            f'</td>{cell(q.get("frames"))}{cell(q["latency_ms"]["p50"])}'
            f'{cell(q["latency_ms"]["p95"])}{cell(q["latency_ms"]["p99"])}'
            f'{cell(e["mean"] * 1e3 if e.get("mean") is not None else None)}'
            f'<td><button class="open" data-prefix="{prefix}" data-stream-index="{j}" '
            f'aria-expanded="false">charts</button></td></tr><tr class="detail" hidden>'
            f'<td colspan="7"><div class="charts" id="{prefix}-st{j}"></div></td></tr>')
    return (f"<h3>The slowest {min(WORST_DRAWN, len(p['streams']))} streams</h3>"
            f'<div class="charts">{worst}</div><h3>Every stream, the slowest first</h3>'
            f'<div class="scroll" tabindex="0" aria-label="streams of {html.escape(p["name"])}">'
            f'<table class="streams">{head}{"".join(rows)}</table></div>')


def render_html(sessions: list[dict], charts: list[dict]) -> str:
    body = ["<main><h1>otel-benchlab report</h1>"]
    for si, (s, c) in enumerate(zip(sessions, charts, strict=True)):
        csv_b64 = base64.b64encode(summary_csv(s).encode()).decode()
        body.append(f'<section class="session" data-session="{html.escape(s["id"])}">')
        body.append(f"<h2>Session {html.escape(s['id'])}</h2>{_header_table(s)}")
        if s.get("llm"):
            body.append("<h3>LLM requests</h3>" + _llm_table(s))
            body.append("<h3>LLM request phases</h3>" + _pairs_table(s, llm=True))
        if _has_frames(s):
            body.append("<h3>Per pair</h3>" + _pairs_table(s))
        body.append(f'<a class="csv" download="{html.escape(s["id"])}-summary.csv" '
                    f'href="data:text/csv;base64,{csv_b64}">Download this table as CSV</a>')
        body.append("<h2>Where the time and energy go</h2>" + _where_it_goes(s))
        for pi, p in enumerate(c["pairs"]):
            body.append(f"<h2>{html.escape(p['name'])}</h2><div class=charts>" + "".join(
                f'<div class="chart" id="s{si}-p{pi}-{k}"></div>' for k in
                ("latency", "hist", "cdf", "scatter", "energy", "frametime")) + "</div>")
            if p.get("streams"):
                body.append(_streams_section(s, p, f"s{si}-p{pi}"))
        body.append(f'<h2>Power</h2><div class=charts><div class="chart" id="s{si}-power">'
                    "</div></div></section>")
    body.append("</main>")
    title = "otel-benchlab report: " + ", ".join(s["id"] for s in sessions)
    return document(title, "\n".join(body), {"kind": "report", "sessions": charts},
                    static_text("report.js"))


def write_report(views: list[SessionView], out: Path) -> list[dict]:
    sessions = [session_summary(v) for v in views]
    charts = [session_charts(v) for v in views]
    replace_with(out, render_html(sessions, charts).encode())
    return sessions
