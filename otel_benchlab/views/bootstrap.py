"""Did a change make a pair better or worse? A bootstrap over time blocks.

Frames are not independent: latency and power follow the load for seconds at a time, so
resampling single frames treats a slow minute as thousands of independent facts and calls
noise significant (measured on generated runs: a naive bootstrap's 95 % interval covered
the truth in 52-88 % of runs). Here:

- each run is cut into one-second blocks, drawn with replacement (baseline and candidate
  independently), and every metric is recomputed from the drawn blocks: the resamples
  keep the shape of each metric's distribution;
- their spread is then set to the run's own dependence: each metric's influence (for a
  mean the frames' deviations from it, for a percentile the frames below it less the
  share expected) is summed per second, and the long-run variance of that series over its
  plain variance (Politis' flat-top lag window, ``long_run_ratio``) scales the resamples
  about their median. A load that swings for tens of seconds widens the interval; one that
  swings to and fro many times within the run averages out in its mean, and narrows it;
- the tail percentiles (p95, p99) rest on a few frames a second, and that ratio swings
  widely from run to run for them: they are also drawn in long blocks (``long_block_s``)
  and the wider of the two spreads is kept.

The interval of a change is the central ``confidence`` share of the resampled changes
(percentile bootstrap). A change counts (``better``/``worse``) only when its interval
leaves out zero **and** the change is larger than ``threshold_pct``; otherwise ``same``.

Quantiles of a resample are read from per-block histograms on shared log-spaced bins
(1,024 between both runs' 0.01st and 99.99th percentiles, ~0.5 % wide for a 100x range),
so a resample costs a matrix product, not a sort; the figures shown are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

RESAMPLES = 1000
BINS = 1024
BLOCK_S = 1.0
MIN_RATIO = 0.25
BOUND_C = 2.0
TAIL_Q = 90.0
LONG_BLOCK_LAGS = 2.0

# metric -> True when larger is better
LATENCY_METRICS = {"latency_p50_ms": 50.0, "latency_p95_ms": 95.0, "latency_p99_ms": 99.0}


@dataclass
class Frames:
    """One pair of one run, a row per frame: end time (s, any origin), latency, and per
    power source the frame's energy (J) and mean power (W), NaN where unknown."""

    t_s: np.ndarray
    latency_ms: np.ndarray
    energy_j: dict[str, np.ndarray] = field(default_factory=dict)
    power_w: dict[str, np.ndarray] = field(default_factory=dict)
    # metric -> (numerator, denominator) a row: the metric is the sum of one over the
    # sum of the other (an LLM request's joules over its output tokens)
    ratios: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # metric -> a value a row: the metric is their sum a second (output tokens a second)
    rates: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        order = np.argsort(self.t_s, kind="stable")
        if len(order) and np.any(order != np.arange(len(order))):
            self.t_s, self.latency_ms = self.t_s[order], self.latency_ms[order]
            self.energy_j = {k: v[order] for k, v in self.energy_j.items()}
            self.power_w = {k: v[order] for k, v in self.power_w.items()}
            self.ratios = {k: (a[order], b[order]) for k, (a, b) in self.ratios.items()}
            self.rates = {k: v[order] for k, v in self.rates.items()}


@dataclass
class Change:
    metric: str
    baseline: float | None
    candidate: float | None
    change_pct: float | None
    ci_pct: tuple[float, float] | None
    verdict: str  # better, worse, same

    def as_dict(self) -> dict:
        return {"metric": self.metric, "baseline": self.baseline, "candidate": self.candidate,
                "change_pct": self.change_pct,
                "ci_pct": list(self.ci_pct) if self.ci_pct else None, "verdict": self.verdict}


def higher_is_better(metric: str) -> bool:
    return metric == "fps"


def point_values(f: Frames) -> dict[str, float | None]:
    """Every metric of one run, from every frame."""
    out: dict[str, float | None] = {}
    lat = f.latency_ms[np.isfinite(f.latency_ms)]
    for name, q in LATENCY_METRICS.items():
        out[name] = float(np.percentile(lat, q)) if len(lat) else None
    out["latency_mean_ms"] = float(lat.mean()) if len(lat) else None
    span = float(f.t_s[-1] - f.t_s[0]) if len(f.t_s) > 1 else 0.0
    out["fps"] = (len(f.t_s) - 1) / span if span > 0 else None
    for prefix, table in (("energy_j_per_frame", f.energy_j), ("power_w", f.power_w)):
        for src, v in table.items():
            v = v[np.isfinite(v)]
            out[f"{prefix}.{src}"] = float(v.mean()) if len(v) else None
    for name, (num, den) in f.ratios.items():
        ok = np.isfinite(num) & np.isfinite(den)
        total = float(den[ok].sum())
        out[name] = float(num[ok].sum()) / total if total > 0 else None
    for name, v in f.rates.items():
        out[name] = float(np.nansum(v)) / span if span > 0 else None
    return out


def long_block_s(runs: list[Frames]) -> float:
    """Seconds per block for the tail percentiles: twice the lag at which the
    autocorrelation of the per-second mean latency first falls below 1/e, the larger over
    the runs; at least 1 s and at most a tenth of the shortest run."""
    lags = [BLOCK_S / 2]
    shortest = min(float(f.t_s[-1] - f.t_s[0]) for f in runs)
    for f in runs:
        sec = np.floor(f.t_s - f.t_s[0]).astype(np.int64)
        counts = np.bincount(sec)
        sums = np.bincount(sec, weights=np.nan_to_num(f.latency_ms))
        lag = first_lag(sums[counts > 0] / counts[counts > 0])
        if lag is not None:
            lags.append(lag)
    return long_block_of(lags, shortest)


def first_lag(y: np.ndarray) -> float | None:
    """The lag (in the series' steps) at which the autocorrelation of ``y`` first falls
    below 1/e, half the series where it never does; None for a short or flat series."""
    y = y - y.mean()
    var = float(np.dot(y, y))
    if len(y) < 8 or var <= 0:
        return None
    acf = np.correlate(y, y, "full")[len(y) - 1:] / var
    below = np.flatnonzero(acf < 1 / np.e)
    return float(below[0]) if len(below) else len(y) / 2


def long_block_of(lags_s: list[float], shortest_s: float) -> float:
    """Twice the longest of the runs' lags (s), at least 1 s and at most a tenth of the
    shortest run."""
    return float(max(BLOCK_S, min(LONG_BLOCK_LAGS * max(lags_s), shortest_s / 10)))


def long_run_ratio(y: np.ndarray) -> float:
    """How much more (or less) a mean of the series ``y`` varies than if its points were
    independent: the long-run variance over the variance, with Politis' flat-top lag
    window and his rule for its width (the smallest lag after which 5 autocorrelations in
    a row are negligible). A load that swings for seconds makes it large; one that swings
    to and fro many times within the run cancels out in the run's mean, and so here."""
    n = len(y)
    if n < 8:
        return 1.0
    y = y - y.mean()
    gamma = np.correlate(y, y, "full")[n - 1:] / n
    if gamma[0] <= 0:
        return 1.0
    rho = gamma / gamma[0]
    bound, run = BOUND_C * np.sqrt(np.log10(n) / n), 5
    small = np.abs(rho[1:]) < bound
    m = n // 4
    for k in range(1, min(n // 4, len(small) - run)):
        if small[k - 1:k - 1 + run].all():
            m = k - 1
            break
    width = max(2 * m, 1)
    lags = np.arange(1, min(width, n - 1) + 1)
    t = lags / width
    taper = np.where(t <= 0.5, 1.0, 2 * (1 - t))
    lrv = gamma[0] + 2 * np.dot(taper, gamma[lags])
    return float(max(lrv / gamma[0], MIN_RATIO))


@dataclass
class _Blocks:
    """Per block of one run: what every metric is rebuilt from."""

    count: np.ndarray
    duration: np.ndarray
    lat_sum: np.ndarray
    hist: np.ndarray  # blocks x bins
    sums: dict[str, tuple[np.ndarray, np.ndarray]]  # metric -> (sum, count) per block
    rates: dict[str, np.ndarray]  # metric -> sum per block (over the block's duration)


def _blocks(f: Frames, block_s: float, edges: np.ndarray) -> _Blocks:
    rel = f.t_s - f.t_s[0]
    idx = np.floor(rel / block_s).astype(np.int64)
    n = int(idx[-1]) + 1
    count = np.bincount(idx, minlength=n).astype(np.float64)
    duration = np.full(n, block_s)
    duration[-1] = max(float(rel[-1] - (n - 1) * block_s), 1e-9)
    lat = np.nan_to_num(f.latency_ms)
    lat_sum = np.bincount(idx, weights=lat, minlength=n)
    bins = np.clip(np.searchsorted(edges, lat, side="right") - 1, 0, len(edges) - 2)
    nbins = len(edges) - 1
    hist = np.bincount(idx * nbins + bins, minlength=n * nbins).reshape(n, nbins)
    hist = hist.astype(np.float32)
    sums = {}
    for prefix, table in (("energy_j_per_frame", f.energy_j), ("power_w", f.power_w)):
        for src, v in table.items():
            ok = np.isfinite(v)
            sums[f"{prefix}.{src}"] = (np.bincount(idx, weights=np.where(ok, v, 0.0),
                                                   minlength=n),
                                       np.bincount(idx, weights=ok, minlength=n))
    for name, (num, den) in f.ratios.items():
        ok = np.isfinite(num) & np.isfinite(den)
        sums[name] = (np.bincount(idx, weights=np.where(ok, num, 0.0), minlength=n),
                      np.bincount(idx, weights=np.where(ok, den, 0.0), minlength=n))
    rates = {k: np.bincount(idx, weights=np.nan_to_num(v), minlength=n)
             for k, v in f.rates.items()}
    keep = count > 0  # a pause in the run is no block
    return _Blocks(count[keep], duration[keep], lat_sum[keep], hist[keep],
                   {k: (s[keep], c[keep]) for k, (s, c) in sums.items()},
                   {k: v[keep] for k, v in rates.items()})


def _hist_quantile(cum: np.ndarray, edges: np.ndarray, q: float) -> np.ndarray:
    """The q-th percentile of each row's histogram (cumulative counts), linear in a bin."""
    target = q / 100.0 * cum[:, -1]
    i = np.minimum((cum < target[:, None]).sum(axis=1), cum.shape[1] - 1)
    rows = np.arange(len(i))
    before = np.where(i > 0, cum[rows, i - 1], 0.0)
    inside = cum[rows, i] - before
    frac = np.where(inside > 0, (target - before) / np.where(inside > 0, inside, 1), 0.5)
    return edges[i] + np.clip(frac, 0, 1) * (edges[i + 1] - edges[i])


def _resampled(b: _Blocks, edges: np.ndarray, metrics: list[str], resamples: int,
               rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each metric over ``resamples`` draws of the blocks with replacement."""
    n = len(b.count)
    draws = rng.integers(0, n, size=(resamples, n)) + (np.arange(resamples) * n)[:, None]
    weights = np.bincount(draws.ravel(), minlength=resamples * n).reshape(resamples, n)
    weights = weights.astype(np.float32)
    frames = weights @ b.count
    out: dict[str, np.ndarray] = {}
    cum = np.cumsum(weights @ b.hist, axis=1)
    for name, q in LATENCY_METRICS.items():
        if name in metrics:
            out[name] = _hist_quantile(cum, edges, q)
    out["latency_mean_ms"] = (weights @ b.lat_sum) / frames
    out["fps"] = frames / (weights @ b.duration)
    for name, (s, c) in b.sums.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = (weights @ s) / (weights @ c)
    for name, v in b.rates.items():
        out[name] = (weights @ v) / (weights @ b.duration)
    return out


def _edges(runs: list[Frames]) -> np.ndarray:
    lat = np.concatenate([f.latency_ms[np.isfinite(f.latency_ms)] for f in runs])
    lo, hi = np.percentile(lat, [0.01, 99.99]) if len(lat) else (1.0, 2.0)
    lo = max(float(lo), 1e-6)
    hi = max(float(hi), lo * 1.001)
    edges = np.geomspace(lo, hi, BINS + 1)
    edges[0], edges[-1] = min(lo, float(lat.min(initial=lo))), max(hi, float(lat.max(initial=hi)))
    return edges


def _influence_ratios(f: Frames, values: dict[str, float | None]) -> dict[str, float]:
    """Per metric, ``long_run_ratio`` of its influence summed per second: for a quantile
    the frames below it less the share expected, for a mean the deviations from it."""
    sec = np.floor((f.t_s - f.t_s[0]) / BLOCK_S).astype(np.int64)
    lat = f.latency_ms

    def ratio(u: np.ndarray) -> float:
        return long_run_ratio(np.bincount(sec, weights=u)[np.bincount(sec) > 0])

    out = {}
    for name, q in LATENCY_METRICS.items():
        if values.get(name) is not None:
            out[name] = ratio((lat <= values[name]) - q / 100)
    if values.get("latency_mean_ms") is not None:
        out["latency_mean_ms"] = ratio(np.nan_to_num(lat - values["latency_mean_ms"]))
    for prefix, table in (("energy_j_per_frame", f.energy_j), ("power_w", f.power_w)):
        for src, v in table.items():
            mean = values.get(f"{prefix}.{src}")
            if mean is not None:
                out[f"{prefix}.{src}"] = ratio(np.nan_to_num(v - mean))
    for name, (num, den) in f.ratios.items():  # a ratio of sums: num - R den
        if values.get(name) is not None:
            out[name] = ratio(np.nan_to_num(num - values[name] * den))
    for name, v in f.rates.items():
        if values.get(name) is not None:
            out[name] = ratio(np.nan_to_num(v))
    return out


def _rescaled(replicates: dict[str, np.ndarray], ratios: dict[str, float]
              ) -> dict[str, np.ndarray]:
    """Each metric's resampled values spread by the square root of its ratio about their
    median: the one-second blocks keep the shape of the distribution, the ratio its
    width under the run's own dependence."""
    out = {}
    for name, rep in replicates.items():
        r = ratios.get(name, 1.0)
        mid = np.nanmedian(rep) if len(rep) else 0.0
        out[name] = mid + np.sqrt(r) * (rep - mid)
    return out


def _width(values: np.ndarray) -> float:
    lo, hi = np.nanpercentile(values, [25, 75]) if len(values) else (0.0, 0.0)
    return float(hi - lo)


def compare_frames(baseline: Frames, candidate: Frames, threshold_pct: float = 2.0,
                   confidence: float = 0.95, resamples: int = RESAMPLES, seed: int = 0,
                   block_s: float = BLOCK_S, rescale: bool = True) -> list[Change]:
    """Every metric both runs have: baseline, candidate, change %, its interval, verdict."""
    base_v, cand_v = point_values(baseline), point_values(candidate)
    if len(baseline.t_s) < 2 or len(candidate.t_s) < 2:
        return unmeasured(base_v, cand_v)
    edges = _edges([baseline, candidate])
    runs = [Run(v, lambda long_s, f=f: _blocks(f, long_s or block_s, edges),
                lambda f=f, v=v: _influence_ratios(f, v))
            for f, v in ((baseline, base_v), (candidate, cand_v))]
    return bootstrap_changes(*runs, edges, lambda: long_block_s([baseline, candidate]),
                             threshold_pct, confidence, resamples, seed, rescale)


def unmeasured(base_v: dict[str, float | None], cand_v: dict[str, float | None]
               ) -> list[Change]:
    """Every metric both runs have, without an interval (a run of fewer than 2 frames)."""
    return [Change(m, base_v[m], cand_v.get(m), None, None, "same")
            for m in base_v if m in cand_v]


@dataclass
class Run:
    """One run as the bootstrap draws it: its point values, its blocks (``blocks(None)``
    the one-second ones, ``blocks(s)`` blocks of about ``s`` seconds) and the long-run
    ratio of each metric's influence (``_influence_ratios``)."""

    values: dict[str, float | None]
    blocks: Callable[[float | None], _Blocks]
    ratios: Callable[[], dict[str, float]]


def bootstrap_changes(base: Run, cand: Run, edges: np.ndarray,
                      long_s: Callable[[], float], threshold_pct: float, confidence: float,
                      resamples: int = RESAMPLES, seed: int = 0,
                      rescale: bool = True) -> list[Change]:
    """The block bootstrap of two runs (held in memory, or aggregated a batch at a time,
    ``compare_long.py``): resampled, spread by the pooled ratios, the tails also drawn in
    long blocks; then ``verdicts``."""
    base_v, cand_v = base.values, cand.values
    metrics = [m for m in base_v if m in cand_v]
    rng = np.random.default_rng(seed)
    rb = _resampled(base.blocks(None), edges, metrics, resamples, rng)
    rc = _resampled(cand.blocks(None), edges, metrics, resamples, rng)
    if rescale:
        # One ratio for both runs, their mean: each run's own estimate is noisy, and the
        # question asked is whether both come from the same process.
        qb, qc = base.ratios(), cand.ratios()
        pooled = {m: (qb[m] + qc[m]) / 2 for m in qb if m in qc}
        rb, rc = _rescaled(rb, pooled), _rescaled(rc, pooled)
        # A tail rests on a few frames a second and its ratio swings widely from run to
        # run (measured): long blocks are drawn too, and the wider of the two is kept.
        tails = [m for m, q in LATENCY_METRICS.items() if q >= TAIL_Q and m in metrics]
        if tails:
            seconds = long_s()
            for run, reps in ((base, rb), (cand, rc)):
                got = _resampled(run.blocks(seconds), edges, tails, resamples, rng)
                for m in tails:
                    if _width(got[m]) > _width(reps[m]):
                        reps[m] = got[m]
    return verdicts(base_v, cand_v, metrics, rb, rc, threshold_pct, confidence)


def verdicts(base_v: dict[str, float | None], cand_v: dict[str, float | None],
             metrics: list[str], rb: dict[str, np.ndarray], rc: dict[str, np.ndarray],
             threshold_pct: float, confidence: float) -> list[Change]:
    """Each metric's change, its interval from the resampled ratios, and the verdict."""
    tail = (1 - confidence) / 2 * 100
    out = []
    for m in metrics:
        b, c = base_v[m], cand_v[m]
        if b is None or c is None or b == 0:
            out.append(Change(m, b, c, None, None, "same"))
            continue
        change = (c / b - 1) * 100
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios = rc[m] / rb[m]
        ratios = ratios[np.isfinite(ratios)]
        if not len(ratios):
            out.append(Change(m, b, c, change, None, "same"))
            continue
        lo, hi = (np.percentile(ratios, [tail, 100 - tail]) - 1) * 100
        verdict = "same"
        if (lo > 0 or hi < 0) and abs(change) > threshold_pct:
            up = change > 0
            verdict = "better" if up == higher_is_better(m) else "worse"
        out.append(Change(m, b, c, float(change), (float(lo), float(hi)), verdict))
    return out
