"""The earlier name of the framework probes, kept so that ``from otel_benchlab.probes
import gstreamer`` (as written before the probe became a room of its own) still works.
They live in ``otel_benchlab.probe`` now."""
