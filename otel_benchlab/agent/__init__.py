"""The running agent: the runtime's loop and its record queue, the live status and the
agent's own counters, OpenTelemetry set-up, the bounded HTTP server that serves
``/metrics`` and the live page, and the process-wide memory settings (heap, no pandas).

May import the ground floor, ``session``, ``fleet``, ``views`` and the components
(receivers, processors, exporters): only the runtime knows all of them. Nothing outside
``commands`` imports the runtime.
"""
