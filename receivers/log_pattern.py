from otel_benchlab.components import Built, Component

COMPONENT = Component("log_pattern", "intake", lambda cfg: False, lambda cfg, ctx: Built())
