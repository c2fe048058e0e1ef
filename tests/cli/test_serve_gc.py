"""`hatoba serve` settles the garbage collector once its listeners are up."""

from __future__ import annotations

import gc
import weakref

from hatoba.cli import serve


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_start_up_objects_are_frozen_after_a_collection_and_young_collections_are_rarer():
    before = gc.get_threshold()
    gc.disable()  # no collection but the one under test
    try:
        node = _Node()
        gone = weakref.ref(node)
        del node
        serve._settle_garbage_collector()
        assert gone() is None  # freed first, not frozen for the life of the process
        assert gc.get_freeze_count() > 0  # what start-up made leaves the collected generations
        assert gc.get_threshold() == (serve.GC_YOUNG_THRESHOLD, *before[1:])
        assert serve.GC_YOUNG_THRESHOLD > before[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
        gc.enable()
