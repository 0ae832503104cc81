"""Parquet parts: complete or absent, rotated, and a full disk costs no good data."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds

from otel_benchlab.exporters.parquet import (
    ParquetPartWriter,
    pending_journals,
    read_journal,
    recover_directory,
)

from .test_disk_full import fill

SCHEMA = pa.schema([("x", pa.int64())])


def test_parts_rotate_on_rows_and_time_and_only_complete_parts_are_visible(tmp_path):
    now = [0.0]
    w = ParquetPartWriter(tmp_path, SCHEMA, part_rows=10, part_seconds=5, clock=lambda: now[0])
    w.export(pa.table({"x": list(range(12))}))
    assert len(list(tmp_path.glob("part-*.parquet"))) == 1
    w.export(pa.table({"x": [100]}))
    w.tick()
    assert len(list(tmp_path.glob("part-*.parquet"))) == 1
    now[0] = 6.0
    w.tick()
    assert len(list(tmp_path.glob("part-*.parquet"))) == 2
    assert not list(tmp_path.glob(".*"))
    assert ds.dataset(tmp_path).to_table()["x"].to_pylist() == list(range(12)) + [100]


def test_failed_write_is_counted_keeps_rows_and_retries(tmp_path):
    errors = []
    d = tmp_path / "d"
    w = ParquetPartWriter(d, SCHEMA, part_rows=2,
                          on_error=lambda what, n: errors.append((what, n)))
    d.rmdir()
    d.write_text("not a directory")  # every write into it fails, even as root
    w.export(pa.table({"x": [1, 2]}))
    assert errors == [("journal", 2), ("parquet", 2)]
    d.unlink()
    d.mkdir()
    w.export(pa.table({"x": [3, 4]}))
    assert sorted(ds.dataset(d).to_table()["x"].to_pylist()) == [1, 2, 3, 4]
    assert w.rows_dropped == 0


def test_part_numbers_continue_after_existing_parts(tmp_path):
    ParquetPartWriter(tmp_path, SCHEMA, part_rows=1).export(pa.table({"x": [1]}))
    ParquetPartWriter(tmp_path, SCHEMA, part_rows=1).export(pa.table({"x": [2]}))
    assert sorted(p.name for p in tmp_path.glob("part-*")) == ["part-000001.parquet",
                                                               "part-000002.parquet"]


def test_rows_of_the_part_in_progress_are_in_the_journal_at_once(tmp_path):
    w = ParquetPartWriter(tmp_path, SCHEMA, part_rows=100)
    w.export(pa.table({"x": [1, 2]}))
    w.export(pa.table({"x": [3]}))
    assert not list(tmp_path.glob("part-*"))
    (journal,) = pending_journals(tmp_path)
    batches, torn = read_journal(journal)
    assert not torn and pa.Table.from_batches(batches)["x"].to_pylist() == [1, 2, 3]


def test_journal_is_removed_once_its_part_is_written(tmp_path):
    w = ParquetPartWriter(tmp_path, SCHEMA, part_rows=2)
    w.export(pa.table({"x": [1, 2]}))
    assert [p.name for p in tmp_path.iterdir()] == ["part-000001.parquet"]


def test_recovery_turns_a_torn_journal_into_a_part_with_its_complete_batches(tmp_path):
    w = ParquetPartWriter(tmp_path, SCHEMA, part_rows=100)
    w.export(pa.table({"x": [1, 2]}))
    w.export(pa.table({"x": [3]}))
    (journal,) = pending_journals(tmp_path)
    data = journal.read_bytes()
    journal.write_bytes(data[:-20])  # the crash came in the middle of the last batch
    assert recover_directory(tmp_path) == (1, 2)
    assert ds.dataset(tmp_path).to_table()["x"].to_pylist() == [1, 2]
    assert not pending_journals(tmp_path)


def test_recovery_drops_a_journal_whose_part_was_completed(tmp_path):
    w = ParquetPartWriter(tmp_path, SCHEMA, part_rows=100)
    w.export(pa.table({"x": [1, 2]}))
    (journal,) = pending_journals(tmp_path)
    saved = journal.read_bytes()
    w.shutdown()  # the part is written and the journal removed ...
    journal.write_bytes(saved)  # ... unless the crash came between the two
    assert recover_directory(tmp_path) == (0, 0)
    assert ds.dataset(tmp_path).to_table()["x"].to_pylist() == [1, 2]
    assert not journal.exists()


def test_names_are_dictionary_encoded_and_numbers_and_ids_are_not(tmp_path):
    import pyarrow.parquet as pq

    from otel_benchlab.exporters.parquet import write_part

    table = pa.table({"stage": ["a", "b"] * 50, "value": [0.5, 1.5] * 50,
                      "ts_ns": list(range(100)), "trace_id": [f"{i:032x}" for i in range(100)]})
    meta = pq.ParquetFile(write_part(tmp_path, table, 1)).metadata.row_group(0)
    dictionary = {meta.column(i).path_in_schema for i in range(meta.num_columns)
                  if meta.column(i).dictionary_page_offset is not None}
    assert dictionary == {"stage"}
    assert pq.read_table(tmp_path / "part-000001.parquet").equals(table)


def test_a_part_is_byte_for_byte_what_pyarrow_parquet_writes(tmp_path):
    import io

    import pyarrow.parquet as pq

    from otel_benchlab.exporters.parquet import write_part

    table = pa.table({"stage": ["a", "b", None] * 40, "value": [0.5, None, 1.5] * 40,
                      "frame": pa.array([1, None, 3] * 40, pa.int64()),
                      "span_id": [f"{i:016x}" for i in range(120)]})
    expected = io.BytesIO()
    pq.write_table(table, expected, compression="zstd", use_dictionary=["stage"],
                   column_encoding={"span_id": "DELTA_LENGTH_BYTE_ARRAY"})
    assert write_part(tmp_path, table, 7).read_bytes() == expected.getvalue()


def test_ids_are_written_as_delta_lengths_and_read_back_whole(tmp_path):
    import pyarrow.parquet as pq

    from otel_benchlab.exporters.parquet import write_part

    table = pa.table({"trace_id": [f"{i * 7919:032x}" for i in range(500)],
                      "span_id": [f"{i:016x}" for i in range(500)]})
    path = write_part(tmp_path, table, 1)
    meta = pq.ParquetFile(path).metadata.row_group(0)
    assert all("DELTA_LENGTH_BYTE_ARRAY" in meta.column(i).encodings for i in range(2))
    assert pq.read_table(path).equals(table)


def test_rows_the_journal_holds_are_not_kept_in_memory_and_the_part_reads_them_back(tmp_path):
    w = ParquetPartWriter(tmp_path, SCHEMA, part_rows=100)
    w.export(pa.table({"x": [1, 2]}))
    w.export(pa.table({"x": [3]}))
    assert w.rows_in_memory == 0
    assert w.force_flush()
    assert ds.dataset(tmp_path).to_table()["x"].to_pylist() == [1, 2, 3]
    assert not list(tmp_path.glob(".*"))


def test_rows_are_kept_in_memory_when_there_is_no_journal(tmp_path):
    w = ParquetPartWriter(tmp_path, SCHEMA, part_rows=100, journal=False)
    w.export(pa.table({"x": [1, 2]}))
    assert w.rows_in_memory == 2 and not list(tmp_path.iterdir())


def test_a_journal_that_fills_the_disk_gives_its_rows_back_to_memory_and_loses_none(
        small_disk):
    errors = []
    w = ParquetPartWriter(small_disk / "parts", SCHEMA, part_rows=1_000_000,
                          on_error=lambda what, n: errors.append((what, n)))
    w.export(pa.table({"x": [1, 2]}))
    filler = fill(small_disk, 0)
    big = list(range(10, 200_010))  # 1.6 MB: more than the full disk takes
    w.export(pa.table({"x": big}))
    assert errors == [("journal", len(big))]
    assert w.rows_in_memory == 2 + len(big)  # the journal's rows, read back, and the new
    filler.unlink()
    w.export(pa.table({"x": [5]}))  # a fresh journal takes every row again
    assert w.rows_in_memory == 0
    (journal,) = pending_journals(small_disk / "parts")
    assert sum(b.num_rows for b in read_journal(journal)[0]) == 3 + len(big)
    assert w.force_flush()
    assert ds.dataset(small_disk / "parts").to_table()["x"].to_pylist() == [1, 2, *big, 5]
    assert w.rows_dropped == 0


def test_links_planted_at_temporary_and_journal_names_are_never_written_through(tmp_path):
    out, victim = tmp_path / "out", tmp_path / "victim"
    out.mkdir()
    victim.write_bytes(b"keep me")
    for name in (".part-000001.parquet.tmp", ".journal-000001.arrows",
                 ".part-000002.parquet.tmp", ".journal-000002.arrows"):
        (out / name).symlink_to(victim)
    w = ParquetPartWriter(out, SCHEMA, part_rows=2)
    w.export(pa.table({"x": [1]}))  # the journal's name is a link: refused, rows kept
    w.export(pa.table({"x": [2]}))  # a part: written under a name the OS made up
    w.shutdown()
    assert victim.read_bytes() == b"keep me"
    parts = sorted(out.glob("part-*.parquet"))
    assert ds.dataset(parts).to_table()["x"].to_pylist() == [1, 2]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]


def test_a_span_measured_whole_is_written_as_the_two_raw_marks_it_stands_for():
    from otel_benchlab.records import StageMark, StageSpan
    from otel_benchlab.session.schema import marks_to_table, span_ends_to_table
    from otel_benchlab.timebase import TimeBase

    tb = TimeBase.measure()
    spans = [StageSpan("p", "s1", 7, "infer.start", "infer.end", 100, 250),
             StageSpan("p", "s2", None, "a", "b", 300, 300)]
    marks = [StageMark(t, s.pipeline, s.stream, stage, s.frame) for s in spans
             for t, stage in ((s.start_ns, s.stage_from), (s.end_ns, s.stage_to))]
    assert span_ends_to_table(spans, tb).equals(marks_to_table(marks, tb))
