"""Real object-store protocols on loopback for the upload tests: moto's server mode (a
process that speaks S3's HTTP API), gcp-storage-emulator (Google Cloud Storage's JSON API),
and a TCP gate in front of a store that can take it away (refused connections, live ones
cut), bring it back, or slow it down."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .servers import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_REGION": "us-east-1"}


def expected_objects(session: Path, prefix: str = "lab") -> dict[str, bytes]:
    """What a session folder recorded with uploads on should have put in its store: each
    file it wrote (not the hidden ones: journals, lock, outbox) under its key, by the place
    its outbox names."""
    from otel_benchlab.fleet.outbox import Outbox
    from otel_benchlab.fleet.store import SessionPlace, object_name

    header = Outbox.open(session).header
    place = SessionPlace(header["node"], header["date"], header["session"])
    out = {}
    for p in session.rglob("*"):
        if p.is_file() and not p.name.startswith("."):
            kind, name = object_name(p.relative_to(session).as_posix())
            out[f"{prefix}/{place.folder(kind)}/{name}"] = p.read_bytes()
    return out


class _StoreProcess:
    """A store's server process on a free loopback port, its output in ``workdir/LOG``."""

    port: int
    workdir: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _launch(self, args: list[str], log: str, env: dict[str, str] | None = None) -> None:
        self.log = open(self.workdir / log, "w")  # noqa: SIM115 - lives with proc
        self.proc = subprocess.Popen([sys.executable, "-m", *args], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), \
                    socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{args[0]} did not start: " + (self.workdir / log).read_text())

    def stop(self) -> None:
        if getattr(self, "proc", None):
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.log.close()

    @staticmethod
    def _read_all(fs, root: str) -> dict[str, bytes]:  # noqa: ANN001 - a pyarrow FileSystem
        """Every object under ``root`` (BUCKET/PREFIX): key after the bucket -> bytes."""
        import pyarrow.fs as pafs

        out = {}
        for info in fs.get_file_info(pafs.FileSelector(root.rstrip("/"), recursive=True,
                                                       allow_not_found=True)):
            if info.type == pafs.FileType.File:
                with fs.open_input_stream(info.path) as fh:
                    out[info.path.split("/", 1)[1]] = fh.read()
        return out


class MotoS3(_StoreProcess):
    """``python -m moto.server`` on a free loopback port. ``check_credentials`` makes it
    refuse keys it does not know (moto's IAM checks), as a real store does."""

    def __init__(self, workdir: Path, check_credentials: bool = False) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, **CREDENTIALS)
        if check_credentials:
            self.env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"

    def start(self) -> MotoS3:
        self._launch(["moto.server", "-H", "127.0.0.1", "-p", str(self.port)], "moto.log",
                     self.env)
        return self

    def fs(self, endpoint: str = ""):  # noqa: ANN201 - a pyarrow S3FileSystem
        import pyarrow.fs as pafs

        host = (endpoint or self.endpoint).split("://", 1)[1]
        return pafs.S3FileSystem(access_key="testing", secret_key="testing",
                                 region="us-east-1", endpoint_override=host, scheme="http",
                                 allow_bucket_creation=True)

    def create_bucket(self, name: str) -> None:
        self.fs().create_dir(name)

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        """Every object under ``bucket/prefix``: key (after the bucket) -> bytes."""
        return self._read_all(self.fs(), f"{bucket}/{prefix}")


class TcpGate:
    """A TCP forwarder on its own port: ``down()`` stops listening (new connections are
    refused) and cuts every live one; ``up()`` listens again on the same port. With
    ``bps`` it sends at most that many bytes a second towards the store, so an upload takes
    a while and ``uploading()`` can say one is under way."""

    def __init__(self, target_port: int, bps: float = 0) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self.bps = bps
        self._listener: socket.socket | None = None
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.bytes_up = 0  # client -> store
        self.last_byte_up = 0.0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> TcpGate:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            live, self._live = self._live, set()
        for s in live:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._live |= {client, server}
            for a, b, up in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, up), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        try:
            while data := src.recv(4096 if up and self.bps else 65536):
                if up:
                    self.bytes_up += len(data)
                    self.last_byte_up = time.monotonic()
                    if self.bps:
                        time.sleep(len(data) / self.bps)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def uploading(self) -> bool:
        """Whether bytes went towards the store in the last 50 ms."""
        return time.monotonic() - self.last_byte_up < 0.05


class GcsEmulator(_StoreProcess):
    """gcp-storage-emulator (PyPI) on a free loopback port: Google Cloud Storage's JSON API
    in memory, reached as the Google client libraries do, through STORAGE_EMULATOR_HOST."""

    def __init__(self, workdir: Path, bucket: str) -> None:
        self.port = free_port()
        self.bucket = bucket
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self) -> GcsEmulator:
        self._launch(["gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port",
                      str(self.port), "--in-memory", "--default-bucket", self.bucket],
                     "gcs.log")
        return self

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        import pyarrow.fs as pafs

        fs = pafs.GcsFileSystem(endpoint_override=f"127.0.0.1:{self.port}", scheme="http",
                                anonymous=True)
        return self._read_all(fs, f"{self.bucket}/{prefix}")
