"""CapFrameX captures load by CapFrameX's own rules, and carry latency and power."""

from __future__ import annotations

import numpy as np

from otel_benchlab.exporters.capframex import CapFrameXWriter
from otel_benchlab.records import PowerFigure, StageSpan
from otel_benchlab.schema import power_columns, spans_to_table
from otel_benchlab.timebase import TimeBase

from .capframex_rules import check_csv, check_json

MS = 1_000_000


def spans(n: int) -> list[StageSpan]:
    out = []
    for f in range(n):
        s = StageSpan("cam", "c0", f, "ingress", "encoded", 1000 * MS + f * 16 * MS,
                      1000 * MS + f * 16 * MS + (5 + f % 3) * MS)
        s.power = {"SYS": PowerFigure(200.0, 200.0 * s.latency_ns / 1e9),
                   "GPU": PowerFigure(None, None)}
        out.append(s)
    return out


def writer(tmp_path, **kw) -> CapFrameXWriter:
    return CapFrameXWriter(tmp_path, "my app,x", power_columns(["SYS", "GPU"]), 100, **kw)


def test_csv_and_json_follow_the_import_rules_and_carry_stage_latency(tmp_path):
    w = writer(tmp_path, watch_dir=tmp_path / "watch")
    w.add_power("SYS", np.arange(0, 3000, 100) * MS, np.full(30, 200.0))
    w.add_power("GPU", np.arange(0, 3000, 100) * MS, np.linspace(100, 130, 30))
    w.export(spans_to_table(spans(40)[::-1], TimeBase(0), ["SYS", "GPU"]))  # out of order
    w.shutdown()
    rows = check_csv(tmp_path / "cam_ingress_to_encoded.csv")
    assert [float(r["MsBetweenPresents"]) for r in rows[:3]] == [5.0, 6.0, 7.0]
    assert rows[0]["Application"] == "my_app_x"  # no comma can break the naive split
    assert float(rows[0]["PowerSYSW"]) == 200.0 and rows[0]["PowerGPUW"] == ""
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
    w.export(spans_to_table(spans(10), TimeBase(0), ["SYS", "GPU"]))
    w.shutdown()
    assert not list(tmp_path.glob("*.csv"))


def test_long_captures_roll_over_into_parts(tmp_path):
    w = writer(tmp_path, max_frames=25)
    w.export(spans_to_table(spans(30), TimeBase(0), ["SYS", "GPU"]))
    w.export(spans_to_table(spans(30), TimeBase(0), ["SYS", "GPU"]))
    w.shutdown()
    names = sorted(p.name for p in tmp_path.glob("*.csv"))
    assert names == ["cam_ingress_to_encoded.csv", "cam_ingress_to_encoded_part2.csv"]
