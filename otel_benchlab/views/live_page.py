"""The live page at the Prometheus address (``/``), its JSON (``/api/live``) and CSV
(``/api/live.csv``), for the running session.

Fed by the runtime with each batch of finished spans (``add``): per pair, a ring of the
newest frames (end time, latency, the primary source's mean power and energy per frame),
at most ``RING_FRAMES`` of them and none older than ``KEEP_S`` (15 minutes). That is
16 bytes a frame. A ring starts at ``FIRST_FRAMES`` frames and, once full, grows to hold
``KEEP_S`` at the rate it gets frames (a stream of a frame a minute keeps 4 KiB, one at 60
frames/s 1 MiB), while all the
rings together stay within ``[live] max_bytes``; a stream that finds no room is shown as
stream ``_other`` (counted in ``benchlab.agent.overflow{kind="live"}``). At over 145
frames/s a pair, or once the budget stops its growth, a ring holds less than 15 minutes
and the page says what it covers. Adding a batch is a few array copies;
everything else (per-second percentiles, histogram, cards) is computed when a page asks,
and per-second figures of seconds that are done are computed once and kept.
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
from otel_benchlab.views.page import document, rounded, static_text
from otel_benchlab.views.stats import histogram, sample_indices

RING_FRAMES = 1 << 17
FIRST_FRAMES = 256
FRAME_BYTES = 16  # int64 end time + three float32
SECOND_BYTES = 200  # a settled second's figures: a dict entry and a tuple of five floats
OVERFLOW = "_other"


@dataclass
class LiveConfig:
    # All the live page's rings of frames together stay within this (a ring grows with
    # the frames it gets; a stream that finds no room is shown as stream "_other").
    max_bytes: int = 64 << 20
KEEP_S = 900
WINDOWS_S = (30, 60, 300, 900)
SETTLED_S = 5.0  # a second this far behind the newest frame gets no more frames (mostly)


class FrameRing:
    """The newest frames of one pair, in arrival order (nearly time order)."""

    def __init__(self, size: int = FIRST_FRAMES) -> None:
        self.t = np.zeros(size, np.int64)
        self.values = np.zeros((size, 3), np.float32)  # latency ms, power W, energy mJ
        self.n = 0  # frames ever added
        # Per-second figures of seconds that are done: second -> row
        self.seconds: dict[int, tuple[float, ...]] = {}
        self.settled_to = 0  # seconds below this are in ``seconds``

    @property
    def nbytes(self) -> int:
        return len(self.t) * FRAME_BYTES + len(self.seconds) * SECOND_BYTES

    def grow(self, size: int) -> None:
        """Room for ``size`` frames, the frames held kept in time order."""
        held = min(self.n, len(self.t))
        t, v = self._ordered()
        self.t = np.zeros(size, np.int64)
        self.values = np.zeros((size, 3), np.float32)
        self.t[:held], self.values[:held] = t, v
        self.n = held

    def _ordered(self) -> tuple[np.ndarray, np.ndarray]:
        size = len(self.t)
        if self.n <= size:
            return self.t[:self.n], self.values[:self.n]
        at = self.n % size  # arrival order: the oldest slot is the next to be written
        return (np.concatenate([self.t[at:], self.t[:at]]),
                np.concatenate([self.values[at:], self.values[:at]]))

    def add(self, t: np.ndarray, values: np.ndarray) -> None:
        size = len(self.t)
        if len(t) > size:
            t, values = t[-size:], values[-size:]
        at = (self.n + np.arange(len(t))) % size
        self.t[at] = t
        self.values[at] = values
        self.n += len(t)

    def rows(self, since_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames ending at or after ``since_ns``, in time order."""
        t, v = self._ordered()
        keep = t >= since_ns
        if not keep.all():
            t, v = t[keep], v[keep]
        if len(t) > 1 and np.any(t[1:] < t[:-1]):  # arrival is nearly time order
            order = np.argsort(t, kind="stable")
            t, v = t[order], v[order]
        return t, v


def per_second(t: np.ndarray, v: np.ndarray) -> dict[int, tuple[float, ...]]:
    """second -> (frames, p50 ms, p95 ms, mean power W, mean energy mJ) of frames ending
    in it; percentiles linear between ranks, as numpy's."""
    if not len(t):
        return {}
    sec = t // 1_000_000_000
    order = np.lexsort((v[:, 0], sec))
    sec, lat = sec[order], v[order, 0].astype(np.float64)
    starts = np.flatnonzero(np.diff(sec, prepend=sec[0] - 1))
    counts = np.diff(np.append(starts, len(sec)))
    out = {}
    power, energy = v[order, 1], v[order, 2]
    for s, c in zip(starts.tolist(), counts.tolist(), strict=True):
        qs = []
        for q in (0.5, 0.95):
            pos = q * (c - 1)
            lo = int(pos)
            hi = min(lo + 1, c - 1)
            qs.append(float(lat[s + lo] + (pos - lo) * (lat[s + hi] - lat[s + lo])))
        pw, en = power[s:s + c], energy[s:s + c]
        out[int(sec[s])] = (float(c), qs[0], qs[1],
                            float(np.nanmean(pw)) if np.isfinite(pw).any() else np.nan,
                            float(np.nanmean(en)) if np.isfinite(en).any() else np.nan)
    return out


class LivePage:
    def __init__(self, primary: str | None, offset_ns: int,
                 status: Callable[[], dict] | None = None,
                 pair_order: list[tuple[str, str]] | None = None, max_bytes: int = 64 << 20,
                 on_overflow: Callable[[str, int], None] | None = None) -> None:
        self.primary = primary
        self.max_bytes = max_bytes
        self.on_overflow = on_overflow or (lambda name, n: None)
        self.order = {p: i for i, p in enumerate(pair_order or [])}
        self.offset_ns = offset_ns  # monotonic -> Unix
        self.status = status or dict
        self._lock = threading.Lock()
        self._rings: dict[tuple[str, str, str, str], FrameRing] = {}
        self.used = 0  # bytes of all the rings' frames and settled seconds

    # -- fed by the runtime ------------------------------------------------------------
    def add(self, batch: SpanBatch) -> None:
        n = len(batch.end_ns)
        if not n:
            return
        values = np.empty((n, 3), np.float32)
        values[:, 0] = (batch.end_ns - batch.start_ns) / 1e6
        values[:, 1:] = np.nan
        if self.primary in batch.power:
            values[:, 1] = batch.power[self.primary][0]
            energy = batch.attributed.get(self.primary)
            if energy is None or not np.isfinite(energy).any():
                energy = batch.power[self.primary][1]
            values[:, 2] = energy * 1e3
        codes, names = batch.names()
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(names) + 1)).tolist()
        with self._lock:
            for code, name in enumerate(names):
                idx = order[bounds[code]:bounds[code + 1]]
                if len(idx):
                    ends = batch.end_ns[idx] + self.offset_ns
                    self._ring(name, ends).add(ends, values[idx])

    def _ring(self, name: tuple[str, str, str, str], ends: np.ndarray) -> FrameRing:
        """The name's ring, made, or grown for the frames ``ends`` within the budget."""
        ring = self._rings.get(name)
        if ring is None:
            if self.used + FIRST_FRAMES * FRAME_BYTES > self.max_bytes:
                self.on_overflow(name[1], len(ends))
                name = (name[0], OVERFLOW, name[2], name[3])
                ring = self._rings.get(name)
            if ring is None:  # the overflow ring is made even past the budget: one a pair
                ring = self._rings[name] = FrameRing()
                self.used += ring.nbytes
        size = len(ring.t)
        if ring.n + len(ends) > size and size < RING_FRAMES:
            # Full: room for KEEP_S at the rate it gets frames, in one step (its pages are
            # touched as frames come, so memory follows the frames, not the size).
            held = ring.t[:min(ring.n, size)]
            first = min(int(held.min()), int(ends.min())) if len(held) else int(ends.min())
            span_s = max((int(ends.max()) - first) / 1e9, 1.0)
            need = min(RING_FRAMES, int((len(held) + len(ends)) / span_s * KEEP_S * 1.1))
            want = size
            while want < need:
                want *= 2
            if want > size and self.used + (want - size) * FRAME_BYTES <= self.max_bytes:
                ring.grow(want)
                self.used += (want - size) * FRAME_BYTES
        return ring

    # -- asked for by a page -----------------------------------------------------------
    def snapshot(self, window_s: float) -> dict:
        now_ns = time.time_ns()
        since = now_ns - int(window_s * 1e9)
        pairs = []
        with self._lock:
            rings = sorted(self._rings.items(), key=lambda kv: (
                kv[0][0], self.order.get(kv[0][2:], len(self.order)), kv[0]))
            for name, ring in rings:
                # One read covers the window and the seconds not yet settled.
                t, v = ring.rows(min(since, ring.settled_to * 1_000_000_000))
                self._settle(ring, t, v)
                keep = t >= since
                pairs.append(self._pair(name, ring, t[keep], v[keep], since))
        return {"now": now_ns / 1e9, "window_s": window_s, "primary": self.primary,
                "pairs": pairs, "status": self.status()}

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
        oldest = int(ring.t[:min(ring.n, len(ring.t))].min() // 1_000_000_000)
        for s in [s for s in ring.seconds if s < oldest]:
            del ring.seconds[s]
        self.used += ring.nbytes - before

    def _pair(self, name: tuple[str, str, str, str], ring: FrameRing, t: np.ndarray,
              v: np.ndarray, since: int) -> dict:
        pipeline, stream, a, b = name
        recent = {**ring.seconds, **per_second(*_from(t, v, ring.settled_to))}
        first = since // 1_000_000_000
        secs = sorted(s for s in recent if s >= first)
        rows = np.array([recent[s] for s in secs]).reshape(-1, 5)
        keep = t >= since
        t, v = t[keep], v[keep]
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
        idx = sample_indices(len(t), 1500)
        pw = v[idx, 1]
        ok = np.isfinite(pw)
        order = np.argsort(pw[ok], kind="stable")
        return {"pipeline": pipeline, "stream": stream, "from": a, "to": b,
                "name": f"{pipeline} {a}->{b}" + (f" [{stream}]" if stream else ""),
                "cards": {k: (None if x is None or not np.isfinite(x) else float(x))
                          for k, x in cards.items()},
                "covers_s": span_s, "ring_full": ring.n > len(ring.t),
                "seconds": {"t": [float(s) for s in secs], "p50": rounded(rows[:, 1]),
                            "p95": rounded(rows[:, 2]), "power": rounded(rows[:, 3]),
                            "frames": rows[:, 0].astype(int).tolist()},
                "histogram": histogram(lat, 40),
                "scatter": {"x": rounded(pw[ok][order]), "y": rounded(lat[idx][ok][order])}}

    def csv(self, window_s: float) -> str:
        since = time.time_ns() - int(window_s * 1e9)
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["end_unix_s", "pipeline", "stream", "stage_from", "stage_to",
                    "latency_ms", f"power_{self.primary}_w", f"energy_{self.primary}_mj"])
        with self._lock:
            for (pipeline, stream, a, b), ring in sorted(self._rings.items()):
                t, v = ring.rows(since)
                for ti, (lat, pw, en) in zip((t / 1e9).tolist(), v.tolist(), strict=True):
                    w.writerow([f"{ti:.6f}", pipeline, stream, a, b, f"{lat:.4f}",
                                "" if pw != pw else f"{pw:.3f}",
                                "" if en != en else f"{en:.4f}"])
        return out.getvalue()

    # -- served ------------------------------------------------------------------------
    def routes(self) -> dict[str, Callable[[str], tuple[str, bytes]]]:
        """path -> (query -> (content type, body)), for the Prometheus endpoint."""
        return {"/": lambda q: ("text/html; charset=utf-8", self.html().encode()),
                "/api/live": lambda q: ("application/json", json.dumps(
                    self.snapshot(_window(q)), allow_nan=False,
                    default=float).encode()),
                "/api/live.csv": lambda q: ("text/csv; charset=utf-8",
                                            self.csv(_window(q)).encode())}

    def html(self) -> str:
        options = "".join(f'<option value="{w}"{" selected" if w == 60 else ""}>'
                          f'{w // 60 and f"{w // 60} min" or f"{w} s"}</option>'
                          for w in WINDOWS_S)
        body = f"""<h1>otel-benchlab <span class="muted" id="session"></span></h1>
<div class="controls">window <select id="window">{options}</select>
<button id="pause">Pause</button><button id="theme">Dark mode</button>
<a id="csv" href="/api/live.csv?window=60" download="otel-benchlab-live.csv">CSV of this
window</a> <span class="muted" id="updated"></span></div>
<h3>Sources and losses</h3><div class="cards" id="status"></div>
<div id="pairs"></div>"""
        return document("otel-benchlab live", body, {"kind": "live"}, static_text("live.js"))


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
