"""The seed project's JSONL lines (``{"ts_ns", "source", "kv": {...}}``) one at a time:
what makes a line a stage mark. Kept apart from ``stored`` so the live ``--tail-jsonl``
receiver does not load the Arrow readers replay uses (Parquet, JSON, compute: ~18 MB)."""

from __future__ import annotations

INT64_MAX = (1 << 63) - 1


def _int(v: object) -> int | None:
    """A JSON integer in int64 range (floats, bools, NaN and strings are not ids or times)."""
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= INT64_MAX:
        return v
    return None


def seed_mark(rec: object) -> dict | None:
    """A seed pipeline line normalised, or None if it is not a valid mark."""
    if not isinstance(rec, dict) or not isinstance(rec.get("kv"), dict):
        return None
    kv = rec["kv"]
    ts, stage, frame = _int(rec.get("ts_ns")), kv.get("stage"), kv.get("frame")
    if ts is None or not isinstance(stage, str) or not stage:
        return None
    if frame is not None and _int(frame) is None:
        return None
    text = {k: kv.get(k) for k in ("stream", "pipeline")}
    source = rec.get("source")
    if any(v is not None and not isinstance(v, str) for v in (*text.values(), source)):
        return None
    return {"ts_ns": ts, "source": source, "kv": {"stage": stage, "frame": frame, **text}}
