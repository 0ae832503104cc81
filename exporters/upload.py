"""Upload: an exporter of files. Every closed Parquet part, ``session.json`` (at the start
and again at the end) and the CapFrameX captures go to an object store
(``otel_benchlab.fleet.store`` has the layout), through each session's outbox
(``otel_benchlab.fleet.outbox``), on a thread of its own: the agent's writing never waits for
the network.

- A file goes once per ``add``; its key is fixed by its session and name, so a retry, a
  restart or a ``kill -9`` mid-upload writes the same bytes to the same key.
- A store that is down: the file stays in the outbox, tries back off from 1 s doubling to
  ``retry_max_s``; one warning when it starts failing, one line when it works again. A store
  that refuses (credentials, a missing bucket) is one error line and a try every
  ``retry_max_s``, not a retry storm.
- At start the outboxes of earlier sessions (a crash, a store that was down at exit) are
  taken up again, and every ``RESCAN_S`` what another process added (``report``, ``recover``).
- ``bandwidth_bytes_s`` bounds the average rate: a file goes whole, then the uploader
  waits as long as that many bytes take at the limit (an object store takes an object in
  one request, so this is where a limit can act).
"""

from __future__ import annotations

import logging
import random
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from otel_benchlab.components import BuildContext, Built, Component
from otel_benchlab.counters import AgentCounters
from otel_benchlab.fleet.outbox import Outbox, Pending, open_outbox, outboxes
from otel_benchlab.fleet.store import SessionPlace, Store, object_name, refused, safe_node
from otel_benchlab.session.folder import agent_alive
from otel_benchlab.settings import ConfigError, setting_error

if TYPE_CHECKING:
    from otel_benchlab.config import Config

@dataclass
class UploadConfig:
    # Where every closed Parquet part, session.json and the CapFrameX captures go:
    # s3://BUCKET/PREFIX, gs://BUCKET/PREFIX,
    # abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PREFIX, or an absolute path (a shared
    # volume). "" = off. Credentials come from each provider's own variables and files
    # (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_*, the pod's workload identity).
    uri: str = ""
    # an S3-compatible store's address (MinIO, Ceph RGW), e.g. http://minio:9000
    endpoint: str = ""
    region: str = ""  # the S3 region; "" = AWS_REGION, AWS_DEFAULT_REGION or ~/.aws/config
    node: str = ""  # the node= partition; "" = k8s.node.name, else the host name
    # the average upload rate at most (bytes a second); 0 = no limit
    bandwidth_bytes_s: float = 0.0
    # the longest wait between tries (the back-off doubles from 1 s), and between tries
    # while the store refuses (credentials, no bucket)
    retry_max_s: float = 300.0
    # at exit, how long what is left may hold the agent up (the rest goes at the next start)
    flush_timeout_s: float = 10.0


log = logging.getLogger("otel_benchlab")

RESCAN_S = 30.0  # how often other sessions' outboxes are looked at again
DISK_WARN_FULL = 0.9  # warn when the data root's disk is this full while uploads fail


def node_name(cfg: UploadConfig, resource: dict[str, str]) -> str:
    """The ``node=`` partition: the setting, else ``k8s.node.name``, else the host name."""
    return safe_node(cfg.node or resource.get("k8s.node.name") or resource.get("host.name")
                     or socket.gethostname())


class Uploader:
    def __init__(self, cfg: UploadConfig, data_root: str, counters: AgentCounters,
                 store: Store | None = None) -> None:
        self.cfg = cfg
        self.data_root = Path(data_root)
        self.store = store or Store(cfg.uri, cfg.endpoint, cfg.region)
        self.counters = counters
        self.name = f"upload to {self.store}"
        self._boxes: dict[Path, Outbox] = {}
        self._foreign: set[Path] = set()  # outboxes bound for another store
        self._current: Outbox | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._draining = threading.Event()
        self._thread: threading.Thread | None = None
        self._unnoted: list[str] = []  # closed files the outbox could not take yet
        self._unnoted_lock = threading.Lock()
        self._failures_in_row = 0
        self._failing: str = ""  # "", "down" or "refused": what was last logged
        self._disk_warned = False
        self._waiting_at = 0.0
        self._waiting_cache = (0, 0, 0)
        for reason in ("unreachable", "refused", "local"):
            counters.declare("upload.failures", reason=reason)
        counters.declare("upload.bytes")
        counters.declare("upload.objects")
        counters.gauge("upload.outbox.files", lambda: self.waiting()[0])
        counters.gauge("upload.outbox.size", lambda: self.waiting()[1])
        counters.gauge("upload.lag", self.lag_s)

    # -- what the runtime calls ----------------------------------------------------------
    def open_session(self, session_path: Path, manifest: dict) -> None:
        place = SessionPlace(node_name(self.cfg, manifest.get("resource") or {}),
                             str(manifest.get("started_at", ""))[:10], manifest["session_id"])
        box = Outbox.create(session_path, {"store": self.store.uri,
                                           "endpoint": self.store.endpoint,
                                           "node": place.node, "date": place.date,
                                           "session": place.session})
        self._boxes[box.session_path] = self._current = box
        self.file_closed("session.json")

    def file_closed(self, relpath: str) -> None:
        """A file of the current session is complete (renamed into place): it goes. Never
        raises into the agent's writing: a note the outbox cannot take (a full disk) is
        kept here and noted again by the uploader's thread."""
        if self._current is None:
            return
        with self._unnoted_lock:
            self._unnoted.append(relpath)
        self._note()
        self._wake.set()

    def _note(self) -> None:
        with self._unnoted_lock:
            try:
                while self._unnoted:
                    self._current.add(self._unnoted[0])  # type: ignore[union-attr]
                    self._unnoted.pop(0)
            except OSError as exc:
                self.counters.add("write.errors", 1, f"cannot note a closed file in the "
                                  f"upload outbox of {self._current.session_path}: {exc}; "
                                  "it is noted again until it can be (free space)",
                                  exporter="upload-outbox")

    def start(self) -> None:
        self._scan()
        self._thread = threading.Thread(target=self._run, name="upload", daemon=True)
        self._thread.start()

    def shutdown(self, timeout_s: float | None = None,
                 hurry: threading.Event | None = None) -> None:
        """Give what is left ``timeout_s`` (``flush_timeout_s``) to go, less if ``hurry``
        is set (a second Ctrl-C); the rest stays in the outbox for the next start."""
        timeout_s = self.cfg.flush_timeout_s if timeout_s is None else timeout_s
        self._draining.set()
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self._current_pending() and \
                not (hurry is not None and hurry.is_set()):
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=max(0.0, deadline - time.monotonic()) + 1.0)
        left = self._current_pending()
        if left:
            log.warning("%d files of session %s are not uploaded yet; they stay in its outbox "
                        "and go at the next start", left, self._current.session_path.name)

    # -- the thread ----------------------------------------------------------------------
    def _current_pending(self) -> int:
        if self._current is None:
            return 0
        return len(self._current.pending()) + len(self._unnoted)

    def _run(self) -> None:
        _name_thread(b"benchlab-upload")
        next_scan = time.monotonic() + RESCAN_S
        while not self._stop.is_set():
            scan = time.monotonic() >= next_scan
            if scan:
                next_scan = time.monotonic() + RESCAN_S
            try:
                wait = self._step(scan)
            except Exception as exc:  # the thread must outlive anything one file does
                log.warning("upload: %s; tried again in %g s", exc, self.cfg.retry_max_s)
                wait = self.cfg.retry_max_s
            if wait is None:  # nothing waits: until a file closes, or the next look
                self._wake.wait(max(0.0, next_scan - time.monotonic()))
                self._wake.clear()
            elif wait > 0:
                self._wake.clear()
                # The drain at exit cuts a back-off short (then tries every second until
                # flush_timeout_s); a new file does not.
                if self._draining.is_set():
                    self._stop.wait(min(wait, 1.0))
                else:
                    self._draining.wait(wait)

    def _step(self, scan: bool) -> float | None:
        """One file: how long to wait before the next, or None when none waits."""
        if self._unnoted:
            self._note()
        if scan:
            self._scan()
        job = self._next()
        return None if job is None else self._send(*job)

    def _scan(self) -> None:
        """Take up outboxes written by earlier agents and other commands."""
        for path in outboxes(self.data_root):
            if path in self._foreign:
                continue
            current = self._current is not None and path == self._current.session_path
            if not current and agent_alive(path):
                continue  # another agent on this data root sends its own session
            box = self._boxes.get(path)
            if box is None:
                box = Outbox.open(path)
                # The same store by its URI: an endpoint may move (a renamed MinIO
                # service); this agent's endpoint and credentials reach it now.
                if box.header.get("store") != self.store.uri:
                    self._foreign.add(path)
                    if box.pending():
                        log.warning("session %s has files waiting for %s, not for this "
                                    "agent's store %s; they are left in its outbox",
                                    path.name, box.header.get("store"), self.store)
                    continue
                self._boxes[path] = box
            else:
                box.refresh()
        for path in [p for p in self._boxes if not p.exists()]:
            del self._boxes[path]  # removed (retention waits for it, a person may not)

    def _next(self) -> tuple[Outbox, Pending] | None:
        oldest: tuple[Outbox, Pending] | None = None
        for box in self._boxes.values():
            items = box.pending()
            if items and (oldest is None or items[0].n < oldest[1].n):
                oldest = (box, items[0])
        return oldest

    def _send(self, box: Outbox, item: Pending) -> float:
        """Upload one file; returns how long to wait before the next."""
        try:
            kind, name = object_name(item.relpath)
        except ValueError as exc:  # a line no agent writes: skipped, never blocks the rest
            box.gone(item)
            self.counters.add("upload.failures", 1, reason="local")
            log.warning("outbox of %s: %s; skipped", box.session_path, exc)
            return 0.0
        local = box.session_path / item.relpath
        try:
            data = local.read_bytes()
        except FileNotFoundError:
            box.gone(item)
            self.counters.add("upload.failures", 1, "a file in an upload outbox was removed "
                              "before it could be uploaded; it is skipped", reason="local")
            log.warning("%s is gone; it is not uploaded", local)
            return 0.0
        except OSError as exc:
            self.counters.add("upload.failures", 1, reason="local")
            log.warning("cannot read %s for upload: %s; tried again", local, exc)
            return self._back_off()
        h = box.header
        key = f"{SessionPlace(h['node'], h['date'], h['session']).folder(kind)}/{name}"
        try:
            self.store.put(key, data)
        except Exception as exc:  # any store error: the file stays in the outbox
            return self._failed(local, exc)
        box.done(item, len(data))
        self.counters.add("upload.bytes", len(data))
        self.counters.add("upload.objects", 1)
        if self._failing:
            log.info("uploads to %s work again", self.store)
            self._failing = ""
            self._disk_warned = False
        self._failures_in_row = 0
        rate = self.cfg.bandwidth_bytes_s
        return len(data) / rate if rate > 0 else 0.0

    def _failed(self, local: Path, exc: BaseException) -> float:
        kind = "refused" if refused(exc) else "down"
        self.counters.add("upload.failures", 1, reason="refused" if kind == "refused"
                          else "unreachable")
        if kind != self._failing:
            if kind == "refused":
                log.error("the store %s refuses uploads: %s. Check the credentials (AWS_* or "
                          "GOOGLE_APPLICATION_CREDENTIALS, the pod's cloud identity) and that "
                          "the bucket exists; files stay in their session's outbox and are "
                          "tried again every %g s", self.store, exc, self.cfg.retry_max_s)
            else:
                log.warning("cannot upload %s to %s: %s; it stays in the outbox and is tried "
                            "again (back-off up to %g s); the session is kept locally "
                            "until it is uploaded", local.name, self.store, exc,
                            self.cfg.retry_max_s)
            self._failing = kind
        self._check_disk()
        return self.cfg.retry_max_s if kind == "refused" else self._back_off()

    def _back_off(self) -> float:
        self._failures_in_row += 1
        wait = min(self.cfg.retry_max_s, 2.0 ** (self._failures_in_row - 1))
        return wait * random.uniform(0.8, 1.0)

    def _check_disk(self) -> None:
        if self._disk_warned:
            return
        try:
            usage = shutil.disk_usage(self.data_root)
        except OSError:
            return
        if usage.used / max(usage.total, 1) >= DISK_WARN_FULL:
            self._disk_warned = True
            log.warning("the disk holding %s is %.0f%% full and %.1f MiB wait to be uploaded; "
                        "retention keeps every session with files in its outbox, so fix the "
                        "uploads (see above) or free space", self.data_root,
                        100 * usage.used / usage.total, self.waiting()[1] / 2**20)

    # -- the gauges (read at each export or scrape) ----------------------------------------
    def waiting(self) -> tuple[int, int, int]:
        """Files and bytes in the outboxes, and when the oldest was added (ns; 0: none);
        looked at no more than once a second."""
        if time.monotonic() - self._waiting_at >= 1.0:
            files = size = oldest = 0
            for box in list(self._boxes.values()):
                items = box.pending()
                if items:
                    files += len(items)
                    size += box.pending_bytes()
                    oldest = min(oldest or items[0].n, items[0].n)
            self._waiting_cache = (files, size, oldest)
            self._waiting_at = time.monotonic()
        return self._waiting_cache

    def lag_s(self) -> float:
        """How long the oldest file waiting has waited (0 when none waits)."""
        oldest = self.waiting()[2]
        return max(0.0, (time.time_ns() - oldest) / 1e9) if oldest else 0.0


def _name_thread(name: bytes) -> None:
    """The OS name of the calling thread (``top -H``, ``/proc/PID/task/*/comm``), so the
    uploader's CPU can be told from the agent's (benchmarks/upload_cost.py reads it)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name[:15]), 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def upload_now(session_path: Path, relpath: str) -> bool:
    """For a command that writes into a session recorded with uploads on (``report``):
    ``relpath`` joins its outbox and goes now, to the store the outbox names. If it cannot,
    it waits in the outbox for the agent, which looks at outboxes every ``RESCAN_S``."""
    box = open_outbox(session_path)
    if box is None or not box.header.get("store"):
        return False
    box.add(relpath)
    cfg = UploadConfig(uri=box.header["store"], endpoint=box.header.get("endpoint", ""))
    try:
        uploader = Uploader(cfg, str(session_path.parent.parent), AgentCounters())
    except ConfigError as exc:
        log.warning("%s is not uploaded: %s", relpath, exc)
        return False
    item = next(i for i in box.pending() if i.relpath == relpath)
    uploader._send(box, item)  # a failure is logged there and counted
    if any(i.relpath == relpath for i in box.pending()):
        return False
    print(f"uploaded {relpath} to {uploader.store}")
    return True


def _build(cfg: Config, ctx: BuildContext) -> Built:
    return Built(file_sinks=[Uploader(cfg.upload, cfg.data_root, ctx.counters)])


def validate(upload: UploadConfig) -> None:
    uri = upload.uri.strip()
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if uri and (scheme not in ("", "s3", "gs", "gcs", "abfs", "abfss", "az", "file")
                or (not scheme and not uri.startswith("/"))):
        raise setting_error("upload.uri", f"{uri!r}: use s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, "
                            "abfs://CONTAINER@ACCOUNT.dfs.core.windows.net/PREFIX or an "
                            "absolute path (a shared volume)")


COMPONENT = Component(
    "upload", "upload", lambda cfg: bool(cfg.upload.uri), _build, settings=UploadConfig,
    env={"BENCHLAB_UPLOAD_URI": "uri", "BENCHLAB_UPLOAD_ENDPOINT": "endpoint"},
    ranges={"bandwidth_bytes_s": (0.0, 1e12), "retry_max_s": (0, 86400),
            "flush_timeout_s": (0.0, 3600)},
    validate=validate)
