"""The commands: one module per command (``run``, ``gst``, ``devices``, ``recover``,
``retention``, ``replay``, ``report``, ``compare``, ``sessions``; what the last three share
is in ``views``), the parser table (``parsers``: every flag and the config key it sets)
and the logging every command sets up (``logs``). ``otel_benchlab.cli`` dispatches to
them by name.

May import every room; nothing imports a command but the CLI.
"""
