"""Sessions on disk: <data_root>/sessions/<id>/{session.json, raw/, aligned/, capframex/}."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import platform
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from otel_benchlab import __version__
from otel_benchlab.session.temp_files import open_temp
from otel_benchlab.settings import ConfigError, validate_session_id

log = logging.getLogger(__name__)
LOCK_NAME = ".agent.lock"  # held (flock) by the agent writing the session, for its lifetime
PROGRESS_NAME = ".progress.json"  # a running session's counts so far (agent/summary.py)


def new_session_id() -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


class Session:
    def __init__(self, data_root: str | Path, session_id: str = "") -> None:
        self.id = validate_session_id(session_id) if session_id else new_session_id()
        self.path = Path(data_root) / "sessions" / self.id
        self.manifest: dict[str, Any] = {}

    @property
    def raw_samples(self) -> Path:
        return self.path / "raw" / "samples"

    @property
    def raw_marks(self) -> Path:
        return self.path / "raw" / "marks"

    @property
    def aligned(self) -> Path:
        return self.path / "aligned"

    @property
    def capframex(self) -> Path:
        return self.path / "capframex"

    @property
    def data_dirs(self) -> tuple[Path, ...]:
        return (self.raw_marks, self.raw_samples, self.aligned)

    def create(self) -> None:
        """Make the session's folders and take its lock. A folder left by a start that
        failed before writing anything (nothing but empty folders) is reused."""
        if self.path.exists() and not _is_skeleton(self.path):
            raise ConfigError(f"session {self.id} already exists at {self.path}; choose "
                              "another --session or leave it out for a new one")
        created = not self.path.exists()
        try:
            for p in (self.raw_samples, self.raw_marks, self.aligned, self.capframex):
                p.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if created:
                self.discard()
            raise ConfigError(f"cannot create session directory {self.path}: {exc}; set "
                              "--data-root or BENCHLAB_DATA_ROOT to a writable place with "
                              "free space") from None

    def discard(self) -> None:
        """Remove what a failed start made (only empty folders and the lock)."""
        self.release()
        with contextlib.suppress(OSError):
            (self.path / LOCK_NAME).unlink(missing_ok=True)
        for p in sorted(self.path.rglob("*"), key=lambda x: -len(x.parts)) + [self.path]:
            with contextlib.suppress(OSError):
                if p.is_dir() and not p.is_symlink():
                    p.rmdir()  # fails, and keeps it, unless empty

    def release(self) -> None:
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
            self._lock_fd = None

    def start(self, config: dict[str, Any], sources: list[dict[str, Any]],
              sensors: list[dict[str, Any]], resource: dict[str, str] | None = None) -> None:
        self.manifest = {
            "session_id": self.id, "format": 1,
            "started_at": _utc_now(), "ended_at": None,
            "host": socket.gethostname(), "pid": os.getpid(),
            "resource": resource or {},
            "versions": {"otel_benchlab": __version__, "python": platform.python_version()},
            "config": config, "sources": sources, "sensors": sensors,
        }
        self.write_manifest()

    def finish(self, summary: dict[str, Any]) -> None:
        self.manifest["ended_at"] = _utc_now()
        self.manifest["end_reason"] = "stopped"
        self.manifest["summary"] = summary
        self.write_manifest()
        with contextlib.suppress(OSError):  # the summary is in session.json now
            (self.path / PROGRESS_NAME).unlink(missing_ok=True)

    def write_manifest(self) -> None:
        write_manifest(self.path, self.manifest)


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    final = path / "session.json"
    fh, tmp = open_temp(final, "w")
    try:
        with fh:
            fh.write(json.dumps(manifest, indent=2, default=str))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except OSError:
        with contextlib.suppress(OSError):  # the old manifest stays whole
            tmp.unlink(missing_ok=True)
        raise


def _is_skeleton(path: Path) -> bool:
    """Nothing in it but (empty) folders and perhaps a lock: what a failed start leaves."""
    return all(not p.is_symlink() and (p.is_dir() or p.name == LOCK_NAME)
               for p in path.rglob("*"))


def agent_alive(path: Path) -> bool:
    """Whether an agent holds the session's lock. The kernel drops a flock when its process
    dies, however it dies, so a crashed agent never looks alive (no pid reuse problem)."""
    try:
        fd = os.open(path / LOCK_NAME, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def file_stats(path: Path) -> Iterator[os.stat_result]:
    """``lstat`` of every file under ``path``, never following a link; a file that vanishes
    meanwhile is skipped."""
    for root, _dirs, files in os.walk(path, followlinks=False):
        for name in files:
            with contextlib.suppress(OSError):
                yield os.lstat(os.path.join(root, name))


def newest_mtime(path: Path) -> float:
    """When anything in the session last changed (0 for an empty one)."""
    return max((st.st_mtime for st in file_stats(path)), default=0.0)


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The session's manifest, or None where it is missing or unreadable."""
    try:
        manifest = json.loads((path / "session.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def crashed(path: Path) -> bool:
    """A session whose agent died: its manifest records no end and no agent holds it."""
    manifest = read_manifest(path)
    return manifest is not None and not manifest.get("ended_at") and not agent_alive(path)
