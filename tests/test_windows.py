"""--since and --until of report, compare and replay: times read as ISO 8601 with an offset
or as a duration back from the session's end, exactly the rows in the window, only the
parts that hold some of them read, and a window that misses the session is exit 2 naming
the session's range. A running session is reported as running, with the agent's counts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from benchmarks.report_speed import make_session
from otel_benchlab.receivers import stored_parts
from otel_benchlab.session.window import iso, parse_time
from otel_benchlab.settings import ConfigError
from otel_benchlab.views.sessions import load_session
from otel_benchlab.views.summary import session_summary

from .test_end_to_end import agent_cmd, agent_env

PARTS = 6


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    """Two pairs, four streams, ~21 s of frames in six parts of consecutive time."""
    folder = make_session(tmp_path_factory.mktemp("w") / "s", 40_000, seed=1)
    one = folder / "aligned" / "part-000001.parquet"
    table = pq.read_table(one)
    table = table.take(pc.sort_indices(table["end_unix_ns"]))
    one.unlink()
    size = -(-table.num_rows // PARTS)
    for i in range(PARTS):
        pq.write_table(table.slice(i * size, size),
                       folder / "aligned" / f"part-{i + 1:06d}.parquet")
    return folder


def all_ends(folder: Path) -> np.ndarray:
    return pq.read_table(folder / "aligned", columns=["end_unix_ns"])[
        "end_unix_ns"].to_numpy()


def frames(view) -> int:
    return sum(len(p.latency_ms) for p in view.pairs)


def test_a_time_is_iso_8601_with_an_offset_or_z():
    assert parse_time("2026-12-07T14:00:00Z", "--since", None) == 1796652000 * 10**9
    assert parse_time("2026-12-07T15:00:00+01:00", "--since", None) == 1796652000 * 10**9


def test_a_duration_counts_back_from_the_sessions_end():
    end = 10**18
    assert parse_time("1h", "--since", end) == end - 3600 * 10**9
    assert parse_time("1h30m", "--since", end) == end - 5400 * 10**9
    assert parse_time("90s", "--until", end) == end - 90 * 10**9


@pytest.mark.parametrize("text", ["yesterday", "2026-12-07T14:00:00", "5 parsecs"])
def test_an_unreadable_time_names_its_flag(text):
    with pytest.raises(ConfigError, match="--until"):
        parse_time(text, "--until", 10**18)


def test_since_and_until_select_exactly_the_rows_in_the_window(session):
    ends = np.sort(all_ends(session))
    since, until = int(ends[len(ends) // 3]), int(ends[2 * len(ends) // 3])
    view = load_session(session, since=iso(since), until=iso(until))
    # the window as given: times to the millisecond
    lo, hi = parse_time(iso(since), "", None), parse_time(iso(until), "", None)
    expected = int(((ends >= lo) & (ends < hi)).sum())
    assert frames(view) == expected > 0


def test_only_the_parts_that_hold_rows_of_the_window_are_read(session, monkeypatch):
    read = []
    real = stored_parts.pq.read_table

    def spy(path, *args, **kwargs):
        read.append(Path(path).parent.name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(stored_parts.pq, "read_table", spy)
    load_session(session, since="2s")
    assert read.count("aligned") == 1  # the newest part; 2 s is a tenth of it
    read.clear()
    load_session(session)
    assert read.count("aligned") == PARTS


def test_a_window_outside_the_session_is_exit_2_naming_its_range(session):
    proc = subprocess.run([sys.executable, "-m", "otel_benchlab", "report", str(session),
                           "--since", "2020-01-01T00:00:00Z", "--until",
                           "2020-01-02T00:00:00Z", "-o", str(session.parent / "r.html")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    ends = all_ends(session)
    assert "outside the session" in proc.stderr and iso(int(ends.max())) in proc.stderr


def test_the_reports_header_and_json_show_the_window(session, tmp_path):
    out, js = tmp_path / "r.html", tmp_path / "r.json"
    subprocess.run([sys.executable, "-m", "otel_benchlab", "report", str(session),
                    "--since", "5s", "-o", str(out), "--json", str(js)], check=True,
                   capture_output=True, timeout=120)
    s = json.loads(js.read_text())["sessions"][0]
    assert s["window"]["since"] == iso(int(all_ends(session).max()) - 5 * 10**9)
    assert s["window"]["until"] is None
    assert "<th>Window</th>" in out.read_text()


def test_a_pair_without_rows_in_the_window_is_listed_as_empty(session):
    table = pq.read_table(session / "aligned")
    infer = table.filter(pc.equal(table["stage_from"], "infer"))
    first = int(pc.min(infer["end_unix_ns"]).as_py())
    view = load_session(session, until=iso(first - 10**6))  # before infer->encode's first
    s = session_summary(view)
    assert s["empty_pairs"] == [["infer", "encode"]]
    assert all(p["from"] == "decode" for p in s["pairs"])


def test_compare_takes_a_window_per_side(session, tmp_path):
    js = tmp_path / "c.json"
    proc = subprocess.run([sys.executable, "-m", "otel_benchlab", "compare", str(session),
                           str(session), "--baseline-until", "10s", "--since", "10s",
                           "--json", str(js)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(js.read_text())
    end = int(all_ends(session).max())
    assert result["windows"]["baseline"] == {"since": None, "until": iso(end - 10**10)}
    assert result["windows"]["candidate"] == {"since": iso(end - 10**10), "until": None}
    ends = all_ends(session)
    n_base = sum(p["frames"][0] for p in result["pairs"])
    n_cand = sum(p["frames"][1] for p in result["pairs"])
    cut = end - 10**10  # a duration counts back from the end to the nanosecond
    assert (n_base, n_cand) == (int((ends < cut).sum()), int((ends >= cut).sum()))


@pytest.mark.e2e
def test_replay_of_a_window_takes_only_its_marks(tmp_path):
    data = tmp_path / "data"
    subprocess.run(agent_cmd("--simulate", "--duration", "8", "--data-root", str(data),
                             "--session", "r"),
                   env=agent_env(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none"),
                   check=True, capture_output=True, timeout=120)
    session = data / "sessions" / "r"
    marks = pq.read_table(session / "raw" / "marks", columns=["ts_unix_ns"])
    end = int(pc.max(marks["ts_unix_ns"]).as_py())
    cut = parse_time(iso(end - 3 * 10**9), "", None)
    subprocess.run([sys.executable, "-m", "otel_benchlab", "replay", str(session),
                    "--since", "3s", "--out", str(tmp_path / "out")], check=True,
                   capture_output=True, timeout=120)
    spans = pq.read_table(tmp_path / "out" / "aligned", columns=["start_unix_ns"])
    assert spans.num_rows > 0
    assert int(pc.min(spans["start_unix_ns"]).as_py()) >= cut


@pytest.mark.e2e
def test_a_running_session_is_reported_as_running_with_the_agents_counts(tmp_path):
    data = tmp_path / "data"
    proc = subprocess.Popen(agent_cmd("--simulate", "--duration", "30", "--data-root",
                                      str(data), "--session", "live"),
                            env=agent_env(OTEL_TRACES_EXPORTER="none",
                                          OTEL_METRICS_EXPORTER="none"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        session = data / "sessions" / "live"
        deadline = time.monotonic() + 60
        while not (session / ".progress.json").exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(6)  # a second count, and parts and journals to read
        js = tmp_path / "r.json"
        for _ in range(4):  # until no new count came while the report was made
            progress = json.loads((session / ".progress.json").read_text())
            subprocess.run([sys.executable, "-m", "otel_benchlab", "report", str(session),
                            "-o", str(tmp_path / "r.html"), "--json", str(js)], check=True,
                           capture_output=True, timeout=120)
            if json.loads((session / ".progress.json").read_text()) == progress:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    s = json.loads(js.read_text())["sessions"][0]
    assert s["running"] and s["end_reason"].startswith("running") and not s["crashed"]
    assert s["end_reason"] == f"running (as of {progress['as_of']})"
    assert s["losses"]["unpaired"] == progress["summary"]["unpaired"]
    assert s["losses"]["queue_dropped"] == progress["summary"]["queue_dropped"]
    assert sum(p["frames"] for p in s["pairs"]) > 0
    assert 'class="badge">running' in (tmp_path / "r.html").read_text()
    assert not (session / ".progress.json").exists()  # the end is in session.json now


def test_a_window_keeps_the_power_of_parts_without_wall_clock_times(session):
    # make_session's samples, as an older agent's, have no ts_unix_ns: read whole.
    assert "ts_unix_ns" not in pq.read_schema(
        next((session / "raw" / "samples").glob("part-*"))).names
    view = load_session(session, since="5s")
    assert len(view.power["sys"][0]) == len(load_session(session).power["sys"][0]) > 0
