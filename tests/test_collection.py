"""The agent's cycle collection: off on allocation counts while it runs, once a batch from
the consumer instead, and as it was afterwards."""

from __future__ import annotations

import gc
import weakref

import pytest

from otel_benchlab.agent.collection import BatchCollection


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def collection():
    c = BatchCollection(middle_every=3, full_every=6)
    c.start()
    yield c
    c.stop()
    gc.unfreeze()


@pytest.fixture
def generations():
    seen: list[int] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(record)
    yield seen
    gc.callbacks.remove(record)


def test_automatic_collection_is_off_while_it_runs_and_back_after():
    assert gc.isenabled()
    c = BatchCollection()
    c.start()
    try:
        assert not gc.isenabled()
    finally:
        c.stop()
        gc.unfreeze()
    assert gc.isenabled()


def test_it_leaves_automatic_collection_off_if_it_was_off_before():
    gc.disable()
    try:
        c = BatchCollection()
        c.start()
        c.stop()
        gc.unfreeze()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_each_batch_collects_the_young_generation_and_the_older_ones_at_their_cadence(
        collection, generations):
    for _ in range(6):
        collection.after_batch()
    assert generations == [0, 0, 1, 0, 0, 2]


def test_with_many_young_objects_alive_the_young_generation_waits_a_few_batches(
        generations):
    c = BatchCollection(middle_every=100, full_every=100, young_limit=1000, young_every=3)
    c.start()
    try:
        for _ in range(2):
            c.after_batch()  # few young objects: collected each batch
        assert generations == [2, 0, 0]  # start() collects everything once
        held = []
        for _ in range(6):
            held += [Node() for _ in range(1500)]  # a batch's objects, still alive
            c.after_batch()
        assert generations == [2, 0, 0, 0, 0]  # every third batch while over the limit
    finally:
        c.stop()
        gc.unfreeze()


def test_a_cycle_made_during_a_batch_is_freed_after_it(collection):
    a, b = Node(), Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    del a, b
    assert alive() is not None  # no collection on allocation counts
    collection.after_batch()
    assert alive() is None


def test_what_exists_at_start_is_frozen_out_of_collections():
    before = Node()
    c = BatchCollection()
    c.start()
    try:
        assert gc.get_freeze_count() > 0
        assert not any(o is before for o in gc.get_objects())
    finally:
        c.stop()
        gc.unfreeze()
