"""The live page's memory: a ring a stage pair of the newest frames of all its streams
(end time, the stream, latency, the primary source's mean power and energy per frame: 24
bytes a frame), none older than ``KEEP_S`` (15 minutes), and the per-second figures of
seconds that are done.

A ring starts at ``FIRST_FRAMES`` frames and, once full, grows in one step to hold
``KEEP_S`` at the rate it gets frames (a pair of a frame a minute keeps 6 KiB, one of 64
cameras at 30 fps 48 MiB), up to ``MAX_FRAMES``,
while all the rings stay within ``[live] max_bytes``. Past that a ring keeps the newest
frames it can hold and the page says what it covers.
"""

from __future__ import annotations

import numpy as np

MAX_FRAMES = 1 << 21  # 48 MiB: 15 minutes at 2,300 frames/s (64 cameras at 30 fps)
FIRST_FRAMES = 256
FRAME_BYTES = 24  # int64 end time, int32 stream, three float32
SECOND_BYTES = 200  # a settled second's figures: a dict entry and a tuple of five floats
KEEP_S = 900
SETTLED_S = 5.0  # a second this far behind the newest frame gets no more frames (mostly)
RATE_S = 1.0  # a ring's rate is taken over at least this long
GROWTH = 2  # a ring grows to at most this many times the frames of a burst
BURST_S = 30.0  # frames that came over less than this may be a burst
LATE_S = 10  # frames arrive in time order give or take this (batches, late senders)


class FrameRing:
    """The newest frames of one pair, in arrival order (nearly time order); each frame's
    stream is a code into ``streams``."""

    def __init__(self, size: int = FIRST_FRAMES, cap: int = MAX_FRAMES) -> None:
        self.t = np.zeros(size, np.int64)
        self.values = np.zeros((size, 3), np.float32)  # latency ms, power W, energy mJ
        self.code = np.zeros(size, np.int32)
        self.streams: list[str] = []
        self.codes: dict[str, int] = {}
        self.cap = cap
        self.as_burst = False  # sized for the frames of a burst, not yet for a rate
        self.n = 0  # frames ever added
        # Per-second figures of seconds that are done: second -> row
        self.seconds: dict[int, tuple[float, ...]] = {}
        self.settled_to = 0  # seconds below this are in ``seconds``

    @property
    def nbytes(self) -> int:
        return len(self.t) * FRAME_BYTES + len(self.seconds) * SECOND_BYTES

    def wanted(self, ends: np.ndarray) -> int:
        """The size to hold ``KEEP_S`` at the rate frames come, once these do not fit."""
        size = len(self.t)
        if size >= self.cap or (self.n + len(ends) <= size and not self.as_burst):
            return size
        held = self.t[:min(self.n, size)]
        first = min(int(held.min()), int(ends.min())) if len(held) else int(ends.min())
        # The rate over at least RATE_S; a burst taken for a rate is held to the ring's
        # share of the budget (LivePage._grow).
        span_s = max((int(ends.max()) - first) / 1e9, RATE_S)
        got = len(held) + len(ends)
        need = min(self.cap, int(got / span_s * KEEP_S * 1.1))
        # Frames of less than BURST_S may be a burst (100,000 in 2 s), not a rate kept
        # up for 15 minutes: at most GROWTH times what came. A ring sized so is looked at
        # again with each batch, so a steady stream takes its 15 minutes' size once it
        # has come for BURST_S (before a soak's warm-up ends: a step later reads as a leak).
        self.as_burst = span_s < BURST_S
        if self.as_burst:
            need = min(need, GROWTH * got)
        want = size
        while want < need:
            want *= 2
        return want

    def code_of(self, stream: str) -> int:
        code = self.codes.get(stream)
        if code is None:  # streams are bounded by [limits] max_streams upstream
            code = self.codes[stream] = len(self.streams)
            self.streams.append(stream)
        return code

    def grow(self, size: int) -> None:
        """Room for ``size`` frames, the frames held kept in time order."""
        held = min(self.n, len(self.t))
        t, v, c = self._ordered(0)
        # Written through now (np.full), not page by page as frames come: the ring is
        # sized for the 15 minutes its rate fills, so its memory is taken once, up front,
        # instead of creeping up for 15 minutes like a leak would.
        self.t = np.full(size, 0, np.int64)
        self.values = np.full((size, 3), 0, np.float32)
        self.code = np.full(size, 0, np.int32)
        self.t[:held], self.values[:held], self.code[:held] = t, v, c
        self.n = held

    def _ordered(self, since_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frames in arrival order from about ``since_ns`` (``LATE_S`` early)."""
        size = len(self.t)
        early = since_ns - LATE_S * 1_000_000_000
        if self.n <= size:
            lo = int(np.searchsorted(self.t[:self.n], early)) if since_ns else 0
            return self.t[lo:self.n], self.values[lo:self.n], self.code[lo:self.n]
        at = self.n % size  # the oldest slot is the next to be written
        older, newer = self.t[at:], self.t[:at]
        if since_ns and len(newer) and newer[0] >= early:  # the window starts in the older
            lo = at + int(np.searchsorted(older, early))
        elif since_ns:
            lo = int(np.searchsorted(newer, early))
            return self.t[lo:at], self.values[lo:at], self.code[lo:at]
        else:
            lo = at
        return (np.concatenate([self.t[lo:], newer]),
                np.concatenate([self.values[lo:], self.values[:at]]),
                np.concatenate([self.code[lo:], self.code[:at]]))

    def add(self, t: np.ndarray, values: np.ndarray, code: np.ndarray) -> None:
        size = len(self.t)
        if len(t) > size:
            t, values, code = t[-size:], values[-size:], code[-size:]
        at = (self.n + np.arange(len(t))) % size
        self.t[at] = t
        self.values[at] = values
        self.code[at] = code
        self.n += len(t)

    def rows(self, since_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frames ending at or after ``since_ns``, in time order: times, values, streams."""
        t, v, c = self._ordered(since_ns)
        keep = t >= since_ns
        if not keep.all():
            t, v, c = t[keep], v[keep], c[keep]
        if len(t) > 1 and np.any(t[1:] < t[:-1]):  # arrival is nearly time order
            order = np.argsort(t, kind="stable")
            t, v, c = t[order], v[order], c[order]
        return t, v, c

    @property
    def oldest_ns(self) -> int:
        """The end time of the oldest frame held."""
        return int(self.t[:min(self.n, len(self.t))].min())

    @property
    def full(self) -> bool:
        return self.n > len(self.t)


def per_second(t: np.ndarray, v: np.ndarray) -> dict[int, tuple[float, ...]]:
    """second -> (frames, p50 ms, p95 ms, mean power W, mean energy mJ) of frames ending
    in it; percentiles linear between ranks, as numpy's."""
    if not len(t):
        return {}
    sec = t // 1_000_000_000
    order = np.lexsort((v[:, 0], sec))
    sec, lat = sec[order], v[order, 0].astype(np.float64)
    starts = np.flatnonzero(np.diff(sec, prepend=sec[0] - 1))
    counts = np.diff(np.append(starts, len(sec)))
    out = {}
    power, energy = v[order, 1], v[order, 2]
    for s, c in zip(starts.tolist(), counts.tolist(), strict=True):
        qs = []
        for q in (0.5, 0.95):
            pos = q * (c - 1)
            lo = int(pos)
            hi = min(lo + 1, c - 1)
            qs.append(float(lat[s + lo] + (pos - lo) * (lat[s + hi] - lat[s + lo])))
        pw, en = power[s:s + c], energy[s:s + c]
        out[int(sec[s])] = (float(c), qs[0], qs[1],
                            float(np.nanmean(pw)) if np.isfinite(pw).any() else np.nan,
                            float(np.nanmean(en)) if np.isfinite(en).any() else np.nan)
    return out
