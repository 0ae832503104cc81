"""The C heap's handling of freed memory (glibc's malloc; a no-op elsewhere).

Memory the process gets fresh from the kernel is zeroed page by page on first touch; on
the VMs this project is measured on that costs ~3 ms a megabyte, more than most array
work does with it. A long-running agent hands freed memory back (its RSS is a promise to
the user); a batch command such as replay, which makes and drops arrays of hundreds of
megabytes, keeps it and reuses it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4
M_ARENA_MAX = -8
INT_MAX = (1 << 31) - 1  # mallopt takes a C int


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018 - glibc's, absent in other C libraries
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def arrow_on_the_c_heap() -> None:
    """Arrow allocates with malloc, as the rest of the process does, unless the user chose
    its pool (``ARROW_DEFAULT_MEMORY_POOL``). Its default pool, mimalloc, keeps what it
    took for the agent's first Parquet part writes: measured on the agent at the default
    load, RSS grew 13 MB at the first part write with mimalloc, 3 MB with malloc. Arrow
    reads the variable once, when its C++ default pool is first used, which the Parquet
    and IPC writers take (``pa.set_memory_pool`` reaches only pyarrow's own calls): so
    this runs before pyarrow is imported."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


def few_malloc_arenas(arenas: int = 2) -> bool:
    """For the long-running agent (two arenas) and replay (one): glibc gives each thread
    that allocates an arena of its own (up to 8 a core), and the agent's dozen threads
    (gRPC's, the receivers', the SDK's, the pool threads that write a CapFrameX capture)
    each allocate little, so every arena's partly used pages add up. Two arenas: 2.2 MB
    less peak RSS at the default load (119.6 against 121.8 MB), and at a 4x load's first
    capture rollover a step of ~7 MB where one build without the limit stepped by ~50 MB;
    CPU within the run-to-run spread. Replay's threads (Arrow's, the pair builders, the
    Parquet and CapFrameX writers) kept what each freed in an arena of its own, where
    another thread's next array could not reuse it, and the heap grew by fresh pages: with
    one arena, 3 M seed marks peak at 0.85-0.88 GB RSS (was 1.25-1.31), 1.3-1.7 s of
    system time (was 2.5-3.9). A ``MALLOC_ARENA_MAX`` the user set wins. Call it before
    threads start."""
    libc = _libc()
    if libc is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return libc.mallopt(M_ARENA_MAX, arenas) == 1


def keep_freed_memory() -> bool:
    """For a batch process: every allocation from the heap (none mapped and unmapped on
    its own), freed memory kept for the next one, the heap grown 256 MB at a time. Arrow
    allocates from the same heap (``arrow_on_the_c_heap``, at the command's start):
    mimalloc would hand its freed pages back to the kernel by itself, to be zeroed again
    when next used."""
    libc = _libc()
    if libc is None:
        return False
    return all(libc.mallopt(option, value) == 1 for option, value in (
        (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, INT_MAX), (M_TOP_PAD, 256 << 20)))


def return_freed_memory() -> None:
    """Hand freed heap back to the system now. glibc keeps freed memory in its arenas, so
    without this a long-running process keeps each peak in its RSS."""
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(OSError):
            libc.malloc_trim(0)
