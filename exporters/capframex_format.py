"""The two files of a CapFrameX capture, as its import rules want them
(shared/spec/capframex-formats.md): the PresentMon-style CSV with power and energy columns,
and the JSON with its run, power arrays and hashes, both written as runs of byte pieces so
that a long capture is never one large string."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from otel_benchlab.exporters.decimal_text import Decimals, Text, json_array, lines

CSV_COLUMNS = [
    "Application", "ProcessID", "SwapChainAddress", "Runtime", "SyncInterval", "PresentFlags",
    "AllowsTearing", "PresentMode", "Dropped", "TimeInSeconds", "MsBetweenPresents",
    "MsBetweenDisplayChange", "MsInPresentAPI", "MsUntilRenderComplete", "MsUntilDisplayed",
]
PMD_ARRAYS = {"cpu": "PmdCpuPower", "gpu": "PmdGpuPower", "sys": "PmdSystemPower"}

# Rows formatted at a time: a 100,000-frame rollover peaked 17 MB higher at 50,000 a
# block than at 10,000, which formats as fast.
CSV_BLOCK = 10_000


@functools.lru_cache(maxsize=4096)
def safe_name(text: str) -> str:
    # Cached: it is called per row with a handful of distinct names (streams).
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def safe_names(texts: pa.Array) -> pa.Array:
    """``safe_name`` of each text, in Arrow kernels (a flood of stream names made as
    many Python strings took ~6 MB a 100,000-frame capture)."""
    cleaned = pc.utf8_trim(pc.replace_substring_regex(texts, r"[^A-Za-z0-9_.-]+", "_"), "_")
    return pc.if_else(pc.equal(cleaned, ""), "x", cleaned)


class _Encoded:
    """JSON text made already (a large array): its pieces, spliced in as they are."""

    def __init__(self, pieces: Text) -> None:
        self.pieces = pieces


def _json_floats(numbers: Decimals) -> _Encoded:
    """``json.dumps([round(v, digits) for v in values])``, made once and reused."""
    return _Encoded(json_array(numbers.rounded_repr()))


def _json_repeated(text: bytes, n: int) -> _Encoded:
    """A JSON array of ``n`` times the same value, written as ``text``."""
    return _Encoded((b"[", (text + b", ") * (n - 1) + text if n else b"", b"]"))


def _cells(numbers: Decimals) -> pa.Array:
    """CSV cells: ``f"{v:.{digits}f}"``, empty where there is no value."""
    return numbers.fixed().fill_null("")


def json_pieces(obj: object, sort_keys: bool = False) -> Iterator[bytes | pa.Buffer]:
    """``json.dumps`` (default separators) as a run of byte pieces, for dicts whose large
    arrays are ``_Encoded``: each array is encoded once however often it appears (the four
    latency columns, and the run again for its hash), and never copied into one string."""
    if isinstance(obj, _Encoded):
        yield from obj.pieces
    elif isinstance(obj, dict) and any(isinstance(v, (_Encoded, dict, list))
                                       for v in obj.values()):
        sep = "{"
        for k, v in sorted(obj.items()) if sort_keys else obj.items():
            yield f"{sep}{json.dumps(k)}: ".encode()
            yield from json_pieces(v, sort_keys)
            sep = ", "
        yield b"}"  # not empty: it holds an encoded value
    elif isinstance(obj, list) and any(isinstance(v, (_Encoded, dict)) for v in obj):
        sep = "["
        for v in obj:
            yield sep.encode()
            yield from json_pieces(v, sort_keys)
            sep = ", "
        yield b"]"
    else:
        yield json.dumps(obj, sort_keys=sort_keys).encode()


@dataclass
class Frames:
    """A capture's frame times and latencies as decimals (both files write them)."""

    time: Decimals  # seconds from the first frame's start
    lat: Decimals  # ms


def attributed_column(energy_col: str) -> str:
    """The aligned column of a source's attributed energy beside its energy column."""
    return energy_col.replace("energy_j", "energy_attr_j", 1)


def csv_pieces(app: str, power_columns: list[tuple[str, str, str]], table: pa.Table,
               t: dict[str, np.ndarray], frames: Frames) -> Iterator[bytes | pa.Buffer]:
    """The CSV text in blocks of rows (formatting a whole capture at once held some
    50 MB of strings per capture at each rollover); the frame times and latencies are
    written whole once (~9 bytes a frame each)."""
    n = len(t["start_ns"])
    fixed_cells = f"{app},0,0x0000000000000000,Other,0,0,0,Unknown,0"
    names = ["Frame", "Stream"] + [
        name for label, _, _ in power_columns
        for name in (f"Power_{safe_name(label)}_W", f"Energy_{safe_name(label)}_J")]
    yield (",".join(CSV_COLUMNS + names) + "\n").encode()
    frame = pc.cast(table["frame"], pa.string()).fill_null("").combine_chunks()
    streams = pc.dictionary_encode(table["stream"].combine_chunks())
    stream = safe_names(streams.dictionary).take(streams.indices)
    times, lats = _cells(frames.time), _cells(frames.lat)
    for lo in range(0, n, CSV_BLOCK):
        sl = slice(lo, min(n, lo + CSV_BLOCK))
        lat = lats[sl]
        cols = [fixed_cells, times[sl], lat, lat, "0.0000", lat, lat, frame[sl],
                stream[sl]]
        for _, mean_col, energy_col in power_columns:
            cols += [_cells(Decimals(t[mean_col][sl], 3)),
                     _cells(Decimals(t[attributed_column(energy_col)][sl], 6))]
        yield from lines(cols)

def json_document(app: str, sample_time_ms: int, key: tuple[str, str, str],
                  t: dict[str, np.ndarray], frames: Frames,
                  power: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> dict:
    """The capture's JSON as CapFrameX reads it: one run, its power arrays resampled onto
    a ``sample_time_ms`` grid from the capture's start."""
    pipeline, a, b = key
    start = t["start_ns"]
    n = len(start)
    lat = _json_floats(frames.lat)
    zeros = _json_repeated(b"0", n)
    capture = {
        "TimeInSeconds": _json_floats(frames.time),
        "MsBetweenPresents": lat, "MsInPresentAPI": _json_repeated(b"0.0", n),
        "MsBetweenDisplayChange": lat, "MsUntilRenderComplete": lat,
        "MsUntilDisplayed": lat,
        "QPCTime": _json_floats(Decimals(start / 1e9, 6)),
        "PresentMode": zeros, "AllowsTearing": zeros, "SyncInterval": zeros,
        "Dropped": _json_repeated(b"false", n),
    }
    run: dict = {"PresentMonRuntime": "otel-benchlab", "SampleTime": sample_time_ms,
                 "CaptureData": capture}
    end = int(t["end_ns"].max())
    grid = np.arange(int(start[0]), end + 1, sample_time_ms * 1_000_000)
    for label, key in PMD_ARRAYS.items():
        chunks = power.get(label)
        if not chunks:
            continue
        ts = np.concatenate([x[0] for x in chunks])
        w = np.concatenate([x[1] for x in chunks])
        if len(ts) == 0:
            continue
        order = np.argsort(ts, kind="stable")
        run[key] = _json_floats(Decimals(np.interp(grid, ts[order], w[order]), 3))
    sha = hashlib.sha256()
    for piece in json_pieces(run, sort_keys=True):
        sha.update(piece)
    digest = sha.hexdigest()
    run["Hash"] = digest
    info = {
        "Id": str(uuid.uuid4()), "GameName": f"{pipeline} {a}->{b}",
        "ProcessName": app,
        "CreationDate": dt.datetime.now(dt.timezone.utc).isoformat(),
        "Comment": f"otel-benchlab stage latency {a}->{b} of pipeline {pipeline}; "
                   "frame time = stage latency",
    }
    return {"Hash": hashlib.sha256((digest + info["Id"]).encode()).hexdigest(),
            "Info": info, "Runs": [run]}
