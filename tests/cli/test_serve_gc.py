"""`hatoba serve` settles the garbage collector once its listeners are up, and limits malloc arenas."""

from __future__ import annotations

import gc
import sys
import weakref

import pytest

from hatoba import runloop


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
        runloop.settle_garbage_collector()
        assert gone() is None  # freed first, not frozen for the life of the process
        assert gc.get_freeze_count() > 0  # what start-up made leaves the collected generations
        assert gc.get_threshold() == (runloop.GC_YOUNG_THRESHOLD, *before[1:])
        assert runloop.GC_YOUNG_THRESHOLD > before[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
        gc.enable()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_malloc_arenas_are_limited_unless_the_operator_chose(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert runloop.limit_malloc_arenas() is True  # glibc took M_ARENA_MAX
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert runloop.limit_malloc_arenas() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=8")
    assert runloop.limit_malloc_arenas() is False
