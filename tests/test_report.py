"""``otel-benchlab report`` on real sessions: an agent's (``--simulate``), one whose agent
was killed, the seed project's JSONL; the page opened in Debian's Chromium."""

from __future__ import annotations

import base64
import json
import math
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from .browser import DRAWN_CANVASES, browser, chromium_or_skip, serious_violations, visit
from .test_end_to_end import agent_cmd, agent_env, wait_started

pytestmark = pytest.mark.e2e

ENV = agent_env(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
                OTEL_LOGS_EXPORTER="none", BENCHLAB_PROBE_ADDR="off")


def report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(agent_cmd("report", *args), capture_output=True, text=True,
                          env=ENV, timeout=120)


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    subprocess.run(agent_cmd("--simulate", "--duration", "6", "--data-root", str(root),
                             "--session", "sim", "--prom-bind", "off"),
                   env=ENV, check=True, capture_output=True, timeout=120)
    return root / "sessions" / "sim"


@pytest.fixture(scope="module")
def made(session, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    done = report(str(session), "--json", str(out / "figures.json"))
    assert done.returncode == 0, done.stderr
    return session / "report.html", json.loads((out / "figures.json").read_text())


def test_the_report_is_one_file_that_fetches_nothing(made):
    page = made[0].read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "uPlot" in page and "<script src" not in page and "<link" not in page


def test_the_json_percentiles_are_the_parquet_rows_percentiles(session, made):
    rows = pq.read_table(session / "aligned").to_pandas()
    pairs = made[1]["sessions"][0]["pairs"]
    assert {(p["from"], p["to"]) for p in pairs} == {("ingress", "encoded"),
                                                     ("encoded", "inference_done")}
    for p in pairs:
        mine = rows[(rows.stage_from == p["from"]) & (rows.stage_to == p["to"])]
        lat = mine.latency_ms.to_numpy()
        assert p["frames"] == len(lat)
        for key, q in (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99)):
            assert p["latency_ms"][key] == pytest.approx(np.percentile(lat, q), rel=1e-12)
        assert p["latency_ms"]["max"] == lat.max()
        e = mine.energy_attr_j.to_numpy()
        assert p["energy_j_per_frame"]["sys"]["mean"] == pytest.approx(np.nanmean(e))
        assert p["power_w"]["sys"] == pytest.approx(np.nanmean(mine.power_mean_w))


def test_the_page_draws_every_chart_and_shows_the_json_numbers(made):
    chromium_or_skip()
    path, figures = made
    with browser() as b, visit(b, path.as_uri(), path.parent.as_uri()) as v:
        v.page.wait_for_function("document.body.dataset.drawn === 'yes'", timeout=10_000)
        drawn = dict(v.page.evaluate(DRAWN_CANVASES))
        cells = v.page.evaluate("""() => Array.from(document.querySelectorAll(
            'table.pairs tr[data-pair] td[data-key]')).map(td => [
            td.closest('tr').dataset.pair, td.dataset.key, td.dataset.value || null])""")
        csv_href = v.page.get_attribute("a.csv", "href")
        assert v.errors == [] and v.outside == []
    assert len(drawn) == 13 and all(n > 500 for n in drawn.values()), drawn
    pairs = figures["sessions"][0]["pairs"]
    assert cells
    for row, key, value in cells:
        want = pairs[int(row)]
        for part in key.split("."):
            want = want[part]
        assert (value is None and want is None) or math.isclose(float(value), want)
    csv = base64.b64decode(csv_href.split(",", 1)[1]).decode().splitlines()
    assert len(csv) == 1 + len(pairs) and csv[0].startswith("session,pipeline")


def test_the_report_has_no_serious_accessibility_violation(made):
    """Deque's axe-core in Chromium: nothing serious or critical (a scrollable table the
    keyboard can reach, a main landmark, named controls)."""
    chromium_or_skip()
    path, _ = made
    with browser() as b, visit(b, path.as_uri(), path.parent.as_uri()) as v:
        v.page.wait_for_function("document.body.dataset.drawn === 'yes'", timeout=10_000)
        assert serious_violations(v.page) == []


def test_a_killed_agents_session_is_read_from_its_journals_and_marked(tmp_path):
    proc = subprocess.Popen(agent_cmd("--simulate", "--data-root", str(tmp_path),
                                      "--session", "k", "--prom-bind", "off"),
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    wait_started(proc)
    time.sleep(4)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done = report(str(tmp_path / "sessions" / "k"), "--json", str(tmp_path / "k.json"))
    assert done.returncode == 0, done.stderr
    s = json.loads((tmp_path / "k.json").read_text())["sessions"][0]
    assert s["crashed"] and s["end_reason"].startswith("crash")
    assert sum(p["frames"] for p in s["pairs"]) > 100
    assert "crashed</span>" in (tmp_path / "sessions" / "k" / "report.html").read_text()


def test_a_seed_session_without_power_shows_latencies_and_says_so(tmp_path):
    seed = tmp_path / "seed"
    (seed / "raw").mkdir(parents=True)
    lines = []
    for f in range(200):
        t = 1_000_000_000 + f * 33_000_000
        lines.append(json.dumps({"ts_ns": t, "kv": {"stage": "ingress", "frame": f}}))
        lines.append(json.dumps({"ts_ns": t + 5_000_000 + f * 1000,
                                 "kv": {"stage": "encoded", "frame": f}}))
    (seed / "raw" / "pipeline.jsonl").write_text("\n".join(lines) + "\n")
    done = report(str(seed), "-o", str(tmp_path / "r.html"), "--json",
                  str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stderr
    s = json.loads((tmp_path / "r.json").read_text())["sessions"][0]
    (p,) = s["pairs"]
    assert p["frames"] == 200 and p["energy_j_per_frame"] == {}
    assert p["latency_ms"]["min"] == pytest.approx(5.0)
    assert "no power source" in (tmp_path / "r.html").read_text()


def test_an_empty_or_foreign_folder_exits_2_naming_it(tmp_path):
    (tmp_path / "photos").mkdir()
    done = report(str(tmp_path / "photos"))
    assert done.returncode == 2 and str(tmp_path / "photos") in done.stderr
