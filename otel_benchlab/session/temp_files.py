"""Temporary files that become a file by rename, made so that an existing name is never
opened: the OS picks a fresh random name and creates it (``O_EXCL``), so a file or a
symbolic link planted at a predictable ``.NAME.tmp`` in an output folder is never written
through. Readers and ``recover`` skip and remove them by their ``.NAME.`` prefix and ``.tmp``
suffix."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO


def open_temp(final: Path, mode: str = "wb") -> tuple[IO, Path]:
    """A new file beside ``final`` named ``.FINAL.<random>.tmp``, open for writing."""
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # as a plain open() under the usual umask would make it
        return os.fdopen(fd, mode), Path(name)
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise


def replace_with(final: Path, data: bytes) -> None:
    """``final`` holds ``data``, whole or not at all (a temporary file, then a rename)."""
    fh, tmp = open_temp(final)
    try:
        with fh:
            fh.write(data)
        tmp.replace(final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def is_temp_of(path: Path, suffix: str) -> bool:
    """Whether ``path`` is a temporary file of a final name ending in ``suffix``."""
    return path.name.startswith(".") and path.name.endswith(".tmp") and \
        f"{suffix}." in path.name
