"""Sessions on disk: <data_root>/sessions/<id>/{session.json, raw/, aligned/, capframex/}."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import secrets
import socket
from pathlib import Path
from typing import Any

from otel_benchlab import __version__
from otel_benchlab.config import ConfigError, validate_session_id


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

    def create(self) -> None:
        if self.path.exists() and any(self.path.iterdir()):
            raise ConfigError(f"session {self.id} already exists at {self.path}; choose "
                              "another --session or leave it out for a new one")
        try:
            for p in (self.raw_samples, self.raw_marks, self.aligned, self.capframex):
                p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create session directory {self.path}: {exc}; set "
                              "--data-root or BENCHLAB_DATA_ROOT to a writable place") from None

    def start(self, config: dict[str, Any], sources: list[dict[str, Any]],
              sensors: list[dict[str, Any]]) -> None:
        self.manifest = {
            "session_id": self.id, "format": 1,
            "started_at": _utc_now(), "ended_at": None,
            "host": socket.gethostname(),
            "versions": {"otel_benchlab": __version__, "python": platform.python_version()},
            "config": config, "sources": sources, "sensors": sensors,
        }
        self.write_manifest()

    def finish(self, summary: dict[str, Any]) -> None:
        self.manifest["ended_at"] = _utc_now()
        self.manifest["summary"] = summary
        self.write_manifest()

    def write_manifest(self) -> None:
        final = self.path / "session.json"
        tmp = self.path / ".session.json.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=2, default=str))
        os.replace(tmp, final)
