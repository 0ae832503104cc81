"""A soak at 4x the default load (4 streams x 60 fps x 3 stages, sensors at 40 Hz, every
exporter on) for three minutes, with OTLP going to a collector that accepts connections and
never answers, and 200 scrapes of /metrics at once in the middle: memory stays flat, every
drop is counted, the scrapes are answered, and pairing is unaffected. The hour-long run is
benchmarks/soak.py; its figures are in docs/performance.md."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.soak import soak

pytestmark = pytest.mark.e2e
SECONDS = 180
# The agent's heap grows to its working size for the first minute or so (~25 MB in the
# first 45 s, then ~2 MB/min for a while): judged from 60 s, in 20 s windows, so that the
# slope reads a trend and not the last of that rise or one window's dip.
WARMUP_S = 60
WINDOW_S = 20.0


def start_soak(workdir: str):
    """The soak itself (conftest.py starts it in the background once tests are collected)."""
    return soak(SECONDS, "hang", rss_every_s=2.0, burst_at_s=SECONDS / 2, scrape_s=5.0,
                workdir=workdir)


@pytest.fixture(scope="module")
def run(soak_result):
    return soak_result


def test_the_soak_ends_cleanly(run):
    assert run.rc == 0, run.stderr[-3000:]


def test_memory_stays_flat(run):
    slope = run.floor_slope_mb_per_min(WARMUP_S, WINDOW_S, until_s=SECONDS)
    after = [mb for t, mb in run.rss_mb if WARMUP_S <= t <= SECONDS]
    # The leak this guards against (captures held in memory) grew 6-8 MB/min at this load.
    assert slope < 3.0, f"RSS floor grows {slope:.2f} MB/min: {run.rss_mb}"
    assert max(after) - min(after) < 30


def test_a_hanging_collector_costs_counted_drops_not_the_agent(run):
    s = run.summary()
    assert s["queue_dropped"] == 0
    assert s["export_failures"] > 0 and s["export_dropped"] > 0
    assert s["undelivered"]["spans"] > 0


def test_200_concurrent_scrapes_are_answered_and_pairing_is_unaffected(run):
    assert run.burst_ok == 200
    assert np.median(run.burst_ms) < 2000
    s = run.summary()
    # No mark is lost in the simulation: the only unpaired marks are the frames cut off by
    # the end of the run (at most one per stream and pair).
    assert set(s["unpaired"]) <= {"timeout"} and sum(s["unpaired"].values()) <= 8
    assert s["spans"] > 2 * 4 * 60 * (SECONDS - 5) * 0.95
