"""Makes the README's and docs' screenshots from simulated sessions: the live page of a running
agent, the report of its session, and the comparison with a run whose second stage is 5 %
slower; with --llm, the live page of ``--simulate llm`` (docs/img/llm-live.png). Needs
Debian's chromium and the test extras (playwright).

    .venv/bin/python scripts/screenshots.py [--out docs/img] [--llm]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import browser  # noqa: E402

VIEW = {"width": 1280, "height": 900}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BENCHLAB_"))}
    e.update(OTEL_TRACES_EXPORTER="none", OTEL_METRICS_EXPORTER="none",
             OTEL_LOGS_EXPORTER="none", BENCHLAB_PROBE_ADDR="off")
    return e


def agent(root: Path, session: str, seconds: int, port: int | None = None,
          config: Path | None = None, workload: str = "video") -> subprocess.Popen:
    args = [sys.executable, "-m", "otel_benchlab", "--simulate", workload,
            "--duration", str(seconds),
            "--data-root", str(root), "--session", session,
            "--prom-bind", f"127.0.0.1:{port}" if port else "off"]
    if config:
        args += ["--config", str(config)]
    return subprocess.Popen(args, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def shoot(b, url: str, out: Path, height: int, from_h2: int = 0) -> None:
    """A picture ``height`` high, from the top or from the page's ``from_h2``-th h2."""
    page = b.new_page(viewport=VIEW)
    page.goto(url)
    page.wait_for_function("document.body.dataset.drawn === 'yes'", timeout=30_000)
    page.wait_for_timeout(1500)
    top = page.locator("h2").nth(from_h2 - 1).bounding_box()["y"] - 16 if from_h2 else 0
    page.screenshot(path=str(out), full_page=True,
                    clip={"x": 0, "y": top, "width": VIEW["width"], "height": height})
    page.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "docs" / "img"))
    # 3 minutes: the simulator's load has a 20 s cycle, and in shorter runs a 5 % slower
    # stage is inside the comparison's interval
    ap.add_argument("--seconds", type=int, default=180)
    ap.add_argument("--llm", action="store_true", help="only the LLM live page")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.llm:
        with tempfile.TemporaryDirectory() as tmp, browser() as b:
            port = free_port()
            proc = agent(Path(tmp), "llm", 60, port, workload="llm")
            time.sleep(45)  # the first requests' energy is shared out ~15 s after they end
            shoot(b, f"http://127.0.0.1:{port}/", out / "llm-live.png", 520)
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        print(f"screenshot in {out / 'llm-live.png'}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        slower = root / "slower.toml"
        slower.write_text("[sim]\nstage_latency_ms = [8.0, 12.6]\n")
        port = free_port()
        base = agent(root, "baseline", args.seconds, port)
        cand = agent(root, "candidate", args.seconds, config=slower)
        with browser() as b:
            time.sleep(args.seconds - 10)
            shoot(b, f"http://127.0.0.1:{port}/", out / "live.png", 1150)
            base.wait(timeout=120)
            cand.wait(timeout=120)
            sessions = root / "sessions"
            subprocess.run([sys.executable, "-m", "otel_benchlab", "report",
                            str(sessions / "baseline")], check=True, env=env())
            shoot(b, (sessions / "baseline" / "report.html").as_uri(), out / "report.png",
                  1900)
            subprocess.run([sys.executable, "-m", "otel_benchlab", "compare",
                            str(sessions / "baseline"), str(sessions / "candidate"),
                            "--html", str(root / "compare.html")], env=env())
            # the second pair, whose stage the candidate made slower
            shoot(b, (root / "compare.html").as_uri(), out / "compare.png", 1000, from_h2=2)
        base.send_signal(signal.SIGINT)
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
