"""Parquet parts: zstd, rotated on a row or time bound, renamed into place when complete.

A part is written as ``.part-NNNNNN.parquet.tmp`` and renamed to ``part-NNNNNN.parquet``
only once closed, so a reader never sees half a file and a crash loses at most the part in
progress. A write that fails (full disk, permissions) is counted and logged once with what
to do; its rows are kept for the next try up to ``max_buffer_rows``, then dropped and
counted, and the agent keeps running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

_NO_DICTIONARY = {"trace_id", "span_id"}
_PART = re.compile(r"part-(\d+)\.parquet$")


class ParquetPartWriter:
    def __init__(self, directory: Path, schema: pa.Schema, part_rows: int = 200_000,
                 part_seconds: float = 60.0, on_error: Callable[[str, int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.part_rows = part_rows
        self.part_seconds = part_seconds
        self.max_buffer_rows = max(10 * part_rows, 100_000)
        self._on_error = on_error or (lambda what, n: None)
        self._clock = clock
        self._buf: list[pa.Table] = []
        self._rows = 0
        self._opened = clock()
        self._next = 1 + max((int(m.group(1)) for p in self.directory.iterdir()
                              if (m := _PART.match(p.name))), default=0)
        self._failing = False
        self.parts_written = 0
        self.rows_written = 0
        self.rows_dropped = 0

    def export(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self._buf.append(table.cast(self.schema) if table.schema != self.schema else table)
        self._rows += table.num_rows
        if self._rows >= self.part_rows:
            self._write()

    def tick(self) -> None:
        if self._rows and self._clock() - self._opened >= self.part_seconds:
            self._write()

    def force_flush(self) -> bool:
        if self._rows:
            self._write()
        return not self._rows

    def shutdown(self) -> None:
        self.force_flush()

    def _write_part(self, table: pa.Table, number: int) -> Path:
        final = self.directory / f"part-{number:06d}.parquet"
        tmp = self.directory / f".{final.name}.tmp"
        try:
            # Ids are random: a dictionary for them is work that never pays.
            dictionary = [f.name for f in self.schema if f.name not in _NO_DICTIONARY]
            pq.write_table(table, tmp, compression="zstd", use_dictionary=dictionary)
            os.replace(tmp, final)
        except OSError:
            with contextlib.suppress(OSError):  # the directory itself may be what is broken
                tmp.unlink(missing_ok=True)
            raise
        return final

    def write_all(self, table: pa.Table, threads: int = 2) -> None:
        """Write a whole table at once as parts of ``part_rows``, on several threads (for
        replay, where everything is at hand); Arrow releases the GIL while writing."""
        self.force_flush()
        slices = [table.slice(i, self.part_rows) for i in range(0, table.num_rows,
                                                                 self.part_rows)]
        numbers = list(range(self._next, self._next + len(slices)))
        self._next += len(slices)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(self._write_part, slices, numbers))
        self.parts_written += len(slices)
        self.rows_written += table.num_rows

    def _write(self) -> None:
        table = pa.concat_tables(self._buf)
        final = self.directory / f"part-{self._next:06d}.parquet"
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
        self._next += 1
        self.parts_written += 1
        self.rows_written += table.num_rows
        self._buf.clear()
        self._rows = 0
        self._opened = self._clock()
