"""When the agent runs Python's cycle collector: once a batch, from the consumer, instead of
every so many allocations.

Records are freed by reference counting as soon as a batch is written; the collector is
only for the rare cycle (a failed export's exception and its traceback). Run on allocation
counts, it walked the second of marks, spans and frames the agent holds between batches
again and again: with Python's thresholds (700/10/10) ~210 collections and 180-190 ms of
CPU a second at 20,000 marks/s, with 10000/10/10 still ~70 ms (the collector's functions
were 10.2 % of the agent's samples at 30,000 marks/s under ``perf``; 2.3 % this way).
Right after a batch is written the agent holds the least it ever does, so a young
collection then walks only what survives the batch (the frames still being paired, the
records queued since), and a cycle made during a second is freed by the end of the next.
"""

from __future__ import annotations

import gc


class BatchCollection:
    """Automatic collection off from ``start()`` to ``stop()``, and ``after_batch()`` after
    each batch: the young generation every batch, the middle one every ``middle_every``
    batches, everything every ``full_every``. What exists at ``start()`` lives as long as
    the process and is frozen out of every collection.

    A young collection walks every object made since the last one that is still alive. At
    tens of thousands of marks a second that is the second of frames just handed to the
    span export queue (~40 ms at 30,000 marks/s, ~100,000 objects); with more than
    ``young_limit`` young objects it runs every ``young_every`` batches instead, when
    most of them are long gone (freed by reference counting), at a fifth of the cost."""

    def __init__(self, middle_every: int = 10, full_every: int = 60,
                 young_limit: int = 20_000, young_every: int = 5) -> None:
        self.middle_every = middle_every
        self.full_every = full_every
        self.young_limit = young_limit
        self.young_every = young_every
        self.batches = 0
        # The first batch collects whatever its count: what starting the receivers made.
        self._since_collected = young_every - 1
        self._was_enabled = True

    def start(self) -> None:
        gc.collect()
        gc.freeze()
        self._was_enabled = gc.isenabled()
        gc.disable()

    def stop(self) -> None:
        """Automatic collection as it was before ``start()``."""
        if self._was_enabled:
            gc.enable()

    def after_batch(self) -> int:
        """Collect the generation that is due; returns the unreachable objects found."""
        self.batches += 1
        self._since_collected += 1
        generation = (2 if self.batches % self.full_every == 0 else
                      1 if self.batches % self.middle_every == 0 else 0)
        # get_count()[0]: objects made minus objects freed since the last collection.
        if generation == 0 and gc.get_count()[0] > self.young_limit and \
                self._since_collected < self.young_every:
            return 0
        self._since_collected = 0
        return gc.collect(generation)
