from otel_benchlab.components import Built, Component

COMPONENT = Component("jsonl_tail", "intake", lambda cfg: False, lambda cfg, ctx: Built())
