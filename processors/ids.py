"""Deterministic trace and span ids, so a Parquet row and its trace in Tempo share an id.

A frame's trace id is a hash of (session, pipeline, stream, frame); replay of the same
session gives the same ids. Scalar and numpy forms compute the same values.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

_M64 = (1 << 64) - 1


@functools.lru_cache(maxsize=4096)
def hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def group_hash(session: str, pipeline: str, stream: str) -> int:
    return hash64(f"{session}\0{pipeline}\0{stream}")


def _mix(x: int) -> int:
    """splitmix64's finaliser: a bijective 64-bit mix."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return (x ^ (x >> 31)) or 1


def trace_id(group: int, frame_key: int) -> int:
    hi = _mix(group ^ (frame_key & _M64))
    lo = _mix(hi ^ 0x5851F42D4C957F2D)
    return (hi << 64) | lo


def span_id(trace: int, name: str) -> int:
    return _mix((trace & _M64) ^ hash64(name))


def _mix_np(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    x[x == 0] = 1
    return x


def trace_ids_np(groups: np.ndarray, frame_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vector form of ``trace_id``: returns (hi, lo) uint64 arrays."""
    hi = _mix_np(groups.astype(np.uint64) ^ frame_keys.astype(np.int64).view(np.uint64))
    lo = _mix_np(hi ^ np.uint64(0x5851F42D4C957F2D))
    return hi, lo


def span_ids_np(trace_lo: np.ndarray, name: str) -> np.ndarray:
    return span_ids_by_hash_np(trace_lo, np.uint64(hash64(name)))


def span_ids_of(traces: list[int], name: str) -> list[int]:
    """``span_id(trace, name)`` of each trace, in one vector pass."""
    lo = np.fromiter((t & _M64 for t in traces), np.uint64, len(traces))
    return span_ids_np(lo, name).tolist()


def span_ids_by_hash_np(trace_lo: np.ndarray, name_hashes: np.ndarray) -> np.ndarray:
    """``span_id`` of each trace with a name of its own, given each name's ``hash64``."""
    return _mix_np(trace_lo ^ name_hashes)


# The two ASCII hex digits of every byte value, packed so that memory order is high digit
# first whatever the machine's byte order.
_HEX_PAIRS = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), dtype=np.uint16)


def hex_np(*words: np.ndarray) -> np.ndarray:
    """Big-endian hex strings of the concatenated uint64 words, as a numpy bytes array."""
    raw = np.ascontiguousarray(
        np.stack([w.astype(np.uint64) for w in words], axis=1).astype(">u8")).view(np.uint8)
    digits = _HEX_PAIRS[raw]  # one 16-bit gather per byte: both of its hex digits
    return digits.view(f"S{digits.shape[1] * 2}").ravel()


def trace_hex(t: int) -> str:
    return f"{t:032x}"


def span_hex(s: int) -> str:
    return f"{s:016x}"
