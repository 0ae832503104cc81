"""A running session's parts compacted while it is written: one part per round that names
the parts it replaced, the writer carries on into the new folder, a reader never sees a row
twice or misses one, and parts the store has not got yet wait."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from otel_benchlab.exporters.parquet import ParquetPartWriter
from otel_benchlab.fleet.outbox import Outbox
from otel_benchlab.receivers.stored import read_parts
from otel_benchlab.receivers.stored_parts import iter_parts
from otel_benchlab.session.compaction import RunningCompaction, compactable
from otel_benchlab.session.journal import PART_NAME
from otel_benchlab.session.recovery import _queue_for_upload

from .test_end_to_end import agent_cmd, agent_env

SCHEMA = pa.schema([("x", pa.int64())])


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def writer(folder: Path, clock: Clock) -> ParquetPartWriter:
    return ParquetPartWriter(folder, SCHEMA, part_rows=10, part_seconds=1e9, clock=clock)


def put(w: ParquetPartWriter, xs: range) -> None:
    """Rows as the agent gives them: a batch at a time (a part closes at 10 rows)."""
    for i in range(0, len(xs), 10):
        w.export(pa.table({"x": list(xs[i:i + 10])}))


def a_round(c: RunningCompaction, clock: Clock) -> None:
    """An hour (and a second) later: the agent's tick starts a round; it is swapped in."""
    clock.t += 61
    c.tick()
    c.settle()


def compaction(session: Path, folder: Path, clock: Clock, uploaded=None) -> RunningCompaction:
    return RunningCompaction(session, [folder], 60.0,
                             uploaded or (lambda: lambda relpath: True), clock)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def values(folder: Path) -> list[int]:
    return sorted(ds.dataset(folder, format="parquet").to_table()["x"].to_pylist())


def test_closed_parts_become_one_part_named_after_the_parts_it_replaced(tmp_path):
    clock, folder = Clock(), tmp_path / "aligned"
    w, c = writer(folder, clock), compaction(tmp_path, folder, clock)
    put(w, range(45))  # four parts and five rows in the journal
    a_round(c, clock)
    assert names(folder) == [".journal-000005.arrows", "part-000001-000004.parquet"]
    assert c.compactions == 1 and c.parts_replaced == 4
    assert not list(tmp_path.glob("*.compact.tmp"))


def test_the_writer_carries_on_into_the_compacted_folder(tmp_path):
    clock, folder = Clock(), tmp_path / "aligned"
    w, c = writer(folder, clock), compaction(tmp_path, folder, clock)
    put(w, range(25))
    a_round(c, clock)
    put(w, range(25, 40))  # the journal it kept appending to
    w.shutdown()
    assert names(folder) == ["part-000001-000002.parquet", "part-000003.parquet",
                             "part-000004.parquet"]
    assert values(folder) == list(range(40))


def test_a_second_round_takes_only_the_parts_closed_since(tmp_path):
    clock, folder = Clock(), tmp_path / "aligned"
    w, c = writer(folder, clock), compaction(tmp_path, folder, clock)
    for start in (0, 30):
        put(w, range(start, start + 30))
        a_round(c, clock)
    w.shutdown()
    assert names(folder) == ["part-000001-000003.parquet", "part-000004-000006.parquet"]
    assert values(folder) == list(range(60))


def test_parts_the_store_has_not_got_wait_and_so_do_the_parts_after_them(tmp_path):
    clock, folder = Clock(), tmp_path / "aligned"
    box = Outbox.create(tmp_path, {"store": "s3://b/p"})
    w = ParquetPartWriter(folder, SCHEMA, part_rows=10, part_seconds=1e9, clock=clock,
                          on_part=lambda p: box.add(f"aligned/{p.name}"))
    put(w, range(40))
    for item in box.pending():
        if item.relpath != "aligned/part-000003.parquet":
            box.done(item, 1)
    box.refresh()
    settled = {f"aligned/{p.name}" for p in folder.glob("part-*")} - {
        p.relpath for p in box.pending()}
    assert [p.name for p in compactable(folder, lambda n: f"aligned/{n}" in settled)] == [
        "part-000001.parquet", "part-000002.parquet"]


def test_a_part_not_noted_in_the_outbox_is_not_taken(tmp_path):
    folder = tmp_path / "aligned"
    put(ParquetPartWriter(folder, SCHEMA, part_rows=10), range(30))
    box = Outbox.create(tmp_path, {"store": "s3://b/p"})
    assert compactable(folder, lambda n: box.known(f"aligned/{n}")) == []


def test_recovery_never_queues_a_compacted_part_for_upload(tmp_path):
    clock, folder = Clock(), tmp_path / "aligned"
    w, c = writer(folder, clock), compaction(tmp_path, folder, clock)
    put(w, range(30))
    a_round(c, clock)
    box = Outbox.create(tmp_path, {"store": "s3://b/p"})
    _queue_for_upload(tmp_path)
    box.refresh()
    assert [p.relpath for p in box.pending()] == ["session.json"]


def test_a_part_at_a_time_reader_during_compactions_misses_no_row(tmp_path):
    """Replay's reader (``iter_parts``) holds a part at a time: a compaction that joins
    parts it read with parts it has not may give it rows twice (pairing takes a mark
    once), never none."""
    seen = _read_during_compactions(tmp_path, lambda f: list(iter_parts(f, None, {}, [])))
    for before, _n, distinct in seen:
        assert distinct >= before, "a row written before the read began was missed"


def test_a_reader_during_compactions_sees_every_row_once(tmp_path):
    seen = _read_during_compactions(tmp_path, lambda f: read_parts(f, None, {}, []))
    for before, n, distinct in seen:
        assert n == distinct, "a row read twice"
        assert n >= before, "a row written before the read began was missed"


def _read_during_compactions(tmp_path, reader_of) -> list[tuple[int, int, int]]:
    clock, folder = Clock(), tmp_path / "aligned"
    w = ParquetPartWriter(folder, SCHEMA, part_rows=7, part_seconds=1e9, clock=clock)
    c = compaction(tmp_path, folder, clock)
    written = [0]
    stop = threading.Event()
    seen: list[tuple[int, int, int]] = []  # (rows written before, rows read, distinct)

    def read() -> None:
        while not stop.is_set():
            before = written[0]
            tables = reader_of(folder)
            xs = [x for t in tables for x in t["x"].to_pylist()]
            seen.append((before, len(xs), len(set(xs))))

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(300):
        put(w, range(i * 5, i * 5 + 5))
        written[0] = (i + 1) * 5
        if i % 20 == 19:
            clock.t += 61
        c.tick()
    c.settle()
    stop.set()
    reader.join()
    assert len(seen) > 10 and c.compactions > 3
    return seen


@pytest.fixture(scope="module")
def agent_run(tmp_path_factory):
    """A 14 s simulated session with parts closed every second, compacted every 4 s, and
    uploads to a store on a path (the store takes each part as it closes)."""
    tmp = tmp_path_factory.mktemp("compaction")
    cfg = tmp / "agent.toml"
    cfg.write_text(f'[parquet]\npart_seconds = 1\ncompact_every_s = 4\n'
                   f'[upload]\nuri = "{tmp / "store"}"\n')
    proc = subprocess.run(
        agent_cmd("--simulate", "--duration", "14", "--data-root", str(tmp / "data"),
                  "--session", "c", "--config", str(cfg)),
        env=agent_env(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none"),
        capture_output=True, text=True, timeout=120)
    session = tmp / "data" / "sessions" / "c"
    return proc, session, tmp / "store"


def stored_rows(store: Path, kind: str) -> tuple[int, list[str]]:
    files = sorted(store.rglob(f"kind={kind}/**/part-*.parquet"))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files), [f.name for f in files]


@pytest.mark.e2e
def test_a_running_agent_compacts_its_parts_and_every_reader_sees_each_row_once(agent_run):
    proc, session, _ = agent_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((session / "session.json").read_text())["summary"]
    parts = [p.name for p in (session / "aligned").glob("part-*.parquet")]
    assert any(PART_NAME.match(p).group(2) for p in parts), parts
    assert len(parts) < 10  # ~13 parts of a second each without compaction
    glob = str(session / "aligned" / "*.parquet")
    assert duckdb.sql(f"select count(*) from '{glob}'").fetchall()[0][0] == summary["spans"]
    tables = read_parts(session / "raw" / "marks", None, {}, [])
    assert sum(t.num_rows for t in tables) == summary["marks"]
    assert not list(session.rglob("*.compact.tmp"))


@pytest.mark.e2e
def test_the_store_gets_each_row_once_and_never_a_compacted_part(agent_run):
    proc, session, store = agent_run
    summary = json.loads((session / "session.json").read_text())["summary"]
    for kind, total in (("aligned", summary["spans"]), ("marks", summary["marks"])):
        rows, names = stored_rows(store, kind)
        assert rows == total
        assert not any(PART_NAME.match(n).group(2) for n in names)
