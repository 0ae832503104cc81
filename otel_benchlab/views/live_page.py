"""The live page at the Prometheus address (``/``), its JSON (``/api/live``) and CSV
(``/api/live.csv``), for the running session.

A page shows each stage pair across its streams first: the pair's cards and charts (all
its streams together), then a table with one row per stream (p50, p95, frames/s, energy
per frame and a small trend), the worst first; a stream's own cards and charts open on
demand, and only then does the page ask for that stream's data
(``/api/live?pipeline=P&stream=S&from=A&to=B``). So 64 cameras are two sections, not 384
charts, and a poll stays small whatever the number of streams.

Fed by the runtime with each batch of finished spans (``add``): each frame goes to its
pair's ring with its stream (``live_rings``: 24 bytes a frame, kept once however many
streams); the rings together stay within ``[live] max_bytes``, and the names they hold
within ``[limits]`` (the runtime folds them first). Adding a batch is a few array copies;
the rest
(per-second percentiles, histogram, cards, the streams' table) is computed when a page
asks: per-second figures of seconds that are done once, and past ``TABLE_EVERY_PAST``
streams the streams' table at most every ``TABLE_EVERY_S``.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

import numpy as np

from otel_benchlab.components import Component
from otel_benchlab.records import SpanBatch
from otel_benchlab.views.live_rings import (
    FRAME_BYTES,
    KEEP_S,
    SETTLED_S,
    FrameRing,
    per_second,
)
from otel_benchlab.views.llm_live import RequestRings
from otel_benchlab.views.page import document, rounded, static_text
from otel_benchlab.views.stats import histogram, sample_indices

WINDOWS_S = (30, 60, 300, 900)
TABLE_EVERY_S = 5.0  # the streams' table is made again at most this often,
TABLE_EVERY_PAST = 16  # once there are more streams than this (fewer: at every poll)
SHARES = 4  # a pair's ring takes at most a quarter of [live] max_bytes while it is alone
TREND_POINTS = 20  # a stream's trend: its mean latency in this many slices of the window
FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" '
           'height="16" rx="3" fill="#2563eb"/><path d="M3 11l3-4 3 2 4-6" stroke="#fff" '
           'stroke-width="2" fill="none"/></svg>')


@dataclass
class LiveConfig:
    # All the live page's rings of frames together stay within this (a pair's ring grows
    # to hold 15 minutes at its rate, up to an equal share of this).
    max_bytes: int = 64 << 20


class LivePage:
    def __init__(self, primary: str | None, offset_ns: int,
                 status: Callable[[], dict] | None = None,
                 pair_order: list[tuple[str, str]] | None = None,
                 max_bytes: int = 64 << 20, stats: object | None = None) -> None:
        self.primary = primary
        self.max_bytes = max_bytes
        self.order = {p: i for i, p in enumerate(pair_order or [])}
        self.offset_ns = offset_ns  # monotonic -> Unix
        self.status = status or dict
        self._lock = threading.Lock()
        self._pairs: dict[tuple[str, str, str], FrameRing] = {}  # every stream of a pair
        # window -> (made at, tables, streams then): a new stream makes the table again
        self._tables: dict[float, tuple[float, dict, int]] = {}
        self.used = 0  # bytes of all the rings' frames and settled seconds
        # LLM requests by model, said as requests and tokens instead of their phases
        self.requests = RequestRings(primary, offset_ns)
        if stats is not None:  # the meter's energy as it is shared out (LiveStats)
            stats.energy_listeners.append(lambda meter_j, idle_j: self.requests.add_energy(
                meter_j, idle_j, time.time()))

    # -- fed by the runtime ------------------------------------------------------------
    def add(self, batch: SpanBatch) -> None:
        n = len(batch.end_ns)
        if not n:
            return
        if any(s.genai is not None for s in batch.spans):
            with self._lock:
                self.requests.add(batch)
        values = np.empty((n, 3), np.float32)
        values[:, 0] = (batch.end_ns - batch.start_ns) / 1e6
        values[:, 1:] = np.nan
        if self.primary in batch.power:
            values[:, 1] = batch.power[self.primary][0]
            energy = batch.attributed.get(self.primary)
            if energy is None or not np.isfinite(energy).any():
                energy = batch.power[self.primary][1]
            values[:, 2] = energy * 1e3
        ends = batch.end_ns + self.offset_ns
        codes, names = batch.names()
        with self._lock:
            rings = []
            for pipeline, _, a, b in names:
                ring = self._pairs.get((pipeline, a, b))
                if ring is None:
                    ring = self._pairs[(pipeline, a, b)] = FrameRing()
                    self.used += ring.nbytes
                rings.append(ring)
            # Each span's stream as its code in its pair's ring.
            stream = np.array([r.code_of(name[1]) for r, name in zip(rings, names,
                                                                        strict=True)],
                              np.int32)[codes]
            for (pipeline, a, b), idx in batch.by_pair():
                ring = self._pairs[(pipeline, a, b)]
                self._grow(ring, ends[idx])
                ring.add(ends[idx], values[idx], stream[idx])

    def _grow(self, ring: FrameRing, ends: np.ndarray) -> None:
        """Grow within the budget and an equal share of it among the pairs there are (at
        least SHARES of them), rounded down to a power of two; a ring already past its
        share keeps what it has."""
        size = len(ring.t)
        want = ring.wanted(ends)
        share = self.max_bytes // max(len(self._pairs), SHARES) // FRAME_BYTES
        while want > size and want > share:
            want //= 2
        if want > size and self.used + (want - size) * FRAME_BYTES <= self.max_bytes:
            ring.grow(want)
            self.used += (want - size) * FRAME_BYTES

    # -- asked for by a page -----------------------------------------------------------
    def snapshot(self, window_s: float) -> dict:
        """Each pair across its streams, with its streams' table."""
        now_ns = time.time_ns()
        since = now_ns - int(window_s * 1e9)
        pairs = []
        with self._lock:
            streams = sum(len(r.streams) for r in self._pairs.values())
            made = self._tables.get(window_s)
            fresh = made is None or streams <= TABLE_EVERY_PAST or made[2] != streams or \
                time.monotonic() - made[0] >= TABLE_EVERY_S
            tables = {} if fresh else made[1]
            for key, ring in sorted(self._pairs.items(), key=lambda kv: (
                    kv[0][0], self.order.get(kv[0][1:], len(self.order)), kv[0])):
                pipeline, a, b = key
                if pipeline in self.requests.models:
                    continue  # an LLM model: its requests, below
                # One read covers the window and the seconds not yet settled.
                t, v, c = ring.rows(min(since, ring.settled_to * 1_000_000_000))
                self._settle(ring, t, v)
                keep = t >= since
                t, v, c = t[keep], v[keep], c[keep]
                entry = _figures(ring.seconds, ring.settled_to, t, v, since)
                entry.update(covers_s=_covers(ring, t), ring_full=ring.full)
                if fresh:
                    tables[key] = _streams_table(ring.streams, t, v, c, since)
                entry.update(pipeline=pipeline, stream="", **{"from": a, "to": b},
                             name=f"{pipeline} {a}->{b}", streams=tables.get(key, []))
                pairs.append(entry)
            if fresh:
                self._tables = {window_s: (time.monotonic(), tables, streams)}
            llm = self.requests.snapshot(now_ns / 1e9, window_s)
        return {"now": now_ns / 1e9, "window_s": window_s, "primary": self.primary,
                "pairs": pairs, "llm": llm, "status": self.status()}

    def stream(self, window_s: float, name: tuple[str, str, str, str]) -> dict:
        """One stream's cards and charts (a page asks when its row is opened)."""
        now_ns = time.time_ns()
        since = now_ns - int(window_s * 1e9)
        pipeline, stream, a, b = name
        entry = None
        with self._lock:
            ring = self._pairs.get((pipeline, a, b))
            code = ring.codes.get(stream) if ring is not None else None
            if ring is not None and code is not None:
                t, v, c = ring.rows(since)
                mine = c == code
                entry = _figures({}, 0, t[mine], v[mine], since)
                entry.update(covers_s=_covers(ring, t), ring_full=ring.full)
        if entry is not None:
            entry.update(pipeline=pipeline, stream=stream, **{"from": a, "to": b},
                         name=f"{pipeline} {a}->{b} [{stream}]")
        return {"now": now_ns / 1e9, "window_s": window_s, "primary": self.primary,
                "stream": entry}

    def _settle(self, ring: FrameRing, t: np.ndarray, v: np.ndarray) -> None:
        if not len(t):
            return
        upto = int((t[-1] - SETTLED_S * 1e9) // 1_000_000_000)
        if upto <= ring.settled_to:
            return
        lo = max(ring.settled_to, int(t[0] // 1_000_000_000))
        sel = (t >= lo * 1_000_000_000) & (t < upto * 1_000_000_000)
        before = ring.nbytes
        ring.seconds.update(per_second(t[sel], v[sel]))
        ring.settled_to = upto
        oldest = ring.oldest_ns // 1_000_000_000
        for s in [s for s in ring.seconds if s < oldest]:
            del ring.seconds[s]
        self.used += ring.nbytes - before

    def csv(self, window_s: float) -> str:
        since = time.time_ns() - int(window_s * 1e9)
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["end_unix_s", "pipeline", "stream", "stage_from", "stage_to",
                    "latency_ms", f"power_{self.primary}_w", f"energy_{self.primary}_mj"])
        with self._lock:
            for (pipeline, a, b), ring in sorted(self._pairs.items()):
                t, v, c = ring.rows(since)
                names = ring.streams
                for ti, (lat, pw, en), code in zip((t / 1e9).tolist(), v.tolist(),
                                                   c.tolist(), strict=True):
                    w.writerow([f"{ti:.6f}", pipeline, names[code], a, b, f"{lat:.4f}",
                                "" if pw != pw else f"{pw:.3f}",
                                "" if en != en else f"{en:.4f}"])
        return out.getvalue()

    # -- served ------------------------------------------------------------------------
    def routes(self) -> dict[str, Callable[[str], tuple[str, bytes]]]:
        """path -> (query -> (content type, body)), for the Prometheus endpoint."""
        return {"/": lambda q: ("text/html; charset=utf-8", self.html().encode()),
                "/favicon.ico": lambda q: ("image/svg+xml", FAVICON.encode()),
                "/api/live": lambda q: ("application/json", json.dumps(
                    self._answer(q), allow_nan=False, default=float).encode()),
                "/api/live.csv": lambda q: ("text/csv; charset=utf-8",
                                            self.csv(_window(q)).encode())}

    def _answer(self, query: str) -> dict:
        asked = parse_qs(query)
        if "stream" in asked:
            name = tuple(asked.get(k, [""])[0] for k in ("pipeline", "stream", "from", "to"))
            return self.stream(_window(query), name)  # type: ignore[arg-type]
        return self.snapshot(_window(query))

    def html(self) -> str:
        options = "".join(f'<option value="{w}"{" selected" if w == 60 else ""}>'
                          f'{w // 60 and f"{w // 60} min" or f"{w} s"}</option>'
                          for w in WINDOWS_S)
        body = f"""<main><h1>otel-benchlab <span class="muted" id="session"></span></h1>
<div class="controls"><label for="window">window</label> <select id="window">{options}</select>
<button id="pause">Pause</button><button id="theme">Dark mode</button>
<a id="csv" href="/api/live.csv?window=60" download="otel-benchlab-live.csv">CSV of this
window</a> <span class="muted" id="updated"></span></div>
<h3>Sources and losses</h3><div class="cards" id="status"></div>
<div id="llm"></div><div id="pairs"></div></main>"""
        return document("otel-benchlab live", body, {"kind": "live"}, static_text("live.js"))


def _covers(ring: FrameRing, t: np.ndarray) -> float:
    """How far back the ring reaches from the window's newest frame (s)."""
    if not len(t):
        return 0.0
    return (int(t[-1]) - ring.oldest_ns) / 1e9


def _figures(seconds: dict[int, tuple[float, ...]], settled_to: int, t: np.ndarray,
             v: np.ndarray, since: int) -> dict:
    """Cards, per-second series, histogram and scatter over the window's frames ``t, v``
    (the settled seconds' figures from ``seconds``, the rest computed here)."""
    recent = {**seconds, **per_second(*_from(t, v, settled_to))}
    first = since // 1_000_000_000
    secs = sorted(s for s in recent if s >= first)
    rows = np.array([recent[s] for s in secs]).reshape(-1, 5)
    lat = v[:, 0].astype(np.float64)
    energy = v[:, 2][np.isfinite(v[:, 2])]
    span_s = (t[-1] - t[0]) / 1e9 if len(t) > 1 else 0.0
    cards = {"now": rows[-1, 1] if len(rows) else None,
             "min": float(lat.min()) if len(lat) else None,
             "max": float(lat.max()) if len(lat) else None,
             "mean": float(lat.mean()) if len(lat) else None,
             **dict(zip(("p95", "p99"), (np.percentile(lat, [95, 99]).tolist()
                                         if len(lat) else [None, None]), strict=True)),
             "fps": (len(t) - 1) / span_s if span_s > 0 else None,
             "energy_mj_per_frame": float(energy.mean()) if len(energy) else None,
             "frames": int(len(t))}
    idx = sample_indices(len(t), 1000)
    pw = v[idx, 1]
    ok = np.isfinite(pw)
    order = np.argsort(pw[ok], kind="stable")
    return {"cards": {k: (None if x is None or not np.isfinite(x) else float(x))
                      for k, x in cards.items()},
            "seconds": {"t": [float(s) for s in secs], "p50": rounded(rows[:, 1], 4),
                        "p95": rounded(rows[:, 2], 4), "power": rounded(rows[:, 3], 4),
                        "frames": rows[:, 0].astype(int).tolist()},
            "histogram": histogram(lat, 40),
            "scatter": {"x": rounded(pw[ok][order], 4), "y": rounded(lat[idx][ok][order], 4)}}


def _streams_table(streams: list[str], t: np.ndarray, v: np.ndarray, c: np.ndarray,
                   since: int) -> list[dict]:
    """A row a stream of the window, the worst p95 first."""
    order = np.argsort(c, kind="stable")
    bounds = np.searchsorted(c[order], np.arange(len(streams) + 1)).tolist()
    rows = [_stream_row(name, t[order[bounds[k]:bounds[k + 1]]],
                        v[order[bounds[k]:bounds[k + 1]]], since)
            for k, name in enumerate(streams) if bounds[k + 1] > bounds[k]]
    rows.sort(key=lambda r: -1.0 if r["p95"] is None else r["p95"], reverse=True)
    return rows


def _stream_row(stream: str, t: np.ndarray, v: np.ndarray, since: int) -> dict:
    lat = v[:, 0].astype(np.float64)
    n = len(t)
    span_s = (t[-1] - t[0]) / 1e9 if n > 1 else 0.0
    energy = v[:, 2][np.isfinite(v[:, 2])]
    p50, p95 = np.percentile(lat, [50, 95]).tolist() if n else (None, None)
    trend: list[float | None] = []
    if n:
        width = max(1, (int(t[-1]) - since) // TREND_POINTS + 1)
        slot = np.clip((t - since) // width, 0, TREND_POINTS - 1)
        counts = np.bincount(slot, minlength=TREND_POINTS)
        sums = np.bincount(slot, weights=lat, minlength=TREND_POINTS)
        with np.errstate(invalid="ignore", divide="ignore"):
            trend = rounded(sums / counts, 3)
    return {"stream": stream, "frames": n, "p50": p50, "p95": p95,
            "fps": (n - 1) / span_s if span_s > 0 else None,
            "energy_mj_per_frame": float(energy.mean()) if len(energy) else None,
            "trend": trend}


def _from(t: np.ndarray, v: np.ndarray, second: int) -> tuple[np.ndarray, np.ndarray]:
    keep = t >= second * 1_000_000_000
    return t[keep], v[keep]


def _window(query: str) -> float:
    try:
        w = float(parse_qs(urlparse("?" + query).query).get("window", ["60"])[0])
    except ValueError:
        w = 60.0
    return min(max(w, 1.0), float(KEEP_S))


# Settings only: the runtime makes the live page with these.
COMPONENT = Component("live", "live", settings=LiveConfig,
                      ranges={"max_bytes": (1_000_000, 1e12)})
