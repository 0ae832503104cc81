"""Attributed energy: a power source's energy shared among the spans running at each
instant, so that the spans' figures add up to what the meter measured.

A span's ``energy_j`` is the source's energy *while it ran*: with overlapping spans (several
streams, pipelined stages) the same joules are counted once for every span running. Here,
over [t0, t1], the source's energy between consecutive span boundaries (the power is
integrated exactly as ``energy.py`` does, linear between samples) is split among the spans
running in that stretch, by weight (equal by default); a stretch with no span running is
**idle** energy. For one source, then: the attributed energy of all spans + idle = the
source's energy over [t0, t1], to floating-point rounding.

Nested spans of one frame (an application's parent and child spans both measured, or pairs
``a->c`` beside ``a->b`` and ``b->c``) would count the frame twice: within a frame (its
trace for an application's spans), a span is charged only while none of the spans inside
it runs, so the energy goes to the innermost span running (``innermost_pieces``).

Where the source's energy is unknown (before its first sample, after its last, a gap
between samples longer than ``max_gap_ns``), there is nothing to share: a span gets its
share of the stretches where the power is known, and no figure (NaN, not invented) if it
ran only where it is not. So the shares add up even at a session's edges, where a span's
while-it-ran energy is unknown.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import numpy as np

from otel_benchlab.components import Component
from otel_benchlab.records import StageSpan

from .power_series import PowerSeries


@dataclass
class AttributionConfig:
    # Each instant's power is shared among the spans running then (equal shares unless
    # weighted), so attributed energies plus idle add up to the meter's. Live, an interval
    # is shared out once no span that can still arrive overlaps it: this long after it.
    # Unset: the pairing window + the power gap + 1 s, and 6 s more with the OTLP intake
    # on (an OTel SDK's batch processor sends every 5 s). A span that arrives later keeps
    # its while-it-ran energy and is counted unattributed (replay computes it exactly).
    delay_s: float | None = None
    # Power source label -> stage names/globs: only those stages share that source, and a
    # stage named here shares only the sources that name it (the others share the rest).
    sources: dict[str, list[str]] = field(default_factory=dict)
    # Stage name/glob -> weight of its share (default 1).
    weights: dict[str, float] = field(default_factory=dict)


@dataclass
class Attribution:
    """Per source over one interval: each span's attributed J, the idle J, and the source's
    J in all (the known part); ``attributed.sum() + idle == total``."""

    attributed: np.ndarray
    idle_j: float
    total_j: float


@dataclass
class Stretches:
    """[t0, t1] cut at every interval's start and end and at every power sample, with the
    weight running in each stretch. A stretch then lies within one sample interval, where
    the power is linear: its energy is the trapezoid of the power at its two ends, exact,
    from one ``np.interp`` (no cumulative energy looked up at every bound). Made once for
    every source the intervals share."""

    bounds: np.ndarray
    i_s: np.ndarray  # each interval's first and last bound
    i_e: np.ndarray
    weight: np.ndarray | None  # each interval's weight (None: 1 each)
    load: np.ndarray  # the weight running in each stretch
    busy: np.ndarray

    @classmethod
    def of(cls, starts: np.ndarray, ends: np.ndarray, t0: int, t1: int,
           samples: np.ndarray, weight: np.ndarray | None = None) -> Stretches:
        s = np.asarray(starts, np.int64)
        e = np.asarray(ends, np.int64)
        if len(s) and (s.min() < t0 or e.max() > t1):  # (replay's never are)
            s, e = np.clip(s, t0, t1), np.clip(e, t0, t1)
        samples = samples[(samples > t0) & (samples < t1)]
        # Sorted and unique, with each interval's place among them from the same sort.
        # Not np.unique (its hashing took 2.6 s for 4 M bounds) nor searchsorted: these are
        # runs nearly in order already, which a stable (merging) sort takes in stride.
        # Fresh pages cost more than the arithmetic here (heap.py): what is done with is
        # let go at once, for the next array to take, and places are 4-byte integers.
        every = np.concatenate([s, e, samples, [t0, t1]])
        order = np.argsort(every, kind="stable")
        ordered = every[order]
        del every
        new = np.empty(len(ordered), bool)
        new[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
        bounds = ordered[new]
        del ordered
        index = np.int32 if len(bounds) < 2**31 else np.int64
        rank = np.cumsum(new, dtype=index)
        del new
        rank -= 1
        place = np.empty(len(order), index)
        place[order] = rank
        del order, rank
        i_s, i_e = place[:len(s)], place[len(s):len(s) + len(e)]
        m = len(bounds)
        if weight is None:
            running = np.bincount(i_s, minlength=m)
            running -= np.bincount(i_e, minlength=m)
            load = np.cumsum(running[:-1], dtype=np.float64)
            busy = load > 0.5
        else:
            running = np.bincount(i_s, weight, m) - np.bincount(i_e, weight, m)
            load = np.cumsum(running[:-1])
            busy = load > 1e-9 * max(float(weight.max(initial=0.0)), 1.0)
        return cls(bounds, i_s, i_e, weight, load, busy)

    def energy(self, series: PowerSeries, max_gap_ns: int) -> np.ndarray:
        """The source's energy in each stretch (NaN where its power is not known)."""
        b, ts = self.bounds, series.ts
        if len(ts) == 0:
            return np.full(len(b) - 1, np.nan)
        # In place where it can be: at millions of bounds, fresh pages cost more than the
        # arithmetic on them.
        d_energy = np.empty(len(b) - 1)
        np.subtract(b[1:], b[:-1], out=d_energy, casting="unsafe")
        if series.power is not None:
            p = np.interp(b, ts, series.power)
            p[:-1] += p[1:]
            d_energy *= p[:-1]
            del p
            d_energy *= 0.5e-9
        else:
            d_energy = np.diff(np.interp(b, ts, series.cum))
        outside = b[:-1] < ts[0]
        outside |= b[1:] > ts[-1]
        if len(ts) > 1:
            gaps = np.flatnonzero(np.diff(ts) > max_gap_ns)
            if len(gaps):  # a stretch inside a gap between samples
                inside = np.searchsorted(ts, b[:-1], side="right") - 1
                in_gap = np.zeros(len(ts), bool)
                in_gap[gaps] = True
                outside |= in_gap[np.clip(inside, 0, len(ts) - 1)]
        d_energy[outside] = np.nan
        return d_energy

    def pieces(self, series: PowerSeries,
               max_gap_ns: int) -> tuple[np.ndarray, np.ndarray, float, float]:
        """Each interval's share of the source's energy over the stretches, whether any of
        its stretches had known power, the idle J and the J in all (known)."""
        d_energy = self.energy(series, max_gap_ns)
        unknown = np.isnan(d_energy)
        m = len(self.load)
        # The energy a unit of weight gets in each stretch, then up to each bound.
        per_weight = np.zeros(m + 1)
        np.divide(d_energy, self.load, out=per_weight[1:], where=self.busy & ~unknown)
        np.cumsum(per_weight[1:], out=per_weight[1:])
        i_s, i_e = self.i_s, self.i_e
        piece = per_weight.take(i_e)
        piece -= per_weight.take(i_s)
        del per_weight
        if self.weight is not None:
            piece *= self.weight
        # A span gets its share of the stretches where the power is known; one that ran
        # only where it is not has no figure (NaN: missing, not invented).
        with_known = i_e == i_s
        if unknown.any():
            known_in = np.zeros(m + 1, np.int64)
            np.cumsum(~unknown, out=known_in[1:])
            with_known |= known_in.take(i_e) > known_in.take(i_s)
        else:
            with_known[:] = True
        known = ~unknown
        return piece, with_known, float(d_energy[known & ~self.busy].sum()), \
            float(d_energy[known].sum())


# Pieces shared out at a time over a session (replay): the session's time is cut into
# windows of about this many, so what the sweep makes and drops is a few tens of MB reused
# window after window, not hundreds of fresh MB (see heap.py). Conservation holds: the
# windows partition the time, and a piece across a window's end gets its share in each.
WINDOW_PIECES = 262_144


def _windowed(series: dict[str, PowerSeries], ps: np.ndarray, pe: np.ndarray,
              owners: np.ndarray, n: int, t0: int, t1: int, max_gap_ns: int,
              weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``attribute_intervals`` for sources that every piece shares, a window at a time."""
    labels = list(series)
    out = np.zeros((n, len(labels)))
    known = np.zeros((n, len(labels)), bool)
    idle, total = np.zeros(len(labels)), np.zeros(len(labels))
    samples = np.concatenate([v.ts for v in series.values()] or [np.zeros(0, np.int64)])
    k = max(1, -(-len(ps) // WINDOW_PIECES))
    edges = np.linspace(t0, t1, k + 1).astype(np.int64)
    edges[0], edges[-1] = t0, t1
    # A piece a span, in span order (else pieces are summed per span: a parent in several
    # pieces, or in none when its children cover it).
    direct = len(owners) == n and np.array_equal(owners, np.arange(n))
    for w0, w1 in zip(edges[:-1], edges[1:], strict=True):
        if w1 <= w0:
            continue
        last = w1 == t1
        mine = np.flatnonzero(((ps < w1) & (pe > w0)) |
                              ((ps == pe) & (ps >= w0) & ((ps < w1) | last)))
        cut = Stretches.of(ps[mine], pe[mine], w0, w1, samples,
                           None if weight is None else weight[mine])
        who = mine if direct else owners[mine]
        for j, label in enumerate(labels):
            piece, with_known, w_idle, w_total = cut.pieces(series[label], max_gap_ns)
            if direct:
                out[who, j] += piece
                known[who, j] |= with_known
            else:
                out[:, j] += np.bincount(who, piece, n)
                known[:, j] |= np.bincount(who, with_known, n) > 0
            idle[j] += w_idle
            total[j] += w_total
    # No figure for a span with pieces that all ran without known power; one with no
    # piece of its own (its children cover it) had none of the energy: 0.
    known |= (np.bincount(owners, minlength=n) == 0)[:, None]
    out[~known] = np.nan
    return out, idle, total


def attribute(series: PowerSeries, starts: np.ndarray, ends: np.ndarray, t0: int, t1: int,
              max_gap_ns: int, owners: np.ndarray | None = None, n_spans: int | None = None,
              weights: np.ndarray | None = None) -> Attribution:
    """Share the source's energy over [t0, t1] among intervals [starts, ends] (clipped to
    it). ``owners`` maps intervals to spans (a nested span has several pieces; default:
    one interval a span); ``weights`` (per span, default 1) sets each span's share."""
    n_int = len(starts)
    owners = np.arange(n_int) if owners is None else owners
    n = n_int if n_spans is None else n_spans
    if t1 <= t0:
        return Attribution(np.zeros(n), 0.0, 0.0)
    weight = None if weights is None else np.asarray(weights, np.float64)[owners]
    out, idle, total = _windowed({"": series}, np.asarray(starts, np.int64),
                                 np.asarray(ends, np.int64), owners, n, t0, t1, max_gap_ns,
                                 weight)
    return Attribution(out[:, 0], float(idle[0]), float(total[0]))


def innermost_pieces(starts: np.ndarray, ends: np.ndarray,
                     groups: list[object]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(piece starts, piece ends, owner) with each span of a group (a frame, a trace; None:
    a group of its own) less the time that spans inside it run. Spans that contain no
    other span of their group are one piece, themselves."""
    n = len(starts)
    order = sorted((i for i in range(n) if groups[i] is not None),
                   key=lambda i: (groups[i], starts[i], -ends[i]))
    children: dict[int, list[int]] = {}
    open_spans: list[int] = []
    prev = None
    for i in order:
        if groups[i] != prev:
            open_spans, prev = [], groups[i]
        while open_spans and ends[open_spans[-1]] < ends[i]:
            open_spans.pop()
        if open_spans and starts[i] >= starts[open_spans[-1]] and \
                (starts[i], ends[i]) != (starts[open_spans[-1]], ends[open_spans[-1]]):
            children.setdefault(open_spans[-1], []).append(i)
        open_spans.append(i)
    if not children:
        return np.asarray(starts, np.int64), np.asarray(ends, np.int64), np.arange(n)
    ps, pe, po = [], [], []
    for i in range(n):
        kids = children.get(i)
        if not kids:
            ps.append(starts[i])
            pe.append(ends[i])
            po.append(i)
            continue
        t = starts[i]
        for k in sorted(kids, key=lambda k: starts[k]):
            if starts[k] > t:
                ps.append(t)
                pe.append(starts[k])
                po.append(i)
            t = max(t, ends[k])
        if ends[i] > t:
            ps.append(t)
            pe.append(ends[i])
            po.append(i)
    return np.asarray(ps, np.int64), np.asarray(pe, np.int64), np.asarray(po, np.int64)


def _span_names(stage_from: str, stage_to: str) -> tuple[str, ...]:
    """The names a span is known by in [attribution]: its stages, its pair ``a->b``, and
    for a measured span (``infer.start -> infer.end``) its own name."""
    names = (stage_from, stage_to, f"{stage_from}->{stage_to}")
    if stage_from.endswith(".start") and stage_to == stage_from[:-6] + ".end":
        names += (stage_from[:-6],)
    return names


class StageShares:
    """Which spans share which power source, and with what weight, from [attribution]:
    ``sources`` (label -> stage globs: only those stages share that source; a stage named
    for some source shares only the sources that name it) and ``weights`` (glob -> weight,
    default 1). Decided once per (stage_from, stage_to)."""

    def __init__(self, labels: list[str], sources: dict[str, list[str]] | None = None,
                 weights: dict[str, float] | None = None) -> None:
        self.labels = labels
        self.sources = {k: list(v) for k, v in (sources or {}).items()}
        self.weights = dict(weights or {})
        self._decided: dict[tuple[str, str], tuple[np.ndarray, float]] = {}

    @property
    def plain(self) -> bool:
        return not self.sources and not self.weights

    def decide(self, stage_from: str, stage_to: str) -> tuple[np.ndarray, float]:
        """(which sources spans of this pair share, their weight)."""
        got = self._decided.get((stage_from, stage_to))
        if got is None:
            got = self._decided[(stage_from, stage_to)] = self._decide(stage_from, stage_to)
        return got

    def _decide(self, stage_from: str, stage_to: str) -> tuple[np.ndarray, float]:
        names = _span_names(stage_from, stage_to)

        def named(globs: list[str]) -> bool:
            return any(fnmatch.fnmatchcase(n, g) for n in names for g in globs)

        mine = [label for label, globs in self.sources.items() if named(globs)]
        takes = np.array([label in mine if mine else label not in self.sources
                          for label in self.labels], bool)
        weight = next((w for g, w in self.weights.items() if named([g])), 1.0)
        return takes, weight

    def of(self, spans: list[StageSpan]) -> tuple[np.ndarray, np.ndarray]:
        """(spans x labels: whether it shares that source, each span's weight). An LLM
        request's phase (``genai``) weighs its pair's weight x its own (a token rate); a
        queued phase and the request itself share none (``processors.genai``)."""
        out = [self.decide(s.stage_from, s.stage_to) for s in spans]
        takes = np.array([t for t, _ in out], bool).reshape(len(spans), len(self.labels))
        weights = np.array([w for _, w in out], np.float64)
        for i, s in enumerate(spans):
            g = s.genai
            if g is not None:
                if g.shares_power:
                    weights[i] *= g.weight
                else:
                    takes[i] = False
        return takes, weights


def nested_groups(group: np.ndarray, grouped: np.ndarray, starts: np.ndarray,
                  ends: np.ndarray) -> list[object] | None:
    """For ``innermost_pieces``: each interval's group where its group holds nested
    intervals, else None; None when no group does (the usual case, checked vectorised).
    ``group``: an int a frame or trace; ``grouped``: False for an interval of its own."""
    order = np.argsort(group, kind="stable")  # runs in key order already: merged quickly
    g, k, s, e = group[order], grouped[order], starts[order], ends[order]
    first = np.flatnonzero(np.concatenate([[True], g[1:] != g[:-1], [True]]))
    largest = int(np.diff(first).max(initial=0))
    nested = set()
    if largest <= 4:  # a few spans a frame (one a pair): each with the next ones in it
        for d in range(1, largest):
            same = (g[d:] == g[:-d]) & k[d:] & k[:-d]
            a_in_b = (s[:-d] >= s[d:]) & (e[:-d] <= e[d:])
            b_in_a = (s[d:] >= s[:-d]) & (e[d:] <= e[:-d])
            alike = (s[d:] == s[:-d]) & (e[d:] == e[:-d])
            hit = same & (a_in_b | b_in_a) & ~alike
            nested.update(g[d:][hit].tolist())
    else:  # in start order within a group, a nested interval ends no later than the last
        order = np.lexsort((-ends, starts, group))
        g, s, e, k = group[order], starts[order], ends[order], grouped[order]
        inside = (g[1:] == g[:-1]) & k[1:] & k[:-1] & (e[1:] <= e[:-1]) & \
            ~((s[1:] == s[:-1]) & (e[1:] == e[:-1]))
        nested.update(g[1:][inside].tolist())
    if not nested:
        return None
    return [int(x) if ok and x in nested else None
            for x, ok in zip(group.tolist(), grouped.tolist(), strict=True)]


def attribute_intervals(series: dict[str, PowerSeries], starts: np.ndarray,
                        ends: np.ndarray, group: np.ndarray, grouped: np.ndarray, t0: int,
                        t1: int, max_gap_ns: int, takes: np.ndarray | None = None,
                        weights: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intervals x sources attributed J over [t0, t1], idle J per source, J per source).
    ``group``, ``grouped``: nesting groups (``nested_groups``); ``takes`` (intervals x
    sources) which source each interval shares, ``weights`` its weight (``StageShares``)."""
    n, labels = len(starts), list(series)
    out = np.zeros((n, len(labels)))
    idle, total = np.zeros(len(labels)), np.zeros(len(labels))
    groups = nested_groups(group, grouped, starts, ends) if n else None
    if groups is None:
        ps, pe, owners = starts, ends, np.arange(n)
    else:
        ps, pe, owners = innermost_pieces(starts, ends, groups)
    if takes is None:  # every source shared by the same spans: cut once for all
        if t1 <= t0:
            return out, idle, total
        return _windowed(series, ps, pe, owners, n, t0, t1, max_gap_ns,
                         None if weights is None else np.asarray(weights, np.float64)[owners])
    for j, label in enumerate(labels):
        mine = takes[owners, j]
        got = attribute(series[label], ps[mine], pe[mine], t0, t1, max_gap_ns,
                        owners[mine], n, weights)
        got.attributed[~takes[:, j]] = 0.0  # not its source: none of it
        out[:, j], idle[j], total[j] = got.attributed, got.idle_j, got.total_j
    return out, idle, total


def attribute_spans(spans: list[StageSpan], starts: np.ndarray, ends: np.ndarray,
                    series: dict[str, PowerSeries], t0: int, t1: int, max_gap_ns: int,
                    shares: StageShares) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``attribute_intervals`` for stage spans: nested within their application's trace,
    or their frame (groups told apart by hash: only the rare nested case looks closer)."""
    n = len(spans)
    group = np.fromiter((hash(s.trace_id) if s.foreign else
                         hash((s.pipeline, s.stream, s.frame)) for s in spans), np.int64, n)
    grouped = np.fromiter((s.foreign or s.frame is not None for s in spans), bool, n)
    plain = shares.plain and not any(s.genai is not None for s in spans)
    takes, weights = (None, None) if plain else shares.of(spans)
    if takes is not None:
        # A span that shares no source (an LLM request around its phases, a queued phase)
        # gets nothing with or without the spans inside it: leaving it out of the nesting
        # keeps the usual case (nothing nested) on the vectorised path.
        grouped &= takes.any(axis=1)
    return attribute_intervals(series, starts, ends, group, grouped, t0, t1, max_gap_ns,
                               takes, weights)


# Settings only: the runtime shares energy out with these (LiveAttribution).
COMPONENT = Component("attribution", "attribution", settings=AttributionConfig,
                      ranges={"delay_s": (0.0, 3600), "weights": (0, 1e6)})
