"""The agent's and replay's processes run pyarrow as if pandas were absent (no_pandas.py).

Each test runs in a fresh interpreter: the test process has imported pandas already."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("pandas")  # the test extras install it; nothing to hide without it


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_pyarrow_converting_numpy_does_not_import_pandas_inside_the_block():
    out = _run("""
        import sys
        from otel_benchlab.agent.no_pandas import pyarrow_without_pandas
        with pyarrow_without_pandas():
            import numpy as np, pyarrow as pa, pyarrow.compute as pc
            a = pa.array(np.arange(3))
            pc.equal(pa.array(["x"]), "x")  # a Python scalar argument
            print("pandas" in sys.modules, a.to_pylist())
    """)
    assert out == "False [0, 1, 2]"


def test_pandas_imports_and_to_pandas_works_after_the_block():
    out = _run("""
        from otel_benchlab.agent.no_pandas import pyarrow_without_pandas
        import numpy as np, pyarrow as pa
        with pyarrow_without_pandas():
            t = pa.table({"a": np.arange(3)})
        import pandas
        print(type(t.to_pandas()).__name__)
    """)
    assert out == "DataFrame"


def test_a_process_that_imported_pandas_keeps_it_inside_the_block():
    out = _run("""
        import pandas, sys
        from otel_benchlab.agent.no_pandas import pyarrow_without_pandas
        with pyarrow_without_pandas():
            import pandas as again
        print(again is pandas)
    """)
    assert out == "True"


def test_replay_from_the_command_line_never_imports_pandas(tmp_path):
    raw = tmp_path / "seed" / "raw"
    raw.mkdir(parents=True)
    marks = [{"ts_ns": 10**9 + f * 16_000_000 + d, "source": "cam0",
              "kv": {"stage": stage, "frame": f}}
             for f in range(50) for stage, d in (("A", 0), ("B", 5_000_000))]
    power = [{"ts_ns": 9 * 10**8 + i * 10**8, "source": "benchlab", "kv": {"p_eps1": 40.0}}
             for i in range(12)]
    (raw / "pipeline.jsonl").write_text("\n".join(json.dumps(x) for x in marks) + "\n")
    (raw / "benchlab.jsonl").write_text("\n".join(json.dumps(x) for x in power) + "\n")
    out = _run(f"""
        import sys
        from otel_benchlab.cli import main
        rc = main(["replay", "{tmp_path / 'seed'}", "--pair", "A", "B"])
        print(rc, "pandas" in sys.modules)
    """)
    assert out.splitlines()[-1] == "0 False"
    assert list((tmp_path / "seed" / "replay" / "capframex").glob("*.csv"))
