"""A crash keeps the data: the agent is killed with SIGKILL at random moments, and what
survives is counted against what the simulated pipeline emitted."""

from __future__ import annotations

import json
import random
import subprocess
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from otel_benchlab.receivers.stored import read_session
from otel_benchlab.session.folder import agent_alive, crashed

from .test_end_to_end import agent_cmd, agent_env, wait_started

pytestmark = pytest.mark.e2e
STAGES = 3
# One batch (1 s) plus the consumer's tick and the simulator's hand-over: what a kill may
# take with it. Measured here: see docs/what-survives-what.md.
MAX_LOSS_S = 1.6


def start_agent(data_root, session: str, part_seconds: float = 1.5) -> subprocess.Popen:
    """Parts rotate every 1.5 s by default, so kills land before, in and after rotations."""
    cfg = data_root.parent / "crash.toml"
    cfg.write_text(f"[sim]\nmark_loss = 0.0\n[parquet]\npart_seconds = {part_seconds}\n")
    proc = subprocess.Popen(
        agent_cmd("--simulate", "--data-root", str(data_root), "--session", session,
                  "--prom-bind", "off", "--config", str(cfg)),
        env=agent_env(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    wait_started(proc)
    return proc


def kill_at(proc: subprocess.Popen, after_s: float) -> int:
    time.sleep(after_s)
    t_kill = time.monotonic_ns()
    proc.kill()
    proc.wait()
    proc.stdout.close()
    return t_kill


def test_sigkill_at_random_moments_loses_at_most_the_last_batch(tmp_path):
    rng = random.Random(7)
    root = tmp_path / "data"
    for i, after in enumerate([0.05] + [rng.uniform(0.2, 4.0) for _ in range(5)]):
        name = f"k{i}"
        t_kill = kill_at(start_agent(root, name), after)
        session = root / "sessions" / name
        assert crashed(session) and not agent_alive(session)
        for part in session.rglob("part-*.parquet"):
            pq.read_table(part)  # every completed part is readable
        stored = read_session(session)  # parts and the journals, as replay reads
        marks = stored.marks.to_pandas()
        if after < 0.5 and marks.empty:
            continue  # killed before the first batch was due: nothing to keep yet
        # Every frame the pipeline emitted up to the last batch is there, with all stages:
        # no hole anywhere, only the tail is missing.
        full = marks.groupby("frame").size()
        last = int(full.index.max())
        assert (full.loc[: last - 2] == STAGES).all()
        assert set(full.index) >= set(range(last - 1))
        lost_s = (t_kill - int(marks.ts_ns.max())) / 1e9
        assert lost_s < MAX_LOSS_S, f"kill after {after:.2f} s lost {lost_s:.2f} s"
        # No sample kept at all counts as losing everything since the agent started.
        power_ts = max((ts.max() for _, ts, _ in stored.power.values() if len(ts)),
                       default=t_kill - int(after * 1e9))
        assert (t_kill - power_ts) / 1e9 < MAX_LOSS_S, f"kill after {after:.2f} s"


def test_recover_turns_journals_into_parts_and_marks_the_crash(tmp_path):
    root = tmp_path / "data"
    kill_at(start_agent(root, "k"), 2.5)
    session = root / "sessions" / "k"
    before = read_session(session).marks.num_rows
    out = subprocess.run(agent_cmd("recover", str(session)), env=agent_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not list(session.rglob(".journal-*"))
    manifest = json.loads((session / "session.json").read_text())
    assert manifest["end_reason"] == "crash" and manifest["ended_at"]
    assert manifest["summary"]["rows"]["marks"] == before
    assert read_session(session).marks.num_rows == before


def test_the_next_agent_start_recovers_a_crashed_session(tmp_path):
    root = tmp_path / "data"
    kill_at(start_agent(root, "first"), 2.0)
    kill_at(start_agent(root, "second"), 0.5)
    manifest = json.loads((root / "sessions" / "first" / "session.json").read_text())
    assert manifest["end_reason"] == "crash"
    assert not list((root / "sessions" / "first").rglob(".journal-*"))


def test_replay_reads_a_crashed_session_without_changing_it(tmp_path):
    root = tmp_path / "data"
    kill_at(start_agent(root, "k", part_seconds=60), 2.5)
    session = root / "sessions" / "k"
    journals = sorted(p.name for p in session.rglob(".journal-*"))
    out = subprocess.run(agent_cmd("replay", str(session), "--out", str(tmp_path / "r")),
                         env=agent_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert journals and sorted(p.name for p in session.rglob(".journal-*")) == journals
    spans = pq.read_table(tmp_path / "r" / "aligned").num_rows
    assert spans > 100 and np.isfinite(spans)
