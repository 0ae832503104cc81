"""Object storage for sessions: where a node's files go in a bucket, and how to reach it.

One interface for every store, ``pyarrow.fs`` (S3 and S3-compatible stores, GCS, Azure,
and a plain path for a shared volume). The layout is hive-partitioned, so that DuckDB,
Spark, Trino, Athena and pyarrow read each kind as one table::

    PREFIX/kind=aligned/node=NODE/date=YYYY-MM-DD/session=ID/part-NNNNNN.parquet
    PREFIX/kind=aligned/node=NODE/date=YYYY-MM-DD/session=ID/_session.json
    PREFIX/kind=aligned/node=NODE/date=YYYY-MM-DD/session=ID/_capframex/...
    PREFIX/kind=aligned/node=NODE/date=YYYY-MM-DD/session=ID/_report.html
    PREFIX/kind=marks/...   PREFIX/kind=samples/...   (parts only)

What is not Parquet starts with ``_``: every one of those engines skips such names (Hadoop's
convention, as ``_SUCCESS``), so a session's folder stays one table. A part's key is fixed
by its session and part number: a retry or a restart writes the same bytes to the same key.
``date`` is the session's start (UTC), so a session never spans two folders.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from otel_benchlab.settings import ConfigError

# Local file (relative to the session folder) -> (kind, name in the session's folder).
_RAW_KINDS = {"aligned": "aligned", "raw/marks": "marks", "raw/samples": "samples"}
KINDS = tuple(_RAW_KINDS.values())
MANIFEST_KEY = "_session.json"
_SESSION_DIR = re.compile(r"kind=([^/]+)/node=([^/]+)/date=([^/]+)/session=([^/]+)$")


def safe_node(name: str) -> str:
    """A node name as a partition value: letters, digits, '.', '_', '-' (a Kubernetes node
    or host name already is; anything else becomes '_')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name.strip()) or "unknown"


def object_name(relpath: str) -> tuple[str, str]:
    """``aligned/part-000001.parquet`` -> ("aligned", "part-000001.parquet"); the
    manifest, CapFrameX captures and the report live in the aligned folder under ``_``."""
    path = PurePosixPath(relpath)
    if path.is_absolute() or ".." in path.parts or path.name.startswith("."):
        raise ValueError(f"{relpath}: not a file that goes to the store")
    parent = str(path.parent)
    if parent in _RAW_KINDS:
        return _RAW_KINDS[parent], path.name
    if relpath == "session.json":
        return "aligned", MANIFEST_KEY
    if parent == "capframex":
        return "aligned", f"_capframex/{path.name}"
    if relpath == "report.html":
        return "aligned", "_report.html"
    raise ValueError(f"{relpath}: not a file that goes to the store")


def local_name(kind: str, name: str) -> str:
    """The inverse of ``object_name``: where a stored object lies in a session folder."""
    if name == MANIFEST_KEY:
        return "session.json"
    if name.startswith("_capframex/"):
        return "capframex/" + name.split("/", 1)[1]
    if name == "_report.html":
        return "report.html"
    return {v: k for k, v in _RAW_KINDS.items()}[kind] + "/" + name


@dataclass(frozen=True)
class SessionPlace:
    """Where one session lies in a store."""

    node: str
    date: str
    session: str

    def folder(self, kind: str) -> str:
        return f"kind={kind}/node={self.node}/date={self.date}/session={self.session}"

    @classmethod
    def parse(cls, path: str) -> tuple[str, SessionPlace] | None:
        """``PREFIX/kind=K/node=N/date=D/session=ID`` -> (PREFIX, place); else None."""
        m = _SESSION_DIR.search(path.rstrip("/"))
        if not m:
            return None
        return path.rstrip("/")[:m.start()].rstrip("/"), cls(*m.groups()[1:])


class Store:
    """A store address opened through ``pyarrow.fs``: ``uri`` (``s3://bucket/prefix``,
    ``gs://``, ``abfs://``, a path or ``file://``) and, for S3-compatible stores,
    ``endpoint`` (``http://minio:9000``; else ``BENCHLAB_UPLOAD_ENDPOINT``, and for S3 the
    AWS SDKs' ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``). Credentials come from each
    provider's standard variables and files (``AWS_*``, a web identity token,
    ``GOOGLE_APPLICATION_CREDENTIALS``, the pod's workload identity); nothing is stored
    here."""

    def __init__(self, uri: str, endpoint: str = "", region: str = "") -> None:
        self.uri = uri.rstrip("/") or uri
        self.endpoint = endpoint
        self.fs, self.root = _open(self.uri, endpoint, region)
        self.local = self.fs.type_name == "local"

    def __str__(self) -> str:
        return self.uri + (f" (endpoint {self.endpoint})" if self.endpoint else "")

    def path(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.root, *parts) if p.strip("/")) \
            if not self.local else str(Path(self.root, *parts))

    def put(self, key: str, data: bytes) -> None:
        """``key`` holds ``data``, whole or not at all. An object store's PUT is that
        already; on a file system the bytes go to a hidden name first, then a rename."""
        target = self.path(key)
        if not self.local:
            with self.fs.open_output_stream(target) as out:
                out.write(data)
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = os.path.join(os.path.dirname(target),
                           f".{os.path.basename(target)}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def get(self, key: str) -> bytes:
        with self.fs.open_input_stream(self.path(key)) as fh:
            return fh.read()

    def list(self, key: str, recursive: bool = False) -> list[Any]:
        """``FileInfo`` of what lies under ``key`` (none if it does not exist)."""
        import pyarrow.fs as pafs

        return self.fs.get_file_info(pafs.FileSelector(self.path(key), allow_not_found=True,
                                                       recursive=recursive))

    def delete_folder(self, key: str) -> None:
        import pyarrow.fs as pafs

        target = self.path(key)
        if self.fs.get_file_info(target).type == pafs.FileType.NotFound:
            return
        self.fs.delete_dir_contents(target, missing_dir_ok=True)
        # Object stores have no folders: what is left is a marker some stores keep (and
        # GCS's API answers 404 for one that never was).
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_dir(target)


def _open(uri: str, endpoint: str, region: str) -> tuple[Any, str]:
    import pyarrow as pa
    import pyarrow.fs as pafs  # here: 8.6 MB of bindings the agent carries only for a store

    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    # The agent's own variable, so that the commands reading a store reach it as it does.
    endpoint = endpoint or os.environ.get("BENCHLAB_UPLOAD_ENDPOINT", "")
    if scheme == "s3" and not endpoint:
        # The AWS SDKs' own variables for another S3 endpoint (pyarrow does not read them).
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or \
            os.environ.get("AWS_ENDPOINT_URL", "")
    try:
        if scheme == "s3":
            bucket_path = uri.split("://", 1)[1]
            # A file goes whole in one write: one PUT for a small file (delayed open), and
            # no background writer, whose thread and buffers were ~12 MB of the agent's RSS.
            kwargs: dict[str, Any] = {"allow_delayed_open": True, "background_writes": False,
                                      "connect_timeout": 10, "request_timeout": 60}
            if region:
                kwargs["region"] = region
            if endpoint:
                ep_scheme, _, host = endpoint.rpartition("://")
                kwargs.update(endpoint_override=host.rstrip("/"), scheme=ep_scheme or "https")
            return pafs.S3FileSystem(**kwargs), bucket_path.strip("/")
        if scheme in ("gs", "gcs"):
            # The Google client libraries' emulator variable: an emulator takes no
            # credentials (and the default ones would look for a metadata server).
            emulator = os.environ.get("STORAGE_EMULATOR_HOST", "")
            kwargs = {"anonymous": True} if emulator and not endpoint else {}
            endpoint = endpoint or emulator
            if endpoint:
                ep_scheme, _, host = endpoint.rpartition("://")
                kwargs.update(endpoint_override=host.rstrip("/"), scheme=ep_scheme or "https")
            return pafs.GcsFileSystem(**kwargs), uri.split("://", 1)[1].strip("/")
        if scheme in ("", "file"):
            path = uri.split("://", 1)[1] if scheme else uri
            if not os.path.isabs(path):
                raise ConfigError(f"setting 'upload.uri': {uri!r}: a plain path must be "
                                  "absolute (a shared volume, e.g. /mnt/benchlab)")
            return pafs.LocalFileSystem(), os.path.normpath(path)
        fs, path = pafs.FileSystem.from_uri(uri)
        return fs, path.strip("/")
    except ConfigError:
        raise
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise ConfigError(f"setting 'upload.uri': {uri!r}: {exc} (use s3://BUCKET/PREFIX, "
                          "gs://BUCKET/PREFIX, abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/"
                          "PREFIX or an absolute path)") from None


def refused(exc: BaseException) -> bool:
    """Whether a store error is a refusal that waiting alone will not cure (credentials,
    permissions, a missing bucket), as against a store that is down or slow."""
    text = str(exc).upper()
    # FileNotFoundError: a missing bucket (GCS), or a shared volume's folder that is gone;
    # NotADirectoryError: a plain path that runs through a file.
    return isinstance(exc, (PermissionError, FileNotFoundError, NotADirectoryError)) or \
        any(word in text for word in (
        "ACCESS_DENIED", "ACCESSDENIED", "INVALID_ACCESS_KEY", "INVALIDACCESSKEY",
        "SIGNATURE_DOES_NOT_MATCH", "SIGNATUREDOESNOTMATCH", "NO_SUCH_BUCKET",
        "NOSUCHBUCKET", "PERMISSION_DENIED", "FORBIDDEN", "UNAUTHORIZED", "EXPIRED_TOKEN",
        "INVALID_TOKEN", "AUTHENTICATIONFAILED", "CONTAINERNOTFOUND", "UNAUTHENTICATED"))
