"""Replay's pairing a round at a time: marks are read in chunks and paired in rounds of
about a million, so a session of any length costs the memory of a round.

A round ends at a cut, ``margin`` behind the newest mark read: a span whose start mark is
before the cut is complete (its end, at most the pair window later, has been read), and
what lies after the cut waits for the next round. Each pair keeps the marks of its last
``margin`` before the cut beside the next round's, those already decided flagged ``done``:
a mark's partner or its earlier duplicate across the cut is then seen exactly as a
whole-session pairing sees it. Only a key seen again more than ``margin`` later counts as
new, where the whole session would call it a duplicate. Marks read more than the margin out
of order may miss their partner (counted as unpaired).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from otel_benchlab.processors.ids import group_hash
from otel_benchlab.processors.pairing import StagePairer, pair_keyed_arrays
from otel_benchlab.records import StageMark, StageSpan

FRAME_BITS = 40  # frame ids below 2**40 share one int64 key with their (pipeline, stream)
DISORDER_NS = 1_000_000_000  # how far out of order marks may be read and still pair


@dataclass
class Marks:
    """Marks as arrays; names are codes in the replay's ``NameCodes``."""

    ts: np.ndarray
    pipe: np.ndarray
    stream: np.ndarray
    stage: np.ndarray
    group: np.ndarray  # (pipeline, stream) as a ``Groups`` code
    frame: np.ndarray  # 0 where there is none
    has_frame: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, idx: np.ndarray) -> Marks:
        return Marks(*(getattr(self, f.name)[idx] for f in fields(self)))

    @staticmethod
    def concat(parts: list[Marks]) -> Marks:
        if len(parts) == 1:
            return parts[0]
        return Marks(*(np.concatenate([getattr(p, f.name) for p in parts])
                       for f in fields(Marks)))

    @staticmethod
    def empty() -> Marks:
        return Marks(np.zeros(0, np.int64), *(np.zeros(0, np.int32) for _ in range(3)),
                     np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, bool))


class NameCodes:
    """Names (pipelines, streams or stages) as small integers, the same in every chunk."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._index: dict[str, int] = {}

    def code(self, name: str) -> int:
        got = self._index.get(name)
        if got is None:
            got = self._index[name] = len(self.names)
            self.names.append(name)
        return got

    def codes(self, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if not pa.types.is_dictionary(column.type):
            column = pc.dictionary_encode(column)
        lookup = np.array([self.code(str(n)) for n in column.dictionary.to_pylist()] or [0],
                          np.int32)
        return lookup[column.indices.to_numpy(zero_copy_only=False)]

    def get(self, name: str) -> int:
        return self._index.get(name, -1)


class Groups:
    """(pipeline, stream) as a code, and each code's hash (the traces' ids)."""

    def __init__(self, session_id: str, pipes: NameCodes, streams: NameCodes) -> None:
        self.session_id = session_id
        self._pipes, self._streams = pipes, streams
        self._index: dict[int, int] = {}
        self.hashes = np.zeros(0, np.uint64)

    def codes(self, pipe: np.ndarray, stream: np.ndarray) -> np.ndarray:
        both = (pipe.astype(np.int64) << 32) | stream
        uniq, inverse = np.unique(both, return_inverse=True)
        new = []
        for value in uniq.tolist():
            if value not in self._index:
                self._index[value] = len(self._index)
                new.append(group_hash(self.session_id, self._pipes.names[value >> 32],
                                      self._streams.names[value & 0xFFFFFFFF]))
        if new:
            self.hashes = np.concatenate([self.hashes, np.array(new, np.uint64)])
        lookup = np.array([self._index[v] for v in uniq.tolist()] or [0], np.int64)
        return lookup[inverse.reshape(-1)]


@dataclass
class MarkCodes:
    pipes: NameCodes
    streams: NameCodes
    stages: NameCodes
    groups: Groups

    @classmethod
    def for_session(cls, session_id: str) -> MarkCodes:
        pipes, streams = NameCodes(), NameCodes()
        return cls(pipes, streams, NameCodes(), Groups(session_id, pipes, streams))

    def encode(self, chunk: pa.Table) -> Marks:
        pipe = self.pipes.codes(chunk["pipeline"])
        stream = self.streams.codes(chunk["stream"])
        frame = chunk["frame"].combine_chunks()
        return Marks(chunk["ts_ns"].to_numpy().astype(np.int64, copy=False), pipe, stream,
                     self.stages.codes(chunk["stage"]), self.groups.codes(pipe, stream),
                     frame.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64,
                                                                               copy=False),
                     frame.is_valid().to_numpy(zero_copy_only=False))


@dataclass
class RoundSpans:
    """One pair's spans of a round: indices into ``marks`` (the round's marks of the
    pair's two stages)."""

    marks: Marks
    start: np.ndarray
    end: np.ndarray


class PairRounds:
    """One stage pair over the rounds; ``unpaired`` counts what is decided."""

    def __init__(self, pair: tuple[str, str], window_ns: int, margin_ns: int) -> None:
        self.pair = pair
        self.window_ns = window_ns
        self.margin_ns = margin_ns
        self._tail = Marks.empty()
        self._done = np.zeros(0, bool)
        self.unpaired = {"timeout": 0, "orphan": 0, "duplicate": 0}
        self.spans = 0

    def round(self, new: Marks, codes: MarkCodes, cut_ns: int) -> RoundSpans:
        """Pair the tail and ``new``; spans whose start is before ``cut_ns`` are done."""
        a, b = codes.stages.get(self.pair[0]), codes.stages.get(self.pair[1])
        mine = np.flatnonzero((new.stage == a) | (new.stage == b)) if a >= 0 and b >= 0 \
            else np.zeros(0, np.int64)
        m = Marks.concat([self._tail, new.take(mine)]) if len(self._tail) else new.take(mine)
        done = np.concatenate([self._done, np.zeros(len(mine), bool)])
        early = m.ts < cut_ns
        start, end, lost = _pair(m, a, b, self.window_ns, codes)
        emit = ~done[start] & early[start]
        start, end = start[emit], end[emit]
        for reason, idx in lost.items():
            self.unpaired[reason] += int((~done[idx] & early[idx]).sum())
        done |= early
        keep = m.ts >= cut_ns - self.margin_ns
        self._tail, self._done = m.take(keep), done[keep]
        self.spans += len(start)
        return RoundSpans(m, start, end)


def _pair(m: Marks, a: int, b: int, window_ns: int, codes: MarkCodes
          ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(start indices, end indices, unpaired indices by reason) of the marks ``m``."""
    keyed = np.flatnonzero(m.has_frame)
    key = (m.frame[keyed] & ((1 << FRAME_BITS) - 1)) | (m.group[keyed] << FRAME_BITS)
    r = pair_keyed_arrays(key, m.stage[keyed], m.ts[keyed], a, b, window_ns)
    start, end = keyed[r.start_idx], keyed[r.end_idx]
    lost = {"timeout": keyed[r.timeout_idx], "orphan": keyed[r.orphan_idx],
            "duplicate": keyed[r.duplicate_idx]}
    if len(keyed) < len(m):
        s2, e2, lost2 = _pair_idless(m, np.flatnonzero(~m.has_frame), a, b, window_ns, codes)
        start, end = np.concatenate([start, s2]), np.concatenate([end, e2])
        lost = {k: np.concatenate([v, lost2[k]]) for k, v in lost.items()}
    return start, end, lost


def _pair_idless(m: Marks, idx: np.ndarray, a: int, b: int, window_ns: int,
                 codes: MarkCodes) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Order-based pairing of marks without frame ids, by the live pairer (its rule is
    sequential by nature; such marks are rare)."""
    stages = codes.stages.names
    pair = (stages[a], stages[b])
    pairer = StagePairer([pair], window_ns)
    order = idx[np.argsort(m.ts[idx], kind="stable")]
    where: dict[tuple, int] = {}
    results = []
    for i in order.tolist():
        mark = StageMark(int(m.ts[i]), codes.pipes.names[m.pipe[i]],
                         codes.streams.names[m.stream[i]], stages[m.stage[i]])
        where.setdefault((mark.ts_ns, mark.pipeline, mark.stream, mark.stage), i)
        results += pairer.push(mark)
    results += pairer.flush()
    starts, ends = [], []
    lost: dict[str, list[int]] = {"timeout": [], "orphan": [], "duplicate": []}
    for r in results:
        if isinstance(r, StageSpan):
            starts.append(where[(r.start_ns, r.pipeline, r.stream, r.stage_from)])
            ends.append(where[(r.end_ns, r.pipeline, r.stream, r.stage_to)])
        else:
            mk = r.mark
            lost.setdefault(r.reason, []).append(
                where[(mk.ts_ns, mk.pipeline, mk.stream, mk.stage)])
    return np.array(starts, np.int64), np.array(ends, np.int64), \
        {k: np.array(v, np.int64) for k, v in lost.items()}
