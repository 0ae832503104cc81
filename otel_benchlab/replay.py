"""Replay: the same processors over a stored session, for any stage pairs, after the fact.

Vectorised end to end: marks stay Arrow/numpy arrays, pairing by frame id and energy
integration run as array operations, and the aligned table is built from arrays. Marks
without frame ids go through the live order-based pairer (they are rare and their rule is
sequential by nature).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from otel_benchlab.config import Config, ConfigError
from otel_benchlab.exporters.capframex import CapFrameXWriter
from otel_benchlab.exporters.parquet import ParquetPartWriter
from otel_benchlab.processors.energy import PowerSeries, energy_between
from otel_benchlab.processors.ids import group_hash, hex_np, span_ids_np, trace_ids_np
from otel_benchlab.processors.pairing import StagePairer, pair_keyed_arrays
from otel_benchlab.receivers.stored import StoredSession, read_session
from otel_benchlab.records import StageMark, StageSpan
from otel_benchlab.schema import aligned_schema, power_columns

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

    def report(self) -> list[str]:
        rate = self.marks / self.seconds if self.seconds > 0 else 0.0
        lines = [f"replayed {self.marks} marks in {self.seconds:.2f} s ({rate:,.0f} marks/s) "
                 f"into {self.out}"]
        for pair, n in self.spans.items():
            un = ", ".join(f"{k} {v}" for k, v in self.unpaired.get(pair, {}).items() if v)
            lines.append(f"  {pair}: {n} spans" + (f"; unpaired: {un}" if un else ""))
        for where, n in self.rejected.items():
            lines.append(f"  skipped {n} bad records in {where}")
        return lines


def _codes(col: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col)
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if isinstance(arr, pa.ChunkedArray):  # pragma: no cover
        arr = arr.combine_chunks()
    return arr.indices.to_numpy(zero_copy_only=False).astype(np.int64), \
        arr.dictionary.to_pylist()


def _string_column(codes: np.ndarray, names: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)),
                                          pa.array(names, pa.string())).cast(pa.string())


def _hex_strings(*words: np.ndarray) -> pa.Array:
    raw = hex_np(*words)
    width = raw.dtype.itemsize
    offsets = np.arange(len(raw) + 1, dtype=np.int32) * width
    return pa.StringArray.from_buffers(len(raw), pa.py_buffer(offsets),
                                       pa.py_buffer(raw.tobytes()))


def replay_session(session_dir: str | Path, cfg: Config,
                   pairs: list[tuple[str, str]] | None = None, out: str | Path | None = None,
                   force: bool = False) -> ReplayResult:
    t0 = time.perf_counter()
    session_dir = Path(session_dir)
    try:
        stored = read_session(session_dir)
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    pairs = pairs or stored.pairs or cfg.pair_tuples()
    out_dir = Path(out) if out else session_dir / "replay"
    _prepare_out(out_dir, force)
    result = ReplayResult(out_dir, stored.marks.num_rows, 0.0, rejected=dict(stored.rejected))
    table = build_aligned(stored, pairs, cfg, result)
    labels = _labels(stored, cfg)
    writer = ParquetPartWriter(out_dir / "aligned", aligned_schema(labels),
                               part_rows=max(cfg.parquet.part_rows, 1_000_000),
                               part_seconds=1e9)
    writer.export(table)
    writer.shutdown()
    result.files += sorted((out_dir / "aligned").glob("part-*.parquet"))
    if cfg.capframex.enabled and table.num_rows:
        cx = CapFrameXWriter(out_dir / "capframex", cfg.capframex.app, power_columns(labels),
                             cfg.capframex.sample_time_ms, cfg.capframex.watch_dir or None,
                             max_frames=1 << 62)
        for label, (kind, ts, v) in stored.power.items():
            if kind == "power":
                cx.add_power(label, ts, v)
        cx.export(table)
        cx.shutdown()
        result.files += cx.files_written
    result.seconds = time.perf_counter() - t0
    return result


def _prepare_out(out_dir: Path, force: bool) -> None:
    old = list((out_dir / "aligned").glob("*.parquet")) if (out_dir / "aligned").exists() else []
    if old and not force:
        raise ConfigError(f"{out_dir} already holds a replay; use --force to replace it or "
                          "--out for another directory")
    for sub in ("aligned", "capframex"):
        if force and (out_dir / sub).exists():
            shutil.rmtree(out_dir / sub)
        (out_dir / sub).mkdir(parents=True, exist_ok=True)


def _labels(stored: StoredSession, cfg: Config) -> list[str]:
    if cfg.power_sources:
        return list(cfg.power_sources)
    have = list(stored.power)
    return [p for p in ("SYS", "CPU", "GPU") if p in have] + [
        p for p in have if p not in ("SYS", "CPU", "GPU")]


def build_aligned(stored: StoredSession, pairs: list[tuple[str, str]], cfg: Config,
                  result: ReplayResult) -> pa.Table:
    marks = stored.marks
    labels = _labels(stored, cfg)
    schema = aligned_schema(labels)
    window_ns = int(cfg.pair_window_s * 1e9)
    ts = marks["ts_ns"].to_numpy()
    pipe, pipe_names = _codes(marks["pipeline"])
    stream, stream_names = _codes(marks["stream"])
    stage, stage_names = _codes(marks["stage"])
    frame_col = marks["frame"].combine_chunks() if marks.num_rows else pa.array([], pa.int64())
    has_frame = frame_col.is_valid().to_numpy(zero_copy_only=False) if marks.num_rows else \
        np.zeros(0, bool)
    frame = frame_col.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    group = pipe * max(len(stream_names), 1) + stream
    key = (group << FRAME_BITS) | (frame & ((1 << FRAME_BITS) - 1))
    keyed = np.flatnonzero(has_frame)
    idless = np.flatnonzero(~has_frame)

    pieces: list[dict[str, np.ndarray]] = []
    for a, b in pairs:
        name = f"{a}->{b}"
        counts = {"timeout": 0, "orphan": 0, "duplicate": 0}
        start_i = end_i = np.zeros(0, np.int64)
        if a in stage_names and b in stage_names:
            ca, cb = stage_names.index(a), stage_names.index(b)
            r = pair_keyed_arrays(key[keyed], stage[keyed], ts[keyed], ca, cb, window_ns)
            start_i, end_i = keyed[r.start_idx], keyed[r.end_idx]
            counts["timeout"] += len(r.timeout_idx)
            counts["orphan"] += len(r.orphan_idx)
            counts["duplicate"] += len(r.duplicate_idx)
            if len(idless):
                s2, e2 = _pair_idless(idless, ts, pipe, stream, stage, stage_names,
                                      (a, b), window_ns, counts)
                start_i = np.concatenate([start_i, s2])
                end_i = np.concatenate([end_i, e2])
        result.spans[name] = len(start_i)
        result.unpaired[name] = counts
        pieces.append({"start": start_i, "end": end_i, "pair": np.full(len(start_i),
                                                                         len(pieces))})
    start_i = np.concatenate([p["start"] for p in pieces]) if pieces else np.zeros(0, np.int64)
    end_i = np.concatenate([p["end"] for p in pieces]) if pieces else np.zeros(0, np.int64)
    pair_i = np.concatenate([p["pair"] for p in pieces]) if pieces else np.zeros(0, np.int64)
    order = np.lexsort((pair_i, ts[start_i]))
    start_i, end_i, pair_i = start_i[order], end_i[order], pair_i[order]
    s_ns, e_ns = ts[start_i], ts[end_i]
    offset = _unix_offset(marks)
    cols: dict[str, pa.Array] = {
        "pipeline": _string_column(pipe[start_i], pipe_names),
        "stream": _string_column(stream[start_i], stream_names),
        "frame": pa.array(frame[start_i], pa.int64(), mask=~has_frame[start_i]),
        "stage_from": _string_column(pair_i, [a for a, _ in pairs]),
        "stage_to": _string_column(pair_i, [b for _, b in pairs]),
        "start_ns": pa.array(s_ns), "end_ns": pa.array(e_ns),
        "start_unix_ns": pa.array(s_ns + offset), "end_unix_ns": pa.array(e_ns + offset),
        "latency_ms": pa.array((e_ns - s_ns) / 1e6),
        "power_source": pa.array([labels[0] if labels else None] * len(s_ns), pa.string()),
    }
    gap_ns = int(cfg.power_max_gap_s * 1e9)
    for label, mean_col, energy_col in power_columns(labels) or [(None, "power_mean_w",
                                                                  "energy_j")]:
        entry = stored.power.get(label) if label else None
        if entry is None:
            cols[mean_col] = cols[energy_col] = pa.nulls(len(s_ns), pa.float64())
            continue
        kind, pts, pv = entry
        series = PowerSeries.from_power(pts, pv) if kind == "power" else \
            PowerSeries.from_counter(pts, pv)
        energy, mean = energy_between(series, s_ns, e_ns, gap_ns)
        cols[mean_col] = pa.array(mean, from_pandas=True)
        cols[energy_col] = pa.array(energy, from_pandas=True)
    groups_h = np.array([group_hash(stored.session_id, p, s) for p in pipe_names
                         for s in (stream_names or [""])], dtype=np.uint64)
    frame_key = np.where(has_frame[start_i], frame[start_i], s_ns)
    hi, lo = trace_ids_np(groups_h[group[start_i]] if len(groups_h) else
                          np.zeros(0, np.uint64), frame_key)
    span_lo = np.zeros(len(lo), np.uint64)
    for i, (a, b) in enumerate(pairs):
        sel = pair_i == i
        span_lo[sel] = span_ids_np(lo[sel], f"{a}->{b}")
    cols["trace_id"] = _hex_strings(hi, lo)
    cols["span_id"] = _hex_strings(span_lo)
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
