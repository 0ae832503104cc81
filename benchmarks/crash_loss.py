"""What a crash costs: the agent (--simulate, 60 fps x 3 stages, parts every 1.5 s so kills
land around rotations) is killed with SIGKILL at random moments; for each kill, how much of
the time before it is missing from the session (parts and journals, as replay and recovery
read them). Prints the median and the maximum over the kills.

Usage: python benchmarks/crash_loss.py [--kills 20]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from otel_benchlab.receivers.stored import read_session  # noqa: E402
from tests.test_crash import kill_at, start_agent  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kills", type=int, default=20)
    args = ap.parse_args()
    rng = random.Random(1)
    root = Path(tempfile.mkdtemp(prefix="crash-")) / "data"
    lost_marks, lost_samples = [], []
    for i in range(args.kills):
        t_kill = kill_at(start_agent(root, f"k{i}"), rng.uniform(1.2, 6.0))
        stored = read_session(root / "sessions" / f"k{i}")
        lost_marks.append((t_kill - int(stored.marks["ts_ns"].to_numpy().max())) / 1e9)
        last = max(ts.max() for _, ts, _ in stored.power.values() if len(ts))
        lost_samples.append((t_kill - int(last)) / 1e9)
    for what, v in (("marks", lost_marks), ("samples", lost_samples)):
        print(f"{what}: time lost before a SIGKILL over {args.kills} kills: median "
              f"{np.median(v):.2f} s, max {np.max(v):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
