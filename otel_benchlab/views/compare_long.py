"""``compare`` of sessions too long to hold: ``bootstrap.py``'s block bootstrap from
aggregates built in two passes over each session's parts, in memory that does not grow
with the sessions' length.

- Pass 1 is the report's digest (``digest_session``): per pair of a stream, its point
  values (percentiles within ``digest.REL_ERR``; means and frames/s exact) and its range.
- The bins of each pair (log-spaced between both runs' 0.01st and 99.99th percentiles, of
  their merged sketches) and its block length follow: 1 s, as ``compare_frames`` draws
  them, up to ``MAX_BLOCKS`` blocks; longer past that, so that a week is as many blocks
  as ~67 minutes.
- Pass 2, per pair: per block the frames, latency sum, histogram and the energy and power
  sums; per second (per ``MAX_UNITS``-th of the run past that) each metric's influence,
  whose long-run ratio sets the intervals' width, and the mean latency that sets the
  tails' long blocks, which are summed from the short ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from otel_benchlab.views.bootstrap import (
    BINS,
    BLOCK_S,
    LATENCY_METRICS,
    RESAMPLES,
    Change,
    Run,
    _Blocks,
    bootstrap_changes,
    first_lag,
    long_block_of,
    long_run_ratio,
    unmeasured,
)
from otel_benchlab.views.digest import PairDigest, Sketch
from otel_benchlab.views.digest_session import Group, Scan, groups

MAX_BLOCKS = 4_000
MAX_UNITS = 100_000


def point_values(d: PairDigest) -> dict[str, float | None]:
    """``bootstrap.point_values`` from a digest, in its order."""
    out: dict[str, float | None] = {}
    q = d.latency_q.quantiles([v / 100 for v in LATENCY_METRICS.values()])
    for (name, _), v in zip(LATENCY_METRICS.items(), q, strict=True):
        out[name] = float(v) if d.latency.n else None
    out["latency_mean_ms"] = d.latency.mean if d.latency.n else None
    span = ((d.end_hi or 0) - (d.end_lo or 0)) / 1e9
    out["fps"] = (d.frames - 1) / span if d.frames > 1 and span > 0 else None
    for prefix, table in (("energy_j_per_frame", d.energy), ("power_w", d.power)):
        for src, m in table.items():
            out[f"{prefix}.{src}"] = m.mean if m.n else None
    return out


def edges_of(a: PairDigest, b: PairDigest) -> np.ndarray:
    both = Sketch()
    both.merge(a.latency_q)
    both.merge(b.latency_q)
    lo, hi = both.quantiles([0.0001, 0.9999])
    lo = max(float(lo), 1e-6)
    hi = max(float(hi), lo * 1.001)
    edges = np.geomspace(lo, hi, BINS + 1)
    edges[0] = min(lo, a.latency.lo, b.latency.lo)
    edges[-1] = max(hi, a.latency.hi, b.latency.hi)
    return edges


@dataclass
class RunBlocks:
    """Pass 2 of one pair of one run."""

    values: dict[str, float | None]
    edges: np.ndarray
    t0_ns: int
    span_s: float
    block_s: float = field(init=False)
    unit_s: float = field(init=False)

    def __post_init__(self) -> None:
        self.block_s = max(BLOCK_S, self.span_s / MAX_BLOCKS)
        self.unit_s = max(BLOCK_S, self.span_s / MAX_UNITS)
        nb = int(self.span_s // self.block_s) + 1
        nu = int(self.span_s // self.unit_s) + 1
        self.count, self.lat_sum = np.zeros(nb), np.zeros(nb)
        self.hist = np.zeros((nb, BINS), np.float32)
        self.sums: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.u_count, self.u_lat = np.zeros(nu), np.zeros(nu)
        self.influence: dict[str, np.ndarray] = {}
        self.last_rel = 0.0

    def add(self, g: Group) -> None:
        rel = (g.end - self.t0_ns) / 1e9
        self.last_rel = max(self.last_rel, float(rel.max()))
        bi = np.clip((rel / self.block_s).astype(np.int64), 0, len(self.count) - 1)
        ui = np.clip((rel / self.unit_s).astype(np.int64), 0, len(self.u_count) - 1)
        nb, nu = len(self.count), len(self.u_count)
        lat = np.nan_to_num(g.latency)
        self.count += np.bincount(bi, minlength=nb)
        self.lat_sum += np.bincount(bi, lat, nb)
        bins = np.clip(np.searchsorted(self.edges, lat, side="right") - 1, 0, BINS - 1)
        np.add.at(self.hist, (bi, bins), 1)
        self.u_count += np.bincount(ui, minlength=nu)
        self.u_lat += np.bincount(ui, lat, nu)
        v = self.values
        for name, q in LATENCY_METRICS.items():
            if v.get(name) is not None:
                self._influence(name, ui, (g.latency <= v[name]) - q / 100)
        if v.get("latency_mean_ms") is not None:
            self._influence("latency_mean_ms", ui, np.nan_to_num(g.latency -
                                                                 v["latency_mean_ms"]))
        for prefix, table in (("energy_j_per_frame", g.energy), ("power_w", g.power)):
            for src, x in table.items():
                name = f"{prefix}.{src}"
                if v.get(name) is None:
                    continue
                ok = np.isfinite(x)
                s, c = self.sums.setdefault(name, (np.zeros(nb), np.zeros(nb)))
                s += np.bincount(bi, np.where(ok, x, 0.0), nb)
                c += np.bincount(bi, ok, nb)
                self._influence(name, ui, np.nan_to_num(x - v[name]))

    def _influence(self, name: str, ui: np.ndarray, u: np.ndarray) -> None:
        acc = self.influence.setdefault(name, np.zeros(len(self.u_count)))
        acc += np.bincount(ui, u, len(acc))

    def blocks(self, long_s: float | None = None) -> _Blocks:
        """The run's blocks as ``bootstrap._blocks`` makes them (``long_s``: the short
        blocks summed into blocks of about that length)."""
        n = int(self.last_rel // self.block_s) + 1
        count, lat_sum, hist = self.count[:n], self.lat_sum[:n], self.hist[:n]
        sums = {k: (s[:n], c[:n]) for k, (s, c) in self.sums.items()}
        duration = np.full(n, self.block_s)
        duration[-1] = max(self.last_rel - (n - 1) * self.block_s, 1e-9)
        if long_s is not None and long_s > self.block_s:
            g = (np.arange(n) * self.block_s / long_s).astype(np.int64)
            m = int(g[-1]) + 1

            def summed(a: np.ndarray) -> np.ndarray:
                return np.bincount(g, a, m)

            count, lat_sum, duration = summed(count), summed(lat_sum), summed(duration)
            folded = np.zeros((m, BINS), np.float32)
            np.add.at(folded, g, hist)
            hist = folded
            sums = {k: (summed(s), summed(c)) for k, (s, c) in sums.items()}
        keep = count > 0
        return _Blocks(count[keep], duration[keep], lat_sum[keep], hist[keep],
                       {k: (s[keep], c[keep]) for k, (s, c) in sums.items()}, {})

    def ratios(self) -> dict[str, float]:
        used = self.u_count > 0
        return {k: long_run_ratio(u[used]) for k, u in self.influence.items()}

    def lag_s(self) -> float:
        """``long_block_s``'s lag for this run, in seconds."""
        used = self.u_count > 0
        lag = first_lag(self.u_lat[used] / self.u_count[used])
        return BLOCK_S / 2 if lag is None else lag * self.unit_s

    def run(self) -> Run:
        return Run(self.values, self.blocks, self.ratios)


def second_pass(found: Scan, wanted: dict[tuple, RunBlocks]) -> None:
    for table in found.tables():
        for g in groups(table, found.labels):
            run = wanted.get(g.key)
            if run is not None:
                run.add(g)


def compare_blocks(base: RunBlocks, cand: RunBlocks, threshold_pct: float,
                   confidence: float, resamples: int = RESAMPLES,
                   seed: int = 0) -> list[Change]:
    """``bootstrap.compare_frames`` over two runs' pass-2 aggregates."""
    if base.count.sum() < 2 or cand.count.sum() < 2:
        return unmeasured(base.values, cand.values)
    return bootstrap_changes(
        base.run(), cand.run(), base.edges,
        lambda: long_block_of([BLOCK_S / 2, base.lag_s(), cand.lag_s()],
                              min(base.last_rel, cand.last_rel)),
        threshold_pct, confidence, resamples, seed)
