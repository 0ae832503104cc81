"""Read-only views over sessions and the running agent: the one-file report, ``compare``
and the live page. They read records and never feed them back; their statistics are pure
functions (``stats``, ``bootstrap``), their front-end files vendored in ``static/``."""
