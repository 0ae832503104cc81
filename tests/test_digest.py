"""A session too long to hold is reported from digests: frames, frames/s, means, standard
deviations, energies and mean power equal the in-memory figures to rounding, and every
percentile is within the stated relative error (0.25 %) of numpy's over every row."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.report_speed import make_session
from otel_benchlab.views.digest import REL_ERR, Sketch
from otel_benchlab.views.sessions import load_session
from otel_benchlab.views.summary import session_summary


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    folder = make_session(tmp_path_factory.mktemp("d") / "s", 200_000, seed=4)
    exact = session_summary(load_session(folder))
    digested = session_summary(load_session(folder, digest_over=0))
    return folder, exact, digested


def close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * abs(a) + 1e-12


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_sketchs_percentiles_are_within_its_relative_error(seed):
    values = np.random.default_rng(seed).lognormal(2.0, 0.7, 100_000)
    sketch, other = Sketch(), Sketch()
    sketch.add(values[:60_000])
    other.add(values[60_000:])
    sketch.merge(other)  # merged from two batches, as parts are
    qs = [0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0]
    for got, want in zip(sketch.quantiles(qs), np.percentile(values, [q * 100 for q in qs]),
                         strict=True):
        assert close(want, got, REL_ERR)


def test_a_digested_session_has_the_exact_counts_means_and_energies(both):
    _, exact, digested = both
    assert digested["statistics"] == {"percentiles": "sketch", "relative_error": REL_ERR,
                                      "rows": 200_000}
    assert exact["statistics"] == {"percentiles": "exact"}
    assert len(exact["pairs"]) == len(digested["pairs"]) == 8
    for a, b in zip(exact["pairs"], digested["pairs"], strict=True):
        assert (a["pipeline"], a["stream"], a["from"], a["to"], a["frames"]) == \
            (b["pipeline"], b["stream"], b["from"], b["to"], b["frames"])
        assert close(a["fps"], b["fps"], 1e-9)
        for k in ("min", "max", "mean", "stddev"):
            assert close(a["latency_ms"][k], b["latency_ms"][k], 1e-9)
        for src in a["energy_j"]:
            assert close(a["energy_j"][src], b["energy_j"][src], 1e-9)
            assert close(a["power_w"][src], b["power_w"][src], 1e-9)
            assert close(a["energy_j_per_frame"][src]["mean"],
                         b["energy_j_per_frame"][src]["mean"], 1e-9)
        assert close(a["frame_time"]["avg_fps"], b["frame_time"]["avg_fps"], 1e-9)


def test_a_digested_sessions_percentiles_are_within_the_stated_error(both):
    _, exact, digested = both
    for a, b in zip(exact["pairs"], digested["pairs"], strict=True):
        for k in ("p50", "p90", "p95", "p99"):
            assert close(a["latency_ms"][k], b["latency_ms"][k], REL_ERR), k
        for src, e in a["energy_j_per_frame"].items():
            for k in ("p50", "p95"):
                assert close(e[k], b["energy_j_per_frame"][src][k], REL_ERR)
        for k in ("p1_fps", "low1_fps"):
            assert close(a["frame_time"][k], b["frame_time"][k], REL_ERR)


def test_the_report_digests_a_session_past_its_row_limit_and_says_so(both, tmp_path):
    folder, _, _ = both
    out, js = tmp_path / "r.html", tmp_path / "r.json"
    subprocess.run([sys.executable, "-m", "otel_benchlab", "report", str(folder), "-o",
                    str(out), "--json", str(js)], check=True, capture_output=True, timeout=120,
                   env={**os.environ, "BENCHLAB_REPORT_EXACT_ROWS": "100000"})
    s = json.loads(js.read_text())["sessions"][0]
    assert s["statistics"]["percentiles"] == "sketch"
    text = out.read_text()
    assert "bench decode-&gt;infer (4 streams)" in text or "decode->infer (4 streams)" in text


def test_a_running_sessions_journal_is_digested_with_its_parts(tmp_path):
    import pyarrow.parquet as pq

    from otel_benchlab.exporters.parquet import ParquetPartWriter

    folder = make_session(tmp_path / "s", 40_000, seed=5)
    whole = pq.read_table(folder / "aligned")
    (folder / "aligned" / "part-000001.parquet").unlink()
    writer = ParquetPartWriter(folder / "aligned", whole.schema, part_rows=15_000)
    for i in range(0, whole.num_rows, 5_000):
        writer.export(whole.slice(i, 5_000))  # two parts closed, the rest in the journal
    assert list((folder / "aligned").glob(".journal-*"))
    exact = session_summary(load_session(folder))
    digested = session_summary(load_session(folder, digest_over=0))
    assert sum(p["frames"] for p in digested["pairs"]) == whole.num_rows == \
        sum(p["frames"] for p in exact["pairs"])
