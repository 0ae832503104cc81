"""A window of a session: ``--since`` and ``--until`` of ``report``, ``compare`` and ``replay``.

A time is ISO 8601 with an offset or ``Z`` (``2026-12-07T14:00:00+01:00``), or a duration
back from the session's end (``90s``, ``30m``, ``1h``, ``1h30m``, ``2d``): the newest row
its parts and journals hold, so a running session's ``--since 1h`` is its last hour. The
window is half open, ``[since, until)``, on a row's wall-clock time: a span's end
(``end_unix_ns``), a mark's or a sample's time (``ts_unix_ns``).

A part is read only when its rows' range overlaps the window; the range comes from the
part's Parquet statistics (its footer: no row is read for it), so the last hour of a week
costs about what an hour costs. The journal of the part in progress has no footer and is
read whole, then filtered.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otel_benchlab.settings import ConfigError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNIT_NS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
            "d": 86400 * 10**9, "w": 7 * 86400 * 10**9}


@dataclass(frozen=True)
class Window:
    since_ns: int | None  # unix ns, inclusive
    until_ns: int | None  # unix ns, exclusive

    def overlaps(self, lo: int, hi: int) -> bool:
        """Whether rows from ``lo`` to ``hi`` (inclusive) may hold one in the window."""
        return (self.since_ns is None or hi >= self.since_ns) and \
            (self.until_ns is None or lo < self.until_ns)

    def widened(self, margin_ns: int) -> Window:
        return Window(None if self.since_ns is None else self.since_ns - margin_ns,
                      None if self.until_ns is None else self.until_ns + margin_ns)

    def as_json(self) -> dict[str, str | None]:
        return {"since": iso(self.since_ns), "until": iso(self.until_ns)}

    def text(self) -> str:
        return f"{iso(self.since_ns) or 'the start'} to {iso(self.until_ns) or 'the end'}"


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str, flag: str, end_ns: int | None) -> int:
    """``text`` as unix ns: a time with an offset, or a duration back from ``end_ns``."""
    t = text.strip()
    pieces = _DURATION.findall(t)
    if pieces and _DURATION.sub("", t).strip() == "":
        if end_ns is None:
            raise ConfigError(f"{flag} {text}: a duration counts back from the session's "
                              "end, and this session has no rows to end")
        back = sum(round(float(n) * _UNIT_NS[u]) for n, u in pieces)
        return end_ns - back
    try:
        when = dt.datetime.fromisoformat(t[:-1] + "+00:00" if t.endswith(("Z", "z")) else t)
    except ValueError:
        raise ConfigError(f"{flag} {text}: give a time in ISO 8601 with an offset or Z "
                          "(2026-12-07T14:00:00Z) or a duration back from the session's "
                          "end (30m, 1h, 2d)") from None
    if when.tzinfo is None:
        raise ConfigError(f"{flag} {text}: give the time's offset or Z (a time without one "
                          "could be any zone's)")
    return int(when.timestamp() * 1e9) if when.microsecond else \
        int(when.timestamp()) * 10**9


def resolve(since: str | None, until: str | None, session_range: tuple[int, int] | None,
            what: str, flags: tuple[str, str] = ("--since", "--until")) -> Window | None:
    """The window the flags ask for in a session whose rows span ``session_range``
    (unix ns, None: no rows); ``ConfigError`` (exit 2) for a time that cannot be read, an
    empty window, or one wholly outside the session (naming its range)."""
    if since is None and until is None:
        return None
    end = session_range[1] if session_range else None
    w = Window(parse_time(since, flags[0], end) if since is not None else None,
               parse_time(until, flags[1], end) if until is not None else None)
    if w.since_ns is not None and w.until_ns is not None and w.since_ns >= w.until_ns:
        raise ConfigError(f"{flags[0]} {since} {flags[1]} {until}: the window is empty "
                          f"({w.text()})")
    if session_range is None:
        raise ConfigError(f"{what}: the session holds no rows, so no window of it")
    if not w.overlaps(*session_range):
        raise ConfigError(f"{what}: the window {w.text()} is outside the session, whose "
                          f"rows run from {iso(session_range[0])} to "
                          f"{iso(session_range[1])}")
    return w


TIME_COLUMNS = {"aligned": "end_unix_ns", "marks": "ts_unix_ns", "samples": "ts_unix_ns"}


def part_range(path: Path | Any, columns: tuple[str, ...]) -> tuple[int, int] | None:
    """The range of ``columns``' values in a Parquet part (a path or an open file), from
    its statistics (None: the part has none of them, or no statistics)."""
    import pyarrow.parquet as pq

    return range_of(pq.ParquetFile(path).metadata, columns)


def column_statistics(meta: Any, name: str) -> list[tuple[Any, int]]:
    """(statistics or None, rows) of each row group's ``name`` column in a part's footer
    (``pq.FileMetaData``); [] where the part has no such column."""
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if name not in names:
        return []
    j = names.index(name)
    return [(meta.row_group(g).column(j).statistics, meta.row_group(g).num_rows)
            for g in range(meta.num_row_groups)]


def range_of(meta: Any, columns: tuple[str, ...]) -> tuple[int, int] | None:
    """``part_range`` from a part's footer already read (``pq.FileMetaData``)."""
    lo = hi = None
    for name in columns:
        for st, _ in column_statistics(meta, name):
            if st is None or not st.has_min_max:
                return None
            lo = st.min if lo is None else min(lo, st.min)
            hi = st.max if hi is None else max(hi, st.max)
    return None if lo is None else (int(lo), int(hi))
