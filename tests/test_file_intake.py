"""Following files: JSONL marks and log lines, through rotation, truncation and partial
lines, into marks; and a training log's iterations into spans with energy."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pyarrow.dataset as ds
import pytest

from otel_benchlab.counters import AgentCounters
from otel_benchlab.receivers.jsonl_tail import JsonlTailReceiver
from otel_benchlab.receivers.log_pattern import LogPatternConfig, LogPatternReceiver
from otel_benchlab.timebase import TimeBase

from .test_end_to_end import agent_cmd, agent_env, wait_started


def line(n: int, stage: str = "decoded", ts: int | None = None) -> str:
    return json.dumps({"ts_ns": ts if ts is not None else 1000 + n, "source": "cam0",
                       "kv": {"stage": stage, "frame": n}}) + "\n"


def wait_for(got: list, n: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # and nothing more arrives


@pytest.fixture
def tail(tmp_path):
    path = tmp_path / "pipeline.jsonl"
    counters = AgentCounters()
    got: list = []
    rx = JsonlTailReceiver(str(path), counters)
    rx.start(lambda m: got.append(m) or True)
    yield path, got, counters
    rx.stop()


def test_lines_written_later_are_read_and_a_partial_line_waits(tail):
    path, got, _ = tail
    with open(path, "w") as f:
        f.write(line(0) + line(1)[:10])
        f.flush()
        wait_for(got, 1)
        assert [m.frame for m in got] == [0]
        f.write(line(1)[10:])
    wait_for(got, 2)
    assert [m.frame for m in got] == [0, 1]
    assert got[0].stream == "cam0" and got[0].pipeline == "pipeline"


def test_rotation_by_rename_reads_every_line_once(tail):
    path, got, _ = tail
    with open(path, "w") as f:
        f.write("".join(line(n) for n in range(5)))
    wait_for(got, 5)
    with open(path, "a") as old:
        os.rename(path, str(path) + ".1")
        old.write(line(5))  # the writer has not reopened yet
        old.flush()
        with open(path, "w") as new:
            new.write(line(6) + line(7))
        old.write(line(8))  # still late, still read
    wait_for(got, 9)
    assert sorted(m.frame for m in got) == list(range(9))


def test_copytruncate_starts_again_at_the_top(tail):
    path, got, _ = tail
    with open(path, "w") as f:
        f.write("".join(line(n) for n in range(5)))
    wait_for(got, 5)
    os.truncate(path, 0)
    time.sleep(0.3)
    with open(path, "a") as f:
        f.write(line(5) + line(6))
    wait_for(got, 7)
    assert [m.frame for m in got] == list(range(7))


def test_bad_lines_are_counted_and_good_ones_around_them_kept(tail):
    path, got, counters = tail
    path.write_bytes(line(0).encode() + b"{not json\n\xff\xfe\n" + b'{"ts_ns": 5}\n'
                     + line(1).encode())
    wait_for(got, 2)
    assert [m.frame for m in got] == [0, 1]
    assert counters.get("input.rejected", source="jsonl", reason="not_json") == 2
    assert counters.get("input.rejected", source="jsonl", reason="not_a_mark") == 1


def test_epoch_timestamps_are_mapped_onto_the_monotonic_clock(tmp_path):
    rx = JsonlTailReceiver(str(tmp_path / "x.jsonl"), AgentCounters())
    tb = TimeBase.measure()
    mono = time.monotonic_ns()
    mark = rx.to_mark(line(3, ts=tb.to_unix_ns(mono)).encode())
    assert abs(mark.ts_ns - mono) < 1_000_000
    assert rx.to_mark(line(3, ts=mono).encode()).ts_ns == mono


def test_a_log_line_with_its_own_time_becomes_a_mark_at_that_time():
    rx = LogPatternReceiver(LogPatternConfig(
        path="-", pattern=r"^(?P<ts>\S+) iteration (?P<iteration>\d+)", stage="iteration.end",
        ts_format="%s", next_stage="iteration.start"), AgentCounters())
    tb = TimeBase.measure()
    unix = time.time()
    end, start = rx.marks(f"{unix:.6f} iteration 41 loss 0.3".encode())
    assert (end.stage, end.frame, start.stage, start.frame) == (
        "iteration.end", 41, "iteration.start", 42)
    assert abs(end.ts_ns - tb.to_mono_ns(int(unix * 1e9))) < 2_000_000
    assert rx.marks(b"epoch 3 done") == []


def test_a_matching_line_whose_time_does_not_parse_is_counted():
    counters = AgentCounters()
    rx = LogPatternReceiver(LogPatternConfig(
        path="-", pattern=r"^(?P<ts>\S+) step (?P<frame>\d+)", stage="step",
        ts_format="%Y-%m-%dT%H:%M:%S"), counters)
    assert rx.marks(b"yesterday step 4") == []
    assert counters.get("input.rejected", source="log", reason="bad_time") == 1
    assert len(rx.marks(b"2026-11-22T10:00:00 step 4")) == 1


@pytest.mark.e2e
def test_a_training_log_gives_each_iteration_its_energy(tmp_path):
    log_path = tmp_path / "train.log"
    log_path.write_text("")
    jsonl = tmp_path / "pipeline.jsonl"
    jsonl.write_text("")
    cfg = tmp_path / "agent.toml"
    cfg.write_text(
        'pairs = [["iteration.start", "iteration.end"], ["decoded", "encoded"]]\n'
        '[sim]\nsources = ["benchlab"]\n'
        f'[[intake.log]]\npath = "{log_path}"\npattern = "iteration (?P<iteration>\\\\d+)"\n'
        'stage = "iteration.end"\nnext_stage = "iteration.start"\npipeline = "train"\n'
        'from_start = true\n')
    agent = subprocess.Popen(
        agent_cmd("--simulate", "--config", str(cfg), "--data-root", str(tmp_path / "data"),
                  "--session", "logs", "--prom-bind", "off", "--tail-jsonl", str(jsonl)),
        env=agent_env(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
                      BENCHLAB_PROBE_ADDR="off"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_started(agent)
        with open(log_path, "a") as logf, open(jsonl, "a") as jf:
            for n in range(20):
                logf.write(f"[trainer] iteration {n} loss 0.{n}\nsome other line\n")
                logf.flush()
                mono = time.monotonic_ns()
                jf.write(line(n, "decoded", mono) + line(n, "encoded", mono + 3_000_000))
                jf.flush()
                time.sleep(0.1)
        time.sleep(1.0)
    finally:
        agent.send_signal(2)
        _, err = agent.communicate(timeout=30)
    assert agent.returncode == 0, err
    table = ds.dataset(tmp_path / "data/sessions/logs/aligned").to_table().to_pandas()
    sys_rows = table[table.power_source == "sys"]
    it = sys_rows[sys_rows.stage_from == "iteration.start"].sort_values("frame")
    assert list(it.frame) == list(range(1, 20))  # iteration 0 has no line before it
    assert ((it.latency_ms > 80) & (it.latency_ms < 400)).all()
    assert it.energy_j.notna().all() and (it.energy_j > 0).all()
    enc = sys_rows[sys_rows.stage_from == "decoded"]
    assert len(enc) == 20 and (abs(enc.latency_ms - 3.0) < 1e-6).all()
