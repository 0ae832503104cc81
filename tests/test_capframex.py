"""CapFrameX captures load by CapFrameX's own rules, and carry latency and power."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from otel_benchlab.exporters.capframex import CapFrameXWriter
from otel_benchlab.records import PowerFigure, StageSpan
from otel_benchlab.session.schema import power_columns, spans_to_table
from otel_benchlab.timebase import TimeBase

from .capframex_rules import check_csv, check_json

MS = 1_000_000


def spans(n: int) -> list[StageSpan]:
    out = []
    for f in range(n):
        s = StageSpan("cam", "c0", f, "ingress", "encoded", 1000 * MS + f * 16 * MS,
                      1000 * MS + f * 16 * MS + (5 + f % 3) * MS)
        s.power = {"sys": PowerFigure(200.0, 200.0 * s.latency_ns / 1e9),
                   "gpu": PowerFigure(None, None)}
        out.append(s)
    return out


def writer(tmp_path, **kw) -> CapFrameXWriter:
    return CapFrameXWriter(tmp_path, "my app,x", power_columns(["sys", "gpu"]), 100, **kw)


def test_csv_and_json_follow_the_import_rules_and_carry_stage_latency(tmp_path):
    w = writer(tmp_path, watch_dir=tmp_path / "watch")
    w.add_power("sys", np.arange(0, 3000, 100) * MS, np.full(30, 200.0))
    w.add_power("gpu", np.arange(0, 3000, 100) * MS, np.linspace(100, 130, 30))
    w.export(spans_to_table(spans(40)[::-1], TimeBase(0), ["sys", "gpu"]))  # out of order
    w.shutdown()
    rows = check_csv(tmp_path / "cam_ingress_to_encoded.csv")
    assert [float(r["MsBetweenPresents"]) for r in rows[:3]] == [5.0, 6.0, 7.0]
    assert rows[0]["Application"] == "my_app_x"  # no comma can break the naive split
    assert float(rows[0]["Power_sys_W"]) == 200.0 and rows[0]["Power_gpu_W"] == ""
    doc = check_json(tmp_path / "cam_ingress_to_encoded.json")
    run = doc["Runs"][0]
    assert len(run["CaptureData"]["MsBetweenPresents"]) == 40
    # CapFrameX plots Pmd values at i * SampleTime ms from the capture start (1000 ms)
    assert run["PmdSystemPower"][0] == 200.0
    assert abs(run["PmdGpuPower"][0] - (100 + 30 * 10 / 29)) < 1e-2
    assert "PmdCpuPower" not in run  # absent, never null
    assert (tmp_path / "watch" / "cam_ingress_to_encoded.csv").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_too_short_capture_is_skipped_rather_than_written_broken(tmp_path):
    w = writer(tmp_path)
    w.export(spans_to_table(spans(10), TimeBase(0), ["sys", "gpu"]))
    w.shutdown()
    assert not list(tmp_path.glob("*.csv"))


def test_long_captures_roll_over_into_parts(tmp_path):
    w = writer(tmp_path, max_frames=25)
    w.export(spans_to_table(spans(30), TimeBase(0), ["sys", "gpu"]))
    w.export(spans_to_table(spans(30), TimeBase(0), ["sys", "gpu"]))
    w.shutdown()
    names = sorted(p.name for p in tmp_path.glob("*.csv"))
    assert names == ["cam_ingress_to_encoded.csv", "cam_ingress_to_encoded_part2.csv"]


def test_a_spilled_capture_is_the_same_file_as_one_kept_in_memory(tmp_path):
    for name, spill in (("mem", False), ("disk", True)):
        w = writer(tmp_path / name, spill=spill)
        for chunk in (spans(40)[20:], spans(40)[:20]):
            w.export(spans_to_table(chunk, TimeBase(0), ["sys", "gpu"]))
        if spill:
            assert list((tmp_path / name).glob(".pending-*.arrows"))
        w.shutdown()
    assert (tmp_path / "mem" / "cam_ingress_to_encoded.csv").read_bytes() == \
        (tmp_path / "disk" / "cam_ingress_to_encoded.csv").read_bytes()
    assert not list((tmp_path / "disk").glob(".pending-*"))


def test_names_that_sanitise_alike_get_their_own_files(tmp_path):
    w = writer(tmp_path)
    for pipeline in ("a/b", "a_b"):
        t = spans(30)
        for s in t:
            s.pipeline = pipeline
        w.export(spans_to_table(t, TimeBase(0), ["sys", "gpu"]))
    w.shutdown()
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == [
        "a_b_ingress_to_encoded.csv", "a_b_ingress_to_encoded_2.csv"]
    assert len(set(w.files_written)) == 4


def test_a_table_of_two_pipelines_makes_a_capture_of_each(tmp_path):
    w = writer(tmp_path)
    t = spans(60)
    for i, s in enumerate(t):
        s.pipeline = "left" if i % 2 else "right"
    w.export(spans_to_table(t, TimeBase(0), ["sys", "gpu"]))
    w.shutdown()
    for pipeline, first in (("left", 1), ("right", 0)):
        rows = check_csv(tmp_path / f"{pipeline}_ingress_to_encoded.csv")
        assert [int(r["Frame"]) for r in rows] == list(range(first, 60, 2))


def test_a_failed_write_is_counted_and_keeps_the_rows_for_replay(tmp_path):
    errors = []
    w = writer(tmp_path / "cx", spill=True, on_error=lambda what, n: errors.append((what, n)))
    w.export(spans_to_table(spans(30), TimeBase(0), ["sys", "gpu"]))
    (tmp_path / "cx" / "cam_ingress_to_encoded.csv").mkdir()  # the write cannot replace it
    w.shutdown()
    assert errors == [("capframex", 30)]
    assert list((tmp_path / "cx").glob(".pending-*.arrows"))


def blocked_then_freed(tmp_path, spill: bool) -> tuple[CapFrameXWriter, list]:
    """A rollover write that fails (its CSV's name is taken by a folder), then room."""
    errors: list = []
    w = writer(tmp_path, spill=spill, max_frames=25,
               on_error=lambda what, n: errors.append((what, n)))
    blocker = tmp_path / "cam_ingress_to_encoded.csv"
    blocker.mkdir(parents=True)
    w.export(spans_to_table(spans(30), TimeBase(0), ["sys", "gpu"]))  # rolls over: fails
    blocker.rmdir()
    return w, errors


def test_a_capture_whose_write_failed_is_written_whole_at_its_next_write(tmp_path):
    for spill in (False, True):
        w, errors = blocked_then_freed(tmp_path / str(spill), spill)
        assert errors == [("capframex", 30)]
        later = spans(60)[30:]
        w.export(spans_to_table(later[:20], TimeBase(0), ["sys", "gpu"]))  # 50: waits
        assert not (tmp_path / str(spill) / "cam_ingress_to_encoded.csv").exists()
        w.export(spans_to_table(later[20:], TimeBase(0), ["sys", "gpu"]))  # 60: written
        rows = check_csv(tmp_path / str(spill) / "cam_ingress_to_encoded.csv")
        assert [int(r["Frame"]) for r in rows] == list(range(60))
        w.shutdown()
        assert not list((tmp_path / str(spill)).glob(".pending-*"))
        assert errors == [("capframex", 30)]


def test_a_capture_whose_write_failed_is_written_at_shutdown(tmp_path):
    w, errors = blocked_then_freed(tmp_path, spill=True)
    w.shutdown()
    rows = check_csv(tmp_path / "cam_ingress_to_encoded.csv")
    assert len(rows) == 30 and errors == [("capframex", 30)]
    assert not list(tmp_path.glob(".pending-*"))


@given(st.lists(st.text(max_size=12), max_size=20))
def test_stream_names_are_made_safe_in_arrow_as_safe_name_makes_one(texts):
    import pyarrow as pa

    from otel_benchlab.exporters.capframex_format import safe_name, safe_names

    assert safe_names(pa.array(texts, pa.string())).to_pylist() == [safe_name(t) for t in texts]
