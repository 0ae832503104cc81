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

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4
INT_MAX = (1 << 31) - 1  # mallopt takes a C int


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018 - glibc's, absent in other C libraries
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """For a batch process: every allocation from the heap (none mapped and unmapped on
    its own), freed memory kept for the next one, the heap grown 256 MB at a time, and
    Arrow allocating from the same heap (its default pool, mimalloc, hands freed pages
    back to the kernel by itself, so they are zeroed again when next used)."""
    libc = _libc()
    if libc is None:
        return False
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
    return all(libc.mallopt(option, value) == 1 for option, value in (
        (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, INT_MAX), (M_TOP_PAD, 256 << 20)))


def return_freed_memory() -> None:
    """Hand freed heap back to the system now. glibc keeps freed memory in its arenas, so
    without this a long-running process keeps each peak in its RSS."""
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(OSError):
            libc.malloc_trim(0)
