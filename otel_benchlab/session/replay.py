"""Replay: the same processors over a stored session, for any stage pairs, after the fact.

Vectorised end to end: marks stay Arrow/numpy arrays, pairing by frame id and energy
integration run as array operations, and the aligned table is built from arrays. Marks
without frame ids go through the live order-based pairer (they are rare and their rule is
sequential by nature).
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from otel_benchlab.exporters.capframex import CapFrameXWriter
from otel_benchlab.exporters.decimal_text import repeated_text
from otel_benchlab.exporters.parquet import ParquetPartWriter
from otel_benchlab.processors.attribution import StageShares, attribute_intervals
from otel_benchlab.processors.ids import group_hash, hex_np, span_ids_np, trace_ids_np
from otel_benchlab.processors.live_attribution import energy_split
from otel_benchlab.processors.pairing import StagePairer, pair_keyed_arrays
from otel_benchlab.processors.power_series import PowerSeries, energy_between
from otel_benchlab.receivers.stored import StoredSession, read_session, rows_range
from otel_benchlab.records import StageMark, StageSpan
from otel_benchlab.session.schema import (
    aligned_schema,
    attributed_columns,
    fixed_width_strings,
    power_columns,
    power_source_order,
)
from otel_benchlab.session.window import resolve
from otel_benchlab.settings import ConfigError

if TYPE_CHECKING:
    from otel_benchlab.config import Config

log = logging.getLogger(__name__)

FRAME_BITS = 40  # frame ids below 2**40 share one int64 key with their (pipeline, stream)


@dataclass
class ReplayResult:
    out: Path
    marks: int
    seconds: float
    spans: dict[str, int] = field(default_factory=dict)
    unpaired: dict[str, dict[str, int]] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    idless_marks: int = 0
    # Per power source: the meter's energy over the spans' time, attributed and idle J.
    energy_j: dict[str, dict[str, float]] = field(default_factory=dict)

    def report(self) -> list[str]:
        rate = self.marks / self.seconds if self.seconds > 0 else 0.0
        lines = [f"replayed {self.marks} marks in {self.seconds:.2f} s ({rate:,.0f} marks/s) "
                 f"into {self.out}"]
        for pair, n in self.spans.items():
            un = ", ".join(f"{k} {v}" for k, v in self.unpaired.get(pair, {}).items() if v)
            lines.append(f"  {pair}: {n} spans" + (f"; unpaired: {un}" if un else ""))
        for where, n in self.rejected.items():
            lines.append(f"  skipped {n} bad records in {where}")
        if self.idless_marks:
            lines.append(f"  {self.idless_marks} marks had no frame id and were paired by "
                         "order: reliable only for stages shorter than one frame interval")
        for label, e in self.energy_j.items():
            lines.append(f"  energy {label}: {e['total']:.1f} J from the first span's start "
                         f"to the last one's end = {e['attributed']:.1f} J attributed to "
                         f"spans + {e['idle']:.1f} J idle")
        return lines


def _codes(col: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col)
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if isinstance(arr, pa.ChunkedArray):  # pragma: no cover
        arr = arr.combine_chunks()
    # int32, as Arrow holds them (no copy): replay's peak memory is its time (heap.py)
    return arr.indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False), \
        arr.dictionary.to_pylist()


def _string_column(codes: np.ndarray, names: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32, copy=False)),
                                          pa.array(names, pa.string())).cast(pa.string())


def _hex_strings(*words: np.ndarray) -> pa.Array:
    raw = hex_np(*words)
    return fixed_width_strings(raw, len(raw), raw.dtype.itemsize)


def replay_session(session_dir: str | Path, cfg: Config,
                   pairs: list[tuple[str, str]] | None = None, out: str | Path | None = None,
                   force: bool = False, since: str | None = None,
                   until: str | None = None) -> ReplayResult:
    """``since``/``until``: only the marks of that window (``session.window``); a frame
    whose marks it cuts in two is unpaired."""
    t0 = time.perf_counter()
    session_dir = Path(session_dir)
    window = None
    if since is not None or until is not None:
        marks_dir = session_dir / "raw" / "marks"
        span = rows_range(marks_dir, "ts_unix_ns") if marks_dir.is_dir() else None
        if span is None and (session_dir / "raw" / "pipeline.jsonl").exists():
            ts = read_session(session_dir).marks["ts_ns"]
            span = (pc.min(ts).as_py(), pc.max(ts).as_py()) if len(ts) else None
        window = resolve(since, until, span, str(session_dir))
    try:
        stored = read_session(session_dir, window)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    if stored.marks.num_rows == 0:
        raise ConfigError(f"{session_dir}: no stage marks to replay"
                          + (f" (skipped: {stored.rejected})" if stored.rejected else ""))
    pairs = pairs or stored.pairs or cfg.pair_tuples()
    have = set(pc.unique(stored.marks["stage"]).cast(pa.string()).to_pylist())
    for a, b in pairs:
        for stage in (a, b):
            if stage not in have:
                raise ConfigError(f"{session_dir}: stage {stage!r} (pair {a}->{b}) does not "
                                  f"occur in the session; its stages are "
                                  f"{', '.join(sorted(have))}")
    out_dir = Path(out) if out else session_dir / "replay"
    _prepare_out(out_dir, force, named=out is not None)
    result = ReplayResult(out_dir, stored.marks.num_rows, 0.0, rejected=dict(stored.rejected))
    tables = build_aligned(encode_marks(stored), stored, pairs, cfg, result)
    labels = power_labels(stored, cfg)
    schema = aligned_schema(labels)
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    writer = ParquetPartWriter(out_dir / "aligned", schema,
                               part_rows=max(cfg.parquet.part_rows, 1_000_000),
                               part_seconds=1e9)
    # The Parquet parts are written beside the CapFrameX files: both are Arrow work that
    # runs outside the GIL.
    with ThreadPoolExecutor(max_workers=1) as pool:
        parquet = pool.submit(writer.write_all, table)
        if cfg.capframex.enabled and table.num_rows:
            cx = CapFrameXWriter(out_dir / "capframex", cfg.capframex.app,
                                 power_columns(labels), cfg.capframex.sample_time_ms,
                                 cfg.capframex.watch_dir or None, max_frames=1 << 62)
            for label, (kind, ts, v) in stored.power.items():
                if kind == "power":
                    cx.add_power(label, ts, v)
            for pair_table in tables:  # a pair's rows are one capture: nothing to regroup
                cx.export(pair_table)
            cx.shutdown()
            result.files += cx.files_written
        parquet.result()
    result.files[:0] = sorted((out_dir / "aligned").glob("part-*.parquet"))
    (out_dir / OUTPUT_LIST).write_text(json.dumps(
        [str(p.relative_to(out_dir)) for p in result.files]))
    result.seconds = time.perf_counter() - t0
    return result


OUTPUT_LIST = ".replay-files.json"  # what replay wrote: all that --force may remove


def _prepare_out(out_dir: Path, force: bool, named: bool) -> None:
    """Make the output folders, never through a link the user did not name (a link at
    SESSION/replay, or at aligned/ or capframex/ inside the output), and with ``force``
    remove only the files an earlier replay listed as its own."""
    if out_dir.is_symlink() and not named:
        raise ConfigError(f"{out_dir} is a symbolic link (to {os.readlink(out_dir)}); replay "
                          "does not write through links it was not given: remove it, or name "
                          "the place with --out DIR")
    for sub in ("aligned", "capframex"):
        if (out_dir / sub).is_symlink():
            raise ConfigError(f"{out_dir / sub} is a symbolic link; replay does not write "
                              "through it: remove it or choose another --out")
    listed = out_dir / OUTPUT_LIST
    if force and listed.is_file() and not listed.is_symlink():
        try:
            names = json.loads(listed.read_text())
        except ValueError:
            names = []
        for name in names if isinstance(names, list) else []:
            p = out_dir / str(name)
            # Only plain files directly in our two folders: a listed name cannot reach out.
            if p.parent.name in ("aligned", "capframex") and p.parent.parent == out_dir and \
                    p.is_file() and not p.is_symlink():
                p.unlink()
        listed.unlink()
    old = list((out_dir / "aligned").glob("*.parquet")) if (out_dir / "aligned").is_dir() \
        else []
    if old:
        raise ConfigError(f"{out_dir / 'aligned'} holds Parquet files"
                          + (" that replay did not write; it leaves them" if force else
                             " of an earlier replay; use --force to replace them")
                          + ", or choose another --out")
    for sub in ("aligned", "capframex"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)


def power_labels(stored: StoredSession, cfg: Config) -> list[str]:
    """The configured power sources (flag or file), else the session's own, else all."""
    if cfg.power_sources:
        return list(cfg.power_sources)
    if stored.power_sources:
        return list(stored.power_sources)
    have = list(stored.power)
    return power_source_order(have)


@dataclass
class _Marks:
    """Marks as arrays, encoded once for all pairs."""

    ts: np.ndarray
    pipe: np.ndarray
    pipe_names: list[str]
    stream: np.ndarray
    stream_names: list[str]
    stage: np.ndarray
    stage_names: list[str]
    frame: np.ndarray
    has_frame: np.ndarray
    group: np.ndarray
    group_hashes: np.ndarray
    offset_ns: int


def encode_marks(stored: StoredSession) -> _Marks:
    """The session's marks as arrays, for every pair. The marks table is let go here
    (``stored.marks`` becomes empty): what replay holds at its peak is what it pays for
    in fresh pages (see heap.py), and the table is ~0.1 GB for 3 M marks."""
    marks = stored.marks
    stored.marks = marks.schema.empty_table()
    pipe, pipe_names = _codes(marks["pipeline"])
    stream, stream_names = _codes(marks["stream"])
    stage, stage_names = _codes(marks["stage"])
    frame_col = marks["frame"].combine_chunks() if marks.num_rows else pa.array([], pa.int64())
    has_frame = frame_col.is_valid().to_numpy(zero_copy_only=False) if marks.num_rows else \
        np.zeros(0, bool)
    group = pipe.astype(np.int64) * max(len(stream_names), 1) + stream
    hashes = np.array([group_hash(stored.session_id, p, s) for p in pipe_names
                       for s in (stream_names or [""])], dtype=np.uint64)
    return _Marks(marks["ts_ns"].to_numpy(), pipe, pipe_names, stream, stream_names, stage,
                  stage_names, frame_col.fill_null(0).to_numpy(zero_copy_only=False)
                  .astype(np.int64, copy=False), has_frame, group, hashes, _unix_offset(marks))


def build_aligned(m: _Marks, stored: StoredSession, pairs: list[tuple[str, str]], cfg: Config,
                  result: ReplayResult, threads: int = 2) -> list[pa.Table]:
    """The aligned rows of each pair, a table a pair; pairs are computed in parallel
    (numpy and Arrow release the GIL for the heavy work)."""
    labels = power_labels(stored, cfg)
    schema = aligned_schema(labels)
    series = {}
    for label in labels:
        entry = stored.power.get(label)
        if entry is not None:
            kind, pts, pv = entry
            series[label] = PowerSeries.from_power(pts, pv) if kind == "power" else \
                PowerSeries.from_counter(pts, pv)
    keyed = np.flatnonzero(m.has_frame)
    all_keyed = len(keyed) == len(m.ts)
    result.idless_marks = len(m.ts) - len(keyed)
    key = m.frame & ((1 << FRAME_BITS) - 1)
    key |= m.group << FRAME_BITS
    k_key, k_stage, k_ts = (key, m.stage, m.ts) if all_keyed else (
        key[keyed], m.stage[keyed], m.ts[keyed])

    def paired(pair: tuple[str, str]) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        a, b = pair
        counts = {"timeout": 0, "orphan": 0, "duplicate": 0}
        start_i = end_i = np.zeros(0, np.int64)
        if a in m.stage_names and b in m.stage_names:
            r = pair_keyed_arrays(k_key, k_stage, k_ts, m.stage_names.index(a),
                                  m.stage_names.index(b), int(cfg.pair_window_s * 1e9))
            start_i, end_i = (r.start_idx, r.end_idx) if all_keyed else (
                keyed[r.start_idx], keyed[r.end_idx])
            counts["timeout"] += len(r.timeout_idx)
            counts["orphan"] += len(r.orphan_idx)
            counts["duplicate"] += len(r.duplicate_idx)
            if not all_keyed:
                s2, e2 = _pair_idless(np.flatnonzero(~m.has_frame), m.ts, m.pipe, m.stream,
                                      m.stage, m.stage_names, pair,
                                      int(cfg.pair_window_s * 1e9), counts)
                start_i, end_i = np.concatenate([start_i, s2]), np.concatenate([end_i, e2])
        return start_i, end_i, counts

    def table(pair: tuple[str, str], indices: tuple[np.ndarray, np.ndarray, dict]) -> pa.Table:
        return _pair_table(m, pair, indices[0], indices[1], labels, series, schema,
                           int(cfg.power_max_gap_s * 1e9))

    with ThreadPoolExecutor(max_workers=threads) as pool:
        found = list(pool.map(paired, pairs))
        tables = list(pool.map(table, pairs, found))
    # The spans' shares of energy (all pairs at once: they overlap). After the tables, not
    # beside them: beside them cost twice the CPU (measured), the threads' fresh pages and
    # one malloc arena between them.
    got = _attribution([(m.ts[s], m.ts[e], key[s], m.has_frame[s]) for s, e, _ in found],
                       pairs, labels, series, cfg, result) if series else None
    for (a, b), (start_i, _, counts) in zip(pairs, found, strict=True):
        result.spans[f"{a}->{b}"] = len(start_i)
        result.unpaired[f"{a}->{b}"] = counts
    if got is None:
        return tables
    out, at = [], 0
    columns = dict(attributed_columns(labels))
    for t in tables:
        for j, label in enumerate(lb for lb in labels if lb in series):
            t = t.set_column(t.schema.get_field_index(columns[label]), columns[label],
                             pa.array(got[at:at + t.num_rows, j], from_pandas=True))
        out.append(t)
        at += t.num_rows
    return out


def _attribution(spans: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                 pairs: list[tuple[str, str]], labels: list[str],
                 series: dict[str, PowerSeries], cfg: Config,
                 result: ReplayResult) -> np.ndarray:
    """Every pair's spans (starts, ends, frame keys, whether keyed) share each source's
    energy, exactly, over the session: the first span's start to the last one's end.
    Returns spans x sources (those with samples), pairs one after the other."""
    starts = np.concatenate([s for s, _, _, _ in spans])
    ends = np.concatenate([e for _, e, _, _ in spans])
    known = {label: series[label] for label in labels if label in series}
    if not len(starts):
        return np.zeros((0, len(known)))
    shares = StageShares(labels, cfg.attribution.sources, cfg.attribution.weights)
    sizes = [len(s) for s, _, _, _ in spans]
    takes = weights = None
    if not shares.plain:
        decided = [shares.decide(a, b) for a, b in pairs]
        takes = np.concatenate([np.tile(d[0][[labels.index(lb) for lb in known]], (k, 1))
                                for d, k in zip(decided, sizes, strict=True)])
        weights = np.concatenate([np.full(k, d[1]) for d, k in zip(decided, sizes,
                                                                   strict=True)])
    got, idle, total = attribute_intervals(
        known, starts, ends, np.concatenate([g for _, _, g, _ in spans]),
        np.concatenate([k for _, _, _, k in spans]), int(starts.min()), int(ends.max()),
        int(cfg.power_max_gap_s * 1e9), takes, weights)
    for j, label in enumerate(known):
        result.energy_j[label] = energy_split(total[j], np.nansum(got[:, j]), idle[j])
    return got


def _pair_table(m: _Marks, pair: tuple[str, str], start_i: np.ndarray, end_i: np.ndarray,
                labels: list[str], series: dict[str, PowerSeries], schema: pa.Schema,
                gap_ns: int) -> pa.Table:
    """Rows of one pair, in frame order within each stream."""
    n = len(start_i)
    s_ns, e_ns = m.ts[start_i], m.ts[end_i]
    has = m.has_frame[start_i]
    frame = m.frame[start_i]
    cols: dict[str, pa.Array] = {
        "pipeline": _string_column(m.pipe[start_i], m.pipe_names),
        "stream": _string_column(m.stream[start_i], m.stream_names),
        "frame": pa.array(frame, pa.int64(), mask=~has),
        "stage_from": repeated_text(pair[0], n), "stage_to": repeated_text(pair[1], n),
        "start_ns": pa.array(s_ns), "end_ns": pa.array(e_ns),
        "start_unix_ns": pa.array(s_ns + m.offset_ns), "end_unix_ns": pa.array(e_ns + m.offset_ns),
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
        cols[attr_col] = pa.nulls(n, pa.float64())  # all spans' shares: build_aligned
    groups = m.group_hashes[m.group[start_i]] if len(m.group_hashes) else \
        np.zeros(n, np.uint64)
    hi, lo = trace_ids_np(groups, np.where(has, frame, s_ns))
    cols["trace_id"] = _hex_strings(hi, lo)
    cols["span_id"] = _hex_strings(span_ids_np(lo, f"{pair[0]}->{pair[1]}"))
    return pa.table([cols[f.name] for f in schema], schema=schema)


def _unix_offset(marks: pa.Table) -> int:
    if "ts_unix_ns" in marks.column_names and marks.num_rows:
        return int(marks["ts_unix_ns"][0].as_py() - marks["ts_ns"][0].as_py())
    return 0


def _pair_idless(idx: np.ndarray, ts: np.ndarray, pipe: np.ndarray, stream: np.ndarray,
                 stage: np.ndarray, stage_names: list[str], pair: tuple[str, str],
                 window_ns: int, counts: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Order-based pairing of id-less marks with the live pairer; returns index arrays."""
    pairer = StagePairer([pair], window_ns)
    order = idx[np.argsort(ts[idx], kind="stable")]
    codes = {stage_names.index(s) for s in pair}
    starts, ends = [], []
    results = []
    for i in order.tolist():
        if stage[i] not in codes:
            continue
        mark = StageMark(int(ts[i]), str(pipe[i]), str(stream[i]), stage_names[stage[i]])
        results += pairer.push(mark)
    results += pairer.flush()
    by_ts: dict[tuple, int] = {}
    for i in order.tolist():
        by_ts.setdefault((int(ts[i]), str(pipe[i]), str(stream[i]), stage_names[stage[i]]), i)
    for r in results:
        if isinstance(r, StageSpan):
            starts.append(by_ts[(r.start_ns, r.pipeline, r.stream, r.stage_from)])
            ends.append(by_ts[(r.end_ns, r.pipeline, r.stream, r.stage_to)])
        else:
            counts[r.reason] = counts.get(r.reason, 0) + 1
    return np.array(starts, np.int64), np.array(ends, np.int64)
