"""A session too long to hold, digested a batch of rows at a time: the report's figures and
charts in memory that does not grow with the session's length.

Per stream of a pair, and per pair across its streams:

- counts, sums, means, standard deviations, minima and maxima, exactly (moments merged
  batch by batch), so frames, frames/s, mean latency, energies and mean power are the
  in-memory figures to rounding;
- percentiles from a logarithmic histogram (DDSketch's buckets): each within
  ``REL_ERR`` (0.25 %) of the value numpy's linear interpolation gives over every row;
- the charts' series in fixed time buckets over the session's range (its parts' statistics
  give it before a row is read), a histogram and a CDF from the percentiles, and a uniform
  sample of frames for the scatter;
- frame times (one frame's end to the next's), from the rows in the order the parts hold
  them, sorted within each batch: the agent writes them in end order, so a frame time is
  lost only where a span came late across a batch's edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from otel_benchlab.views.stats import LATENCY_KEYS

REL_ERR = 0.0025
_LOG_GAMMA = math.log((1 + REL_ERR) / (1 - REL_ERR))
SCATTER_POINTS = 3000


class Sketch:
    """Counts of positive values in buckets ``(g^(k-1), g^k]``, g = (1+a)/(1-a): any
    quantile within ``a`` of the true value; values <= 0 are counted as 0."""

    def __init__(self) -> None:
        self.offset = 0
        self.counts = np.zeros(0, np.int64)
        self.zeros = 0
        self.n = 0

    def add(self, values: np.ndarray) -> None:
        v = values[np.isfinite(values)]
        pos = v[v > 0]
        self.zeros += len(v) - len(pos)
        self.n += len(v)
        if len(pos):
            keys = np.ceil(np.log(pos) / _LOG_GAMMA).astype(np.int64)
            self._add_counts(int(keys.min()), np.bincount(keys - keys.min()))

    def merge(self, other: Sketch) -> None:
        self.zeros += other.zeros
        self.n += other.n
        if len(other.counts):
            self._add_counts(other.offset, other.counts)

    def _add_counts(self, lo: int, counts: np.ndarray) -> None:
        if not len(self.counts):
            self.offset, self.counts = lo, counts.astype(np.int64).copy()
            return
        start = min(self.offset, lo)
        end = max(self.offset + len(self.counts), lo + len(counts))
        if start != self.offset or end != self.offset + len(self.counts):
            grown = np.zeros(end - start, np.int64)
            grown[self.offset - start:self.offset - start + len(self.counts)] = self.counts
            self.offset, self.counts = start, grown
        self.counts[lo - self.offset:lo - self.offset + len(counts)] += counts

    def _values(self) -> np.ndarray:
        keys = np.arange(self.offset, self.offset + len(self.counts))
        return 2 * np.exp(keys * _LOG_GAMMA) / (math.exp(_LOG_GAMMA) + 1)

    def quantiles(self, qs: np.ndarray | list[float]) -> np.ndarray:
        """numpy's default (linear) percentiles, each within ``REL_ERR``."""
        qs = np.asarray(qs, np.float64)
        if not self.n:
            return np.full(len(qs), np.nan)
        values = np.concatenate([[0.0], self._values()])
        cum = np.cumsum(np.concatenate([[self.zeros], self.counts]))
        rank = qs * (self.n - 1)
        lo = values[np.searchsorted(cum, np.floor(rank), side="right")]
        hi = values[np.searchsorted(cum, np.ceil(rank), side="right")]
        return lo + (rank - np.floor(rank)) * (hi - lo)

    def cumulative(self, x: np.ndarray) -> np.ndarray:
        """How many values are at or below each ``x``, the values spread evenly within
        their buckets (for drawing a histogram of other bins)."""
        if not len(self.counts):
            return np.full(len(x), float(self.zeros))
        bounds = np.exp(np.arange(self.offset - 1, self.offset + len(self.counts))
                        * _LOG_GAMMA)
        cum = self.zeros + np.concatenate([[0], np.cumsum(self.counts)]).astype(np.float64)
        return np.interp(x, bounds, cum, left=float(self.zeros), right=float(cum[-1]))

    def top_mean(self, k: int) -> float:
        """The mean of the ``k`` largest values (within ``REL_ERR``)."""
        values, counts = self._values()[::-1], self.counts[::-1]
        taken = np.minimum(counts, np.maximum(0, k - (np.cumsum(counts) - counts)))
        return float((values * taken).sum() / max(1, taken.sum()))


@dataclass
class Moments:
    """Count, mean, M2 (Chan's merge), sum, min and max of the finite values."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    total: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf

    def add(self, values: np.ndarray) -> None:
        v = values[np.isfinite(values)]
        if not len(v):
            return
        nb, mb = len(v), float(v.mean())
        m2b = float(((v - mb) ** 2).sum())
        n = self.n + nb
        delta = mb - self.mean
        self.m2 += m2b + delta * delta * self.n * nb / n
        self.mean += delta * nb / n
        self.n = n
        self.total += float(v.sum())
        self.lo, self.hi = min(self.lo, float(v.min())), max(self.hi, float(v.max()))


class TimeBuckets:
    """min, sum, count and max of a series in ``buckets`` equal stretches of [t0, t1]."""

    def __init__(self, t0: int, t1: int, buckets: int) -> None:
        self.t0, self.width = t0, max(1.0, (t1 - t0) / buckets)
        self.lo = np.full(buckets, np.inf)
        self.hi = np.full(buckets, -np.inf)
        self.sum = np.zeros(buckets)
        self.n = np.zeros(buckets, np.int64)

    def add(self, t: np.ndarray, y: np.ndarray) -> None:
        ok = np.isfinite(y)
        t, y = t[ok], y[ok]
        idx = np.clip(((t - self.t0) / self.width).astype(np.int64), 0, len(self.n) - 1)
        np.minimum.at(self.lo, idx, y)
        np.maximum.at(self.hi, idx, y)
        self.sum += np.bincount(idx, y, len(self.n))
        self.n += np.bincount(idx, minlength=len(self.n))

    def series(self, origin: int, scale: float = 1.0) -> dict | None:
        from otel_benchlab.views.page import rounded

        used = np.flatnonzero(self.n)
        if not len(used):
            return None
        mid = (self.t0 + (used + 0.5) * self.width - origin) / 1e9
        return {"t": rounded(mid, 6), "min": rounded(self.lo[used] * scale),
                "mean": rounded(self.sum[used] / self.n[used] * scale),
                "max": rounded(self.hi[used] * scale)}


@dataclass
class PairDigest:
    """One pair of one stream (or, with ``stream`` "", across its streams)."""

    pipeline: str
    stream: str
    stage_from: str
    stage_to: str
    buckets: tuple[int, int, int]  # t0, t1, count
    latency: Moments = field(default_factory=Moments)
    latency_q: Sketch = field(default_factory=Sketch)
    first_start: int | None = None
    first_end: int | None = None
    last_end: int | None = None
    end_lo: int | None = None  # the earliest and latest end, whatever the order
    end_hi: int | None = None
    frames: int = 0
    frame_ms: Moments = field(default_factory=Moments)
    frame_q: Sketch = field(default_factory=Sketch)
    power: dict[str, Moments] = field(default_factory=dict)
    energy: dict[str, Moments] = field(default_factory=dict)
    energy_q: dict[str, Sketch] = field(default_factory=dict)
    series: dict[str, TimeBuckets] = field(default_factory=dict)
    scatter: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (priority, x, y)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.pipeline, self.stream, self.stage_from, self.stage_to)

    @property
    def name(self) -> str:
        return f"{self.pipeline} {self.stage_from}->{self.stage_to}" + (
            f" [{self.stream}]" if self.stream else "")

    def _series(self, what: str) -> TimeBuckets:
        if what not in self.series:
            self.series[what] = TimeBuckets(*self.buckets)
        return self.series[what]

    def add(self, start: np.ndarray, end: np.ndarray, latency: np.ndarray,
            power: dict[str, np.ndarray], energy: dict[str, np.ndarray], primary: str | None,
            rng: np.random.Generator | None = None) -> None:
        """Rows of this pair in end order (a batch), after the rows added before."""
        if not len(end):
            return
        self.frames += len(end)
        self.latency.add(latency)
        self.latency_q.add(latency)
        lo = int(start.min())
        self.first_start = lo if self.first_start is None else min(self.first_start, lo)
        self.first_end = int(end[0]) if self.first_end is None else self.first_end
        lo, hi = int(end[0]), int(end[-1])
        self.end_lo = lo if self.end_lo is None else min(self.end_lo, lo)
        self.end_hi = hi if self.end_hi is None else max(self.end_hi, hi)
        ft = np.diff(end if self.last_end is None else np.concatenate([[self.last_end], end])
                     ) / 1e6
        self.last_end = int(end[-1])
        ft_end = end[len(end) - len(ft):]
        ok = ft > 0
        self.frame_ms.add(ft[ok])
        self.frame_q.add(ft[ok])
        self._series("latency").add(end, latency)
        self._series("frame_time").add(ft_end[ok], ft[ok])
        for src, v in power.items():
            self.power.setdefault(src, Moments()).add(v)
        for src, v in energy.items():
            self.energy.setdefault(src, Moments()).add(v)
            self.energy_q.setdefault(src, Sketch()).add(v)
            if src == primary:
                self._series("energy").add(end, v)
        if rng is not None and primary in power:
            prio = rng.random(len(end))
            old = self.scatter or (np.zeros(0), np.zeros(0), np.zeros(0))
            p, x, y = (np.concatenate([a, b]) for a, b in
                       zip(old, (prio, power[primary], latency), strict=True))
            keep = np.argsort(p)[-SCATTER_POINTS:]
            self.scatter = (p[keep], x[keep], y[keep])

    # -- the figures, in pair_summary's and the charts' shapes --------------------------
    def summary(self) -> dict:
        lat = self.latency
        q = self.latency_q.quantiles([0.5, 0.9, 0.95, 0.99]) if lat.n else [None] * 4
        latency = dict.fromkeys(LATENCY_KEYS)
        if lat.n:
            latency = {"min": lat.lo, "p50": float(q[0]), "p90": float(q[1]),
                       "p95": float(q[2]), "p99": float(q[3]), "max": lat.hi,
                       "mean": lat.mean, "stddev": math.sqrt(lat.m2 / lat.n)}
        per_frame = {}
        for src, m in self.energy.items():
            if m.n:
                p50, p95 = self.energy_q[src].quantiles([0.5, 0.95])
                per_frame[src] = {"mean": m.mean, "p50": float(p50), "p95": float(p95)}
        span_s = ((self.last_end or 0) - (self.first_end or 0)) / 1e9
        return {
            "pipeline": self.pipeline, "stream": self.stream, "from": self.stage_from,
            "to": self.stage_to, "frames": self.frames,
            "fps": (self.frames - 1) / span_s if self.frames > 1 and span_s > 0 else None,
            "latency_ms": latency, "energy_j_per_frame": per_frame,
            "energy_j": {src: m.total for src, m in self.energy.items()},
            "power_w": {src: m.mean for src, m in self.power.items() if m.n},
            "frame_time": self._lows(), "unpaired": None}

    def _lows(self) -> dict[str, float | None]:
        f = self.frame_ms
        if not f.n:
            return {"avg_fps": None, "p1_fps": None, "low1_fps": None}
        return {"avg_fps": 1e3 * f.n / f.total,
                "p1_fps": float(1e3 / self.frame_q.quantiles([0.99])[0]),
                "low1_fps": 1e3 / self.frame_q.top_mean(max(1, f.n // 100))}

    def histogram(self, bins: int) -> dict:
        """As ``stats.histogram``: equal bins from the minimum to the 99.9th percentile."""
        from otel_benchlab.views.page import rounded

        if not self.latency.n:
            return {"edges": [], "counts": [], "over": 0}
        lo, hi = self.latency.lo, float(self.latency_q.quantiles([0.999])[0])
        hi = hi if hi > lo else lo + 1e-9
        edges = np.linspace(lo, hi, bins + 1)
        below = self.latency_q.cumulative(edges)  # values at or below each edge
        counts = np.diff(below)
        counts[0] += below[0]
        return {"edges": rounded(edges.tolist()),
                "counts": np.round(counts).astype(np.int64).tolist(),
                "over": int(round(self.latency.n - below[-1]))}

    def cdf(self, points: int) -> dict:
        from otel_benchlab.views.page import rounded

        probs = np.linspace(0.0, 1.0, points)
        x = self.latency_q.quantiles(probs) if self.latency.n else np.zeros(0)
        if len(x):
            x[0], x[-1] = self.latency.lo, self.latency.hi
        return {"x": rounded(x.tolist()), "y": rounded(probs[:len(x)].tolist(), 4)}
