"""A torn or bad line in a seed JSONL file takes only itself off Arrow's fast path: the
good lines around it are parsed by Arrow, not one by one in Python (which made one torn
line cost a whole 32 MB chunk of ``json.loads``, a replay three times slower)."""

from __future__ import annotations

import json

import pytest

from otel_benchlab.receivers import stored
from otel_benchlab.receivers.jsonl_chunks import suspect_lines

LINES = 50_000


def _mark(i: int) -> bytes:
    return b'{"ts_ns": %d, "source": "cam0", "kv": {"stage": "%s", "frame": %d}}' % (
        1_000_000_000 + i * 8_000_000, b"AB"[i % 2:i % 2 + 1], i // 2)


def _seed(tmp_path, bad: dict[int, bytes], tail: bytes = b""):
    """pipeline.jsonl of LINES marks with ``bad`` lines put in place of some, and ``tail``
    after the last newline (a crash's torn line); benchlab.jsonl ends torn too."""
    raw = tmp_path / "seed" / "raw"
    raw.mkdir(parents=True)
    lines = [bad.get(i, _mark(i)) for i in range(LINES)]
    (raw / "pipeline.jsonl").write_bytes(b"\n".join(lines) + b"\n" + tail)
    power = [b'{"ts_ns": %d, "source": "benchlab", "kv": {"p_sys": 100.0}}'
             % (900_000_000 + i * 100_000_000) for i in range(4_100)]
    (raw / "benchlab.jsonl").write_bytes(b"\n".join(power) + b'\n{"ts_ns": 5, "kv": {"p_')
    return tmp_path / "seed"


@pytest.fixture
def loads_calls(monkeypatch):
    """How many lines went through Python's json.loads."""
    calls = []
    real = json.loads

    def counting(data, *args, **kwargs):
        calls.append(1)
        return real(data, *args, **kwargs)

    monkeypatch.setattr(json, "loads", counting)
    return calls


def test_a_torn_last_line_costs_one_python_parse_and_loses_only_itself(tmp_path,
                                                                        loads_calls):
    session = stored.read_session(_seed(tmp_path, {}, tail=b'{"ts_ns": 12, "kv": {"sta'))
    assert session.marks.num_rows == LINES
    assert len(session.power["sys"][1]) == 4_100
    assert len(loads_calls) <= 4  # the two torn lines (and session.json, if any)
    assert sorted(session.rejected.values()) == [1, 1]


def test_torn_lines_inside_a_file_take_only_themselves_off_the_fast_path(tmp_path,
                                                                          loads_calls):
    bad = {i: _mark(i)[:30] for i in range(1_000, LINES, 5_000)}  # 10 torn lines
    bad[30_001] = b""  # a blank line is not bad
    bad[30_003] = b"  " + _mark(30_003)  # nor one with spaces before its object
    session = stored.read_session(_seed(tmp_path, bad))
    assert session.marks.num_rows == LINES - 11
    assert len(loads_calls) <= 10 + 1 + 2
    assert session.rejected[str(tmp_path / "seed/raw/pipeline.jsonl")] == 10


def test_a_whole_looking_bad_line_costs_a_few_kb_of_python_parsing(tmp_path, loads_calls):
    bad = {20_000: b'{"ts_ns": "abc", "kv": {"stage": "A", "frame": 1}}',  # wrong type
           40_000: b'{"ts_ns": 5, "kv": {"stage": "A", "frame": 1},}',  # not JSON
           # torn by a crash, and the restarted writer's line glued to it
           45_000: _mark(45_000)[:20] + _mark(45_001)}
    session = stored.read_session(_seed(tmp_path, bad))
    assert session.marks.num_rows == LINES - 3
    # Halved down to 8 KB pieces (~120 lines each) around each bad line, not 50,000 lines.
    assert len(loads_calls) <= 3 * 2 * 130
    assert session.rejected[str(tmp_path / "seed/raw/pipeline.jsonl")] == 3


def test_the_first_bad_line_is_named_by_its_number(tmp_path, caplog):
    bad = {9_999: b'{"ts_ns": 1', 30_000: b"garbage"}
    stored.read_session(_seed(tmp_path, bad))
    said = [r.getMessage() for r in caplog.records if "pipeline.jsonl" in r.getMessage()]
    assert said and "skipped 2 " in said[0] and "first at line 10000" in said[0]


def test_the_scan_flags_exactly_the_lines_that_cannot_be_an_object():
    data = bytearray(b'{"a": 1}\n  {"a": 2}\n{"a": 3\n\n{"a": 4}\r\n{"a": 5}')
    flagged = [(k, bytes(data[s:e])) for k, s, e in suspect_lines(data, 0, len(data))]
    assert flagged == [(1, b'  {"a": 2}'), (2, b'{"a": 3'), (3, b"")]
