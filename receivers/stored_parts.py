"""A session's Parquet parts as they are on disk, read whole or for a window: the parts,
then the journals of parts never completed, listed again when the folder changed while it
was read (a running session), and a part skipped when its statistics say none of its rows
is in the window."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from otel_benchlab.session.journal import JOURNAL_NAME, PART_NAME, part_path, read_journal
from otel_benchlab.session.window import Window, column_statistics, part_range, range_of

log = logging.getLogger("otel_benchlab.receivers.stored")


@dataclass(frozen=True)
class RowWindow:
    """Rows whose ``column`` (unix ns) is in ``window``; parts whose statistics say they
    hold none are not read (``otel_benchlab.session.window``)."""

    window: Window
    column: str


def read_parts(directory: Path, columns: list[str] | None, rejected: dict[str, int],
               dictionary: list[str], rows: RowWindow | None = None) -> list[pa.Table]:
    """Every part, then the journals of parts never completed (a crashed agent's last
    rows), read as they are: replay changes nothing in the session. A running session's
    folder may change while it is read (a journal becomes a part, parts are compacted into
    one): a file that went away between the listing and its read means the listing is
    read again, so each row is read once."""
    for _ in range(READ_TRIES - 1):
        with contextlib.suppress(_Moved):
            return _read_listing(directory, columns, rejected, dictionary, True, rows)
    return _read_listing(directory, columns, rejected, dictionary, False, rows)


def listing(directory: Path) -> tuple[list[Path], list[Path]]:
    """One listing of a folder: its parts, and the journals of parts it has not got (the
    parts in progress), each in order."""
    names = sorted(os.listdir(directory)) if directory.is_dir() else []
    done = {n for n in names if PART_NAME.match(n)}
    return ([directory / n for n in names if n in done],
            [directory / n for n in names if (m := JOURNAL_NAME.match(n))
             and part_path(directory, int(m.group(1))).name not in done])


def may_hold(directory: Path, column: str) -> bool:
    """Whether any row of a folder may have ``column`` set: a part says so in its
    statistics (no column, or every value null: not); a journal may always. Lets a reader
    of rare rows (an LLM request's) skip a session of frames without reading it."""
    parts, journals = listing(directory)
    if journals:
        return True
    for part in parts:
        try:
            meta = pq.ParquetFile(part).metadata
        except (OSError, pa.ArrowException):
            return True  # the reader says what is wrong with it
        for stats, rows in column_statistics(meta, column):
            if stats is None or not stats.has_null_count or stats.null_count < rows:
                return True
    return False


def rows_range(directory: Path, column: str) -> tuple[int, int] | None:
    """The range of ``column`` over a folder's parts (their statistics) and journals."""
    lo = hi = None
    names = sorted(os.listdir(directory)) if directory.is_dir() else []
    for n in names:
        r = None
        if PART_NAME.match(n):
            with contextlib.suppress(OSError, pa.ArrowException):
                r = part_range(directory / n, (column,))
        elif JOURNAL_NAME.match(n):
            batches, _ = read_journal(directory / n)
            values = [b.column(column) for b in batches
                      if column in b.schema.names and b.num_rows]
            if values:
                mm = pc.min_max(pa.chunked_array(values))
                r = (mm["min"].as_py(), mm["max"].as_py())
        if r is not None and r[0] is not None:
            lo = r[0] if lo is None else min(lo, r[0])
            hi = r[1] if hi is None else max(hi, r[1])
    return None if lo is None else (lo, hi)


def in_window(table: pa.Table, rows: RowWindow | None) -> pa.Table:
    if rows is None or rows.column not in table.column_names:
        return table
    col, w = table[rows.column], rows.window
    masks = []
    if w.since_ns is not None:
        masks.append(pc.greater_equal(col, w.since_ns))
    if w.until_ns is not None:
        masks.append(pc.less(col, w.until_ns))
    mask = masks[0] if len(masks) == 1 else pc.and_(*masks)
    return table.filter(mask)


READ_TRIES = 5


class _Moved(Exception):
    pass


def _read_part(part: Path, columns: list[str] | None, dictionary: list[str],
               rows: RowWindow | None) -> pa.Table | None:
    """One part's rows (in the window); None when its statistics say none is."""
    read_cols = columns
    if rows is not None:
        meta = pq.ParquetFile(part).metadata
        r = range_of(meta, (rows.column,))
        if r is not None and not rows.window.overlaps(*r):
            return None  # none of its rows is in the window: not read
        # A part without the column (an older session's) is read whole.
        if columns is not None and rows.column not in columns and \
                rows.column in meta.schema.to_arrow_schema().names:
            read_cols = [*columns, rows.column]
    t = in_window(pq.read_table(part, columns=read_cols, read_dictionary=dictionary), rows)
    return t.select(columns) if read_cols is not columns else t


def _read_journal(journal: Path, columns: list[str] | None, dictionary: list[str],
                  rows: RowWindow | None) -> pa.Table | None:
    batches, torn = read_journal(journal)
    if torn:
        log.info("%s ends in a torn batch (an agent crashed mid-write); read %d "
                 "complete batches", journal, len(batches))
    if not batches:
        return None
    t = in_window(pa.Table.from_batches(batches), rows)
    t = t.select(columns) if columns is not None else t
    for name in dictionary:
        i = t.schema.get_field_index(name)
        t = t.set_column(i, name, pc.dictionary_encode(t[name]))
    return t


def _numbers(path: Path) -> set[int]:
    m = PART_NAME.match(path.name)
    if m:
        first = int(m.group(1))
        return set(range(first, int(m.group(2) or first) + 1))
    m = JOURNAL_NAME.match(path.name)
    return {int(m.group(1))} if m else set()


def iter_parts(directory: Path, columns: list[str] | None, rejected: dict[str, int],
               dictionary: list[str], rows: RowWindow | None = None) -> Iterator[pa.Table]:
    """``read_parts`` a file at a time, for readers that hold one. A file that went away
    meanwhile (a journal became a part, parts were compacted) is found again in a new
    listing under its new name, whose part numbers tell what was read already. A
    compacted part that joins parts read with parts not read yet is read whole: its rows
    that were read are read twice (marks are paired once; the second is a duplicate)."""
    read: set[int] = set()
    for _ in range(READ_TRIES):
        parts, journals = listing(directory)
        moved = False
        for path in parts + journals:
            numbers = _numbers(path)
            if numbers <= read:
                continue
            try:
                t = _read_part(path, columns, dictionary, rows) if path in parts else \
                    _read_journal(path, columns, dictionary, rows)
            except FileNotFoundError:
                moved = True
                break
            except (OSError, pa.ArrowException) as exc:
                _unreadable(path, exc, rejected)
                read |= numbers
                continue
            if path in journals and not path.exists():
                moved = True  # it became a part while read: that part has all its rows
                break
            read |= numbers
            if t is not None and t.num_rows:
                yield t
        if not moved:
            return


def _read_listing(directory: Path, columns: list[str] | None, rejected: dict[str, int],
                  dictionary: list[str], strict: bool,
                  rows: RowWindow | None = None) -> list[pa.Table]:
    """The files of one listing: its parts, and its journals whose part it does not have;
    ``strict``: raise ``_Moved`` when one of them has gone since."""
    parts, journals = listing(directory)
    tables = []
    bad: dict[str, int] = {}  # into ``rejected`` once the listing is read through
    for part in parts:
        try:
            t = _read_part(part, columns, dictionary, rows)
            if t is not None:
                tables.append(t)
        except FileNotFoundError:
            if strict:
                raise _Moved from None
        except (OSError, pa.ArrowException) as exc:
            _unreadable(part, exc, bad)
    for journal in journals:
        t = _read_journal(journal, columns, dictionary, rows)
        if strict and not journal.exists():
            raise _Moved  # it became a part, which this listing has not got
        if t is not None:
            tables.append(t)
    for k, v in bad.items():
        rejected[k] = rejected.get(k, 0) + v
    return tables


def _unreadable(part: Path, exc: Exception, rejected: dict[str, int]) -> None:
    rejected[str(part)] = rejected.get(str(part), 0) + 1
    log.warning("skipping unreadable Parquet part %s: %s", part, exc)
