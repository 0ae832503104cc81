"""Numbers as decimal text, a whole array at a time, exactly as Python writes one.

CapFrameX files hold millions of numbers; formatting each through ``format`` or
``repr(round(...))`` cost most of a replay. These functions give the same bytes from numpy
and Arrow kernels: the value is scaled by 10**digits, and rounded to an integer where the
exact product (the float product and its exact error) is compared with the half, so a
value a hair either side rounds as Python rounds it, and an exact tie (1/128 at six
digits) goes to the even neighbour as Python's does. Values too large for an exact
integer, non-finite ones and numbers ``repr`` writes in exponent form go through Python
itself, so every string equals Python's.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_EXACT_LIMIT = 2.0 ** 50  # scaled values below this round to an exact int64


def _two_product(a: np.ndarray, b: float) -> tuple[np.ndarray, np.ndarray]:
    """``a * b`` as its float product ``p`` and the exact error ``e`` (a*b == p + e
    exactly; Dekker's product: each factor split into halves whose products are exact)."""
    p = a * b
    split = 134217729.0  # 2**27 + 1
    c = a * split
    ah = c - (c - a)
    al = a - ah
    cb = b * split
    bh = cb - (cb - b)
    bl = b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _scaled(values: np.ndarray, digits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(10**digits * |v| rounded, sign bits, values Python must write itself)."""
    v = np.asarray(values, np.float64)
    scale = float(10 ** digits)
    with np.errstate(invalid="ignore", over="ignore"):
        x = np.abs(v) * scale
        whole = np.floor(x)
        frac = x - whole  # exact: x and its floor are close floats
        up = frac > 0.5
        # Where the float product may be on the other side of the half from the exact
        # one, the exact product decides: it is whole + 0.5 + (above + err), with above
        # exact; an exact tie goes to the even neighbour, as Python rounds.
        # (The float product is off by at most half its last place, below x * 2**-53.)
        near = np.flatnonzero(np.abs(frac - 0.5) <= x * 2.0 ** -51)
        if len(near):
            _, err = _two_product(np.abs(v[near]), scale)
            above = frac[near] - 0.5
            odd = np.fmod(whole[near], 2.0) == 1.0
            up[near] = (above > -err) | ((above == -err) & odd)
        python = ~(x < _EXACT_LIMIT)
        q = np.where(python, 0.0, whole + up).astype(np.int64)
    return q, np.signbit(v), python


def _insert_byte(text: pa.Array, where: np.ndarray, byte: bytes, end: bool) -> pa.Array:
    """``text`` (without nulls) with ``byte`` put at the end (or start) of the rows
    ``where`` holds, straight into its buffers: the rows are few (whole numbers, negative
    values) and a join of the whole array cost more than all the rest."""
    rows = np.flatnonzero(where)
    if not len(rows):
        return text
    n = len(text)
    offsets = np.frombuffer(text.buffers()[1], np.int32)[text.offset:text.offset + n + 1]
    data = np.frombuffer(text.buffers()[2], np.uint8)[offsets[0]:offsets[-1]]
    offsets = offsets - offsets[0]
    data = np.insert(data, offsets[rows + 1] if end else offsets[rows], byte[0])
    added = np.zeros(n + 1, np.int32)
    np.cumsum(where, out=added[1:])  # a row starts after the bytes put in rows before it
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets + added), pa.py_buffer(data))


def _patch(text: pa.Array, values: np.ndarray, where: np.ndarray,
           write: Callable[[float], str | None]) -> pa.Array:
    idx = np.flatnonzero(where)
    if not len(idx):
        return text
    return pc.replace_with_mask(text, pa.array(where),
                                pa.array([write(v) for v in values[idx].tolist()], pa.string()))


class Decimals:
    """An array's numbers scaled, rounded and put into text once, for both of Python's
    ways of writing them (a CapFrameX capture writes its frame times and latencies both
    ways: fixed in the CSV, repr in the JSON)."""

    def __init__(self, values: np.ndarray, digits: int) -> None:
        self.values = np.asarray(values, np.float64)
        self.digits = digits
        self.q, self.neg, self.python = _scaled(self.values, digits)
        # One integer's text with the point put in (one cast; two casts and a join of
        # whole and fraction cost twice as much); the sign comes last.
        self.unsigned = pc.binary_replace_slice(
            pc.utf8_lpad(pc.cast(pa.array(self.q), pa.string()), digits + 1, "0"),
            -digits, -digits, ".")

    def fixed(self) -> pa.Array:
        """``f"{v:.{digits}f}"`` of each value; NaN becomes null (an empty CSV cell)."""
        d = self.digits
        text = _insert_byte(self.unsigned, self.neg, b"-", end=False)
        return _patch(text, self.values, self.python, lambda v: None if v != v else f"{v:.{d}f}")

    def rounded_repr(self) -> pa.Array:
        """``json.dumps(round(v, digits))`` of each value: Python's shortest repr of the
        rounded float (``1.5``, ``0.0``, ``-0.0``; ``NaN`` / ``Infinity`` as json writes
        them)."""
        d, q = self.digits, self.q
        # No trailing zeros, but at least one digit after the point.
        text = _insert_byte(pc.utf8_rtrim(self.unsigned, "0"), q % 10 ** d == 0, b"0",
                            end=True)
        text = _insert_byte(text, self.neg, b"-", end=False)
        # repr switches to exponent form below 1e-4: those few go through Python too.
        python = self.python | ((q > 0) & (q < 10 ** max(d - 4, 0)))
        return _patch(text, self.values, python, lambda v: json.dumps(round(v, d)))


def fixed(values: np.ndarray, digits: int) -> pa.Array:
    """``f"{v:.{digits}f}"`` of each value; NaN becomes null (an empty CSV cell)."""
    return Decimals(values, digits).fixed()


def rounded_repr(values: np.ndarray, digits: int) -> pa.Array:
    """``json.dumps(round(v, digits))`` of each value (see ``Decimals.rounded_repr``)."""
    return Decimals(values, digits).rounded_repr()


Text = tuple[bytes | pa.Buffer, ...]  # pieces written one after the other


def _joined(text: pa.Array, sep: str) -> pa.Buffer | bytes:
    """The texts of an array joined by ``sep``, in one Arrow kernel, as Arrow's buffer:
    written as it is, never copied into a Python string."""
    if len(text) == 0:
        return b""
    lists = pa.ListArray.from_arrays(pa.array([0, len(text)], pa.int32()), text)
    return pc.binary_join(lists, sep)[0].as_buffer()


def json_array(text: pa.Array) -> Text:
    """``[a, b, ...]`` from an array of JSON texts, as ``json.dumps`` separates them."""
    return b"[", _joined(text, ", "), b"]"


def lines(columns: list[pa.Array | str], sep: str = ",") -> Text:
    """Rows of ``columns`` (arrays of text, or one text for every row; at least one
    array) joined by ``sep``, one row a line, each ending in a newline."""
    first = next(i for i, c in enumerate(columns) if not isinstance(c, str))
    last = max(i for i, c in enumerate(columns) if not isinstance(c, str))
    n = len(columns[first])
    if n == 0:
        return ()
    # Texts before the first array and after the last go into the line breaks (Arrow's
    # join takes a plain text on every row at about the cost of three arrays); one
    # between arrays becomes an array of its own.
    head = "".join(f"{c}{sep}" for c in columns[:first]).encode()
    tail = "".join(f"{sep}{c}" for c in columns[last + 1:]).encode()
    rows = pc.binary_join_element_wise(
        *[repeated_text(c, n) if isinstance(c, str) else c for c in columns[first:last + 1]], sep)
    return head, _joined(rows, (tail + b"\n" + head).decode()), tail + b"\n"


def repeated_text(text: str, n: int) -> pa.Array:
    """An array of ``n`` times ``text``, made from its buffers."""
    raw = text.encode()
    offsets = np.arange(n + 1, dtype=np.int32) * len(raw)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(raw * n))


def joined_text(pieces: Text) -> str:
    """The pieces as one string (for tests and small texts)."""
    return b"".join(bytes(p) for p in pieces).decode()
