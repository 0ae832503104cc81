"""LLM requests in a session's aligned rows (``processors.genai``): per model, what the
report shows and ``compare`` judges. A request's row (``arrived -> finished``) has its
tokens and its attributed energy (its prefill and decode shares); its prefill row ends at
its first token, its decode row gives the time per output token."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from otel_benchlab.receivers.stored_parts import RowWindow, iter_parts, may_hold
from otel_benchlab.session.window import Window
from otel_benchlab.views.bootstrap import Frames, compare_frames

REQUEST, PREFILL, DECODE = ("arrived", "finished"), ("scheduled", "first_token"), \
    ("first_token", "finished")
# An LLM request's pairs as the report names them (``processors.genai`` makes them).
PHASE_OF = {("arrived", "scheduled"): "queued", PREFILL: "prefill", DECODE: "decode",
            REQUEST: "request"}

PHASE_RANK = {pair: i for i, pair in enumerate(PHASE_OF)}  # the request after its phases


def phase_of(p: dict) -> str | None:
    """The LLM request phase a summary's pair is (``pairs`` entries), None for frames'."""
    return PHASE_OF.get((p["from"], p["to"]))


def pair_title(pipeline: str, a: str, b: str, stream: str = "") -> str:
    """A pair as the report titles it: an LLM request's by its phase (``llama prefill
    (scheduled→first_token)``), any other by its stages."""
    phase = PHASE_OF.get((a, b))
    return (f"{pipeline} {phase} ({a}→{b})" if phase else f"{pipeline} {a}→{b}") + (
        f" [{stream}]" if stream else "")


RENAMED = {"latency_p50_ms": "ttft_p50_ms", "latency_p95_ms": "ttft_p95_ms",
           "latency_p99_ms": "ttft_p99_ms", "latency_mean_ms": "ttft_mean_ms",
           "fps": "requests_per_s"}


@dataclass
class Requests:
    """One model's requests, a row each, in end order."""

    model: str
    end_s: np.ndarray
    ttft_ms: np.ndarray  # NaN: measured as one phase
    tpot_ms: np.ndarray  # NaN: one output token or fewer, or one phase
    input_tokens: np.ndarray  # NaN: not sent
    output_tokens: np.ndarray
    energy_j: dict[str, np.ndarray]  # attributed, per source

    def __len__(self) -> int:
        return len(self.end_s)


def read_requests(path: Path, labels: list[str], window: Window | None = None
                  ) -> list[Requests]:
    """The session's LLM requests by model (none where it has no ``request_id`` rows)."""
    folder = path / "aligned"
    if not folder.is_dir():
        return []
    energy = [c for c in _energy_columns(labels)]
    columns = ["pipeline", "stage_from", "stage_to", "start_ns", "end_ns", "request_id",
               "input_tokens", "output_tokens", *energy]
    if not may_hold(folder, "request_id"):  # a session of frames: nothing to read
        return []
    tables = []  # a part at a time: only its request rows are kept
    for t in iter_parts(folder, None, {}, [], RowWindow(window, "end_unix_ns")
                        if window else None):
        if "request_id" not in t.column_names or t["request_id"].null_count == t.num_rows:
            continue
        t = t.filter(pc.is_valid(t["request_id"]))
        tables.append(t.select([c for c in columns if c in t.column_names]))
    if not tables:
        return []
    rows = pa.concat_tables(tables, promote_options="permissive")
    return [_model(rows, model, labels) for model in
            pc.unique(rows["pipeline"]).to_pylist()]


def _energy_columns(labels: list[str]) -> list[str]:
    from otel_benchlab.session.schema import attributed_columns

    return [col for _, col in attributed_columns(labels)]


def _model(rows: pa.Table, model: str, labels: list[str]) -> Requests:
    mine = rows.filter(pc.equal(rows["pipeline"], model))

    def phase(pair: tuple[str, str]) -> pa.Table:
        return mine.filter(pc.and_(pc.equal(mine["stage_from"], pair[0]),
                                   pc.equal(mine["stage_to"], pair[1])))

    req = phase(REQUEST)
    req = req.take(pc.sort_indices(req["end_ns"]))
    ids = req["request_id"].to_pylist()
    first = dict(zip(phase(PREFILL)["request_id"].to_pylist(),
                     phase(PREFILL)["end_ns"].to_pylist(), strict=True))
    dec = phase(DECODE)
    decode = dict(zip(dec["request_id"].to_pylist(),
                      (pc.subtract(dec["end_ns"], dec["start_ns"])).to_pylist(), strict=True))
    start = req["start_ns"].to_numpy()
    out_tok = req["output_tokens"].to_numpy(zero_copy_only=False).astype(float)
    ttft = np.array([(first[i] - s) / 1e6 if i in first else np.nan
                     for i, s in zip(ids, start.tolist(), strict=True)])
    d_ns = np.array([decode.get(i, np.nan) for i in ids], float)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(out_tok > 1, d_ns / 1e6 / (out_tok - 1), np.nan)
    energy = {label: req[col].to_numpy(zero_copy_only=False).astype(float)
              for label, col in zip(labels, _energy_columns(labels), strict=True)
              if col in req.column_names}
    return Requests(model, req["end_ns"].to_numpy() / 1e9, ttft, tpot,
                    req["input_tokens"].to_numpy(zero_copy_only=False).astype(float),
                    out_tok, energy)


def _pct(v: np.ndarray, q: float) -> float | None:
    v = v[np.isfinite(v)]
    return float(np.percentile(v, q)) if len(v) else None


def figures(r: Requests, meter_j: dict[str, float]) -> dict:
    """What the report says of a model. ``meter_j``: each source's energy over the session
    (idle included), for the machine's J per output token as aggregate meters count it."""
    span = float(r.end_s[-1] - r.end_s[0]) if len(r) > 1 else 0.0
    out = np.nansum(r.output_tokens)
    per_token = {}
    for src, j in r.energy_j.items():
        ok = np.isfinite(j) & np.isfinite(r.output_tokens)
        n = float(r.output_tokens[ok].sum())
        per_token[src] = float(j[ok].sum()) / n if n > 0 else None
    return {
        "model": r.model, "requests": len(r),
        "requests_per_s": (len(r) - 1) / span if span > 0 else None,
        "output_tokens_per_s": float(out) / span if span > 0 else None,
        "input_tokens": float(np.nansum(r.input_tokens)), "output_tokens": float(out),
        "ttft_ms": {"p50": _pct(r.ttft_ms, 50), "p95": _pct(r.ttft_ms, 95)},
        "tpot_ms": {"p50": _pct(r.tpot_ms, 50), "p95": _pct(r.tpot_ms, 95)},
        "energy_j_per_request": {src: float(np.nanmean(j)) if np.isfinite(j).any() else None
                                 for src, j in r.energy_j.items()},
        "energy_j_per_output_token": per_token,
        "machine_energy_j_per_output_token": {src: j / out if out > 0 else None
                                              for src, j in meter_j.items()},
    }


def _frames(r: Requests, latency: np.ndarray) -> Frames:
    return Frames(r.end_s, latency, energy_j=dict(r.energy_j),
                  ratios={f"energy_j_per_output_token.{src}": (j, r.output_tokens)
                          for src, j in r.energy_j.items()},
                  rates={"output_tokens_per_s": r.output_tokens})


def _known(r: Requests) -> Requests:
    ok = np.isfinite(r.ttft_ms)
    return Requests(r.model, r.end_s[ok], r.ttft_ms[ok], r.tpot_ms[ok], r.input_tokens[ok],
                    r.output_tokens[ok], {k: v[ok] for k, v in r.energy_j.items()})


def compare_requests(base: Requests, cand: Requests, threshold_pct: float,
                     confidence: float) -> list[dict]:
    """The model's metrics in both runs with their intervals and verdicts: the block
    bootstrap of ``compare`` over requests (by their end), once with the time to first
    token as the latency and once with the time per output token."""
    # Requests measured as one phase (no first token known) are left out here.
    base, cand = _known(base), _known(cand)
    first = compare_frames(_frames(base, base.ttft_ms), _frames(cand, cand.ttft_ms),
                           threshold_pct, confidence)
    out = []
    for c in first:
        d = c.as_dict()
        name = d["metric"]
        if name.startswith("energy_j_per_frame."):
            d["metric"] = "energy_j_per_request." + name.split(".", 1)[1]
        else:
            d["metric"] = RENAMED.get(name, name)
        out.append(d)
    b, c = np.isfinite(base.tpot_ms), np.isfinite(cand.tpot_ms)
    tpot = compare_frames(Frames(base.end_s[b], base.tpot_ms[b]),
                          Frames(cand.end_s[c], cand.tpot_ms[c]), threshold_pct, confidence)
    for c in tpot:
        if c.metric in ("latency_p50_ms", "latency_p95_ms"):
            d = c.as_dict()
            d["metric"] = d["metric"].replace("latency", "tpot")
            out.append(d)
    return out
