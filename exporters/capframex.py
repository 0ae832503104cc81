"""CapFrameX captures: one CSV and one JSON per (pipeline, stage pair).

Follows CapFrameX's importer (see README "CapFrameX"): the CSV header starts with
``Application`` and carries PresentMon 1.x columns; the stage latency is the frame time
(``MsBetweenPresents``); power and energy per source are extra columns CapFrameX ignores
but keeps. The JSON is CapFrameX's own capture format; measured power goes into the
``PmdCpuPower`` / ``PmdGpuPower`` / ``PmdSystemPower`` arrays, which CapFrameX plots at
``i * SampleTime`` ms from the start of the capture, so we resample the power series onto
that grid. Files are written under a temporary name that CapFrameX ignores and renamed
when complete; a capture with too few frames for CapFrameX (it needs over 20 lines) is
skipped with a log line.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa

log = logging.getLogger(__name__)

CSV_COLUMNS = [
    "Application", "ProcessID", "SwapChainAddress", "Runtime", "SyncInterval", "PresentFlags",
    "AllowsTearing", "PresentMode", "Dropped", "TimeInSeconds", "MsBetweenPresents",
    "MsBetweenDisplayChange", "MsInPresentAPI", "MsUntilRenderComplete", "MsUntilDisplayed",
]
MIN_ROWS = 20  # CapFrameX wants more than 20 lines: a header and at least 20 rows
PMD_ARRAYS = {"CPU": "PmdCpuPower", "GPU": "PmdGpuPower", "SYS": "PmdSystemPower"}


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def _num(values: np.ndarray, digits: int = 6) -> list[str]:
    return ["" if v != v else f"{v:.{digits}f}" for v in values.tolist()]


class CapFrameXWriter:
    def __init__(self, directory: Path, app: str, power_columns: list[tuple[str, str, str]],
                 sample_time_ms: int = 100, watch_dir: str | Path | None = None,
                 max_frames: int = 100_000) -> None:
        self.directory = Path(directory)
        self.app = _safe(app)
        self.power_columns = power_columns
        self.sample_time_ms = sample_time_ms
        self.watch_dir = Path(watch_dir) if watch_dir else None
        self.max_frames = max_frames
        # Per capture, chunks of the few columns a capture needs, as numpy arrays: no Arrow
        # compute kernels (which would cost a long-running agent ~9 MB) are needed.
        self._chunks: dict[tuple[str, str, str], list[dict[str, np.ndarray]]] = {}
        self._rows: dict[tuple[str, str, str], int] = {}
        self._parts: dict[tuple[str, str, str], int] = {}
        self._power: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.files_written: list[Path] = []

    def add_power(self, label: str, ts_ns: np.ndarray, watts: np.ndarray) -> None:
        if label in PMD_ARRAYS:
            self._power.setdefault(label, []).append(
                (np.asarray(ts_ns, np.int64), np.asarray(watts, np.float64)))

    def export(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        cols = self._columns(table)
        rows: dict[tuple[str, str, str], list[int]] = {}
        keys = zip(table["pipeline"].to_pylist(), table["stage_from"].to_pylist(),
                   table["stage_to"].to_pylist(), strict=True)
        for i, k in enumerate(keys):
            rows.setdefault(k, []).append(i)
        for k, idx in rows.items():
            sel = np.asarray(idx)
            self._chunks.setdefault(k, []).append({n: c[sel] for n, c in cols.items()})
            self._rows[k] = self._rows.get(k, 0) + len(sel)
            if self._rows[k] >= self.max_frames:
                self._write_group(k)

    def force_flush(self) -> bool:
        return True  # captures are written whole, at rollover and at shutdown

    def shutdown(self) -> None:
        for k in list(self._chunks):
            self._write_group(k)

    # -- writing ---------------------------------------------------------------------
    def _write_group(self, key: tuple[str, str, str]) -> None:
        chunks = self._chunks.pop(key, [])
        self._rows.pop(key, None)
        if not chunks:
            return
        order = None
        t: dict[str, np.ndarray] = {}
        for name in chunks[0]:
            t[name] = np.concatenate([c[name] for c in chunks])
            if order is None:
                order = np.argsort(t["start_ns"], kind="stable")
            t[name] = t[name][order]
        pipeline, a, b = key
        n = len(t["start_ns"])
        if n < MIN_ROWS:
            log.warning("CapFrameX capture %s %s->%s skipped: %d frames, CapFrameX needs at "
                        "least %d", pipeline, a, b, n, MIN_ROWS)
            return
        n = self._parts.get(key, 0) + 1
        self._parts[key] = n
        stem = f"{_safe(pipeline)}_{_safe(a)}_to_{_safe(b)}" + ("" if n == 1 else f"_part{n}")
        self.directory.mkdir(parents=True, exist_ok=True)
        csv_path = self.directory / f"{stem}.csv"
        json_path = self.directory / f"{stem}.json"
        _atomic_write(csv_path, self._csv(t))
        _atomic_write(json_path, json.dumps(self._json(t, pipeline, a, b)))
        self.files_written += [csv_path, json_path]
        for p in (csv_path, json_path):
            if self.watch_dir is not None:
                try:
                    self.watch_dir.mkdir(parents=True, exist_ok=True)
                    tmp = self.watch_dir / f".{p.name}.tmp"
                    shutil.copyfile(p, tmp)
                    os.replace(tmp, self.watch_dir / p.name)
                except OSError as exc:
                    log.error("cannot copy %s to CapFrameX watch folder %s: %s", p.name,
                              self.watch_dir, exc)

    def _columns(self, table: pa.Table) -> dict[str, np.ndarray]:
        names = ["start_ns", "end_ns", "latency_ms"] + [
            c for _, mean_col, energy_col in self.power_columns for c in (mean_col, energy_col)]
        cols = {n: table[n].to_numpy(zero_copy_only=False) for n in names}
        cols["frame"] = np.array(table["frame"].to_pylist(), dtype=object)
        cols["stream"] = np.array(table["stream"].to_pylist(), dtype=object)
        return cols

    def _frame_columns(self, t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = t["start_ns"]
        return {"time": (start - start[0]) / 1e9, "lat": t["latency_ms"], "start": start}

    def _csv(self, t: dict[str, np.ndarray]) -> str:
        c = self._frame_columns(t)
        n = len(t["start_ns"])
        extra_names, extra_cols = ["Frame", "Stream"], [
            ["" if f is None else str(f) for f in t["frame"]],
            [_safe(s) for s in t["stream"]],
        ]
        for label, mean_col, energy_col in self.power_columns:
            extra_names += [f"Power{_safe(label)}W", f"Energy{_safe(label)}J"]
            extra_cols += [_num(t[mean_col].astype(float), 3),
                           _num(t[energy_col].astype(float), 6)]
        fixed = f"{self.app},0,0x0000000000000000,Other,0,0,0,Unknown,0"
        time_s, lat_s = _num(c["time"], 6), _num(c["lat"], 4)
        lines = [",".join(CSV_COLUMNS + extra_names)]
        for i in range(n):
            lat = lat_s[i]
            row = [fixed, time_s[i], lat, lat, "0.0000", lat, lat]
            row += [col[i] for col in extra_cols]
            lines.append(",".join(row))
        return "\n".join(lines) + "\n"

    def _json(self, t: dict[str, np.ndarray], pipeline: str, a: str, b: str) -> dict:
        c = self._frame_columns(t)
        n = len(t["start_ns"])
        lat = [round(v, 4) for v in c["lat"].tolist()]
        capture = {
            "TimeInSeconds": [round(v, 6) for v in c["time"].tolist()],
            "MsBetweenPresents": lat, "MsInPresentAPI": [0.0] * n,
            "MsBetweenDisplayChange": lat, "MsUntilRenderComplete": lat,
            "MsUntilDisplayed": lat,
            "QPCTime": [round(v, 6) for v in (c["start"] / 1e9).tolist()],
            "PresentMode": [0] * n, "AllowsTearing": [0] * n, "SyncInterval": [0] * n,
            "Dropped": [False] * n,
        }
        run: dict = {"PresentMonRuntime": "otel-benchlab", "SampleTime": self.sample_time_ms,
                     "CaptureData": capture}
        end = int(t["end_ns"].max())
        grid = np.arange(int(c["start"][0]), end + 1, self.sample_time_ms * 1_000_000)
        for label, key in PMD_ARRAYS.items():
            chunks = self._power.get(label)
            if not chunks:
                continue
            ts = np.concatenate([x[0] for x in chunks])
            w = np.concatenate([x[1] for x in chunks])
            if len(ts) == 0:
                continue
            order = np.argsort(ts, kind="stable")
            run[key] = [round(v, 3) for v in np.interp(grid, ts[order], w[order]).tolist()]
        digest = hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()
        run["Hash"] = digest
        info = {
            "Id": str(uuid.uuid4()), "GameName": f"{pipeline} {a}->{b}",
            "ProcessName": self.app,
            "CreationDate": dt.datetime.now(dt.timezone.utc).isoformat(),
            "Comment": f"otel-benchlab stage latency {a}->{b} of pipeline {pipeline}; "
                       "frame time = stage latency",
        }
        return {"Hash": hashlib.sha256((digest + info["Id"]).encode()).hexdigest(),
                "Info": info, "Runs": [run]}


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")  # CapFrameX ignores names not ending .csv/.json
    tmp.write_text(text)
    os.replace(tmp, path)
