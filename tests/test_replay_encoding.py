"""Replay's marks as arrays: what the table said, row for row, and the table let go of once
they are arrays (replay's peak memory is paid for in fresh pages)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from otel_benchlab.receivers.stored import StoredSession
from otel_benchlab.session.replay import encode_marks
from otel_benchlab.session.schema import MARK_SCHEMA


def session() -> StoredSession:
    """Two chunks, as a session of two Parquet parts reads; one mark without a frame id."""
    rows = [(10, "p", "cam0", "ingress", 1), (12, "p", "cam1", "ingress", 1),
            (15, "p", "cam0", "encoded", 1), (20, "q", "cam0", "ingress", None)]
    chunks = [pa.table({
        "ts_ns": [r[0] for r in part], "ts_unix_ns": [r[0] + 1000 for r in part],
        "pipeline": [r[1] for r in part], "stream": [r[2] for r in part],
        "stage": [r[3] for r in part], "frame": [r[4] for r in part]}, schema=MARK_SCHEMA)
        for part in (rows[:2], rows[2:])]
    return StoredSession("s", pa.concat_tables(chunks), {})


def test_encoded_marks_say_what_the_table_said_row_for_row():
    m = encode_marks(session())
    assert m.ts.tolist() == [10, 12, 15, 20]
    assert [m.pipe_names[c] for c in m.pipe] == ["p", "p", "p", "q"]
    assert [m.stream_names[c] for c in m.stream] == ["cam0", "cam1", "cam0", "cam0"]
    assert [m.stage_names[c] for c in m.stage] == ["ingress", "ingress", "encoded", "ingress"]
    assert m.has_frame.tolist() == [True, True, True, False]
    assert m.frame[:3].tolist() == [1, 1, 1]
    assert m.offset_ns == 1000


def test_a_mark_s_group_is_its_pipeline_and_stream():
    m = encode_marks(session())
    pairs = {(m.pipe_names[p], m.stream_names[s]) for p, s in zip(m.pipe, m.stream, strict=True)}
    assert len(np.unique(m.group)) == len(pairs) == 3
    assert m.group[0] == m.group[2] != m.group[1]


def test_encoding_lets_go_of_the_marks_table():
    stored = session()
    encode_marks(stored)
    assert stored.marks.num_rows == 0
    assert stored.marks.schema == MARK_SCHEMA
