"""Parquet parts: zstd, rotated on a row or time bound, renamed into place when complete,
with a journal that makes the part in progress durable.

A part is written as ``.part-NNNNNN.parquet.<random>.tmp`` and renamed to ``part-NNNNNN.parquet``
only once closed, so a reader never sees half a file. Until then its rows go, batch by
batch, to ``.journal-NNNNNN.arrows`` (an Arrow IPC stream, fsynced at most every
``sync_s``): a crash (``kill -9``, OOM, power loss) loses at most the batch in flight, and
``recover_directory`` (or replay, which reads journals as they are) gets the rest back. The
journal is removed once its part is in place; a journal whose part exists is a leftover of a
crash between the two and is dropped.

While its journal takes them, a part's rows are kept there only and read back when the part
is written, as CapFrameX captures are kept in their hidden files: a minute of samples held
in memory as Arrow tables was 5-11 MB of the agent's RSS by the part's write. Rows the
journal cannot take (a full disk, or no journal) are kept in memory.

A write that fails (full disk, permissions) is counted and logged once with what to do; its
rows are kept for the next try up to ``max_buffer_rows``, then dropped and counted, and the
agent keeps running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from otel_benchlab.agent.heap import return_freed_memory
from otel_benchlab.components import Component
from otel_benchlab.session.journal import (
    JOURNAL_NAME,
    PART_NAME,
    journal_path,
    part_path,
    pending_journals,
    read_journal,
)
from otel_benchlab.session.temp_files import is_temp_of, open_temp


@dataclass
class ParquetConfig:
    # write aligned/ and raw/ Parquet parts
    enabled: bool = True
    # a part is closed after this many rows
    part_rows: int = 200_000
    # or after this many seconds
    part_seconds: float = 60.0
    # a running session's closed parts are compacted into one part per kind this often
    # (parts the upload has not sent yet wait); 0 = only once it has ended (retention)
    compact_every_s: float = 3600.0


log = logging.getLogger(__name__)

_IDS = {"trace_id", "span_id"}  # random hex text of one length


# pq.write_table's settings where pyarrow's writer class has none of its own.
_WRITE_TABLE_DEFAULTS = {"version": "2.6", "write_statistics": True,
                         "data_page_version": "1.0", "writer_engine_version": "V2",
                         "use_compliant_nested_type": True, "store_schema": True}


def _write_table(table: pa.Table, fh, dictionary: list[str],  # type: ignore[no-untyped-def]
                 encoding: dict[str, str]) -> None:
    """``pq.write_table(table, fh, compression="zstd", use_dictionary=dictionary,
    column_encoding=encoding)`` without
    importing ``pyarrow.parquet``, which loads ``pyarrow.fs`` and with it the S3, GCS,
    Azure and HDFS bindings: 8.6 MB of the agent's memory for files that are local. The
    writer class underneath it is used with its settings; a test holds the bytes equal to
    ``pq.write_table``'s, and a pyarrow whose class takes other arguments falls back."""
    try:
        from pyarrow._parquet import ParquetWriter

        writer = ParquetWriter(fh, table.schema, compression="zstd",
                               use_dictionary=dictionary, column_encoding=encoding or None,
                               **_WRITE_TABLE_DEFAULTS)
    except (ImportError, TypeError, ValueError):
        import pyarrow.parquet as pq

        pq.write_table(table, fh, compression="zstd", use_dictionary=dictionary,
                       column_encoding=encoding or None)
        return
    try:
        writer.write_table(table, row_group_size=None)
    finally:
        writer.close()


def parquet_settings(schema: pa.Schema) -> dict:
    """``pq.ParquetWriter``'s arguments for a part of ``schema`` (compaction's writer)."""
    return {"compression": "zstd", "use_dictionary": [f.name for f in schema
                                                      if _dictionary_pays(f)],
            "column_encoding": _encodings(schema) or None}


def _dictionary_pays(f: pa.Field) -> bool:
    """Names (pipelines, stages, sensors) repeat: a dictionary makes them small. Numbers
    and times rarely repeat enough: their dictionaries (1 MB a column before Parquet falls
    back) cost ~15 MB of memory at a part's write and made parts larger, not smaller, after
    zstd (measured on a minute of samples). Ids are random: a dictionary never pays."""
    return _is_text(f) and f.name not in _IDS


def _encodings(schema: pa.Schema) -> dict[str, str]:
    """Ids (hex text of one length) as their lengths, delta-coded, then their bytes: zstd
    then sees the hex digits alone. 2 M rows of trace and span ids: 0.26 s and 47 MB
    against 0.42 s and 52 MB written plain; pyarrow, DuckDB and pandas read it."""
    return {f.name: "DELTA_LENGTH_BYTE_ARRAY" for f in schema if _is_text(f) and f.name in _IDS}


def _is_text(f: pa.Field) -> bool:
    return pa.types.is_string(f.type) or pa.types.is_large_string(f.type)


def write_part(directory: Path, table: pa.Table, number: int) -> Path:
    """``part-NNNNNN.parquet``, written under a temporary name, fsynced, then renamed."""
    final = part_path(directory, number)
    fh, tmp = open_temp(final)
    try:
        dictionary = [f.name for f in table.schema if _dictionary_pays(f)]
        with fh:
            _write_table(table, fh, dictionary, _encodings(table.schema))
            fh.flush()
            # On disk before the journal that also holds these rows is removed.
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except OSError:
        with contextlib.suppress(OSError):  # the directory itself may be what is broken
            tmp.unlink(missing_ok=True)
        raise
    return final


class ParquetPartWriter:
    def __init__(self, directory: Path, schema: pa.Schema, part_rows: int = 200_000,
                 part_seconds: float = 60.0, on_error: Callable[[str, int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, journal: bool = True,
                 sync_s: float = 1.0, on_part: Callable[[Path], None] | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.part_rows = part_rows
        self.part_seconds = part_seconds
        self.max_buffer_rows = max(10 * part_rows, 100_000)
        self.sync_s = sync_s
        self._on_error = on_error or (lambda what, n: None)
        self._on_part = on_part  # told of each part once it is in place (the uploader)
        self._clock = clock
        # Rows of the part that are not (only) in the journal: every row while the journal
        # is failing, none while it takes them (see _append_journal).
        self._buf: list[pa.Table] = []
        self._rows = 0
        self._opened = clock()
        self._next = 1 + max((int(m.group(m.lastindex)) for p in self.directory.iterdir()
                              if (m := PART_NAME.match(p.name) or JOURNAL_NAME.match(p.name))),
                             default=0)
        self._failing = False
        self._journal_on = journal
        self._journal: pa.ipc.RecordBatchStreamWriter | None = None
        self._journal_file = None
        self._journal_batches = 0  # batches appended to the open journal
        self._synced = clock()
        self._journal_failing = False
        self.parts_written = 0
        self.rows_written = 0
        self.rows_dropped = 0

    def export(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        table = table.cast(self.schema) if table.schema != self.schema else table
        self._rows += table.num_rows
        if not (self._journal_on and self._append_journal(table)):
            self._buf.append(table)
        if self._rows >= self.part_rows:
            self._write()

    # -- the journal -------------------------------------------------------------------
    def _append_journal(self, table: pa.Table) -> bool:
        """Append ``table``; True once the journal holds every row of the part, which then
        leaves memory. On a failure the rows the journal held alone come back into memory
        and False says ``table`` is not kept yet."""
        try:
            if self._journal is None:
                # A fresh stream with every row of the part so far: after a failed append
                # (full disk) the old file may end torn, and nothing may follow a tear.
                # Never through a link planted at the journal's name.
                fd = os.open(journal_path(self.directory, self._next),
                             os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
                self._journal_file = os.fdopen(fd, "wb")
                self._journal = pa.ipc.new_stream(self._journal_file, self.schema)
                self._journal_batches = 0
            batches = [b for t in (*self._buf, table) for b in t.to_batches()]
            for batch in batches:
                self._journal.write_batch(batch)
            self._journal_file.flush()
            self._journal_batches += len(batches)  # on disk (in the page cache) now
            if self._clock() - self._synced >= self.sync_s:
                os.fsync(self._journal_file.fileno())
                self._synced = self._clock()
            self._journal_failing = False
        except (OSError, pa.ArrowException) as exc:
            self._on_error("journal", table.num_rows)
            if not self._journal_failing:
                log.error("cannot append to the journal in %s: %s; free space or fix "
                          "permissions (rows stay in memory until their part is written, "
                          "but a crash now would lose them)", self.directory, exc)
                self._journal_failing = True
            if not self._buf:  # the journal held the part's rows alone: back into memory
                self._buf = self._journal_rows(self._rows - table.num_rows)
            self._close_journal()  # a torn journal is reopened as a fresh stream
            return False
        self._buf.clear()
        return True

    def _journal_rows(self, rows: int) -> list[pa.Table]:
        """The batches the open journal took (``rows`` rows), read back: one table a
        batch, so that a part that cannot be written drops its oldest rows first."""
        path = journal_path(self.directory, self._next)
        batches, _ = read_journal(path)
        kept = batches[:self._journal_batches]
        lost = rows - sum(b.num_rows for b in kept)
        if lost > 0:
            self.rows_dropped += lost
            self._on_error("journal", lost)
            log.error("%d rows of %s could not be read back from it; they are lost", lost,
                      path)
            self._rows -= lost
        return [pa.Table.from_batches([b], self.schema) for b in kept]

    def _close_journal(self, remove: bool = False) -> None:
        number = self._next
        with contextlib.suppress(OSError, pa.ArrowException):
            if self._journal is not None:
                self._journal.close()
        with contextlib.suppress(OSError):
            if self._journal_file is not None:
                self._journal_file.close()
        self._journal = self._journal_file = None
        if remove:
            with contextlib.suppress(OSError):
                journal_path(self.directory, number).unlink(missing_ok=True)

    @property
    def rows_in_memory(self) -> int:
        """Rows of the part in progress held in memory (not only in the journal)."""
        return sum(t.num_rows for t in self._buf)

    def sync(self) -> None:
        """fsync the journal now (the agent calls this on a clean stop)."""
        if self._journal_file is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._journal_file.fileno())

    def tick(self) -> None:
        if self._rows and self._clock() - self._opened >= self.part_seconds:
            self._write()

    def force_flush(self) -> bool:
        if self._rows:
            self._write()
        return not self._rows

    def shutdown(self) -> None:
        self.force_flush()
        if self._rows:  # the part could not be written (disk full): the journal keeps it
            self.sync()
            self._close_journal()

    def _write_part(self, table: pa.Table, number: int) -> Path:
        return write_part(self.directory, table, number)

    def _write(self) -> None:
        if not self._buf and self._journal is not None:  # the rows are in the journal alone
            self._close_journal()  # ends its stream; a part that fails keeps them in memory
            self._buf = self._journal_rows(self._rows)
            if not self._buf:  # none could be read back (counted and logged)
                self._rows = 0
                self._opened = self._clock()
                return
        table = pa.concat_tables(self._buf)
        final = part_path(self.directory, self._next)
        try:
            self._write_part(table, self._next)
        except OSError as exc:
            self._on_error("parquet", table.num_rows)
            if not self._failing:
                log.error("cannot write Parquet part %s: %s; free space or fix permissions "
                          "on %s (rows are kept and retried)", final, exc, self.directory)
                self._failing = True
            if self._rows > self.max_buffer_rows:  # bound memory: drop the oldest rows
                dropped = self._buf.pop(0)
                self._rows -= dropped.num_rows
                self.rows_dropped += dropped.num_rows
            self._opened = self._clock()
            return
        if self._failing:
            log.warning("Parquet writes to %s work again", self.directory)
            self._failing = False
        self._close_journal(remove=True)
        rows = table.num_rows
        # The part's rows (read back from its journal) go: hand them back to the system, or
        # the heap keeps each part's peak.
        del table
        self._buf.clear()
        return_freed_memory()
        if self._on_part is not None:
            self._on_part(final)
        self._next += 1
        self.parts_written += 1
        self.rows_written += rows
        self._rows = 0
        self._opened = self._clock()


def recover_directory(directory: Path) -> tuple[int, int]:
    """Turn the journals a crashed agent left in ``directory`` into parts; returns (parts
    written, rows recovered). Leftover temporary files are removed."""
    parts = rows = 0
    if not directory.is_dir():
        return 0, 0
    for p in list(directory.iterdir()):
        m = JOURNAL_NAME.match(p.name)
        if is_temp_of(p, ".parquet"):
            p.unlink(missing_ok=True)
        elif m and part_path(directory, int(m.group(1))).exists():
            p.unlink(missing_ok=True)  # the part was completed; the journal is a leftover
    for journal in pending_journals(directory):
        batches, torn = read_journal(journal)
        number = int(JOURNAL_NAME.match(journal.name).group(1))
        if torn:
            log.info("%s ends in a torn batch (the crash came mid-write); %d complete "
                     "batches kept", journal, len(batches))
        if batches and sum(b.num_rows for b in batches):
            table = pa.Table.from_batches(batches)
            write_part(directory, table, number)
            parts += 1
            rows += table.num_rows
        journal.unlink()
    return parts, rows


# Settings only: the runtime writes every session's parts.
COMPONENT = Component("parquet", "parquet", settings=ParquetConfig,
                      ranges={"part_rows": (1, 100_000_000), "part_seconds": (0, 86400),
                              "compact_every_s": (0.0, 30 * 86400)})



@contextlib.contextmanager
def parquet_file(target: Path, schema: pa.Schema) -> Iterator:
    """A ``pq.ParquetWriter`` onto ``target`` under a temporary name: at the end it is
    closed, fsynced and renamed; on an error the temporary file is removed."""
    import pyarrow.parquet as pq  # here: 8 MB the agent carries only once it compacts

    fh, tmp = open_temp(target)
    try:
        with fh:
            writer = pq.ParquetWriter(fh, schema, **parquet_settings(schema))
            try:
                yield writer
            finally:
                writer.close()
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


class PartStream:
    """Parts of about ``part_rows`` written as row groups as tables come (replay's
    output): a part is open under a temporary name, then fsynced and renamed, so what is
    held is the table in hand, not a part's worth."""

    def __init__(self, directory: Path, schema: pa.Schema, part_rows: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.part_rows = part_rows
        self._next = 1 + max((int(m.group(m.lastindex)) for p in self.directory.iterdir()
                              if (m := PART_NAME.match(p.name))), default=0)
        self._open: tuple | None = None  # (the file's context, its writer, its final path)
        self._rows = 0
        self.parts: list[Path] = []

    def write(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        if self._open is None:
            final = part_path(self.directory, self._next)
            context = parquet_file(final, self.schema)
            self._open = (context, context.__enter__(), final)
            self._next += 1
        self._open[1].write_table(table.cast(self.schema) if table.schema != self.schema
                                  else table)
        self._rows += table.num_rows
        if self._rows >= self.part_rows:
            self.close()

    def close(self) -> None:
        if self._open is not None:
            context, _, final = self._open
            self._open, self._rows = None, 0
            context.__exit__(None, None, None)
            self.parts.append(final)

    def abandon(self) -> None:
        if self._open is not None:
            context, _, _ = self._open
            self._open = None
            with contextlib.suppress(OSError, pa.ArrowException, InterruptedError):
                context.__exit__(InterruptedError, InterruptedError("abandoned"), None)
