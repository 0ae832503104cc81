"""Stored sessions as columnar records, for replay: our own Parquet sessions and the seed
project's ``raw/*.jsonl``. Corrupt parts and torn or malformed lines are counted, logged
once per file with where, and skipped; the good data around them is kept.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from otel_benchlab.journal import pending_journals, read_journal
from otel_benchlab.schema import MARK_SCHEMA

log = logging.getLogger(__name__)

CHUNK_BYTES = 32 << 20


@dataclass
class StoredSession:
    session_id: str
    marks: pa.Table  # MARK_SCHEMA columns (ts_ns, pipeline, stream, stage, frame)
    power: dict[str, tuple[str, np.ndarray, np.ndarray]]  # label -> (kind, ts_ns, values)
    pairs: list[tuple[str, str]] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)


def read_session(path: str | Path) -> StoredSession:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a session directory")
    if (path / "raw" / "marks").is_dir():
        return read_parquet_session(path)
    if (path / "raw" / "pipeline.jsonl").exists():
        return read_seed_session(path)
    raise FileNotFoundError(f"{path}: neither raw/marks/ (otel-benchlab) nor "
                            "raw/pipeline.jsonl (seed project) found")


# -- our own sessions ------------------------------------------------------------------
def _read_parts(directory: Path, columns: list[str], rejected: dict[str, int],
                dictionary: list[str]) -> list[pa.Table]:
    """Every part, then the journals of parts never completed (a crashed agent's last
    rows), read as they are: replay changes nothing in the session."""
    tables = []
    for part in sorted(directory.glob("part-*.parquet")):
        try:
            tables.append(pq.read_table(part, columns=columns, read_dictionary=dictionary))
        except (OSError, pa.ArrowException) as exc:
            rejected[str(part)] = rejected.get(str(part), 0) + 1
            log.warning("skipping unreadable Parquet part %s: %s", part, exc)
    for journal in pending_journals(directory):
        batches, torn = read_journal(journal)
        if torn:
            log.info("%s ends in a torn batch (an agent crashed mid-write); read %d "
                     "complete batches", journal, len(batches))
        if batches:
            t = pa.Table.from_batches(batches).select(columns)
            for name in dictionary:
                i = t.schema.get_field_index(name)
                t = t.set_column(i, name, pc.dictionary_encode(t[name]))
            tables.append(t)
    return tables


def read_parquet_session(path: Path) -> StoredSession:
    manifest = json.loads((path / "session.json").read_text()) if (
        path / "session.json").exists() else {}
    rejected: dict[str, int] = {}
    mark_cols = ["ts_ns", "ts_unix_ns", "pipeline", "stream", "stage", "frame"]
    parts = _read_parts(path / "raw" / "marks", mark_cols, rejected,
                        ["pipeline", "stream", "stage"])
    marks = pa.concat_tables(parts).unify_dictionaries() if parts else \
        MARK_SCHEMA.empty_table().select(mark_cols)
    sources = {(s["source"], s["name"]): (s["power_source"], s.get("kind", "power"))
               for s in manifest.get("sensors", []) if s.get("power_source")}
    power: dict[str, tuple[str, list, list]] = {}
    sample_parts = _read_parts(path / "raw" / "samples", ["ts_ns", "source", "sensor", "value"],
                               rejected, [])
    for t in sample_parts:
        for (source, sensor), (label, kind) in sources.items():
            sel = t.filter(pc.and_(pc.equal(t["source"], source), pc.equal(t["sensor"], sensor)))
            entry = power.setdefault(label, (kind, [], []))
            entry[1].append(sel["ts_ns"].to_numpy())
            entry[2].append(sel["value"].to_numpy())
    cfg_pairs = manifest.get("config", {}).get("pairs", [])
    return StoredSession(
        session_id=manifest.get("session_id", path.name), marks=marks,
        power={k: (kind, *_sorted(np.concatenate(ts), np.concatenate(v)))
               for k, (kind, ts, v) in power.items() if ts},
        pairs=[tuple(p) for p in cfg_pairs], rejected=rejected)


def _sorted(ts: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(ts, kind="stable")
    ts, v = ts[order], v[order]
    keep = np.ones(len(ts), bool)
    keep[1:] = ts[1:] > ts[:-1]
    return ts[keep], v[keep]


# -- the seed project's JSONL ----------------------------------------------------------
def _jsonl_tables(path: Path, rejected: dict[str, int]) -> list[pa.Table]:
    """Parse a JSONL file chunk by chunk with Arrow's reader; a chunk it refuses (torn or
    malformed lines) is parsed line by line so only the bad lines are lost."""
    tables: list[pa.Table] = []
    bad = 0
    first_bad: int | None = None
    line_no = 0
    with open(path, "rb") as fh:
        rest = b""
        while True:
            block = fh.read(CHUNK_BYTES)
            data = rest + block
            if not block:
                rest, chunk = b"", data
            else:
                cut = data.rfind(b"\n") + 1
                chunk, rest = data[:cut], data[cut:]
            if chunk.strip():
                try:
                    tables.append(pj.read_json(io.BytesIO(chunk)))
                except pa.ArrowInvalid:
                    good = []
                    for i, line in enumerate(chunk.splitlines(), start=line_no + 1):
                        if not line.strip():
                            continue
                        try:
                            rec = json.loads(line)
                            if not isinstance(rec, dict) or not isinstance(rec.get("kv"), dict):
                                raise ValueError("not an object with a kv table")
                            good.append(rec)
                        except ValueError:
                            bad += 1
                            first_bad = first_bad or i
                    if good:
                        tables.append(pa.Table.from_pylist(good))
            line_no += chunk.count(b"\n")
            if not block:
                break
    if bad:
        rejected[str(path)] = bad
        log.warning("%s: skipped %d torn or malformed lines (first at line %d)", path, bad,
                    first_bad)
    return tables


def _kv_column(t: pa.Table, key: str) -> pa.ChunkedArray | None:
    if "kv" not in t.column_names:
        return None
    kv = t["kv"]
    if not pa.types.is_struct(kv.type) or kv.type.get_field_index(key) < 0:
        return None
    return pc.struct_field(kv, key)


def _text(col: pa.ChunkedArray | None, default: pa.ChunkedArray | str, n: int) -> pa.Array:
    """``col`` as strings, with ``default`` (a column or one string) where it is null."""
    base = pa.array([default] * n, pa.string()) if isinstance(default, str) else default
    return base if col is None else pc.coalesce(pc.cast(col, pa.string()), base)


def _kv_floats(t: pa.Table, name: str) -> np.ndarray:
    return pc.cast(_kv_column(t, name), pa.float64()).to_numpy(zero_copy_only=False)


def read_seed_session(path: Path) -> StoredSession:
    rejected: dict[str, int] = {}
    marks = []
    for t in _jsonl_tables(path / "raw" / "pipeline.jsonl", rejected):
        n = t.num_rows
        stage = _kv_column(t, "stage")
        if stage is None or "ts_ns" not in t.column_names:
            rejected["pipeline.jsonl: lines without kv.stage"] = n
            continue

        source = pc.cast(t["source"], pa.string()) if "source" in t.column_names else "seed"
        frame = _kv_column(t, "frame")
        try:
            frame_arr = pc.cast(frame, pa.int64()) if frame is not None else pa.nulls(
                n, pa.int64())
        except pa.ArrowInvalid:
            frame_arr = pa.array([int(f) if isinstance(f, (int, float)) or (
                isinstance(f, str) and f.isdigit()) else None for f in frame.to_pylist()],
                pa.int64())
        tbl = pa.table({
            "ts_ns": pc.cast(t["ts_ns"], pa.int64()),
            "pipeline": _text(_kv_column(t, "pipeline"), "seed", n),
            "stream": _text(_kv_column(t, "stream"), source, n),
            "stage": pc.cast(stage, pa.string()), "frame": frame_arr,
        })
        ok = pc.and_(pc.is_valid(tbl["ts_ns"]), pc.is_valid(tbl["stage"]))
        dropped = n - pc.sum(ok).as_py()
        if dropped:
            rejected["pipeline.jsonl: lines without ts_ns or stage"] = dropped
        marks.append(tbl.filter(ok))
    table = pa.concat_tables(marks) if marks else MARK_SCHEMA.empty_table().select(
        ["ts_ns", "pipeline", "stream", "stage", "frame"])
    table = table.cast(pa.schema([("ts_ns", pa.int64())] + [
        (c, pa.dictionary(pa.int32(), pa.string())) for c in ("pipeline", "stream", "stage")
    ] + [("frame", pa.int64())]))
    power = _seed_power(path / "raw" / "benchlab.jsonl", rejected)
    return StoredSession(session_id=path.name, marks=table, power=power, rejected=rejected)


def _seed_power(path: Path, rejected: dict[str, int]) -> dict:
    """SYS from ``p_sys``, else the sum of the rail powers ``p_*``; CPU and GPU from
    ``p_cpu`` / ``p_gpu`` where present."""
    if not path.exists():
        return {}
    ts_all: dict[str, list[np.ndarray]] = {}
    v_all: dict[str, list[np.ndarray]] = {}
    for t in _jsonl_tables(path, rejected):
        if "kv" not in t.column_names or not pa.types.is_struct(t["kv"].type):
            continue
        names = [t["kv"].type.field(i).name for i in range(t["kv"].type.num_fields)]
        ts = pc.cast(t["ts_ns"], pa.int64()).to_numpy(zero_copy_only=False)

        rails = [n for n in names if n.startswith("p_") and n not in ("p_sys", "p_cpu", "p_gpu")]
        series = {}
        if "p_sys" in names:
            series["sys"] = _kv_floats(t, "p_sys")
        elif rails:
            series["sys"] = np.sum([np.nan_to_num(_kv_floats(t, r)) for r in rails], axis=0)
        for label, key in (("cpu", "p_cpu"), ("gpu", "p_gpu")):
            if key in names:
                series[label] = _kv_floats(t, key)
        for label, v in series.items():
            ok = ~np.isnan(v)
            ts_all.setdefault(label, []).append(ts[ok])
            v_all.setdefault(label, []).append(v[ok])
    return {label: ("power", *_sorted(np.concatenate(ts_all[label]),
                                      np.concatenate(v_all[label]))) for label in ts_all}
