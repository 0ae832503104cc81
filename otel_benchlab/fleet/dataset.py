"""Sessions in an object store, read back: find one, list them, fetch one for replay,
``report`` and ``compare`` (as the session folder it was), and expire old ones.

A session's address is its folder in the store, of any kind
(``s3://b/p/kind=aligned/node=N/date=D/session=ID``), or ``PREFIX/session=ID``, which is
looked up under each node and date. Listing walks the partition folders level by level,
so ``--node`` and ``--since`` prune before anything is read; each session costs one
read of its ``_session.json``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otel_benchlab.fleet.store import KINDS, MANIFEST_KEY, SessionPlace, Store, local_name
from otel_benchlab.session.journal import PART_NAME
from otel_benchlab.session.window import TIME_COLUMNS, parse_time, part_range, resolve
from otel_benchlab.settings import ConfigError

log = logging.getLogger("otel_benchlab")

STORE_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "az", "file")


def is_store_address(text: str) -> bool:
    """A store's URI, or a path into a store's layout on a shared volume."""
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    return scheme in STORE_SCHEMES or SessionPlace.parse(text) is not None or \
        "/session=" in text


@dataclass
class StoredSession:
    store: Store
    place: SessionPlace
    manifest: dict[str, Any] | None

    @property
    def address(self) -> str:
        return f"{self.store.uri}/{self.place.folder('aligned')}"

    def _time(self, key: str) -> dt.datetime | None:
        text = (self.manifest or {}).get(key)
        try:
            return dt.datetime.fromisoformat(text) if isinstance(text, str) else None
        except ValueError:
            return None

    @property
    def started(self) -> dt.datetime | None:
        return self._time("started_at")

    @property
    def ended(self) -> dt.datetime | None:
        return self._time("ended_at")

    @property
    def duration_s(self) -> float | None:
        a, b = self.started, self.ended
        return (b - a).total_seconds() if a and b else None

    @property
    def frames(self) -> dict[str, int]:
        frames = ((self.manifest or {}).get("summary") or {}).get("frames")
        return {str(k): int(v) for k, v in frames.items()} if isinstance(frames, dict) else {}

    def as_dict(self) -> dict[str, Any]:
        return {"session": self.place.session, "node": self.place.node, "date": self.place.date,
                "started_at": (self.manifest or {}).get("started_at"),
                "ended_at": (self.manifest or {}).get("ended_at"),
                "end_reason": (self.manifest or {}).get("end_reason"),
                "duration_s": self.duration_s, "frames": self.frames,
                "address": self.address}


def _dirs(store: Store, key: str, name: str) -> list[str]:
    """The values of the partition folders ``name=VALUE`` directly under ``key``."""
    import pyarrow.fs as pafs

    out = []
    for info in store.list(key):
        base = info.base_name
        if info.type == pafs.FileType.Directory and base.startswith(f"{name}="):
            out.append(base.split("=", 1)[1])
    return sorted(out)


def read_stored_manifest(store: Store, place: SessionPlace) -> dict[str, Any] | None:
    try:
        manifest = json.loads(store.get(f"{place.folder('aligned')}/{MANIFEST_KEY}"))
    except (OSError, ValueError) as exc:
        log.debug("no manifest for %s: %s", place, exc)
        return None
    return manifest if isinstance(manifest, dict) else None


def _places(store: Store, kind: str, node: str | None, since: str | None,
            until_date: str | None = None) -> list[SessionPlace]:
    """The session folders of ``kind``, walked level by level (the filters prune):
    ``since`` and ``until_date`` are dates (YYYY-MM-DD) a session started on or after,
    on or before."""
    places = []
    for n in _dirs(store, f"kind={kind}", "node"):
        if node and n != node:
            continue
        for d in _dirs(store, f"kind={kind}/node={n}", "date"):
            if since and d < since or until_date and d > until_date:
                continue
            places += [SessionPlace(n, d, s)
                       for s in _dirs(store, f"kind={kind}/node={n}/date={d}", "session")]
    return places


def _unix_ns(value: str | dt.datetime | None, name: str) -> int | None:
    """A date (YYYY-MM-DD, its midnight UTC), an ISO 8601 time with an offset, or a
    datetime with one, as unix ns."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ConfigError(f"{name}={value!r}: give the time's zone")
        return int(value.timestamp() * 1e9)
    text = str(value)
    if len(text) == 10:
        text += "T00:00:00Z"
    return parse_time(text, name, None)


def open_dataset(uri: str, kind: str = "aligned", endpoint: str = "",
                 node: str | None = None, since: str | dt.datetime | None = None,
                 until: str | dt.datetime | None = None):  # noqa: ANN201
    """The fleet's ``kind`` parts as one pyarrow dataset, with the hive partitions
    (``node``, ``date``, ``session``) as columns: DuckDB, pandas and Polars read it.
    Sessions may record different power sources (their ``*_<source>`` columns): the
    schema is the union of each session's, read from one part of each (a part's footer,
    not its data); a session without a source has nulls there.

    ``since`` and ``until`` (a date, or an ISO 8601 time with an offset) keep the rows of
    that window by their own time (a span's end, a sample's or mark's time), whenever
    their session started: sessions that started after ``until`` or that ended before
    ``since`` (their manifest says) are not listed, and of the rest a scan reads each
    part's footer and only the row groups whose statistics overlap the window, so the
    last day of a week-long session is not read whole."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    store = Store(uri, endpoint)
    lo, hi = _unix_ns(since, "since"), _unix_ns(until, "until")
    until_date = dt.datetime.fromtimestamp(hi / 1e9, dt.timezone.utc).date().isoformat() \
        if hi is not None else None
    files: list[str] = []
    schemas = []
    for place in _places(store, kind, node, None, until_date):
        if lo is not None and _ended_before(store, place, lo):
            continue
        mine = sorted(i.path for i in store.list(place.folder(kind))
                      if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")
                      and not i.base_name.startswith(("_", ".")))
        if mine:
            files += mine
            schemas.append(pq.read_schema(mine[0], filesystem=store.fs))
    partitions = pa.schema([("node", pa.string()), ("date", pa.string()),
                            ("session", pa.string())])
    schema = pa.unify_schemas([*schemas, partitions]) if schemas else partitions
    found = ds.dataset(files, schema=schema, filesystem=store.fs, format="parquet",
                       partitioning=ds.partitioning(partitions, flavor="hive"),
                       partition_base_dir=store.path(f"kind={kind}"))
    column = TIME_COLUMNS.get(kind)
    if (lo is None and hi is None) or column not in schema.names:
        return found
    keep = [ds.field(column) >= lo] * (lo is not None) + [ds.field(column) < hi] * (
        hi is not None)
    return found.filter(keep[0] & keep[1] if len(keep) == 2 else keep[0])


def _ended_before(store: Store, place: SessionPlace, ns: int) -> bool:
    ended = (read_stored_manifest(store, place) or {}).get("ended_at")
    try:
        return isinstance(ended, str) and \
            dt.datetime.fromisoformat(ended).timestamp() * 1e9 < ns
    except ValueError:
        return False


def list_sessions(store: Store, node: str | None = None, since: str | None = None,
                  pipeline: str | None = None, session: str | None = None
                  ) -> list[StoredSession]:
    """What the store holds, oldest date first; ``since`` is a date (YYYY-MM-DD)."""
    out = []
    places = [p for p in _places(store, "aligned", node, since)
              if session is None or p.session == session]
    with ThreadPoolExecutor(max_workers=8) as pool:
        manifests = list(pool.map(lambda p: read_stored_manifest(store, p), places))
    for place, manifest in zip(places, manifests, strict=True):
        found = StoredSession(store, place, manifest)
        if pipeline and pipeline not in found.frames:
            continue
        out.append(found)
    return sorted(out, key=lambda s: (s.place.date, (s.manifest or {}).get("started_at") or "",
                                      s.place.node, s.place.session))


def find_session(address: str, endpoint: str = "") -> StoredSession:
    """The session at ``address``; ``ConfigError`` naming it when there is none."""
    parsed = SessionPlace.parse(address)
    if parsed is not None:
        prefix, place = parsed
        store = Store(prefix or "/", endpoint)
        return StoredSession(store, place, read_stored_manifest(store, place))
    prefix, _, session = address.rstrip("/").rpartition("/session=")
    if not session or "/" in session:
        raise ConfigError(f"{address}: not a session's address in a store (use PREFIX/kind="
                          "aligned/node=NODE/date=DATE/session=ID as `otel-benchlab sessions` "
                          "lists it, or PREFIX/session=ID)")
    store = Store(prefix, endpoint)
    found = list_sessions(store, session=session)
    if not found:
        raise ConfigError(f"{address}: no session {session} under {store}")
    return found[0]


def fetch_session(found: StoredSession, dest: Path,
                  since: str | None = None, until: str | None = None) -> Path:
    """Copy the session's objects into ``dest/ID`` as the session folder it was; with
    ``since``/``until`` (``session.window``), only the parts whose rows overlap the window
    (each part's footer says, one small read) and the manifest: the last hour of a week is
    an hour's download."""
    import pyarrow.fs as pafs

    folder = dest / found.place.session
    jobs: list[tuple[str, Path]] = []
    parts: list[tuple[str, str, Path]] = []  # (kind, key, local) of the Parquet parts
    for kind in KINDS:
        base = found.place.folder(kind)
        for info in found.store.list(base, recursive=True):
            if info.type != pafs.FileType.File:
                continue
            name = info.path[len(found.store.path(base)):].lstrip("/")
            if any(part.startswith(".") or not part for part in name.split("/")):
                # A plain path's writes in progress (hidden names), and never a name that
                # could climb out of the copy's folder ("..", "a//b").
                continue
            local = folder / local_name(kind, name)
            if PART_NAME.match(name):
                parts.append((kind, f"{base}/{name}", local))
            elif since is None and until is None or name == MANIFEST_KEY:
                jobs.append((f"{base}/{name}", local))
    if since is not None or until is not None:
        parts = _parts_in_window(found, parts, since, until)
    jobs += [(key, local) for _, key, local in parts]
    if not jobs:
        raise ConfigError(f"{found.address}: nothing stored for session {found.place.session}")

    def get(job: tuple[str, Path]) -> None:
        key, local = job
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(found.store.get(key))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(get, jobs))
    return folder


def _parts_in_window(found: StoredSession, parts: list[tuple[str, str, Path]],
                     since: str | None, until: str | None) -> list[tuple[str, str, Path]]:
    def footer(job: tuple[str, str, Path]) -> tuple[int, int] | None:
        kind, key, _ = job
        with found.store.fs.open_input_file(found.store.path(key)) as fh:
            return part_range(fh, (TIME_COLUMNS[kind],))

    with ThreadPoolExecutor(max_workers=8) as pool:
        ranges = list(pool.map(footer, parts))
    span = None
    for kind in ("aligned", "marks"):  # the window counts back from the spans' end
        mine = [r for (k, _, _), r in zip(parts, ranges, strict=True) if k == kind and r]
        if mine:
            span = (min(r[0] for r in mine), max(r[1] for r in mine))
            break
    window = resolve(since, until, span, found.address)
    return [job for job, r in zip(parts, ranges, strict=True)
            if r is None or window is None or window.overlaps(*r)]


@contextlib.contextmanager
def session_folder(address: str, endpoint: str = "", since: str | None = None,
                   until: str | None = None) -> Iterator[Path]:
    """A local folder with the session at ``address``: the folder itself, or a copy of a
    stored session (only the window's parts with ``since``/``until``), removed
    afterwards."""
    if not is_store_address(address):
        yield Path(address)
        return
    found = find_session(address, endpoint)
    with tempfile.TemporaryDirectory(prefix="otel-benchlab-") as tmp:
        yield fetch_session(found, Path(tmp), since, until)


@dataclass
class StoreExpiry:
    removed: list[StoredSession]
    kept: list[tuple[StoredSession, str]]
    dry_run: bool

    def report(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        out = [f"{verb} {s.address} (ended {(s.manifest or {}).get('ended_at') or 'unknown'})"
               for s in self.removed]
        out += [f"kept {s.address}: {why}" for s, why in self.kept]
        out.append(f"{verb} {len(self.removed)} sessions, kept {len(self.kept)}")
        return out


def expire_sessions(store: Store, days: float, dry_run: bool = False,
                    now: float | None = None) -> StoreExpiry:
    """Remove the sessions that ended more than ``days`` ago, by the end ``session.json``
    records (a bucket's lifecycle rule cannot read it). A session that records no end
    (running, or crashed and not yet recovered) is aged from its newest object."""
    import pyarrow.fs as pafs

    now = dt.datetime.now(dt.timezone.utc).timestamp() if now is None else now
    result = StoreExpiry([], [], dry_run)
    for found in list_sessions(store):
        ended = found.ended
        if ended is not None:
            age_s = now - ended.timestamp()
        else:
            newest = max((i.mtime.timestamp() for kind in KINDS
                          for i in store.list(found.place.folder(kind), recursive=True)
                          if i.type == pafs.FileType.File and i.mtime is not None),
                         default=None)
            if newest is None:
                result.kept.append((found, "no end recorded and no object times"))
                continue
            age_s = now - newest
        if age_s <= days * 86400:
            result.kept.append((found, f"{age_s / 86400:.1f} days old"))
            continue
        result.removed.append(found)
        if not dry_run:
            # The manifest's folder last: a run cut short still finds the session next time.
            for kind in (*[k for k in KINDS if k != "aligned"], "aligned"):
                store.delete_folder(found.place.folder(kind))
    return result
