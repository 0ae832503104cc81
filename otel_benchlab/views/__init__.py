"""Read-only views over sessions and the running agent: the one-file report, ``compare``
and the live page. They read records and never feed them back; their statistics are pure
functions (``stats``, ``bootstrap``), their front-end files vendored in ``static/``.

May import the ground floor, ``session`` (a session's files, and replay of a seed
session's marks) and ``receivers.stored`` (the reader of stored sessions); never the running
agent or a receiver that reads hardware.
"""
