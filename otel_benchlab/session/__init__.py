"""A session on disk: its folder and lock (``folder``), the journals of parts in progress,
recovery of a crashed session, retention and compaction, temporary files that become
whole files by rename, the Parquet schema, and replay (the processors run again over a
stored session).

May import the ground floor, ``fleet`` (a recovered part is queued for upload) and the
processors and exporters that write a session's files; never the running agent.
"""
