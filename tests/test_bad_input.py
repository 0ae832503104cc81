"""Bad input is normal: every kind of malformed seed JSONL line and manifest is counted and
skipped by replay, the good records around it are kept, and memory stays bounded."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.dataset as ds
import pytest

from .test_end_to_end import agent_env

GOOD_FRAMES = 100
BAD_LINES = {
    "frame NaN": b'{"ts_ns": 5, "source": "cam0", "kv": {"stage": "A", "frame": NaN}}',
    "frame over 2**63": b'{"ts_ns": 5, "kv": {"stage": "A", "frame": 9223372036854775808}}',
    "fractional ts": b'{"ts_ns": 1000000000000.5, "kv": {"stage": "A", "frame": 1}}',
    "ts a string": b'{"ts_ns": "abc", "kv": {"stage": "A", "frame": 1}}',
    "ts 1e30": b'{"ts_ns": 1e30, "kv": {"stage": "A", "frame": 1}}',
    "negative ts": b'{"ts_ns": -5, "kv": {"stage": "A", "frame": 1}}',
    "stage not UTF-8": b'{"ts_ns": 5, "kv": {"stage": "\xff\xfe", "frame": 1}}',
    "stage a number": b'{"ts_ns": 5, "kv": {"stage": 7, "frame": 1}}',
    "frame a string": b'{"ts_ns": 5, "kv": {"stage": "A", "frame": "x1"}}',
    "frame a bool": b'{"ts_ns": 5, "kv": {"stage": "A", "frame": true}}',
    "kv a number": b'{"ts_ns": 5, "kv": 5}',
    "an array": b"[1, 2, 3]",
    "not JSON": b"hello world",
    "random bytes": bytes(range(256)).replace(b"\n", b""),
    "deep nesting": b"[" * 100_000,
    "torn": b'{"ts_ns": 12, "kv": {"sta',
}


def write_seed(tmp_path, bad: bytes, where: int = 57, power_bad: bytes = b""):
    raw = tmp_path / "seed" / "raw"
    raw.mkdir(parents=True)
    lines = []
    for f in range(GOOD_FRAMES):
        t = 1_000_000_000 + f * 16_000_000
        lines.append(json.dumps({"ts_ns": t, "source": "cam0", "kv": {"stage": "A", "frame": f}}))
        lines.append(json.dumps({"ts_ns": t + 5_000_000, "source": "cam0",
                                 "kv": {"stage": "B", "frame": f}}))
    data = [x.encode() for x in lines]
    data.insert(where, bad)
    (raw / "pipeline.jsonl").write_bytes(b"\n".join(data) + b"\n")
    power = [json.dumps({"ts_ns": 900_000_000 + i * 100_000_000, "source": "benchlab",
                         "kv": {"p_sys": 100.0}}).encode() for i in range(30)]
    if power_bad:
        power.insert(10, power_bad)
    (raw / "benchlab.jsonl").write_bytes(b"\n".join(power) + b"\n")
    return tmp_path / "seed"


def replay(session, *args: str) -> tuple[subprocess.CompletedProcess, int]:
    """Replay as a process; returns it and its peak RSS in MB (VmHWM: ru_maxrss would
    carry the forking test process's size across exec)."""
    code = ("import re, sys\nfrom otel_benchlab.cli import main\nrc = main(sys.argv[1:])\n"
            "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
            "print('PEAK_RSS_KB', hwm)\nsys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "replay", str(session), *args],
                          env=agent_env(), capture_output=True, text=True, timeout=120)
    peak = [int(x.split()[1]) for x in proc.stdout.splitlines() if x.startswith("PEAK_RSS_KB")]
    return proc, (peak[0] // 1024 if peak else -1)


@pytest.mark.parametrize("kind", list(BAD_LINES))
def test_a_bad_seed_line_is_counted_and_skipped_and_the_rest_kept(tmp_path, kind):
    proc, _ = replay(write_seed(tmp_path, BAD_LINES[kind]), "--pair", "A", "B")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "skipped 1 bad records" in proc.stdout, proc.stdout
    t = ds.dataset(tmp_path / "seed" / "replay" / "aligned").to_table()
    assert t.num_rows == GOOD_FRAMES
    assert t["energy_j"].null_count == 0


@pytest.mark.parametrize("bad", [b'{"ts_ns": 950000000, "kv": {"p_sys": "high"}}',
                                 b'{"ts_ns": 1e30, "kv": {"p_sys": 100}}'])
def test_a_bad_power_line_is_counted_and_skipped(tmp_path, bad):
    proc, _ = replay(write_seed(tmp_path, b"", power_bad=bad), "--pair", "A", "B")
    assert proc.returncode == 0 and "skipped 1 bad records" in proc.stdout, proc.stderr
    t = ds.dataset(tmp_path / "seed" / "replay" / "aligned").to_table()
    assert t.num_rows == GOOD_FRAMES and t["energy_j"].null_count == 0


def test_a_100_mb_line_is_skipped_with_bounded_memory(tmp_path):
    proc, peak_mb = replay(write_seed(tmp_path, b'{"ts_ns": 5, "x": "' + b"a" * (100 << 20)),
                           "--pair", "A", "B")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped 1 bad records" in proc.stdout
    assert ds.dataset(tmp_path / "seed" / "replay" / "aligned").to_table().num_rows == \
        GOOD_FRAMES
    # About 130 MB for a small replay; the line is never held whole (chunks of 32 MB).
    assert 0 < peak_mb < 250, f"peak RSS {peak_mb} MB for a 100 MB line"


@pytest.mark.parametrize("manifest", [b"\x00\xff random", b"not json", b"[1,2,3]",
                                      b'{"config": 5, "sensors": "x"}'])
def test_a_bad_session_json_is_a_warning_where_the_data_can_be_read(tmp_path, manifest):
    from .test_crash import kill_at, start_agent

    root = tmp_path / "data"
    kill_at(start_agent(root, "s", part_seconds=1.0), 2.5)
    session = root / "sessions" / "s"
    (session / "session.json").write_bytes(manifest)
    proc, _ = replay(session, "--pair", "ingress", "encoded")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "session.json" in proc.stderr and "Traceback" not in proc.stderr
    assert ds.dataset(session / "replay" / "aligned").to_table().num_rows > 50


def test_replay_of_a_folder_without_a_session_says_so(tmp_path):
    (tmp_path / "empty").mkdir()
    proc, _ = replay(tmp_path / "empty")
    assert proc.returncode == 2 and "neither raw/marks/" in proc.stderr


def test_replay_of_a_session_without_marks_says_so(tmp_path):
    session = tmp_path / "s"
    (session / "raw" / "marks").mkdir(parents=True)
    proc, _ = replay(session)
    assert proc.returncode == 2 and "no stage marks" in proc.stderr


def test_replay_of_a_stage_the_session_does_not_have_names_the_stages_it_has(tmp_path):
    proc, _ = replay(write_seed(tmp_path, b""), "--pair", "A", "nosuch")
    assert proc.returncode == 2
    assert "'nosuch'" in proc.stderr and "A, B" in proc.stderr


@pytest.mark.parametrize("chunk_bytes", [64, 100, 333, 1 << 20])
def test_chunk_boundaries_change_nothing_that_is_read_or_the_bad_line_named(
        tmp_path, monkeypatch, caplog, chunk_bytes):
    from otel_benchlab.receivers import stored

    session = write_seed(tmp_path, BAD_LINES["torn"], where=57)
    monkeypatch.setattr(stored, "CHUNK_BYTES", chunk_bytes)
    rejected: dict[str, int] = {}
    with caplog.at_level("WARNING"):
        tables = list(stored._jsonl_tables(session / "raw" / "pipeline.jsonl", rejected))
    marks = [(ts, kv["frame"]) for t in tables
             for ts, kv in zip(t["ts_ns"].to_pylist(), t["kv"].to_pylist(), strict=True)]
    assert len(marks) == 2 * GOOD_FRAMES and marks == sorted(marks)
    assert list(rejected.values()) == [1]
    assert "first at line 58" in caplog.text


def test_an_over_long_line_across_chunks_is_skipped_and_the_next_line_kept(
        tmp_path, monkeypatch):
    from otel_benchlab.receivers import stored

    session = write_seed(tmp_path, b'{"ts_ns": 5, "x": "' + b"a" * 5000 + b'"}', where=3)
    monkeypatch.setattr(stored, "CHUNK_BYTES", 256)
    monkeypatch.setattr(stored, "MAX_LINE_BYTES", 1000)
    rejected: dict[str, int] = {}
    tables = list(stored._jsonl_tables(session / "raw" / "pipeline.jsonl", rejected))
    assert sum(t.num_rows for t in tables) == 2 * GOOD_FRAMES
    assert list(rejected.values()) == [1]
