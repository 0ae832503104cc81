"""The process's heap: Arrow allocates with malloc unless the user chose its pool, the
choice is made before pyarrow loads, replay keeps the memory it frees, and the agent runs
Python's cycle collector once a batch."""

from __future__ import annotations

import os
import subprocess
import sys

POOL_OF_A_COMMAND = (
    "import sys\n"
    "from otel_benchlab.cli import main\n"  # the console script's module
    "assert 'pyarrow' not in sys.modules, 'pyarrow loaded before the pool was chosen'\n"
    "from otel_benchlab.agent.heap import arrow_on_the_c_heap\n"
    "arrow_on_the_c_heap()\n"
    "import pyarrow as pa\n"
    "print(pa.default_memory_pool().backend_name)\n"
)


def run_python(code: str, changes: dict[str, str | None]) -> str:
    """What ``code`` prints in a fresh interpreter, with this environment's variables
    changed: each of ``changes`` set to its value or, with None, unset."""
    env = {k: v for k, v in os.environ.items() if k not in changes}
    env.update({k: v for k, v in changes.items() if v})
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def pool(env_pool: str | None) -> str:
    return run_python(POOL_OF_A_COMMAND, {"ARROW_DEFAULT_MEMORY_POOL": env_pool})


def test_arrow_allocates_with_malloc_by_default():
    assert pool(None) == "system"


def test_a_pool_the_user_chose_is_kept():
    assert pool("mimalloc") == "mimalloc"


def test_replay_keeps_freed_memory_on_glibc():
    code = ("from otel_benchlab.agent.heap import keep_freed_memory\n"
            "print(keep_freed_memory())\n")
    assert run_python(code, {"MALLOC_MMAP_MAX_": None}) == "True"


ARENAS_AFTER_EIGHT_THREADS = (
    "import ctypes, os, re, sys, tempfile, threading\n"
    "{setup}\n"
    "def work():\n"
    "    keep = [bytearray(200_000) for _ in range(4)]  # malloc, in this thread's arena\n"
    "    barrier.wait()\n"
    "barrier = threading.Barrier(8)\n"
    "threads = [threading.Thread(target=work) for _ in range(8)]\n"
    "[t.start() for t in threads]; [t.join() for t in threads]\n"
    "libc = ctypes.CDLL('libc.so.6')\n"
    "libc.fopen.restype = ctypes.c_void_p\n"
    "path = tempfile.mktemp()\n"
    "fp = libc.fopen(path.encode(), b'w')\n"
    "libc.malloc_info(0, ctypes.c_void_p(fp)); libc.fclose(ctypes.c_void_p(fp))\n"
    "print(limited, len(re.findall(r'<heap nr=', open(path).read())))\n"
)


AGENT_SETUP = ("from otel_benchlab.agent.heap import few_malloc_arenas\n"
               "limited = few_malloc_arenas()")
# The replay command sets up its heap before it reads anything: a session that is not
# there still leaves the process as replay runs it.
REPLAY_SETUP = ("from otel_benchlab.cli import main\n"
                "limited = main(['replay', tempfile.mkdtemp() + '/none']) != 0")


def arenas(env_value: str | None, setup: str = AGENT_SETUP) -> tuple[str, int]:
    code = ARENAS_AFTER_EIGHT_THREADS.replace("{setup}", setup)
    limited, n = run_python(code, {"MALLOC_ARENA_MAX": env_value}).split()
    return limited, int(n)


def test_the_agent_uses_two_malloc_arenas_however_many_threads_allocate():
    assert arenas(None) == ("True", 2)


def test_replay_uses_one_malloc_arena_however_many_threads_allocate():
    assert arenas(None, REPLAY_SETUP) == ("True", 1)


def test_a_malloc_arena_limit_the_user_set_wins():
    limited, n = arenas("4")
    assert limited == "False" and n == 4


GC_OF_A_RUN = (
    "import gc, sys, tempfile\n"
    "from otel_benchlab.cli import main\n"
    "explicit = []  # collections run while automatic collection was off: the agent's own\n"
    "gc.callbacks.append(lambda phase, info: phase == 'start' and not gc.isenabled()\n"
    "                    and explicit.append(info['generation']))\n"
    "rc = main(['--simulate', '--duration', '2.6', '--data-root', tempfile.mkdtemp(),\n"
    "           '--prom-bind', 'off'])\n"
    "print(rc, gc.isenabled(), *gc.get_threshold(), *explicit)\n"
)


def test_the_agent_runs_the_cycle_collector_once_a_batch_and_leaves_it_as_it_was():
    # None of the caller's OTEL_* and BENCHLAB_* variables; no exporters, no probe.
    ours = {k: None for k in os.environ if k.startswith(("OTEL_", "BENCHLAB_"))}
    out = run_python(GC_OF_A_RUN, {**ours, "OTEL_TRACES_EXPORTER": "none",
                                   "OTEL_METRICS_EXPORTER": "none",
                                   "BENCHLAB_PROBE_ADDR": "off"})
    rc, enabled, *rest = out.splitlines()[-1].split()
    thresholds, explicit = rest[:3], rest[3:]
    assert rc == "0" and enabled == "True"
    assert tuple(map(int, thresholds)) == (700, 10, 10)  # Python's, untouched
    # The young generation after each batch: the first batch is at the first tick, then
    # one a second (0.25, 1.25, 2.25 s), and nothing collected on allocation counts.
    assert set(explicit) == {"0"} and 2 <= len(explicit) <= 3, explicit
