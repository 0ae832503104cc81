"""Retention and compaction on generated session trees: ages, an active session, symlinks
pointing outside, a dry run, compaction equal to the parts it replaced, and a crash in the
middle of a compaction."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from otel_benchlab.exporters.parquet import write_part
from otel_benchlab.session.compaction import COMPACT_SUFFIX, compact_folder, exchange
from otel_benchlab.session.retention import apply_retention

NOW = time.time()
DAY = 86400


def session(root: Path, name: str, ended_days_ago: float | None, parts: int = 3,
            rows: int = 5) -> Path:
    path = root / "sessions" / name
    for kind in ("raw/marks", "raw/samples", "aligned"):
        folder = path / kind
        folder.mkdir(parents=True)
        for n in range(parts):
            write_part(folder, pa.table({"x": list(range(n * rows, (n + 1) * rows)),
                                         "kind": [kind] * rows}), n)
    ended = None
    if ended_days_ago is not None:
        ended = dt.datetime.fromtimestamp(NOW - ended_days_ago * DAY, dt.timezone.utc)
    (path / "session.json").write_text(json.dumps({
        "session_id": name, "ended_at": ended.isoformat() if ended else None}))
    if ended_days_ago is not None:  # files as old as the session
        old = NOW - ended_days_ago * DAY
        for p in path.rglob("*"):
            os.utime(p, (old, old))
    return path


def rows(folder: Path) -> list[int]:
    return sorted(ds.dataset(folder).to_table()["x"].to_pylist())


def test_raw_goes_after_its_limit_and_sessions_after_theirs(tmp_path):
    young = session(tmp_path, "young", 1)
    middle = session(tmp_path, "middle", 10)
    old = session(tmp_path, "old", 100)
    result = apply_retention(tmp_path, days=90, raw_keep_days=7, now=NOW)
    assert (young / "raw").is_dir() and not (middle / "raw").exists() and not old.exists()
    assert (middle / "aligned").is_dir()
    assert result.sessions_removed == [old] and result.raw_removed == [middle / "raw"]
    assert result.freed_bytes > 0


def test_an_active_session_is_never_touched(tmp_path):
    alive = session(tmp_path, "alive", 200)
    fd = os.open(alive / ".agent.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        fresh = session(tmp_path, "fresh", None)  # no end recorded, written just now
        result = apply_retention(tmp_path, days=0.0, raw_keep_days=0.0, now=NOW + 60)
    finally:
        os.close(fd)
    assert alive.is_dir() and (alive / "raw").is_dir() and fresh.is_dir()
    assert len(list((alive / "aligned").glob("part-*"))) == 3  # not compacted either
    assert {p for p, _ in result.skipped} == {alive, fresh}


def test_a_crashed_session_ages_from_its_newest_file(tmp_path):
    crashed = session(tmp_path, "crashed", None)
    old = NOW - 100 * DAY
    for p in crashed.rglob("*"):
        os.utime(p, (old, old))
    apply_retention(tmp_path, days=90, raw_keep_days=7, now=NOW)
    assert not crashed.exists()


def test_symlinks_are_never_followed(tmp_path):
    outside = tmp_path / "outside"
    precious = session(outside, "precious", 500)
    (tmp_path / "data" / "sessions").mkdir(parents=True)
    (tmp_path / "data" / "sessions" / "link").symlink_to(precious)
    inner = session(tmp_path / "data", "inner", 10)
    shutil.rmtree(inner / "raw")
    (inner / "raw").symlink_to(precious / "raw")
    result = apply_retention(tmp_path / "data", days=90, raw_keep_days=7, now=NOW)
    assert rows(precious / "raw" / "marks") == list(range(15))
    assert (tmp_path / "data" / "sessions" / "link").is_symlink()
    assert any("symlink" in why for _, why in result.skipped)


def test_a_dry_run_changes_nothing(tmp_path):
    old = session(tmp_path, "old", 100)
    middle = session(tmp_path, "middle", 10)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    result = apply_retention(tmp_path, days=90, raw_keep_days=7, dry_run=True, now=NOW)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert result.sessions_removed == [old] and result.raw_removed == [middle / "raw"]
    assert (middle / "aligned", 3) in result.compacted


def test_compaction_holds_exactly_the_rows_of_the_parts_it_replaced(tmp_path):
    s = session(tmp_path, "s", 1, parts=4, rows=7)
    before = {k: rows(s / k) for k in ("raw/marks", "raw/samples", "aligned")}
    apply_retention(tmp_path, days=90, raw_keep_days=7, now=NOW)
    for kind, expected in before.items():
        assert [p.name for p in (s / kind).iterdir()] == ["part-000000.parquet"]
        assert rows(s / kind) == expected
    assert not list(s.rglob(f"*{COMPACT_SUFFIX}"))


@pytest.mark.parametrize("moment", ["before_exchange", "after_exchange"])
def test_a_crash_mid_compaction_leaves_readable_data_and_is_cleaned_next_time(tmp_path,
                                                                              moment):
    s = session(tmp_path, "s", 1, parts=3)
    folder = s / "aligned"
    expected = rows(folder)
    tmp = folder.with_name("aligned" + COMPACT_SUFFIX)
    tmp.mkdir()
    write_part(tmp, ds.dataset(folder).to_table(), 0)
    if moment == "after_exchange":
        exchange(tmp, folder)  # the crash came before the old parts were removed
    assert rows(folder) == expected  # a reader sees all of it, either way
    compact_folder(folder)
    assert not tmp.exists() and rows(folder) == expected
    assert len(list(folder.glob("part-*"))) == 1


def test_the_retention_command_reports_what_it_did(tmp_path):
    session(tmp_path, "old", 100)
    proc = subprocess.run([sys.executable, "-m", "otel_benchlab", "retention", "--data-root",
                           str(tmp_path), "--days", "30", "--dry-run"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "would remove session" in proc.stdout and "would free" in proc.stdout
    assert (tmp_path / "sessions" / "old").is_dir()
