"""``otel_benchlab.probe.gstreamer`` under its earlier name."""

from otel_benchlab.probe.gstreamer import FLUSH_S, MAX_PENDING, Attachment, attach

__all__ = ["FLUSH_S", "MAX_PENDING", "Attachment", "attach"]
