"""Pure logic over records: no I/O, the same live and in replay."""
