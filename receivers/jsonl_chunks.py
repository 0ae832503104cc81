"""One chunk of a JSONL file into Arrow tables, with only its bad lines on the slow path.

Arrow's JSON reader refuses a whole chunk for one bad line, and every crash leaves a torn
last line. Parsing the refused chunk line by line in Python (~40 us a line) made one torn
line cost a 32 MB chunk's worth of ``json.loads``: a replay three times slower. Here:

1. A vectorised scan finds the lines that cannot be a JSON object on their own line (one
   that does not start with ``{`` or end with ``}``: torn, cut, glued to the next, blank).
   Only those are read in Python; they are then blanked (spaces, which Arrow skips), so the
   rest of the chunk goes to Arrow as it is, in one call.
2. A chunk Arrow still refuses (a line that looks whole but is not JSON, or has the wrong
   types) is split in two at a line break and each half tried again, down to a few KB,
   which are read line by line: a bad line costs about two parses of its chunk, not a
   line-by-line read of it.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.json as pj

SCAN_BYTES = 1 << 18  # the scan's working set: its masks stay in cache, no fresh pages
LEAF_BYTES = 8 << 10  # a piece this small that Arrow refuses is read line by line
_OPEN, _CLOSE, _NL, _CR = ord("{"), ord("}"), ord("\n"), ord("\r")
_NOT_SPACE = re.compile(rb"\S")


def suspect_lines(buf: bytearray, start: int, cut: int) -> Iterator[tuple[int, int, int]]:
    """(line index from ``start``, line start, line end) of each line in buf[start:cut]
    that does not start with ``{`` or does not end with ``}`` (before an optional ``\\r``).
    The last line may lack its newline (the end of a file)."""
    a = np.frombuffer(buf, np.uint8)
    mask = np.empty(SCAN_BYTES, bool)
    prev_nl, lines = start - 1, 0
    for lo in range(start, cut, SCAN_BYTES):
        hi = min(lo + SCAN_BYTES, cut)
        m = mask[:hi - lo]
        np.equal(a[lo:hi], _NL, out=m)
        nl = np.flatnonzero(m) + lo
        if not len(nl):
            continue
        starts = np.empty(len(nl), np.int64)
        starts[0] = prev_nl + 1
        starts[1:] = nl[:-1] + 1
        yield from _bad_of(a, starts, nl, lines)
        lines += len(nl)
        prev_nl = int(nl[-1])
    if prev_nl + 1 < cut:  # a last line with no newline after it
        yield from _bad_of(a, np.array([prev_nl + 1]), np.array([cut]), lines)


def _bad_of(a: np.ndarray, starts: np.ndarray, ends: np.ndarray,
            first: int) -> Iterator[tuple[int, int, int]]:
    last = np.maximum(ends - 1, starts)
    closing = a[last]
    cr = (closing == _CR) & (last > starts)
    closing = np.where(cr, a[np.maximum(last - 1, starts)], closing)
    empty = ends == starts
    bad = empty | (a[np.minimum(starts, len(a) - 1)] != _OPEN) | (closing != _CLOSE)
    for k in np.flatnonzero(bad):
        yield first + int(k), int(starts[k]), int(ends[k])


def parse_chunk(buf: bytearray, start: int, cut: int, first_line: int,
                normalise: Callable[[object], dict | None],
                chunk_ok: Callable[[pa.Table], bool], schema: pa.Schema | None,
                max_line: int, bad: list[int]) -> Iterator[pa.Table]:
    """Tables of the good lines of buf[start:cut] (whole lines; line ``first_line`` first);
    the numbers of the bad ones are appended to ``bad``. Blanks bad lines in ``buf``."""
    side = []  # suspect lines that are good all the same (leading spaces, say)
    for k, s, e in suspect_lines(buf, start, cut):
        line = bytes(buf[s:e])
        if not line.strip():
            continue
        rec = _record(line, normalise, max_line)
        if rec is None:
            bad.append(first_line + k)
        else:
            side.append(rec)
        buf[s:e] = b" " * (e - s)
    yield from _arrow_or_halves(buf, start, cut, first_line, normalise, chunk_ok, schema,
                                max_line, bad)
    if side:
        yield pa.Table.from_pylist(side, schema=schema)


def _record(line: bytes, normalise: Callable[[object], dict | None],
            max_line: int) -> dict | None:
    if len(line) > max_line:
        return None
    try:
        return normalise(json.loads(line))
    except (ValueError, RecursionError):
        return None


def _arrow_or_halves(buf: bytearray, start: int, cut: int, first_line: int,
                     normalise: Callable[[object], dict | None],
                     chunk_ok: Callable[[pa.Table], bool], schema: pa.Schema | None,
                     max_line: int, bad: list[int]) -> Iterator[pa.Table]:
    view = memoryview(buf)
    todo = [(start, cut, first_line)]  # a stack: the first half is done first
    while todo:
        lo, hi, line_no = todo.pop()
        if not _NOT_SPACE.search(view[lo:hi]):
            continue
        table = None
        with contextlib.suppress(pa.ArrowInvalid):
            table = pj.read_json(pa.BufferReader(pa.py_buffer(view[lo:hi])))
        if table is not None and chunk_ok(table):
            yield table
            continue
        if hi - lo <= LEAF_BYTES:
            yield from _line_by_line(bytes(view[lo:hi]), line_no, normalise, schema,
                                     max_line, bad)
            continue
        mid = buf.rfind(b"\n", lo, (lo + hi) // 2) + 1
        if mid <= lo:
            mid = buf.find(b"\n", (lo + hi) // 2, hi) + 1
        if mid <= lo or mid >= hi:  # one long line
            yield from _line_by_line(bytes(view[lo:hi]), line_no, normalise, schema,
                                     max_line, bad)
            continue
        todo.append((mid, hi, line_no + buf.count(b"\n", lo, mid)))
        todo.append((lo, mid, line_no))


def _line_by_line(data: bytes, line_no: int, normalise: Callable[[object], dict | None],
                  schema: pa.Schema | None, max_line: int,
                  bad: list[int]) -> Iterator[pa.Table]:
    good = []
    for i, line in enumerate(data.split(b"\n"), start=line_no):
        if not line.strip():
            continue
        rec = _record(line, normalise, max_line)
        if rec is None:
            bad.append(i)
        else:
            good.append(rec)
    if good:
        yield pa.Table.from_pylist(good, schema=schema)
