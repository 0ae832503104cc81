"""Replay's marks as arrays: what each chunk's table said, row for row, with names coded
the same way in every chunk whatever each chunk's own dictionary."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from otel_benchlab.session.replay_rounds import MarkCodes
from otel_benchlab.session.schema import MARK_SCHEMA

ROWS = [(10, "p", "cam0", "ingress", 1), (12, "p", "cam1", "ingress", 1),
        (15, "p", "cam0", "encoded", 1), (20, "q", "cam0", "ingress", None)]


def chunks() -> list[pa.Table]:
    """Two chunks, as two Parquet parts read; one mark without a frame id."""
    return [pa.table({
        "ts_ns": [r[0] for r in part], "ts_unix_ns": [r[0] + 1000 for r in part],
        "pipeline": [r[1] for r in part], "stream": [r[2] for r in part],
        "stage": [r[3] for r in part], "frame": [r[4] for r in part]}, schema=MARK_SCHEMA)
        for part in (ROWS[:2], ROWS[2:])]


def encoded():
    codes = MarkCodes.for_session("s")
    return codes, [codes.encode(c) for c in chunks()]


def test_encoded_marks_say_what_each_chunk_said_row_for_row():
    codes, marks = encoded()
    ts = np.concatenate([m.ts for m in marks])
    assert ts.tolist() == [10, 12, 15, 20]
    pipe = np.concatenate([m.pipe for m in marks])
    stream = np.concatenate([m.stream for m in marks])
    stage = np.concatenate([m.stage for m in marks])
    assert [codes.pipes.names[c] for c in pipe] == ["p", "p", "p", "q"]
    assert [codes.streams.names[c] for c in stream] == ["cam0", "cam1", "cam0", "cam0"]
    assert [codes.stages.names[c] for c in stage] == ["ingress", "ingress", "encoded",
                                                      "ingress"]
    assert np.concatenate([m.has_frame for m in marks]).tolist() == [True, True, True, False]


def test_a_name_has_one_code_in_every_chunk():
    codes, marks = encoded()
    # "encoded" is the first name of the second chunk's own dictionary, "ingress" its second
    assert codes.stages.names == ["ingress", "encoded"]
    assert marks[1].stage.tolist() == [1, 0]


def test_a_mark_s_group_is_its_pipeline_and_stream_across_chunks():
    _, marks = encoded()
    group = np.concatenate([m.group for m in marks])
    assert len(np.unique(group)) == 3
    assert group[0] == group[2] != group[1]
