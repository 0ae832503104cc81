"""Uploads to Google Cloud Storage's API (gcp-storage-emulator on loopback, reached through
STORAGE_EMULATOR_HOST as the Google client libraries are): the same layout and bytes as
S3, and a missing bucket is one log line. (The emulator does not answer folder listings,
so `sessions` over GCS is not tested here; S3 and the plain path test it.)"""

from __future__ import annotations

import subprocess

import pytest

from otel_benchlab.fleet.outbox import Outbox

from .s3 import GcsEmulator, expected_objects
from .test_end_to_end import agent_cmd, agent_env

pytestmark = pytest.mark.e2e


@pytest.fixture
def gcs(tmp_path):
    server = GcsEmulator(tmp_path / "gcs", "benchlab-fleet").start()
    yield server
    server.stop()


def _agent(tmp_path, gcs: GcsEmulator, bucket: str) -> str:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[parquet]\npart_seconds = 1\n[upload]\nuri = "gs://{bucket}/lab"\n'
                   'retry_max_s = 1\nflush_timeout_s = 2\n')
    proc = subprocess.run(
        agent_cmd("--simulate", "--duration", "4", "--data-root", str(tmp_path / "data"),
                  "--session", "g1", "--prom-bind", "off", "--config", str(cfg)),
        env=agent_env(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
                      STORAGE_EMULATOR_HOST=gcs.endpoint),
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def test_a_session_arrives_in_gcs_byte_identical(tmp_path, gcs):
    _agent(tmp_path, gcs, gcs.bucket)
    session = tmp_path / "data" / "sessions" / "g1"
    box = Outbox.open(session)
    assert box.pending() == []
    assert gcs.objects() == expected_objects(session)


def test_a_missing_gcs_bucket_is_one_log_line(tmp_path, gcs):
    stderr = _agent(tmp_path, gcs, "no-such-bucket")
    assert stderr.count("refuses uploads") == 1, stderr[-3000:]
    assert Outbox.open(tmp_path / "data" / "sessions" / "g1").pending()
