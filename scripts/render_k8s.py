"""Renders k8s/otel-benchlab.yaml, the plain manifests for users without Helm, from the
chart with its default values (release and namespace ``otel-benchlab``), with Helm's own
engine (helm-python-sdk). tests/test_helm_chart.py fails when the file is out of date.

Usage: python scripts/render_k8s.py [--check]
"""

from __future__ import annotations

import sys
from pathlib import Path

import helm_python

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "k8s" / "otel-benchlab.yaml"
HEADER = ("# Rendered from helm/otel-benchlab with its default values by scripts/render_k8s.py;\n"
          "# do not edit by hand. Namespace and release: otel-benchlab.\n"
          "# kubectl create namespace otel-benchlab && kubectl apply -f k8s/otel-benchlab.yaml\n")


def render() -> str:
    chart = helm_python.Chart.load(str(REPO / "helm" / "otel-benchlab"))
    out = chart.render(name="otel-benchlab", namespace="otel-benchlab", is_install=True)
    docs = []
    for path in sorted(out):
        if "/tests/" in path or not path.endswith(".yaml"):
            continue
        for doc in out[path].split("\n---\n"):
            body = doc.strip()
            if body and any(not line.startswith("#") for line in body.splitlines()):
                docs.append(f"# Source: {path}\n{body}\n")
    return HEADER + "---\n" + "---\n".join(docs)


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        return 0 if OUT.exists() and OUT.read_text() == text else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
