"""Found by an attack pass, kept as tests: settings that parse but cannot work, writes
through links, a wide Prometheus bind, and a disk that is full when the agent closes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from otel_benchlab.config import ConfigError, load_config

from .test_bad_input import write_seed
from .test_disk_full import fill
from .test_end_to_end import agent_cmd, agent_env, wait_started


@pytest.mark.parametrize("toml,key", [
    ("[sim]\nfps = 1e9", "sim.fps"),
    ("[sim]\nfps = inf", "fps"),
    ("[sim]\nfps = nan", "fps"),
    ("sample_hz = nan", "sample_hz"),
    ("sample_hz = inf", "sample_hz"),
    ("sample_hz = 0", "sample_hz"),
    ("pair_window_s = nan", "pair_window_s"),
    ("[capframex]\nsample_time_ms = 0", "capframex.sample_time_ms"),
    ("pairs = []", "pairs"),
    ("queue_size = 0", "queue_size"),
    ("[sim]\nstage_latency_ms = [8.0, -1.0]", "sim.stage_latency_ms[1]"),
    ("[traces]\nlatency_targets_s = { \"a->b\" = 0 }", "traces.latency_targets_s"),
    ("[otlp]\nflush_timeout_s = 1e6", "otlp.flush_timeout_s"),
])
def test_numbers_that_cannot_work_are_refused_naming_the_key(tmp_path, toml, key):
    f = tmp_path / "a.toml"
    f.write_text(toml + "\n")
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_config(str(f), env={})


def test_a_config_file_that_is_not_utf8_is_refused_naming_it(tmp_path):
    f = tmp_path / "latin1.toml"
    f.write_bytes('pairs = [["caf\xe9", "b"]]\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="latin1.toml: not UTF-8"):
        load_config(str(f), env={})


def test_duration_nan_on_the_command_line_exits_2(tmp_path):
    out = subprocess.run(agent_cmd("--simulate", "--duration", "nan", "--data-root",
                                   str(tmp_path)), env=agent_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "duration" in out.stderr and "finite" in out.stderr
    assert not (tmp_path / "sessions").exists()


def test_replay_never_writes_or_deletes_through_a_link_it_was_not_given(tmp_path):
    session = write_seed(tmp_path, b"")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "aligned").mkdir(parents=True)
    precious = elsewhere / "aligned" / "part-000001.parquet"
    precious.write_bytes(b"someone else's data")
    (session / "replay").symlink_to(elsewhere)
    for extra in ([], ["--force"]):
        out = subprocess.run(agent_cmd("replay", str(session), "--pair", "A", "B", *extra),
                             env=agent_env(), capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "symbolic link" in out.stderr
    assert precious.read_bytes() == b"someone else's data"
    assert sorted(p.name for p in elsewhere.rglob("*")) == ["aligned", "part-000001.parquet"]


def test_replay_writes_through_a_link_the_user_named(tmp_path):
    session = write_seed(tmp_path, b"")
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    out = subprocess.run(agent_cmd("replay", str(session), "--pair", "A", "B", "--out",
                                   str(tmp_path / "link")),
                         env=agent_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert ds.dataset(tmp_path / "real" / "aligned").to_table().num_rows == 100


def test_force_removes_only_what_replay_wrote(tmp_path):
    session = write_seed(tmp_path, b"")
    cmd = agent_cmd("replay", str(session), "--pair", "A", "B")
    assert subprocess.run(cmd, env=agent_env(), capture_output=True, timeout=60).returncode == 0
    notes = session / "replay" / "capframex" / "my-notes.txt"
    notes.write_text("mine")
    again = subprocess.run(cmd + ["--force"], env=agent_env(), capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 0, again.stderr
    assert notes.read_text() == "mine"
    assert ds.dataset(session / "replay" / "aligned").to_table().num_rows == 100
    foreign = session / "replay" / "aligned" / "theirs.parquet"
    foreign.write_bytes(b"x")
    third = subprocess.run(cmd + ["--force"], env=agent_env(), capture_output=True, text=True,
                           timeout=60)
    assert third.returncode == 2 and "did not write" in third.stderr and foreign.exists()


def listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a socket listening on ``port``, from /proc/net/tcp."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        ip_hex, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            out.add(".".join(str(b) for b in reversed(bytes.fromhex(ip_hex))))
    return out


def _prom_agent(tmp_path, bind: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(agent_cmd("--simulate", "--data-root", str(tmp_path),
                                      "--prom-bind", bind),
                            env=agent_env(OTEL_TRACES_EXPORTER="none",
                                          OTEL_METRICS_EXPORTER="none"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, wait_started(proc)["Prometheus"]


def test_a_port_alone_listens_on_loopback_only(tmp_path):
    from .servers import free_port

    port = free_port()
    proc, url = _prom_agent(tmp_path, str(port))
    try:
        assert url == f"http://127.0.0.1:{port}/metrics"
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def test_binding_wider_than_loopback_says_so_once(tmp_path):
    from .servers import free_port

    proc, _ = _prom_agent(tmp_path, f"0.0.0.0:{free_port()}")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert err.count("reachable from other machines") == 1


@pytest.mark.e2e
def test_a_disk_full_at_exit_still_closes_every_file_and_names_them(small_disk, tmp_path):
    proc = subprocess.Popen(
        agent_cmd("--simulate", "--data-root", str(small_disk / "data"), "--session", "s",
                  "--prom-bind", "off"),
        env=agent_env(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_started(proc)
    time.sleep(3)
    filler = fill(small_disk, 0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    session = small_disk / "data" / "sessions" / "s"
    assert proc.returncode == 1 and "Traceback" not in err
    assert "No space left on device" in err and str(session) in err
    assert "recover" in err  # says how to finish the job
    assert not list(session.rglob("*.tmp"))
    filler.unlink()
    out = subprocess.run(agent_cmd("recover", str(session)), env=agent_env(),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    manifest = json.loads((session / "session.json").read_text())
    assert manifest["ended_at"] and not list(session.rglob(".journal-*"))
    rows = sum(1 for _ in session.rglob("part-*.parquet"))
    assert rows > 0 and os.path.exists(session / "raw" / "marks")
