"""A full disk, then space freed: writes resume, nothing on disk is corrupt, and the failed
writes are counted. The disk is a real tmpfs of a few megabytes (mounting needs root)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pyarrow.parquet as pq
import pytest

from otel_benchlab.receivers.stored import read_session

from .test_crash import STAGES
from .test_end_to_end import agent_cmd, agent_env, wait_started

pytestmark = pytest.mark.e2e


def fill(mnt, leave_bytes: int):
    filler = mnt / "filler"
    st = os.statvfs(mnt)
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave_bytes))
    return filler


def test_full_disk_then_space_freed_resumes_and_loses_nothing(small_disk, tmp_path):
    cfg = tmp_path / "disk.toml"
    cfg.write_text("[sim]\nmark_loss = 0.0\n[parquet]\npart_seconds = 1.0\n")
    proc = subprocess.Popen(
        agent_cmd("--simulate", "--data-root", str(small_disk / "data"), "--session", "s",
                  "--prom-bind", "off", "--config", str(cfg)),
        env=agent_env(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_started(proc)
    filler = fill(small_disk, 64 << 10)
    time.sleep(5)  # writes fail: parts, journals, CapFrameX's pending files
    filler.unlink()
    time.sleep(4)  # space again: the kept rows are written
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    session = small_disk / "data" / "sessions" / "s"
    manifest = json.loads((session / "session.json").read_text())
    assert manifest["ended_at"] and manifest["summary"]["write_errors"] > 0
    assert "No space left on device" in err and "work again" in err
    for part in session.rglob("part-*.parquet"):
        pq.read_table(part)  # nothing corrupt
    assert not list(session.rglob("*.tmp")) and not list(session.rglob(".journal-*"))
    marks = read_session(session).marks.to_pandas()
    per_frame = marks.groupby("frame").size()
    last = int(per_frame.index.max())
    # Not one mark lost across the full stretch: the rows were kept and written later.
    assert set(per_frame.index) >= set(range(last - 1))
    assert (per_frame.loc[: last - 2] == STAGES).all()
