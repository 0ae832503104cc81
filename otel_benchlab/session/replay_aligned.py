"""A stored session's aligned rows, made again from its marks a round at a time: the marks
are read in chunks, paired in rounds (``replay_rounds``), measured against the power as
arrays and shared out a stretch of time at a time (``processors.running_shares``). What is
held is a round's marks and spans, whatever the session's length."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from otel_benchlab.exporters.decimal_text import repeated_text
from otel_benchlab.processors.attribution import StageShares
from otel_benchlab.processors.ids import hex_np, span_ids_np, trace_ids_np
from otel_benchlab.processors.live_attribution import energy_split
from otel_benchlab.processors.power_series import PowerSeries, energy_between
from otel_benchlab.processors.running_shares import RunningShares
from otel_benchlab.receivers.stored import StoredSession
from otel_benchlab.session.replay_rounds import (
    DISORDER_NS,
    FRAME_BITS,
    MarkCodes,
    Marks,
    PairRounds,
    RoundSpans,
)
from otel_benchlab.session.schema import (
    aligned_schema,
    attributed_columns,
    fixed_width_strings,
    power_columns,
    power_source_order,
)

if TYPE_CHECKING:
    from otel_benchlab.config import Config

ROUND_MARKS = 300_000  # marks a round: what a round holds is ~0.1 GB


@dataclass
class Pairing:
    """What the rounds found, for the replay's summary."""

    marks: int = 0
    idless_marks: int = 0
    spans: dict[str, int] = field(default_factory=dict)
    unpaired: dict[str, dict[str, int]] = field(default_factory=dict)
    energy_j: dict[str, dict[str, float]] = field(default_factory=dict)
    stages: set[str] = field(default_factory=set)
    late: int = 0  # spans read too far out of order to get a share


def power_labels(stored: StoredSession, cfg: Config) -> list[str]:
    """The configured power sources (flag or file), else the session's own, else all."""
    if cfg.power_sources:
        return list(cfg.power_sources)
    if stored.power_sources:
        return list(stored.power_sources)
    return power_source_order(list(stored.power))


def power_series(stored: StoredSession, labels: list[str]) -> dict[str, PowerSeries]:
    series = {}
    for label in labels:
        entry = stored.power.get(label)
        if entry is not None:
            kind, ts, v = entry
            series[label] = PowerSeries.from_power(ts, v) if kind == "power" else \
                PowerSeries.from_counter(ts, v)
    return series


def aligned_tables(stored: StoredSession, chunks: Iterable[pa.Table],
                   pairs: list[tuple[str, str]], cfg: Config, found: Pairing,
                   round_marks: int = ROUND_MARKS) -> Iterator[pa.Table]:
    """Each round's rows, a table a pair, once every span in them has its share."""
    labels = power_labels(stored, cfg)
    schema = aligned_schema(labels)
    series = power_series(stored, labels)
    window_ns = int(cfg.pair_window_s * 1e9)
    margin = window_ns + DISORDER_NS
    gap_ns = int(cfg.power_max_gap_s * 1e9)
    codes = MarkCodes.for_session(stored.session_id)
    rounds = [PairRounds(p, window_ns, margin) for p in pairs]
    shares = RunningShares(series, pairs, StageShares(labels, cfg.attribution.sources,
                                                      cfg.attribution.weights), gap_ns)
    offset: int | None = None
    waiting: list[Marks] = []
    held = 0
    newest = cut = -(1 << 62)

    def one_round(marks: Marks, cut_ns: int) -> None:
        found_spans = [r.round(marks, codes, cut_ns) for r in rounds]
        tables = [_pair_table(s, p, codes, labels, series, schema, gap_ns, offset or 0)
                  for s, p in zip(found_spans, pairs, strict=True)]
        shares.add(tables, *_span_arrays(found_spans))

    for chunk in read_ahead(chunks):
        if offset is None and "ts_unix_ns" in chunk.column_names and chunk.num_rows:
            offset = int(chunk["ts_unix_ns"][0].as_py() - chunk["ts_ns"][0].as_py())
        m = codes.encode(chunk)
        del chunk
        found.marks += len(m)
        found.idless_marks += int((~m.has_frame).sum())
        if len(m):
            newest = max(newest, int(m.ts.max()))
        waiting.append(m)
        held += len(m)
        if held >= round_marks:
            cut = max(cut, newest - margin)
            one_round(Marks.concat(waiting), cut)
            waiting, held = [], 0
            yield from _filled(shares.share_to(cut), labels, series)
    one_round(Marks.concat(waiting) if waiting else Marks.empty(), 1 << 62)
    yield from _filled(shares.finish(), labels, series)
    for r in rounds:
        found.spans[f"{r.pair[0]}->{r.pair[1]}"] = r.spans
        found.unpaired[f"{r.pair[0]}->{r.pair[1]}"] = r.unpaired
    for j, label in enumerate(shares.labels):
        found.energy_j[label] = energy_split(shares.total_j[j], shares.attributed_j[j],
                                             shares.idle_j[j])
    found.stages = set(codes.stages.names)
    found.late = shares.late


def read_ahead(chunks: Iterable[pa.Table], depth: int = 2) -> Iterator[pa.Table]:
    """``chunks`` read on a thread of their own, up to ``depth`` ahead: the JSON parser and
    the Parquet reader run outside the GIL while the round before is paired."""
    ahead: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    END = object()

    def read() -> None:
        try:
            for chunk in chunks:
                if stop.is_set():
                    return
                ahead.put(chunk)
            ahead.put(END)
        except BaseException as exc:  # raised again where the chunks are taken
            ahead.put(exc)

    reader = threading.Thread(target=read, name="replay-read", daemon=True)
    reader.start()
    try:
        while (item := ahead.get()) is not END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                ahead.get_nowait()
        reader.join()


def _span_arrays(found: list[RoundSpans]) -> tuple[np.ndarray, ...]:
    """(starts, ends, frame groups, grouped, pair index) of every pair's spans in turn."""
    def each(f: RoundSpans) -> tuple[np.ndarray, ...]:
        m, s = f.marks, f.start
        key = (m.frame[s] & ((1 << FRAME_BITS) - 1)) | (m.group[s] << FRAME_BITS)
        return m.ts[s], m.ts[f.end], key, m.has_frame[s]
    parts = [each(f) for f in found]
    pair = np.concatenate([np.full(len(f.start), i, np.int32) for i, f in enumerate(found)]
                          or [np.zeros(0, np.int32)])
    return (*(np.concatenate([p[k] for p in parts]) for k in range(4)), pair)


def _filled(released: list, labels: list[str], series: dict[str, PowerSeries]
            ) -> Iterator[pa.Table]:
    columns = dict(attributed_columns(labels))
    known = [lb for lb in labels if lb in series]
    for batch in released:
        at = 0
        for t in batch.token:
            for j, label in enumerate(known):
                t = t.set_column(t.schema.get_field_index(columns[label]), columns[label],
                                 pa.array(batch.energy_j[at:at + t.num_rows, j],
                                          from_pandas=True))
            at += t.num_rows
            if t.num_rows:
                yield t


def _string_column(codes: np.ndarray, names: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32, copy=False)),
                                          pa.array(names, pa.string())).cast(pa.string())


def _hex_strings(*words: np.ndarray) -> pa.Array:
    raw = hex_np(*words)
    return fixed_width_strings(raw, len(raw), raw.dtype.itemsize)


def _pair_table(found: RoundSpans, pair: tuple[str, str], codes: MarkCodes,
                labels: list[str], series: dict[str, PowerSeries], schema: pa.Schema,
                gap_ns: int, offset_ns: int) -> pa.Table:
    """One pair's rows of a round (the attributed columns are filled once shared)."""
    m, start_i = found.marks, found.start
    n = len(start_i)
    s_ns, e_ns = m.ts[start_i], m.ts[found.end]
    has = m.has_frame[start_i]
    frame = m.frame[start_i]
    cols: dict[str, pa.Array] = {
        "pipeline": _string_column(m.pipe[start_i], codes.pipes.names),
        "stream": _string_column(m.stream[start_i], codes.streams.names),
        "frame": pa.array(frame, pa.int64(), mask=~has),
        "stage_from": repeated_text(pair[0], n), "stage_to": repeated_text(pair[1], n),
        "start_ns": pa.array(s_ns), "end_ns": pa.array(e_ns),
        "start_unix_ns": pa.array(s_ns + offset_ns), "end_unix_ns": pa.array(e_ns + offset_ns),
        "latency_ms": pa.array((e_ns - s_ns) / 1e6),
        "power_source": repeated_text(labels[0], n) if labels else pa.nulls(n, pa.string()),
    }
    for label, mean_col, energy_col in power_columns(labels) or [(None, "power_mean_w",
                                                                  "energy_j")]:
        s = series.get(label) if label else None
        if s is None:
            cols[mean_col] = cols[energy_col] = pa.nulls(n, pa.float64())
            continue
        energy, mean = energy_between(s, s_ns, e_ns, gap_ns)
        cols[mean_col] = pa.array(mean, from_pandas=True)
        cols[energy_col] = pa.array(energy, from_pandas=True)
    for _, attr_col in attributed_columns(labels) or [(None, "energy_attr_j")]:
        cols[attr_col] = pa.nulls(n, pa.float64())  # the spans' shares: _filled
    groups = codes.groups.hashes[m.group[start_i]] if n else np.zeros(0, np.uint64)
    hi, lo = trace_ids_np(groups, np.where(has, frame, s_ns))
    cols["trace_id"] = _hex_strings(hi, lo)
    cols["span_id"] = _hex_strings(span_ids_np(lo, f"{pair[0]}->{pair[1]}"))
    return pa.table([cols[f.name] if f.name in cols else pa.nulls(n, f.type)
                     for f in schema], schema=schema)
