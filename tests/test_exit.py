"""Exit is quick and honest: with no collector listening, or one that never answers, the
agent closes its files, waits at most otlp.flush_timeout_s (2 s) for the network, says
what was not delivered, and a second SIGINT stops even that wait."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from .servers import BlackHole, free_port
from .test_end_to_end import agent_cmd, agent_env, wait_started

pytestmark = pytest.mark.e2e


def start(tmp_path, endpoint: str, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        agent_cmd("--simulate", "--data-root", str(tmp_path), "--session", "s",
                  "--prom-bind", "off", *args),
        env=agent_env(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_METRIC_EXPORT_INTERVAL="500"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_started(proc)
    return proc


def finish(proc: subprocess.Popen) -> tuple[float, str, str]:
    t0 = time.monotonic()
    out, err = proc.communicate(timeout=60)
    return time.monotonic() - t0, out, err


def assert_closed(tmp_path) -> dict:
    session = tmp_path / "sessions" / "s"
    manifest = json.loads((session / "session.json").read_text())
    assert manifest["ended_at"] and manifest["end_reason"] == "stopped"
    assert list((session / "aligned").glob("part-*.parquet"))
    assert not list(session.rglob(".journal-*")) and not list(session.rglob("*.tmp"))
    return manifest


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_with_no_collector_exits_within_the_flush_deadline(tmp_path, sig):
    proc = start(tmp_path, f"http://127.0.0.1:{free_port()}")
    time.sleep(3)
    proc.send_signal(sig)
    took, out, err = finish(proc)
    assert proc.returncode == 0, err[-2000:]
    assert took < 4.0, f"exit took {took:.1f} s"
    assert "not delivered at exit" in err and "not delivered at exit" in out
    manifest = assert_closed(tmp_path)
    assert manifest["summary"]["undelivered"]["spans"] > 0


def test_duration_ends_measuring_on_time_and_exits_within_the_deadline(tmp_path):
    t0 = time.monotonic()
    proc = start(tmp_path, f"http://127.0.0.1:{free_port()}", "--duration", "3")
    started = time.monotonic()
    took, _, err = finish(proc)
    assert proc.returncode == 0, err[-2000:]
    assert started - t0 + took < 3 + 4.0 + 2.5  # start-up (imports), 3 s, at most the flush
    assert took < 3 + 3.0  # 3 s measuring, at most 2 s flush, closing
    assert_closed(tmp_path)


def test_a_second_sigint_stops_waiting_for_a_collector_that_never_answers(tmp_path):
    hole = BlackHole().start()
    try:
        proc = start(tmp_path, f"http://127.0.0.1:{hole.port}")
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)  # files are closed by now; the agent waits on the network
        t1 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert time.monotonic() - t1 < 1.0
        assert proc.returncode == 0, err[-2000:]
        assert "Traceback" not in err
        assert_closed(tmp_path)
    finally:
        hole.stop()


def test_sigint_during_start_up_leaves_nothing_behind(tmp_path):
    proc = subprocess.Popen(agent_cmd("--simulate", "--data-root", str(tmp_path),
                                      "--prom-bind", "off"),
                            env=agent_env(OTEL_TRACES_EXPORTER="none",
                                          OTEL_METRICS_EXPORTER="none"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The first log line comes while the receivers are being built (the emulated meter
    # has just opened), after the agent took over SIGINT: a fixed sleep instead landed in
    # the interpreter's own imports on a loaded machine, where any Python program prints
    # KeyboardInterrupt's traceback.
    first = proc.stderr.readline()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "BENCHLAB" in first, first
    assert "Traceback" not in err and proc.returncode == 0, err[-2000:]
    sessions = tmp_path / "sessions"
    leftovers = [p for p in sessions.iterdir()] if sessions.exists() else []
    # Either interrupted before the session existed, or it ran and closed properly.
    for s in leftovers:
        assert json.loads((s / "session.json").read_text())["ended_at"]


def test_a_start_that_fails_leaves_no_session_folder(tmp_path):
    with __import__("socket").socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run(agent_cmd("--simulate", "--duration", "1", "--data-root",
                                       str(tmp_path), "--prom-bind", f"127.0.0.1:{port}"),
                             env=agent_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and f"127.0.0.1:{port}" in out.stderr
    assert not (tmp_path / "sessions").exists() or not any((tmp_path / "sessions").iterdir())


def test_an_unwritable_data_root_stops_start_up_naming_it(tmp_path):
    root = tmp_path / "root"
    root.write_text("a file, not a folder")
    out = subprocess.run(agent_cmd("--simulate", "--duration", "1", "--data-root", str(root),
                                   "--prom-bind", "off"),
                         env=agent_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and str(root) in out.stderr and "Traceback" not in out.stderr


def test_a_folder_left_empty_by_a_failed_start_is_reused_by_the_same_session(tmp_path):
    from otel_benchlab.session.folder import Session

    (tmp_path / "sessions" / "s" / "raw" / "marks").mkdir(parents=True)
    session = Session(tmp_path, "s")
    session.create()  # no "already exists": nothing was ever written there
    session.release()
    (session.path / "session.json").write_text("{}")
    with pytest.raises(Exception, match="already exists"):
        Session(tmp_path, "s").create()


def _waited_s(err: str) -> float:
    line = next(ln for ln in err.splitlines() if "not delivered at exit" in ln)
    return float(line.split("waited ")[1].split(" s")[0])


def test_a_collector_that_refuses_connections_is_not_waited_for(tmp_path):
    proc = start(tmp_path, f"http://127.0.0.1:{free_port()}")
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    took, _, err = finish(proc)
    assert proc.returncode == 0, err[-2000:]
    assert "not waiting for the OTLP flush" in err
    assert _waited_s(err) < 1.0  # the flush deadline is 2 s
    assert assert_closed(tmp_path)["summary"]["undelivered"]["spans"] > 0


def test_a_collector_that_accepts_and_hangs_still_gets_the_flush_deadline(tmp_path):
    hole = BlackHole().start()
    try:
        proc = start(tmp_path, f"http://127.0.0.1:{hole.port}")
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        took, _, err = finish(proc)
    finally:
        hole.stop()
    assert proc.returncode == 0, err[-2000:]
    assert "not waiting" not in err
    assert _waited_s(err) >= 2.0 and took >= 2.0


def test_with_no_collector_the_sdks_exporter_lines_are_debug_and_ours_said_once(tmp_path):
    proc = start(tmp_path, f"http://127.0.0.1:{free_port()}")
    time.sleep(4.0)  # a metric export every 0.5 s, each refused (slack for a busy host)
    proc.send_signal(signal.SIGINT)
    _, _, err = finish(proc)
    assert proc.returncode == 0, err[-2000:]
    assert "opentelemetry.exporter" not in err  # no "Transient error", "Failed to export"
    ours = [ln for ln in err.splitlines() if "export.failures" in ln]
    assert sorted(ln.split("[")[1].split("]")[0] for ln in ours) == ["signal=metrics",
                                                                   "signal=traces"]
    assert all("OTEL_TRACES_EXPORTER=none" in ln for ln in ours)


def test_the_sdks_exporter_lines_show_with_log_level_debug(tmp_path):
    proc = start(tmp_path, f"http://127.0.0.1:{free_port()}", "--log-level", "debug")
    time.sleep(2.5)
    proc.send_signal(signal.SIGINT)
    _, _, err = finish(proc)
    assert proc.returncode == 0, err[-2000:]
    sdk = [ln for ln in err.splitlines() if "opentelemetry.exporter.otlp" in ln]
    assert sdk and all(" DEBUG " in ln for ln in sdk)
