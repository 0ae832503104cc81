"""Uploads when things go wrong: the agent killed (``kill -9``) in the middle of an upload
and started again, a store that refuses the agent's credentials, and a bucket that does
not exist. Real processes against moto's S3 server on loopback."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from otel_benchlab.fleet.outbox import OUTBOX_NAME, Outbox

from .s3 import CREDENTIALS, MotoS3, TcpGate, expected_objects
from .test_end_to_end import agent_cmd, agent_env, wait_started

pytestmark = pytest.mark.e2e
BUCKET = "fleet"


def _config(tmp: Path, endpoint: str, extra: str = "") -> Path:
    cfg = tmp / "agent.toml"
    cfg.write_text(f'[parquet]\npart_seconds = 1\n[upload]\nuri = "s3://{BUCKET}/lab"\n'
                   f'endpoint = "{endpoint}"\n{extra}')
    return cfg


def _agent(tmp: Path, cfg: Path, session: str, duration: float | None = None,
           **env: str) -> subprocess.Popen:
    args = ["--simulate", "--data-root", str(tmp / "data"), "--session", session,
            "--prom-bind", "off", "--config", str(cfg)]
    if duration is not None:
        args += ["--duration", str(duration)]
    return subprocess.Popen(agent_cmd(*args),
                            env=agent_env(OTEL_TRACES_EXPORTER="none",
                                          OTEL_METRICS_EXPORTER="none", **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def moto(tmp_path):
    server = MotoS3(tmp_path / "moto").start()
    yield server
    server.stop()


def test_kill_9_during_an_upload_then_a_restart_loses_nothing_and_copies_nothing(
        tmp_path, moto):
    moto.create_bucket(BUCKET)
    slow = TcpGate(moto.port, bps=60_000).up()
    first = _agent(tmp_path, _config(tmp_path, slow.endpoint), "killed", **CREDENTIALS)
    wait_started(first)
    time.sleep(4)  # parts close every second; at 60 kB/s the uploader is always busy
    deadline = time.monotonic() + 10
    while not slow.uploading() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert slow.uploading()
    first.kill()  # SIGKILL, mid-request
    first.communicate()
    slow.down()
    killed = tmp_path / "data" / "sessions" / "killed"
    assert Outbox.open(killed).pending()  # what was under way, and what waited
    second = _agent(tmp_path, _config(tmp_path, moto.endpoint), "after", duration=3,
                    **CREDENTIALS)
    _, stderr = second.communicate(timeout=60)
    assert second.returncode == 0, stderr[-3000:]
    objects = moto.objects(BUCKET)
    expected = {**expected_objects(killed), **expected_objects(tmp_path / "data" /
                                                                 "sessions" / "after")}
    assert set(objects) == set(expected)
    assert all(objects[k] == v for k, v in expected.items())
    assert Outbox.open(killed).pending() == []
    # The recovered manifest (its end recorded as a crash) replaced the first one.
    stored = json.loads(objects[next(k for k in objects if "killed" in k and
                                     k.endswith("_session.json"))])
    assert stored["end_reason"] == "crash"


def _run_refused(tmp_path: Path, moto: MotoS3, **env: str) -> tuple[str, Path]:
    # Tries every second while refused (the default is every 5 minutes): many refusals,
    # still one line.
    cfg = _config(tmp_path, moto.endpoint, "retry_max_s = 1\nflush_timeout_s = 1\n")
    proc = _agent(tmp_path, cfg, "refused", duration=5, **env)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-3000:]
    return stderr, tmp_path / "data" / "sessions" / "refused"


def _recorded_locally(session: Path) -> None:
    # Parts close every second; aligned rows wait a few seconds for their energy share.
    assert len(list((session / "raw" / "samples").glob("part-*.parquet"))) >= 3
    assert list((session / "aligned").glob("part-*.parquet"))
    assert json.loads((session / "session.json").read_text())["end_reason"] == "stopped"
    waiting = {p.relpath for p in Outbox.open(session).pending()}
    assert "session.json" in waiting and any(r.startswith("aligned/") for r in waiting)


def test_wrong_credentials_are_one_log_line_and_the_session_is_kept_locally(tmp_path):
    strict = MotoS3(tmp_path / "moto", check_credentials=True).start()
    try:
        stderr, session = _run_refused(tmp_path, strict, **{**CREDENTIALS,
                                                            "AWS_ACCESS_KEY_ID": "wrong"})
    finally:
        strict.stop()
    assert stderr.count("refuses uploads") == 1, stderr[-3000:]
    assert "INVALID_ACCESS_KEY_ID" in stderr
    _recorded_locally(session)


def test_a_missing_bucket_is_one_log_line_and_the_session_is_kept_locally(tmp_path, moto):
    stderr, session = _run_refused(tmp_path, moto, **CREDENTIALS)
    assert stderr.count("refuses uploads") == 1, stderr[-3000:]
    assert "NO_SUCH_BUCKET" in stderr
    _recorded_locally(session)
    assert (session / OUTBOX_NAME).exists()


def test_files_left_at_exit_go_with_the_next_start(tmp_path, moto):
    """A store that refused at the last session's end (the bucket made afterwards): the
    next agent sends them before its own."""
    _run_refused(tmp_path, moto, **CREDENTIALS)
    moto.create_bucket(BUCKET)
    proc = _agent(tmp_path, _config(tmp_path, moto.endpoint), "next", duration=2,
                  **CREDENTIALS)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-3000:]
    refused = tmp_path / "data" / "sessions" / "refused"
    assert Outbox.open(refused).pending() == []
    objects = moto.objects(BUCKET)
    assert all(objects.get(k) == v for k, v in expected_objects(refused).items())

