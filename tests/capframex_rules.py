"""CapFrameX's import rules (shared/spec/capframex-formats.md), as checks on our files."""

from __future__ import annotations

import json
from pathlib import Path

REQUIRED = ["Application", "Dropped", "TimeInSeconds", "MsBetweenPresents",
            "MsBetweenDisplayChange"]


def check_csv(path: Path) -> list[dict[str, str]]:
    assert path.suffix == ".csv" and "-stats.csv" not in path.name
    lines = path.read_text().split("\n")
    assert lines[-1] == "", "ends with one newline"
    lines = lines[:-1]
    assert all(lines), "no blank lines"
    assert not any(line.startswith("//") for line in lines), "no preamble expected"
    header = lines[0].split(",")
    assert header[0] == "Application"
    assert all(c in header for c in REQUIRED)
    assert len(lines) > 20
    rows = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]
    times = [float(r["TimeInSeconds"]) for r in rows]
    assert times == sorted(times) and times[0] == 0.0
    assert {r["Dropped"] for r in rows} <= {"0", "1"}
    assert len({(r["Application"], r["SwapChainAddress"]) for r in rows}) == 1
    for r in rows:
        float(r["MsBetweenPresents"])
    return rows


def check_json(path: Path) -> dict:
    doc = json.loads(path.read_text())
    assert isinstance(doc["Hash"], str) and isinstance(doc["Info"], dict)
    assert all(isinstance(v, str) for v in doc["Info"].values())
    assert doc["Runs"], "non-empty Runs"
    for run in doc["Runs"]:
        cap = run["CaptureData"]
        lengths = {len(v) for v in cap.values()}
        assert len(lengths) == 1 and all(v is not None for v in cap.values())
        assert all(isinstance(x, bool) for x in cap["Dropped"])
        assert isinstance(run["SampleTime"], int) and run["SampleTime"] > 0
        for key in ("PmdGpuPower", "PmdCpuPower", "PmdSystemPower"):
            if key in run:
                assert run[key] and all(isinstance(x, float) for x in run[key])
        if "SensorData2" in run:
            assert {"MeasureTime", "BetweenMeasureTime"} <= set(run["SensorData2"])
    return doc
