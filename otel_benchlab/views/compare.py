"""``otel-benchlab compare``: per pair in both runs, each metric's change with its
interval and a verdict (bootstrap.py), as a terminal table, Markdown, JSON and HTML."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from otel_benchlab.views import compare_long as long_cmp
from otel_benchlab.views import llm
from otel_benchlab.views.bootstrap import Frames, compare_frames
from otel_benchlab.views.digest_session import digest_session, scan
from otel_benchlab.views.page import document, fmt, rounded, static_text
from otel_benchlab.views.sessions import PairRows, SessionView
from otel_benchlab.views.stats import cdf

MARK = {"better": "better", "worse": "WORSE", "same": "~"}


def frames_of(p: PairRows) -> Frames:
    return Frames(p.end_ns / 1e9, p.latency_ms, dict(p.energy_j), dict(p.power_w))


def compare_sessions(baseline: SessionView, candidate: SessionView, threshold_pct: float,
                     confidence: float) -> dict:
    if baseline.digest is not None or candidate.digest is not None:
        pairs, missing = _digested_pairs(baseline, candidate, threshold_pct, confidence)
        return _result(baseline, candidate, threshold_pct, confidence, pairs, missing)
    base = {p.key: p for p in baseline.pairs}
    cand = {p.key: p for p in candidate.pairs}
    pairs, missing = [], []
    for key in list(base) + [k for k in cand if k not in base]:
        if key not in base or key not in cand:
            pipeline, stream, a, b = key
            missing.append({"pipeline": pipeline, "stream": stream, "from": a, "to": b,
                            "only_in": "baseline" if key in base else "candidate"})
            continue
        changes = compare_frames(frames_of(base[key]), frames_of(cand[key]), threshold_pct,
                                 confidence)
        pipeline, stream, a, b = key
        pairs.append({"pipeline": pipeline, "stream": stream, "from": a, "to": b,
                      "frames": [len(base[key].latency_ms), len(cand[key].latency_ms)],
                      "metrics": [c.as_dict() for c in changes],
                      "cdf": {"baseline": _cdf(base[key]), "candidate": _cdf(cand[key])}})
    return _result(baseline, candidate, threshold_pct, confidence, pairs, missing)


def _digested_pairs(baseline: SessionView, candidate: SessionView, threshold_pct: float,
                    confidence: float) -> tuple[list[dict], list[dict]]:
    """Sessions too long to hold (``compare_long``): both digested, then a second pass
    over each for the blocks of every pair they share."""
    for v in (baseline, candidate):
        if v.digest is None:
            v.digest = digest_session(v.local, v.window)
    base = {d.key: d for d in baseline.digest.streams} if baseline.digest else {}
    cand = {d.key: d for d in candidate.digest.streams} if candidate.digest else {}
    shared = [k for k in base if k in cand]
    missing = [{"pipeline": k[0], "stream": k[1], "from": k[2], "to": k[3],
                "only_in": "baseline" if k in base else "candidate"}
               for k in list(base) + [k for k in cand if k not in base] if k not in shared]
    runs = []
    for view, mine in ((baseline, base), (candidate, cand)):
        wanted = {k: long_cmp.RunBlocks(long_cmp.point_values(mine[k]),
                                        long_cmp.edges_of(base[k], cand[k]), mine[k].end_lo,
                                        (mine[k].end_hi - mine[k].end_lo) / 1e9)
                  for k in shared}
        found = scan(view.local, view.window)
        if found is not None:
            long_cmp.second_pass(found, wanted)
        runs.append(wanted)
    pairs = []
    for k in shared:
        changes = long_cmp.compare_blocks(runs[0][k], runs[1][k], threshold_pct, confidence)
        pairs.append({"pipeline": k[0], "stream": k[1], "from": k[2], "to": k[3],
                      "frames": [base[k].frames, cand[k].frames],
                      "metrics": [c.as_dict() for c in changes],
                      "cdf": {"baseline": base[k].cdf(200), "candidate": cand[k].cdf(200)}})
    return pairs, missing


def _models(baseline: SessionView, candidate: SessionView, threshold_pct: float,
            confidence: float) -> list[dict]:
    """Per model both sessions served (LLM requests, ``views.llm``): its metrics."""
    def requests(v: SessionView) -> dict[str, llm.Requests]:
        folder = v.local or (v.path if isinstance(v.path, Path) else None)
        return {r.model: r for r in llm.read_requests(Path(folder), v.sources, v.window)} \
            if folder is not None else {}

    base, cand = requests(baseline), requests(candidate)
    out = []
    for model in [m for m in base if m in cand]:
        b, c = base[model], cand[model]
        out.append({"pipeline": model, "stream": "", "from": "requests", "to": "",
                    "kind": "llm", "frames": [len(b), len(c)],
                    "metrics": llm.compare_requests(b, c, threshold_pct, confidence),
                    "cdf": {"baseline": _ms_cdf(b.ttft_ms), "candidate": _ms_cdf(c.ttft_ms)}})
    return out


def _ms_cdf(values: np.ndarray) -> dict:
    x, y = cdf(values[np.isfinite(values)], 200)
    return {"x": rounded(x), "y": rounded(y, 4)}


def _result(baseline: SessionView, candidate: SessionView, threshold_pct: float,
            confidence: float, pairs: list[dict], missing: list[dict]) -> dict:
    # LLM models are compared as pairs are, by the same bootstrap: shown and gated alike.
    pairs = pairs + _models(baseline, candidate, threshold_pct, confidence)
    return {"baseline": str(baseline.path), "candidate": str(candidate.path),
            "threshold_pct": threshold_pct, "confidence": confidence, "pairs": pairs,
            "missing": missing,
            "windows": {"baseline": baseline.window.as_json() if baseline.window else None,
                        "candidate": candidate.window.as_json() if candidate.window
                        else None}}


def _cdf(p: PairRows) -> dict:
    x, y = cdf(p.latency_ms, 200)
    return {"x": rounded(x), "y": rounded(y, 4)}


def for_json(result: dict) -> dict:
    """The machine form (documented in docs/replay-report-compare.md): no chart data."""
    return {"baseline": result["baseline"], "candidate": result["candidate"],
            "windows": result.get("windows"),
            "threshold_pct": result["threshold_pct"], "confidence": result["confidence"],
            "pairs": [{k: v for k, v in p.items() if k != "cdf"} for p in result["pairs"]],
            "missing": result["missing"]}


def _pair_name(p: dict) -> str:
    if p.get("kind") == "llm":
        return f"{p['pipeline']} (LLM requests)"
    return f"{p['pipeline']} {p['from']}->{p['to']}" + (f" [{p['stream']}]"
                                                        if p["stream"] else "")


def _interval(m: dict) -> str:
    if m["change_pct"] is None:
        return "—"
    ci = m["ci_pct"]
    return f"{m['change_pct']:+.1f}%" + (f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci else "")


def terminal_table(result: dict) -> str:
    """In benchstat's spirit: one block per pair, a row per metric."""
    windows = result.get("windows") or {}

    def where(side: str) -> str:
        w = windows.get(side)
        return result[side] + (f" ({w['since'] or 'the start'} to {w['until'] or 'the end'})"
                               if w else "")

    out = [f"baseline:  {where('baseline')}", f"candidate: {where('candidate')}",
           f"(change with its {result['confidence'] * 100:g} % interval; a change counts when "
           f"the interval leaves out 0 and it is over {result['threshold_pct']:g} %)", ""]
    for p in result["pairs"]:
        unit = "requests" if p.get("kind") == "llm" else "frames"
        out.append(f"{_pair_name(p)}   {unit} {p['frames'][0]} vs {p['frames'][1]}")
        rows = [(m["metric"], fmt(m["baseline"]), fmt(m["candidate"]), _interval(m),
                 MARK[m["verdict"]]) for m in p["metrics"]]
        widths = [max(len(r[i]) for r in rows + [("metric", "baseline", "candidate",
                                                   "change [interval]", "")])
                  for i in range(5)]
        head = ("metric", "baseline", "candidate", "change [interval]", "")
        for r in [head] + rows:
            out.append("  " + "  ".join(c.ljust(w) if i in (0, 4) else c.rjust(w)
                                        for i, (c, w) in enumerate(zip(r, widths,
                                                                        strict=True))))
        out.append("")
    for m in result["missing"]:
        out.append(f"missing: {_pair_name(m)} is only in the {m['only_in']}")
    return "\n".join(out).rstrip() + "\n"


def markdown(result: dict) -> str:
    out = [f"### otel-benchlab compare\n\nbaseline `{result['baseline']}`, candidate "
           f"`{result['candidate']}`; {result['confidence'] * 100:g} % intervals, threshold "
           f"{result['threshold_pct']:g} %\n"]
    for p in result["pairs"]:
        out.append(f"\n#### {_pair_name(p)}\n\n| metric | baseline | candidate | change "
                   "[interval] | verdict |\n|---|---:|---:|---:|---|")
        for m in p["metrics"]:
            v = {"worse": "**worse** :x:", "better": "better :white_check_mark:",
                 "same": "~"}[m["verdict"]]
            out.append(f"| {m['metric']} | {fmt(m['baseline'])} | {fmt(m['candidate'])} | "
                       f"{_interval(m)} | {v} |")
    for m in result["missing"]:
        out.append(f"\nmissing: {_pair_name(m)} is only in the {m['only_in']}")
    return "\n".join(out) + "\n"


def render_html(results: list[dict]) -> str:
    """One page: a section per candidate, each pair's table, overlaid CDFs and the
    changes as bars with their intervals."""
    body = ["<h1>otel-benchlab compare</h1>"]
    for k, result in enumerate(results):
        body.append(
            f'<section class="comparison"><p>baseline <code>{html.escape(result["baseline"])}'
            f'</code><br>candidate <code>{html.escape(result["candidate"])}</code><br>'
            f"{result['confidence'] * 100:g} % intervals; a change counts when its interval "
            f"leaves out 0 and it is over {result['threshold_pct']:g} %</p>")
        for i, p in enumerate(result["pairs"]):
            rows = "".join(
                f'<tr data-metric="{html.escape(m["metric"])}"><td>'
                f'{html.escape(m["metric"])}</td><td>{fmt(m["baseline"])}</td>'
                f"<td>{fmt(m['candidate'])}</td><td>{_interval(m)}</td>"
                f"<td class=\"{m['verdict']}\">{m['verdict']}</td></tr>"
                for m in p["metrics"])
            body.append(f"<h2>{html.escape(_pair_name(p))}</h2><table><tr><th>metric</th>"
                        "<th>baseline</th><th>candidate</th><th>change [interval]</th>"
                        f"<th>verdict</th></tr>{rows}</table><div class=charts>"
                        f'<div class="chart" id="c{k}-{i}-cdf"></div>'
                        f'<div class="chart" id="c{k}-{i}-changes"></div></div>')
        for m in result["missing"]:
            body.append(f"<p class=muted>missing: {html.escape(_pair_name(m))} is only in "
                        f"the {m['only_in']}</p>")
        body.append("</section>")
    return document("otel-benchlab compare", "\n".join(body),
                    {"kind": "compare", "results": results}, static_text("report.js"))


def any_worse(result: dict) -> bool:
    return any(m["verdict"] == "worse" for p in result["pairs"] for m in p["metrics"])
