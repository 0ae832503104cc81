"""The report's and the live page's statistics: pure functions over arrays.

Percentiles are numpy's default (linear interpolation between closest ranks, as DuckDB's
``quantile_cont`` and pandas' ``quantile``), over every row; only what is drawn is thinned.
"""

from __future__ import annotations

import numpy as np

LATENCY_KEYS = ("min", "p50", "p90", "p95", "p99", "max", "mean", "stddev")


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, np.float64)
    return values[np.isfinite(values)]


def latency_summary(ms: np.ndarray) -> dict[str, float | None]:
    """min / p50 / p90 / p95 / p99 / max / mean / stddev (population) of the latencies."""
    ms = _finite(ms)
    if not len(ms):
        return dict.fromkeys(LATENCY_KEYS)
    p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
    return {"min": float(ms.min()), "p50": float(p50), "p90": float(p90), "p95": float(p95),
            "p99": float(p99), "max": float(ms.max()), "mean": float(ms.mean()),
            "stddev": float(ms.std())}


def spread(values: np.ndarray) -> dict[str, float] | None:
    """mean / p50 / p95 of the known values; None when none is known."""
    values = _finite(values)
    if not len(values):
        return None
    p50, p95 = np.percentile(values, [50, 95])
    return {"mean": float(values.mean()), "p50": float(p50), "p95": float(p95)}


def frame_rate(end_ns: np.ndarray) -> float | None:
    """Frames per second: the frames after the first over the time from first to last end."""
    if len(end_ns) < 2:
        return None
    span_s = (int(end_ns.max()) - int(end_ns.min())) / 1e9
    return (len(end_ns) - 1) / span_s if span_s > 0 else None


def frame_times_ms(end_ns: np.ndarray) -> np.ndarray:
    """Time between one frame's end and the next one's (CapFrameX's MsBetweenPresents);
    ``end_ns`` in end order, as a pair's rows are (sessions.PairRows)."""
    return np.diff(end_ns) / 1e6


def frame_time_lows(frame_ms: np.ndarray) -> dict[str, float | None]:
    """As CapFrameX reports them: average fps (frames / time), P1 (the fps of the 99th
    percentile frame time) and 1 % low (the fps of the mean of the slowest 1 % of frame
    times)."""
    frame_ms = _finite(frame_ms)
    frame_ms = frame_ms[frame_ms > 0]
    if not len(frame_ms):
        return {"avg_fps": None, "p1_fps": None, "low1_fps": None}
    worst = np.sort(frame_ms)[-max(1, len(frame_ms) // 100):]
    return {"avg_fps": float(1e3 * len(frame_ms) / frame_ms.sum()),
            "p1_fps": float(1e3 / np.percentile(frame_ms, 99)),
            "low1_fps": float(1e3 / worst.mean())}


def minmax_buckets(t: np.ndarray, y: np.ndarray, buckets: int = 1000
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Thin a time series for drawing without hiding a peak: per equal-time bucket the
    bucket's middle time, its min, mean and max. ``t`` ascending; NaN values are left out."""
    keep = np.isfinite(y)
    t, y = np.asarray(t, np.float64)[keep], np.asarray(y, np.float64)[keep]
    if not len(t):
        empty = np.zeros(0)
        return empty, empty, empty, empty
    lo, hi = t[0], t[-1]
    width = (hi - lo) / buckets if hi > lo else 1.0
    idx = np.minimum(((t - lo) / width).astype(np.int64), buckets - 1)
    starts = np.flatnonzero(np.diff(idx, prepend=-1))
    counts = np.diff(np.append(starts, len(t)))
    return (lo + (idx[starts] + 0.5) * width, np.minimum.reduceat(y, starts),
            np.add.reduceat(y, starts) / counts, np.maximum.reduceat(y, starts))


def histogram(values: np.ndarray, bins: int = 60) -> dict[str, list[float] | int]:
    """Counts over equal bins from the minimum to the 99.9th percentile; what lies above
    is counted in ``over`` (one slow frame must not squeeze the rest into one bar)."""
    values = _finite(values)
    if not len(values):
        return {"edges": [], "counts": [], "over": 0}
    lo, hi = float(values.min()), float(np.percentile(values, 99.9))
    if hi <= lo:
        hi = lo + 1e-9
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return {"edges": edges.tolist(), "counts": counts.tolist(),
            "over": int((values > hi).sum())}


def cdf(values: np.ndarray, points: int = 300) -> tuple[list[float], list[float]]:
    """The empirical CDF at ``points`` evenly spaced probabilities: (values, probability)."""
    values = _finite(values)
    if not len(values):
        return [], []
    probs = np.linspace(0.0, 1.0, points)
    return np.quantile(values, probs).tolist(), probs.tolist()


def sample_indices(n: int, k: int, seed: int = 0) -> np.ndarray:
    """At most ``k`` of ``n`` rows, chosen at random (reproducibly), in row order."""
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, k, replace=False))
