"""The figures of a session: its header and per pair the statistics the report shows and
``--json`` writes (the same numbers: the page is rendered from this)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from otel_benchlab.views.llm import figures, read_requests
from otel_benchlab.views.sessions import PairRows, SessionView
from otel_benchlab.views.stats import (
    frame_rate,
    frame_time_lows,
    frame_times_ms,
    latency_summary,
    spread,
)


def _seconds_between(a: str | None, b: str | None) -> float | None:
    try:
        return (dt.datetime.fromisoformat(b) - dt.datetime.fromisoformat(a)).total_seconds()
    except (TypeError, ValueError):
        return None


def pair_summary(p: PairRows) -> dict:
    energy = {src: spread(v) for src, v in p.energy_j.items()}
    return {
        "pipeline": p.pipeline, "stream": p.stream, "from": p.stage_from, "to": p.stage_to,
        "frames": len(p.latency_ms), "fps": frame_rate(p.end_ns),
        "latency_ms": latency_summary(p.latency_ms),
        "energy_j_per_frame": {src: s for src, s in energy.items() if s is not None},
        "energy_j": {src: float(np.nansum(v)) for src, v in p.energy_j.items()},
        "power_w": {src: float(np.nanmean(v)) for src, v in p.power_w.items()
                    if np.isfinite(v).any()},
        "frame_time": frame_time_lows(frame_times_ms(p.end_ns)),
        "unpaired": p.unpaired,
    }


def _devices(manifest: dict) -> list[dict]:
    """Each source the agent ran and what it found (BENCHLAB uid/firmware, GPUs, zones)."""
    out = []
    for src in manifest.get("sources", []):
        if isinstance(src, dict) and src.get("name"):
            out.append({"name": str(src["name"]),
                        "devices": [d for d in src.get("devices", []) if isinstance(d, dict)]})
    return out


def _empty_pairs(view: SessionView) -> list[list[str]]:
    """The configured pairs with no rows (in the window, where there is one)."""
    have = {(p.stage_from, p.stage_to) for p in view.pairs if len(p.latency_ms)}
    if view.digest is not None:
        have = {(d.stage_from, d.stage_to) for d in view.digest.pairs if d.frames}
    pairs = view.manifest.get("config", {}).get("pairs", [])
    return [list(p) for p in pairs if isinstance(p, list) and len(p) == 2
            and tuple(p) not in have]


def session_summary(view: SessionView) -> dict:
    m = view.manifest
    summary = m.get("summary", {}) if isinstance(m.get("summary"), dict) else {}
    ended = m.get("ended_at")
    reason = m.get("end_reason") or (None if ended else "crash (not yet recovered)")
    if view.running is not None:
        # Still being written: its losses are the agent's own counts so far.
        as_of = view.running.get("as_of")
        reason = "running" + (f" (as of {as_of})" if as_of else "")
        summary = view.running.get("summary") or {}
    losses = {"unpaired": summary.get("unpaired", {}),
              "queue_dropped": summary.get("queue_dropped", 0),
              "late": summary.get("late", {}),
              "rejected_input": dict(view.rejected),
              "export_dropped": summary.get("export_dropped", 0)}
    if view.from_marks:
        losses["unpaired"] = {}
        for counts in (view.marks_unpaired or {}).values():
            for reason_, n in counts.items():
                losses["unpaired"][reason_] = losses["unpaired"].get(reason_, 0) + n
    return {
        "id": view.session_id, "path": str(view.path), "host": m.get("host"),
        "started_at": m.get("started_at"), "ended_at": ended,
        "duration_s": _seconds_between(m.get("started_at"), ended),
        "end_reason": reason, "crashed": bool(reason and reason.startswith("crash")),
        "running": view.running is not None,
        "window": view.window.as_json() if view.window else None,
        "empty_pairs": _empty_pairs(view),
        "agent_version": (m.get("versions") or {}).get("otel_benchlab"),
        "pairs_configured": m.get("config", {}).get("pairs", []),
        "power_sources": view.sources, "sources": _devices(m), "losses": losses,
        "energy_j": summary.get("energy_j", {}),
        "measured_from_marks": view.from_marks,
        "pairs": [d.summary() for d in view.digest.streams] if view.digest is not None
        else [pair_summary(p) for p in view.pairs],
        "statistics": view.digest.statistics if view.digest is not None else
        {"percentiles": "exact"},
        "llm": llm_summary(view, summary),
    }


def llm_summary(view: SessionView, summary: dict) -> list[dict]:
    """Per model, the LLM requests' figures (``views.llm``); [] where there are none."""
    folder = view.local or (view.path if isinstance(view.path, Path) else None)
    if folder is None:
        return []
    meter = {src: e["total"] for src, e in (summary.get("energy_j") or {}).items()
             if isinstance(e, dict) and isinstance(e.get("total"), (int, float))}
    return [figures(r, meter) for r in read_requests(Path(folder), view.sources, view.window)]
