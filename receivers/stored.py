"""Stored sessions as columnar records, for replay: our own Parquet sessions and the seed
project's ``raw/*.jsonl``. Corrupt parts and torn or malformed lines are counted, logged
once per file with where, and skipped; the good data around them is kept.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from otel_benchlab.session.schema import MARK_SCHEMA
from otel_benchlab.session.window import Window

from .jsonl_chunks import parse_chunk
from .seed_lines import _int, seed_mark
from .stored_parts import RowWindow, in_window, iter_parts, read_parts, rows_range

__all__ = ["RowWindow", "StoredSession", "read_parts", "read_session", "rows_range"]

log = logging.getLogger(__name__)

CHUNK_BYTES = 32 << 20
_NOT_SPACE = re.compile(rb"\S")


@dataclass
class StoredSession:
    session_id: str
    marks: pa.Table  # MARK_SCHEMA columns (ts_ns, pipeline, stream, stage, frame)
    power: dict[str, tuple[str, np.ndarray, np.ndarray]]  # label -> (kind, ts_ns, values)
    pairs: list[tuple[str, str]] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)
    power_sources: list[str] = field(default_factory=list)  # as the session configured them


POWER_MARGIN_NS = 10 * 10**9  # power read around a window: its first and last spans' ends


def read_session(path: str | Path, window: Window | None = None) -> StoredSession:
    """The session's marks and power; with ``window``, the marks in it (a seed session's
    times are its own ``ts_ns``) and the power around it."""
    stored = open_session(path, window)
    chunks = list(mark_chunks(Path(path), window, stored.rejected))
    if chunks:
        stored.marks = pa.concat_tables(chunks).unify_dictionaries()
    return stored


def open_session(path: str | Path, window: Window | None = None) -> StoredSession:
    """The session without its marks (``marks`` empty): its manifest's pairs and power
    sources, and its power (samples are few beside marks: 10 Hz is 0.9 M a day); its marks
    come from ``mark_chunks``."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a session directory")
    if (path / "raw" / "marks").is_dir():
        return _parquet_session(path, window)
    if (path / "raw" / "pipeline.jsonl").exists():
        rejected: dict[str, int] = {}
        return StoredSession(path.name, SEED_MARKS.empty_table(),
                             _seed_power(path / "raw" / "benchlab.jsonl", rejected),
                             rejected=rejected)
    raise FileNotFoundError(f"{path}: neither raw/marks/ (otel-benchlab) nor "
                            "raw/pipeline.jsonl (seed project) found")


MARK_COLUMNS = ["ts_ns", "ts_unix_ns", "pipeline", "stream", "stage", "frame"]


def mark_chunks(path: Path, window: Window | None,
                rejected: dict[str, int]) -> Iterator[pa.Table]:
    """The session's marks a part (or a seed file's chunk) at a time, in the order they
    were written; ``rejected`` counts what was skipped."""
    if (path / "raw" / "marks").is_dir():
        yield from iter_parts(path / "raw" / "marks", MARK_COLUMNS, rejected,
                              ["pipeline", "stream", "stage"],
                              RowWindow(window, "ts_unix_ns") if window else None)
        return
    for t in seed_mark_tables(path, rejected):
        t = in_window(t, RowWindow(window, "ts_ns")) if window is not None else t
        if t.num_rows:
            yield t


# -- our own sessions ------------------------------------------------------------------
def read_manifest(path: Path) -> dict:
    """session.json, checked piece by piece: what is unreadable is said once and left out,
    since the data can be read without it (only power-source kinds and pairs come from it)."""
    f = path / "session.json"
    if not f.exists():
        log.warning("%s is missing: replaying without it (no power sources known, so no "
                    "energy; give pairs with --pair)", f)
        return {}
    try:
        manifest = json.loads(f.read_bytes())
    except (OSError, ValueError) as exc:
        log.warning("%s is unreadable (%s): replaying without it (no power sources known, so "
                    "no energy; give pairs with --pair)", f, exc)
        return {}
    if not isinstance(manifest, dict):
        log.warning("%s is not a JSON object: replaying without it", f)
        return {}
    for key, typ in (("config", dict), ("sensors", list), ("session_id", str)):
        if key in manifest and not isinstance(manifest[key], typ):
            log.warning("%s: '%s' is not a %s; ignored", f, key, typ.__name__)
            del manifest[key]
    manifest["sensors"] = [s for s in manifest.get("sensors", []) if isinstance(s, dict)
                           and isinstance(s.get("source"), str) and isinstance(s.get("name"), str)]
    cfg = manifest.get("config", {})
    for key in ("pairs", "power_sources"):
        items = cfg.get(key, [])
        ok = isinstance(items, list) and all(
            (isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p))
            if key == "pairs" else isinstance(p, str) for p in items)
        if not ok:
            log.warning("%s: config '%s' is malformed; ignored", f, key)
            cfg[key] = []
    manifest["config"] = cfg
    return manifest


def _parquet_session(path: Path, window: Window | None = None) -> StoredSession:
    """An otel-benchlab session without its marks (``mark_chunks``)."""
    manifest = read_manifest(path)
    rejected: dict[str, int] = {}
    power = read_power(path, manifest, rejected, window)
    cfg_pairs = manifest.get("config", {}).get("pairs", [])  # checked by _manifest
    return StoredSession(
        session_id=manifest.get("session_id", path.name),
        marks=MARK_SCHEMA.empty_table().select(MARK_COLUMNS), power=power,
        pairs=[tuple(p) for p in cfg_pairs], rejected=rejected,
        power_sources=[p.lower() for p in manifest.get("config", {}).get("power_sources", [])])


def read_power(path: Path, manifest: dict, rejected: dict[str, int],
               window: Window | None = None
               ) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """Each power source's samples in an otel-benchlab session: label -> (kind, ts_ns,
    values), in time order; the sensors that are power sources come from the manifest.
    With ``window``: those within ``POWER_MARGIN_NS`` of it."""
    sources = {(s["source"], s["name"]): (str(s["power_source"]).lower(),
                                          s.get("kind", "power"))
               for s in manifest.get("sensors", []) if s.get("power_source")}
    power: dict[str, tuple[str, list, list]] = {}
    rows = RowWindow(window.widened(POWER_MARGIN_NS), "ts_unix_ns") if window else None
    sample_parts = read_parts(path / "raw" / "samples", ["ts_ns", "source", "sensor", "value"],
                              rejected, [], rows)
    for t in sample_parts:
        for (source, sensor), (label, kind) in sources.items():
            sel = t.filter(pc.and_(pc.equal(t["source"], source), pc.equal(t["sensor"], sensor)))
            entry = power.setdefault(label, (kind, [], []))
            entry[1].append(sel["ts_ns"].to_numpy())
            entry[2].append(sel["value"].to_numpy())
    return {k: (kind, *_sorted(np.concatenate(ts), np.concatenate(v)))
            for k, (kind, ts, v) in power.items() if ts}


def _sorted(ts: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(ts, kind="stable")
    ts, v = ts[order], v[order]
    keep = np.ones(len(ts), bool)
    keep[1:] = ts[1:] > ts[:-1]
    return ts[keep], v[keep]


# -- the seed project's JSONL ----------------------------------------------------------
MAX_LINE_BYTES = 1 << 20  # seed lines are ~100 bytes; a longer one is garbage, skipped


SEED_MARK_SCHEMA = pa.schema([
    ("ts_ns", pa.int64()), ("source", pa.string()),
    ("kv", pa.struct([("stage", pa.string()), ("frame", pa.int64()),
                      ("stream", pa.string()), ("pipeline", pa.string())])),
])


def seed_mark_chunk_ok(t: pa.Table) -> bool:
    """Whether Arrow's parse of a chunk has the types marks need (else: line by line)."""
    ok = "ts_ns" in t.column_names and pa.types.is_int64(t["ts_ns"].type) and \
        "kv" in t.column_names and pa.types.is_struct(t["kv"].type)
    if not ok:
        return False
    kv = t["kv"].type
    want = {"stage": pa.types.is_string, "frame": lambda x: pa.types.is_int64(x) or
            pa.types.is_null(x), "stream": pa.types.is_string, "pipeline": pa.types.is_string}
    for name, check in want.items():
        i = kv.get_field_index(name)
        if (i < 0 and name == "stage") or (i >= 0 and not check(kv.field(i).type)):
            return False
    if "source" in t.column_names and not pa.types.is_string(t["source"].type):
        return False
    try:  # Arrow's JSON reader takes bytes that are not UTF-8 into strings as they are
        t.validate(full=True)
    except pa.ArrowInvalid:
        return False
    if pc.min(t["ts_ns"]).as_py() is not None and pc.min(t["ts_ns"]).as_py() < 0:
        return False
    frame = _kv_column(t, "frame")
    return frame is None or pa.types.is_null(frame.type) or (
        pc.min(frame).as_py() is None or pc.min(frame).as_py() >= 0)


def seed_power(rec: object) -> dict | None:
    """A seed BENCHLAB line with only finite numeric p_* values, or None."""
    if not isinstance(rec, dict) or not isinstance(rec.get("kv"), dict):
        return None
    ts = _int(rec.get("ts_ns"))
    values = {k: float(v) for k, v in rec["kv"].items() if k.startswith("p_")
              and isinstance(v, (int, float)) and not isinstance(v, bool)
              and np.isfinite(float(v))}
    if ts is None or len(values) != sum(1 for k in rec["kv"] if k.startswith("p_")):
        return None
    return {"ts_ns": ts, "kv": values}


def seed_power_chunk_ok(t: pa.Table) -> bool:
    if "ts_ns" not in t.column_names or not pa.types.is_int64(t["ts_ns"].type) or \
            "kv" not in t.column_names or not pa.types.is_struct(t["kv"].type):
        return False
    return all(pa.types.is_floating(f.type) or pa.types.is_integer(f.type)
               for f in t["kv"].type if f.name.startswith("p_"))


def _jsonl_tables(path: Path, rejected: dict[str, int],
                  normalise=seed_mark, chunk_ok=seed_mark_chunk_ok,
                  schema: pa.Schema | None = SEED_MARK_SCHEMA) -> Iterator[pa.Table]:
    """Parse a JSONL file chunk by chunk with Arrow's reader, a table per chunk as it is
    parsed (the caller converts it and lets it go). Only the bad lines of a chunk are read
    one by one, with ``normalise`` (``jsonl_chunks.parse_chunk``), so only they are lost
    and only they cost a Python parse. Memory stays bounded: a line longer than
    MAX_LINE_BYTES is skipped as it streams by, never held whole. ``rejected`` is filled
    when the file is done."""
    bad = 0
    first_bad: int | None = None
    bad_lines: list[int] = []  # numbers of the torn or malformed ones
    line_no = 0
    skipping = False  # inside an over-long line
    chunk: memoryview | None = None
    with open(path, "rb") as fh:
        rest = b""
        while True:
            # Read after the carried partial line, into a buffer of its own: the chunk is
            # parsed where it lies, not copied into a joined and then a sliced bytes.
            buf = chunk = None  # the last chunk's buffer goes before the next is made
            buf = bytearray(len(rest) + CHUNK_BYTES)
            buf[:len(rest)] = rest
            got = fh.readinto(memoryview(buf)[len(rest):])
            end, start = len(rest) + got, 0
            if skipping:  # the end of an over-long line (nothing is carried meanwhile)
                cut = buf.find(b"\n", 0, end)
                if cut < 0 and got:
                    continue
                skipping, start = False, cut + 1 if cut >= 0 else end
                line_no += 1
            cut = end if not got else max(buf.rfind(b"\n", start, end) + 1, start)
            if end - cut > MAX_LINE_BYTES:  # no end in sight: skip it as it streams
                bad += 1
                first_bad = first_bad or line_no + buf.count(b"\n", start, cut) + 1
                rest, skipping = b"", True
            else:
                rest = bytes(memoryview(buf)[cut:end])
            chunk = memoryview(buf)[start:cut]
            if _NOT_SPACE.search(chunk):
                chunk = None  # parse_chunk blanks bad lines in buf
                yield from parse_chunk(buf, start, cut, line_no + 1, normalise, chunk_ok,
                                       schema, MAX_LINE_BYTES, bad_lines)
            line_no += buf.count(b"\n", start, cut)
            if not got:
                break
    if bad_lines:
        bad += len(bad_lines)
        first_bad = min([first_bad or bad_lines[0], *bad_lines])
    if bad:
        rejected[str(path)] = bad
        log.warning("%s: skipped %d torn, malformed or over-long lines (first at line %d)",
                    path, bad, first_bad)


def _kv_column(t: pa.Table, key: str) -> pa.ChunkedArray | None:
    if "kv" not in t.column_names:
        return None
    kv = t["kv"]
    if not pa.types.is_struct(kv.type) or kv.type.get_field_index(key) < 0:
        return None
    return pc.struct_field(kv, key)


def _names(col: pa.ChunkedArray | None, default: pa.ChunkedArray | str | None,
           n: int) -> pa.ChunkedArray | pa.DictionaryArray:
    """``col`` dictionary-encoded (names: a handful of distinct strings), with ``default``
    (a column or one string) where it is null or absent."""
    if col is None:
        if isinstance(default, str):
            return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)),
                                                  pa.array([default], pa.string()))
        col = default
    elif default is not None and col.null_count:
        col = pc.coalesce(col, pa.scalar(default, pa.string()) if isinstance(default, str)
                          else default)
    return pc.dictionary_encode(pc.cast(col, pa.string()))


def _kv_floats(t: pa.Table, name: str) -> np.ndarray:
    return pc.cast(_kv_column(t, name), pa.float64()).to_numpy(zero_copy_only=False)


SEED_MARKS = pa.schema([("ts_ns", pa.int64())] + [
    (c, pa.dictionary(pa.int32(), pa.string())) for c in ("pipeline", "stream", "stage")
] + [("frame", pa.int64())])


def seed_mark_tables(path: Path, rejected: dict[str, int]) -> Iterator[pa.Table]:
    """raw/pipeline.jsonl's marks a chunk at a time, as ``SEED_MARKS`` tables."""
    for t in _jsonl_tables(path / "raw" / "pipeline.jsonl", rejected):
        n = t.num_rows
        stage = _kv_column(t, "stage")
        if stage is None or "ts_ns" not in t.column_names:
            key = "pipeline.jsonl: lines without kv.stage"
            rejected[key] = rejected.get(key, 0) + n
            continue
        source = t["source"] if "source" in t.column_names else "seed"
        frame = _kv_column(t, "frame")  # int64 or all null: chunks are checked for it
        tbl = pa.table({
            "ts_ns": pc.cast(t["ts_ns"], pa.int64()),
            "pipeline": _names(_kv_column(t, "pipeline"), "seed", n),
            "stream": _names(_kv_column(t, "stream"), source, n),
            "stage": _names(stage, None, n),
            "frame": pc.cast(frame, pa.int64()) if frame is not None else pa.nulls(
                n, pa.int64()),
        })
        dropped = tbl["ts_ns"].null_count + tbl["stage"].null_count
        if dropped:
            ok = pc.and_(pc.is_valid(tbl["ts_ns"]), pc.is_valid(tbl["stage"]))
            dropped = n - pc.sum(ok).as_py()
            key = "pipeline.jsonl: lines without ts_ns or stage"
            rejected[key] = rejected.get(key, 0) + dropped
            tbl = tbl.filter(ok)
        yield tbl


def _seed_power(path: Path, rejected: dict[str, int]) -> dict:
    """SYS from ``p_sys``, else the sum of the rail powers ``p_*``; CPU and GPU from
    ``p_cpu`` / ``p_gpu`` where present."""
    if not path.exists():
        return {}
    ts_all: dict[str, list[np.ndarray]] = {}
    v_all: dict[str, list[np.ndarray]] = {}
    for t in _jsonl_tables(path, rejected, seed_power, seed_power_chunk_ok, None):
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
