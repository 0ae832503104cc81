"""A session as the views read it: its header, and per pair the frames' rows.

Any folder that ``replay`` reads: an agent's session (its aligned Parquet parts, which
hold every span it measured, an application's OTLP spans too), and one with marks but no
aligned rows (the seed project's ``raw/*.jsonl``) or whose agent crashed (its aligned rows
end seconds before its marks), which is paired and measured here the way ``replay`` does
it, in memory, journals of the parts in progress included.

A frame's energy is its attributed share where the session has it (the figures that add
up to the meter's), else the source's energy while it ran (sessions before attribution).
"""

from __future__ import annotations

import atexit
import itertools
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from otel_benchlab.config import Config
from otel_benchlab.receivers.stored import (
    RowWindow,
    mark_chunks,
    open_session,
    read_manifest,
    read_parts,
    read_power,
    rows_range,
)
from otel_benchlab.session.folder import PROGRESS_NAME, agent_alive
from otel_benchlab.session.schema import aligned_schema, column_suffix
from otel_benchlab.session.window import Window, resolve
from otel_benchlab.settings import ConfigError
from otel_benchlab.views.digest import PairDigest
from otel_benchlab.views.digest_session import (
    SessionDigest,
    digest_session,
    name_groups,
    scan,
)

log = logging.getLogger(__name__)

_ROW_COLUMNS = ["pipeline", "stream", "stage_from", "stage_to", "start_ns", "end_ns",
                "start_unix_ns", "end_unix_ns", "latency_ms", "power_source"]


@dataclass
class PairRows:
    """One pair (pipeline, stream, stage_from -> stage_to) of one session, a row per
    frame in end order; per power source the frame's mean power (W) and energy (J)."""

    pipeline: str
    stream: str
    stage_from: str
    stage_to: str
    start_ns: np.ndarray
    end_ns: np.ndarray
    latency_ms: np.ndarray
    power_w: dict[str, np.ndarray] = field(default_factory=dict)
    energy_j: dict[str, np.ndarray] = field(default_factory=dict)
    unpaired: dict[str, int] | None = None

    @property
    def name(self) -> str:
        return f"{self.pipeline} {self.stage_from}->{self.stage_to}" + (
            f" [{self.stream}]" if self.stream else "")

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.pipeline, self.stream, self.stage_from, self.stage_to)


@dataclass
class SessionView:
    path: Path | str  # the folder, or the store address it was read from
    session_id: str
    manifest: dict
    pairs: list[PairRows]
    sources: list[str]  # power source labels, primary first
    power: dict[str, tuple[np.ndarray, np.ndarray]]  # label -> (ts_ns, W), monotonic ns
    rejected: dict[str, int] = field(default_factory=dict)
    from_marks: bool = False  # paired here from the marks (no aligned rows were stored)
    window: Window | None = None  # the part of the session read (--since, --until)
    # an agent is still writing it: its counts so far (.progress.json), {} when none yet
    running: dict | None = None
    # a session too long to hold: its figures digested (digest_session.py), pairs empty
    digest: SessionDigest | None = None
    local: Path | None = None  # the folder read (a stored session's temporary copy)
    # paired from the marks: what found no partner, by pair ("a->b")
    marks_unpaired: dict[str, dict[str, int]] | None = None

    @property
    def origin_ns(self) -> int:
        """Time zero of the charts: the first frame's start, else the first sample."""
        starts = [int(p.start_ns.min()) for p in self.pairs if len(p.start_ns)]
        if self.digest is not None:
            starts = [d.first_start for d in self.digest.pairs if d.first_start is not None]
        if starts:
            return min(starts)
        firsts = [int(ts[0]) for ts, _ in self.power.values() if len(ts)]
        return min(firsts) if firsts else 0


def _aligned_table(path: Path, rejected: dict[str, int],
                   window: Window | None = None) -> pa.Table | None:
    folder = path / "aligned"
    if not folder.is_dir():
        return None
    first = next(iter(sorted(folder.glob("part-*.parquet"))), None)
    columns = None
    if first is not None:
        try:  # the ids are never read here; at millions of rows they are most of the bytes
            columns = [c for c in pq.read_schema(first).names
                       if c not in ("trace_id", "span_id", "frame")]
        except (OSError, pa.ArrowException):
            columns = None
    names = [c for c in ("pipeline", "stream", "stage_from", "stage_to", "power_source")
             if columns is None or c in columns]
    rows = RowWindow(window, "end_unix_ns") if window else None
    parts = read_parts(folder, columns, rejected, names, rows)
    parts = [t for t in parts if t.num_rows]
    if not parts:
        return None
    return pa.concat_tables(parts, promote_options="permissive").unify_dictionaries()


def _labels_of(table: pa.Table) -> list[str]:
    primary = pc.drop_null(table["power_source"])
    labels = [primary[0].as_py()] if len(primary) else []
    labels += [c[len("power_mean_w_"):] for c in table.column_names
               if c.startswith("power_mean_w_")]
    return labels


def _pairs_of(table: pa.Table, labels: list[str],
              unpaired: dict[str, dict[str, int]] | None = None) -> list[PairRows]:
    cols = {name: table[name].to_numpy(zero_copy_only=False) for name in
            ("start_ns", "end_ns", "latency_ms")}
    order, bounds, names = name_groups(table, ["pipeline", "stream", "stage_from",
                                                "stage_to"], cols["end_ns"])

    def column(name: str) -> np.ndarray | None:
        if name not in table.column_names:
            return None
        return table[name].to_numpy(zero_copy_only=False).astype(np.float64)

    sources: dict[str, tuple[np.ndarray | None, np.ndarray | None]] = {}
    for i, label in enumerate(labels):
        sfx = "" if i == 0 else "_" + column_suffix(label)
        mean, attr, energy = (column(f"power_mean_w{sfx}"), column(f"energy_attr_j{sfx}"),
                              column(f"energy_j{sfx}"))
        use = attr if attr is not None and np.isfinite(attr).any() else energy
        sources[label] = (mean, use)
    out = []
    for g, name in enumerate(names):
        idx = order[bounds[g]:bounds[g + 1]]
        pipeline, stream, a, b = name
        rows = PairRows(pipeline, stream, a, b, cols["start_ns"][idx], cols["end_ns"][idx],
                        cols["latency_ms"][idx])
        for label, (mean, energy) in sources.items():
            if mean is not None and np.isfinite(mean[idx]).any():
                rows.power_w[label] = mean[idx]
            if energy is not None and np.isfinite(energy[idx]).any():
                rows.energy_j[label] = energy[idx]
        if unpaired is not None:
            rows.unpaired = unpaired.get(f"{a}->{b}")
        out.append(rows)
    return out


def _power_w(entry: tuple[str, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Watts over time; an energy counter (RAPL) becomes the power between its readings."""
    kind, ts, v = entry
    if kind == "power" or len(ts) < 2:
        return ts, v.astype(np.float64)
    dt = np.diff(ts) / 1e9
    dv = np.diff(v)
    ok = (dt > 0) & (dv >= 0)  # a counter that wrapped is left out
    return ts[1:][ok], dv[ok] / dt[ok]


def load_session(path: str | Path, pairs: list[tuple[str, str]] | None = None,
                 since: str | None = None, until: str | None = None,
                 flags: tuple[str, str] = ("--since", "--until"),
                 digest_over: int | None = None) -> SessionView:
    """The session at ``path`` (only ``pairs`` where given; only the rows of the window
    ``since`` to ``until`` where given, see ``session.window``); ``ConfigError`` naming it
    when it is none, or when the window cannot be read or misses the session.
    ``digest_over``: past this many aligned rows, digest them (``digest_session``)
    instead of holding them."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such session folder")
    rejected: dict[str, int] = {}
    manifest = read_manifest(path) if (path / "session.json").exists() else {}
    running = _running(path) if manifest and not manifest.get("ended_at") else None
    # A crashed agent's aligned rows stop seconds before its marks do (spans wait for the
    # energy share): such a session is paired again from its marks, as replay reads it.
    # A running one is read as it is: its parts and the journals of the parts in progress.
    crashed = running is None and bool(manifest) and (
        str(manifest.get("end_reason", "")).startswith("crash") or not manifest.get("ended_at"))
    aligned = not (crashed and (path / "raw" / "marks").is_dir())
    window = None
    if since is not None or until is not None:
        span = rows_range(path / "aligned", "end_unix_ns") if aligned else None
        if span is None and (path / "raw" / "marks").is_dir():
            span = rows_range(path / "raw" / "marks", "ts_unix_ns")
        if span is None and (path / "raw" / "pipeline.jsonl").exists():
            span = _seed_range(path)
        window = resolve(since, until, span, str(path), flags)
    found = scan(path, window) if aligned and digest_over is not None else None
    if found is not None and found.rows > digest_over:
        digest = digest_session(path, window, found=found)
        if digest is not None:
            view = SessionView(path, manifest.get("session_id", path.name), manifest, [],
                               digest.labels, _power(path, manifest, rejected, window),
                               rejected, window=window, running=running, digest=digest,
                               local=path)
            keep = set(pairs or [])
            for name in ("streams", "pairs"):
                kept = [d for d in getattr(digest, name)
                        if not keep or (d.stage_from, d.stage_to) in keep]
                setattr(digest, name, sorted(kept, key=lambda d: _order(manifest, d)))
            return view
    table = _aligned_table(path, rejected, window) if aligned else None
    if table is not None:
        labels = _labels_of(table)
        view = SessionView(path, manifest.get("session_id", path.name), manifest,
                           _pairs_of(table, labels), labels,
                           _power(path, manifest, rejected, window), rejected)
    else:
        view = _from_marks(path, manifest, pairs, window, digest_over)
    view.window, view.running, view.local = window, running, view.local or path
    if pairs:
        view.pairs = [p for p in view.pairs if (p.stage_from, p.stage_to) in set(pairs)]
    view.pairs.sort(key=lambda p: _order(manifest, p))
    return view


def _power(path: Path, manifest: dict, rejected: dict[str, int], window: Window | None
           ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each power source's watts over time (around the window)."""
    power = read_power(path, manifest, rejected, window) if (path / "raw").is_dir() else {}
    return {k: _power_w(v) for k, v in power.items()}


def _order(manifest: dict, p: PairRows | PairDigest) -> tuple:
    """Pipelines by name, pairs in the configured order, then streams by name."""
    order = {tuple(x): i for i, x in enumerate(manifest.get("config", {}).get("pairs", []))}
    return (p.pipeline, order.get((p.stage_from, p.stage_to), len(order)), p.stage_from,
            p.stream)


def _running(path: Path) -> dict | None:
    """An agent still writing the session: what it has counted so far ({} before its first
    count), else None."""
    if not agent_alive(path):
        return None
    try:
        doc = json.loads((path / PROGRESS_NAME).read_bytes())
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def _seed_range(path: Path) -> tuple[int, int] | None:
    from otel_benchlab.session.replay import marks_range

    return marks_range(path)


def _from_marks(path: Path, manifest: dict, wanted: list[tuple[str, str]] | None,
                window: Window | None = None, digest_over: int | None = None) -> SessionView:
    """The session paired again from its marks, as replay does, into aligned parts in a
    temporary folder (removed at exit), then read as an aligned session is: past
    ``digest_over`` rows digested, so a session of any length is reported in bounded
    memory."""
    from otel_benchlab.session.replay_aligned import Pairing, aligned_tables, power_labels

    try:
        stored = open_session(path, window)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: not a session (no aligned/ rows, no raw/marks/, no "
                          f"raw/pipeline.jsonl): {exc}") from None
    cfg = Config()
    for key in ("pair_window_s", "power_max_gap_s"):
        value = manifest.get("config", {}).get(key)
        if isinstance(value, (int, float)) and value > 0:
            setattr(cfg, key, float(value))
    pairs = wanted or stored.pairs or cfg.pair_tuples()
    chunks = mark_chunks(path, window, stored.rejected)
    first = next(chunks, None)
    if first is not None:
        have = set(pc.unique(first["stage"]).cast(pa.string()).to_pylist())
        pairs = [p for p in pairs if p[0] in have and p[1] in have] or _guess_pairs(first)
        chunks = itertools.chain([first], chunks)
    labels = power_labels(stored, cfg)
    found = Pairing()
    spill = _spill_folder(labels)
    for t in aligned_tables(stored, chunks, pairs, cfg, found) if pairs else ():
        spill.write(t)
    spill.close()
    local = spill.directory.parent
    view = SessionView(path, stored.session_id, manifest, [], labels,
                       {k: _power_w(v) for k, v in stored.power.items()},
                       dict(stored.rejected), from_marks=True, local=local,
                       marks_unpaired=found.unpaired)
    if digest_over is not None and found.marks and \
            sum(found.spans.values()) > digest_over:
        view.digest = digest_session(local, None)
        return view
    table = _aligned_table(local, view.rejected)
    view.pairs = _pairs_of(table, labels, found.unpaired) if table is not None else []
    return view


def _spill_folder(labels: list[str]):  # noqa: ANN202
    """The rows paired from the marks go to aligned parts in a folder of their own,
    removed at exit: read back as an aligned session's are, or digested."""
    from otel_benchlab.exporters.parquet import PartStream

    folder = Path(tempfile.mkdtemp(prefix="otel-benchlab-marks-"))
    atexit.register(shutil.rmtree, folder, True)
    return PartStream(folder / "aligned", aligned_schema(labels), 1_000_000)


def _guess_pairs(marks: pa.Table) -> list[tuple[str, str]]:
    """Consecutive stages in the order frames reach them, when the session names none."""
    stage = marks["stage"].cast(pa.string()).to_numpy(zero_copy_only=False)
    ts = marks["ts_ns"].to_numpy()
    first: dict[str, int] = {}
    for s, t in zip(stage[:10000].tolist(), ts[:10000].tolist(), strict=True):
        first.setdefault(s, t)
    ordered = sorted(first, key=first.get)
    return list(zip(ordered, ordered[1:], strict=False))
