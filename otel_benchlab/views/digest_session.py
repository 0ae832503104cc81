"""A long session's aligned rows read into digests (``digest.py``) a batch at a time: what
``report`` reads when a session holds more rows than ``EXACT_ROWS`` (the count comes from
the parts' footers), so its memory is a batch's and the digests', whatever the length.
Below that the report reads every row and its percentiles are exact; the JSON says which
(``statistics``)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from otel_benchlab.receivers.stored_parts import RowWindow, in_window, listing
from otel_benchlab.session.journal import read_journal
from otel_benchlab.session.schema import column_suffix
from otel_benchlab.session.window import Window, range_of
from otel_benchlab.views.digest import REL_ERR, PairDigest

# Rows a report reads whole; past it, digests (env BENCHLAB_REPORT_EXACT_ROWS).
EXACT_ROWS = int(os.environ.get("BENCHLAB_REPORT_EXACT_ROWS", 4_000_000))
BATCH_ROWS = 262_144
PAIR_BUCKETS, STREAM_BUCKETS = 800, 150
_NAMES = ("pipeline", "stream", "stage_from", "stage_to")


@dataclass
class SessionDigest:
    streams: list[PairDigest]  # a pair of a stream each
    pairs: list[PairDigest]  # a pair across its streams each
    labels: list[str]
    rows: int

    @property
    def statistics(self) -> dict:
        return {"percentiles": "sketch", "relative_error": REL_ERR, "rows": self.rows}


def _files(folder: Path, window: Window | None
           ) -> tuple[list[Path], list[Path], int, tuple[int, int]]:
    """The parts overlapping the window, the journals of parts in progress, the rows the
    parts hold and their span of monotonic time (start_ns to end_ns): one footer a part."""
    parts, journals = listing(folder)
    kept, rows, lo, hi = [], 0, [], []
    for p in parts:
        meta = pq.ParquetFile(p).metadata
        r = range_of(meta, ("end_unix_ns",)) if window else None
        if r is None or window.overlaps(*r):
            kept.append(p)
            rows += meta.num_rows
            a, b = range_of(meta, ("start_ns",)), range_of(meta, ("end_ns",))
            if a and b:
                lo.append(a[0])
                hi.append(b[1])
    return kept, journals, rows, (min(lo), max(hi)) if lo else (0, 1)


def _batches(parts: list[Path], journals: list[Path], columns: list[str]):  # noqa: ANN202
    for part in parts:
        f = pq.ParquetFile(part)
        cols = [c for c in columns if c in f.schema_arrow.names]
        yield from f.iter_batches(BATCH_ROWS, columns=cols)
    for journal in journals:
        batches = read_journal(journal)[0]
        if not journal.exists():  # it became a part, which this listing has not got
            raise FileNotFoundError(journal)
        for b in batches:
            yield b.select([c for c in columns if c in b.schema.names])


def digest_session(path: Path, window: Window | None, seed: int = 0,
                   found: Scan | None = None) -> SessionDigest | None:
    """The digests of the session's aligned rows (in ``window``; ``found``: its listing,
    where the caller has it). A running session's folder may change while it is read (a
    part compacted, a journal become a part): a file gone from its listing means the
    digest starts again from a new listing."""
    for _ in range(4):
        try:
            return _digest(found or scan(path, window), seed)
        except FileNotFoundError:
            found = None
    return _digest(scan(path, window), seed)


@dataclass
class Scan:
    """A session's aligned rows in the window, to be read batch by batch (``tables``)."""

    parts: list[Path]
    journals: list[Path]
    rows: int
    span_ns: tuple[int, int]  # the parts' monotonic time, for the charts' buckets
    schema: pa.Schema
    columns: list[str]
    window: Window | None

    @functools.cached_property
    def labels(self) -> list[str]:
        return _labels(self.parts, self.schema)

    def tables(self):  # noqa: ANN201
        rows_window = RowWindow(self.window, "end_unix_ns") if self.window else None
        for batch in _batches(self.parts, self.journals, self.columns):
            table = in_window(pa.Table.from_batches([batch]), rows_window)
            if table.num_rows:
                yield table


def scan(path: Path, window: Window | None) -> Scan | None:
    """The session's aligned parts and journals in the window (None: it has none)."""
    parts, journals, rows, span = _files(path / "aligned", window)
    if not parts and not journals:
        return None
    schema = pq.read_schema(parts[0]) if parts else \
        pa.Table.from_batches(read_journal(journals[0])[0]).schema
    sources = [c[len("power_mean_w"):] for c in schema.names if c.startswith("power_mean_w")]
    columns = [*_NAMES, "start_ns", "end_ns", "end_unix_ns", "latency_ms", "power_source"]
    columns += [c for sfx in sources for c in (f"power_mean_w{sfx}", f"energy_attr_j{sfx}",
                                                f"energy_j{sfx}") if c in schema.names]
    return Scan(parts, journals, rows, span, schema, columns, window)


def _digest(found: Scan | None, seed: int) -> SessionDigest | None:
    if found is None:
        return None
    t0, t1 = found.span_ns
    streams: dict[tuple, PairDigest] = {}
    pairs: dict[tuple, PairDigest] = {}
    rng = np.random.default_rng(seed)
    for table in found.tables():
        _add(table, found.labels, streams, (t0, t1, STREAM_BUCKETS), False, None)
        _add(table, found.labels, pairs, (t0, t1, PAIR_BUCKETS), True, rng)
    return SessionDigest(list(streams.values()), list(pairs.values()), found.labels,
                         found.rows)


def _labels(parts: list[Path], schema: pa.Schema) -> list[str]:
    """The power sources, primary first: the primary is every row's ``power_source``
    (the first part that names one says it), the others have columns of their own."""
    primary: list[str] = []
    for p in parts:
        named = pc.drop_null(pq.read_table(p, columns=["power_source"])["power_source"])
        if len(named):
            primary = [str(named[0].as_py())]
            break
    return primary + [c[len("power_mean_w_"):] for c in schema.names
                      if c.startswith("power_mean_w_")]


def name_groups(table: pa.Table, columns: list[str], end: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, ...]]]:
    """The rows grouped by the names in ``columns``, each group in end order: the rows'
    order, the groups' bounds in it (one more than the groups) and each group's names.
    The names are grouped as dictionary codes in one int64 key: strings of millions of
    rows as numpy text cost seconds and gigabytes."""
    key = np.zeros(table.num_rows, np.int64)
    dictionaries = []
    for c in columns:
        enc = pc.dictionary_encode(table[c].combine_chunks().fill_null(""))
        dictionaries.append(enc.dictionary.to_pylist())
        key = key * (len(enc.dictionary) + 1) + enc.indices.to_numpy(zero_copy_only=False)
    order = np.lexsort((end, key))
    sorted_key = key[order]
    starts = np.flatnonzero(np.diff(sorted_key, prepend=sorted_key[0] - 1)) \
        if len(key) else np.zeros(0, np.int64)

    def names_of(k: int) -> tuple[str, ...]:
        out = []
        for d in reversed(dictionaries):
            k, i = divmod(k, len(d) + 1)
            out.append(d[i])
        return tuple(reversed(out))

    return order, np.append(starts, len(key)), [names_of(int(sorted_key[i])) for i in starts]


@dataclass
class Group:
    """One batch's rows of one (pipeline, stream, pair), in end order."""

    key: tuple[str, str, str, str]
    start: np.ndarray
    end: np.ndarray
    latency: np.ndarray
    power: dict[str, np.ndarray]
    energy: dict[str, np.ndarray]


def groups(table: pa.Table, labels: list[str], across: bool = False):  # noqa: ANN201
    """The batch's rows by (pipeline, stream, pair), or with ``across`` by (pipeline,
    pair) with stream "", each group in end order; per source the frames' mean power and
    energy (attributed where the session has it)."""
    used = [c for c in _NAMES if not (across and c == "stream")]
    end = table["end_ns"].to_numpy()
    order, bounds, keys = name_groups(table, used, end)

    def col(name: str) -> np.ndarray | None:
        if name not in table.column_names:
            return None
        return table[name].to_numpy(zero_copy_only=False).astype(np.float64)[order]

    start, end, latency = table["start_ns"].to_numpy()[order], end[order], \
        table["latency_ms"].to_numpy(zero_copy_only=False)[order]
    power, energy = {}, {}
    for i, label in enumerate(labels):
        sfx = "" if i == 0 else "_" + column_suffix(label)
        mean = col(f"power_mean_w{sfx}")
        use = col(f"energy_attr_j{sfx}")
        use = use if use is not None else col(f"energy_j{sfx}")
        if mean is not None:
            power[label] = mean
        if use is not None:
            energy[label] = use
    for g, got in enumerate(keys):
        sl = slice(bounds[g], bounds[g + 1])
        names = {"stream": "", **dict(zip(used, got, strict=True))}
        yield Group(tuple(names[c] for c in _NAMES), start[sl], end[sl], latency[sl],
                    {s: v[sl] for s, v in power.items()},
                    {s: v[sl] for s, v in energy.items()})


def _add(table: pa.Table, labels: list[str], into: dict[tuple, PairDigest],
         buckets: tuple[int, int, int], across: bool, rng: np.random.Generator | None) -> None:
    """The batch's rows into the digests of their (pipeline, stream, pair), or with
    ``across`` of their (pipeline, pair)."""
    primary = labels[0] if labels else None
    for g in groups(table, labels, across):
        digest = into.get(g.key)
        if digest is None:
            digest = into[g.key] = PairDigest(*g.key, buckets)
        digest.add(g.start, g.end, g.latency, g.power, g.energy, primary, rng)
