"""A 60 s simulated session with uploads to a real S3 protocol (moto's server on loopback),
at the uploader's default settings. The store goes away from 18 s to 38 s (connections
refused, live ones cut) and comes back: everything the session wrote arrives, byte for
byte, each file once, the failures are counted, and the agent's own files do not notice.

conftest.py starts the run in the background once tests are collected (it mostly waits)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from prometheus_client.parser import text_string_to_metric_families

from otel_benchlab.fleet.outbox import OUTBOX_NAME, Outbox

from .s3 import CREDENTIALS, MotoS3, TcpGate, expected_objects
from .servers import free_port
from .test_end_to_end import agent_cmd, agent_env, wait_started

pytestmark = pytest.mark.e2e
SECONDS = 60
# Tries back off 1, 2, 4, 8, 16 s from the first failure (a part closes within 5 s of the
# outage's start), so the try after the outage comes at most ~36 s after it began: the
# outbox has drained well before the last scrape at 58 s.
DOWN_AT_S, UP_AT_S = 18, 38
BUCKET = "fleet"


@dataclass
class UploadRun:
    rc: int
    stderr: str
    session: Path
    objects: dict[str, bytes]
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # moment -> series
    exit_s: float = 0.0  # from the agent's stop to its exit


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            if s.name.startswith("benchlab_agent_upload"):
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())
                                  if k in ("reason",))
                out[s.name + (f"{{{labels}}}" if labels else "")] = s.value
    return out


def start_upload_session(workdir: str) -> UploadRun:
    tmp = Path(workdir)
    moto = MotoS3(tmp / "moto").start()
    gate = TcpGate(moto.port).up()
    try:
        moto.create_bucket(BUCKET)
        cfg = tmp / "agent.toml"
        cfg.write_text(f'[parquet]\npart_seconds = 5\n[upload]\nuri = "s3://{BUCKET}/lab"\n'
                       f'endpoint = "{gate.endpoint}"\n')
        port = free_port()
        proc = subprocess.Popen(
            agent_cmd("--simulate", "--duration", str(SECONDS), "--data-root",
                      str(tmp / "data"), "--session", "upload60", "--prom-bind",
                      f"127.0.0.1:{port}", "--config", str(cfg)),
            env=agent_env(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
                          **CREDENTIALS),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_started(proc)
        t0 = time.monotonic()
        metrics = {}
        for at, action in ((DOWN_AT_S, gate.down), (UP_AT_S - 3, None), (UP_AT_S, gate.up),
                           (SECONDS - 2, None)):
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            if action is not None:
                action()
            else:
                metrics[f"at {at} s"] = _scrape(port)
        stop_at = t0 + SECONDS
        _, stderr = proc.communicate(timeout=SECONDS + 60)
        exit_s = time.monotonic() - stop_at
        return UploadRun(proc.returncode, stderr, tmp / "data" / "sessions" / "upload60",
                         moto.objects(BUCKET), metrics, exit_s)
    finally:
        gate.down()
        moto.stop()


@pytest.fixture(scope="module")
def run(upload_session_result) -> UploadRun:
    return upload_session_result


def test_the_session_ends_cleanly(run):
    assert run.rc == 0, run.stderr[-3000:]


def test_everything_the_session_wrote_arrives_byte_identical(run):
    assert len(list((run.session / "aligned").glob("part-*.parquet"))) >= 10  # 5 s parts
    assert any(not p.name.startswith(".") for p in (run.session / "capframex").iterdir())
    expected = expected_objects(run.session)
    assert set(run.objects) == set(expected)  # nothing missing, nothing under another key
    differ = [k for k in expected if run.objects[k] != expected[k]]
    assert not differ


def test_each_file_went_exactly_once_and_the_outbox_is_empty(run):
    lines = [json.loads(x) for x in (run.session / OUTBOX_NAME).read_text().splitlines()]
    done = [x["done"] for x in lines if "done" in x]
    parts = [d for d in done if d.endswith(".parquet")]
    assert len(parts) == len(set(parts))
    assert done.count("session.json") == 2  # at the start, and again with the end
    assert Outbox.open(run.session).pending() == []


def test_a_20_s_outage_is_counted_and_files_wait_in_the_outbox(run):
    during = run.metrics[f"at {UP_AT_S - 3} s"]
    assert during["benchlab_agent_upload_failures_total{reason=unreachable}"] >= 2
    assert during["benchlab_agent_upload_outbox_files"] >= 6  # 3 kinds, a part each 5 s
    assert during["benchlab_agent_upload_lag_seconds"] > 10
    assert during["benchlab_agent_upload_outbox_size_bytes"] > 0


def test_the_outbox_drains_after_the_store_comes_back(run):
    after = run.metrics[f"at {SECONDS - 2} s"]
    assert after["benchlab_agent_upload_outbox_files"] <= 3  # the parts closing just now
    assert after["benchlab_agent_upload_lag_seconds"] < 10
    assert after["benchlab_agent_upload_bytes_total"] > 0
    assert run.exit_s < 10  # the end's files went within upload.flush_timeout_s


def test_the_outage_is_one_warning_and_one_line_when_it_ends(run):
    assert run.stderr.count("cannot upload") == 1, run.stderr[-3000:]
    assert run.stderr.count("work again") == 1


def test_the_agents_own_files_are_unaffected_by_the_outage(run):
    summary = json.loads((run.session / "session.json").read_text())["summary"]
    assert summary["write_errors"] == 0 and summary["queue_dropped"] == 0
    rows = sum(pq.ParquetFile(p).metadata.num_rows
               for p in (run.session / "aligned").glob("part-*.parquet"))
    marks = sum(pq.ParquetFile(p).metadata.num_rows
                for p in (run.session / "raw" / "marks").glob("part-*.parquet"))
    assert rows == summary["spans"] and marks == summary["marks"]
