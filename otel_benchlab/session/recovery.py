"""Sessions whose agent died (``kill -9``, OOM, a node reboot): recognised, and turned back
into a normal session from the journals the agent left.

A session has crashed when its manifest records no end and no agent holds its lock. Its
completed Parquet parts are intact; the part in progress is in the journals, which
recovery turns into parts. The manifest then records the end as a crash.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

from otel_benchlab.exporters.parquet import recover_directory
from otel_benchlab.fleet.outbox import open_outbox
from otel_benchlab.session.compaction import remove_stale
from otel_benchlab.session.folder import (
    agent_alive,
    crashed,
    newest_mtime,
    read_manifest,
    write_manifest,
)
from otel_benchlab.session.journal import PART_NAME
from otel_benchlab.settings import ConfigError

log = logging.getLogger(__name__)

KINDS = {"marks": ("raw", "marks"), "samples": ("raw", "samples"), "aligned": ("aligned",)}


@dataclass
class Recovery:
    path: Path
    parts: dict[str, int] = field(default_factory=dict)  # kind -> parts made from journals
    rows: dict[str, int] = field(default_factory=dict)  # kind -> rows they hold
    total_rows: dict[str, int] = field(default_factory=dict)  # kind -> rows in the session

    def report(self) -> str:
        made = ", ".join(f"{k} {self.rows.get(k, 0)} rows" for k in KINDS)
        have = ", ".join(f"{k} {self.total_rows.get(k, 0)}" for k in KINDS)
        return (f"recovered session {self.path}: from journals {made}; the session now holds "
                f"{have} rows; marked as ended by a crash")


def recover_session(path: str | Path) -> Recovery:
    path = Path(path)
    manifest = read_manifest(path)
    if manifest is None:
        raise ConfigError(f"{path}: no readable session.json; not an otel-benchlab session")
    if agent_alive(path):
        raise ConfigError(f"{path}: an agent is still writing this session; stop it first")
    import pyarrow.parquet as pq  # here: only a crashed session needs it (8 MB with pyarrow.fs)

    result = Recovery(path)
    for kind, sub in KINDS.items():
        directory = path.joinpath(*sub)
        remove_stale(directory)  # a compaction the crash interrupted
        result.parts[kind], result.rows[kind] = recover_directory(directory)
        total = 0
        for part in sorted(directory.glob("part-*.parquet")) if directory.is_dir() else []:
            try:
                total += pq.ParquetFile(part).metadata.num_rows
            except Exception as exc:  # a corrupt part is reported, the rest counted
                log.warning("unreadable Parquet part %s: %s", part, exc)
        result.total_rows[kind] = total
    if not manifest.get("ended_at"):
        last = newest_mtime(path)
        manifest["ended_at"] = dt.datetime.fromtimestamp(last, dt.timezone.utc).isoformat()
        manifest["end_reason"] = "crash"
        manifest["recovered_at"] = dt.datetime.now(dt.timezone.utc).isoformat()
        manifest["summary"] = {"rows": dict(result.total_rows),
                               "recovered_rows": dict(result.rows)}
        write_manifest(path, manifest)
    _queue_for_upload(path)
    return result


def _queue_for_upload(path: Path) -> None:
    """A session recorded with uploads on: the parts recovery made (and any the agent
    closed but died before noting) join its outbox, and the manifest, which now records
    the crash, goes again. The agent's uploader takes them up."""
    box = open_outbox(path)
    if box is None:
        return
    for sub in KINDS.values():
        directory = path.joinpath(*sub)
        for part in sorted(directory.glob("part-*.parquet")) if directory.is_dir() else []:
            relpath = part.relative_to(path).as_posix()
            # A compacted part (part-FIRST-LAST) holds parts the store has got already.
            if not box.known(relpath) and PART_NAME.match(part.name).group(2) is None:
                box.add(relpath)
    box.add("session.json")


def recover_crashed(data_root: str | Path) -> list[Recovery]:
    """Recover every crashed session under ``data_root`` (the agent does this at start)."""
    sessions = Path(data_root) / "sessions"
    out = []
    if not sessions.is_dir():
        return out
    for path in sorted(sessions.iterdir()):
        if path.is_dir() and not path.is_symlink() and crashed(path):
            try:
                out.append(recover_session(path))
            except (OSError, ConfigError) as exc:
                log.error("cannot recover crashed session %s: %s", path, exc)
    return out
