"""Parts and their journals on disk: names, and reading what a crash left.

A Parquet part in progress has a journal, ``.journal-NNNNNN.arrows``: an Arrow IPC stream
of the part's rows, appended batch by batch. It is removed once ``part-NNNNNN.parquet`` is
in place; until then it is the only copy on disk of those rows. The exporter writes them,
replay and recovery read them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

# part-N, or part-FIRST-LAST: parts FIRST to LAST compacted into one (compaction.py)
PART_NAME = re.compile(r"part-(\d+)(?:-(\d+))?\.parquet$")
JOURNAL_NAME = re.compile(r"\.journal-(\d+)\.arrows$")


def part_path(directory: Path, number: int) -> Path:
    return directory / f"part-{number:06d}.parquet"


def journal_path(directory: Path, number: int) -> Path:
    return directory / f".journal-{number:06d}.arrows"


def read_journal(path: Path) -> tuple[list[pa.RecordBatch], bool]:
    """The complete batches of a journal, and whether it ended torn (a crash mid-write)."""
    batches: list[pa.RecordBatch] = []
    try:
        with pa.OSFile(str(path), "rb") as fh, pa.ipc.open_stream(fh) as reader:
            for batch in reader:
                batches.append(batch)
    except (OSError, pa.ArrowException):
        return batches, True
    return batches, False


def pending_journals(directory: Path) -> list[Path]:
    """Journals of parts that were never completed (the data only they hold)."""
    if not directory.is_dir():
        return []
    out = []
    for p in sorted(directory.iterdir()):
        m = JOURNAL_NAME.match(p.name)
        if m and not part_path(directory, int(m.group(1))).exists():
            out.append(p)
    return out
