from otel_benchlab.components import Built, Component

COMPONENT = Component("otlp_intake", "intake", lambda cfg: False, lambda cfg, ctx: Built())
