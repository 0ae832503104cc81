"""Probes for frameworks, built on ``otel_benchlab.probe`` (one module per framework)."""
