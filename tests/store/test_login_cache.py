"""The login cache: one process's, and the one worker processes share
(SharedLoginCache on the block of net/shared_counts.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from hatoba.net.shared_counts import LOGIN_SLOTS, SharedCounts
from hatoba.store.directory import Directory
from hatoba.store.login_cache import SLOT, LoginCache, SharedLoginCache
from support.hashing import CountingHasher

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PW = "correct horse battery"


@pytest.fixture
def block():
    counts = SharedCounts.create(2)
    yield counts
    counts.close()


def directory(path: Path, cache) -> Directory:
    db = Directory(path, hasher=FAST)
    db.login_cache_seconds = 60
    db.login_cache = cache
    return db


def test_a_login_verified_by_one_worker_is_remembered_by_the_other(tmp_path, block):
    other = SharedCounts.attach(block.fd, 2, 1)  # the second worker's view, as worker_main maps it
    first = directory(tmp_path / "d.db", SharedLoginCache(block))
    second = directory(tmp_path / "d.db", SharedLoginCache(other))
    try:
        first.add_domain("example.test")
        first.add_user("alice@example.test", PW)
        first._hasher = counted_first = CountingHasher(FAST)
        second._hasher = counted_second = CountingHasher(FAST)
        assert first.verify_password("alice@example.test", PW)
        assert second.verify_password("alice@example.test", PW)
        assert counted_first.calls == [PW] and counted_second.calls == []  # Argon2 once, on the first
        assert not second.verify_password("alice@example.test", PW + "x")  # a wrong one is always checked
        assert counted_second.calls == [PW + "x"]
        first.set_password("alice@example.test", "another secret")
        assert not second.verify_password("alice@example.test", PW)  # a new hash: no proof matches
        assert counted_second.calls == [PW + "x", PW]
    finally:
        first.close()
        second.close()
        other.close()


def test_the_shared_slots_hold_no_password_and_a_torn_slot_is_a_miss(block):
    cache = SharedLoginCache(block)
    proof = cache.proof("alice@example.test", "$argon2id$stored", PW)
    cache.remember("alice@example.test", proof, 60)
    slots = [block.read_slot(i) for i in range(LOGIN_SLOTS)]
    used = [s for s in slots if s != bytes(SLOT.size)]
    assert len(used) == 1 and PW.encode() not in used[0]
    assert cache.recall("alice@example.test", proof)
    index = slots.index(used[0])
    half = SLOT.size // 2
    block.write_slot(index, used[0][:half] + bytes(SLOT.size - half))  # as if read mid-write
    assert not cache.recall("alice@example.test", proof)


def test_shared_proofs_expire_and_blocks_do_not_share_secrets(block):
    cache = SharedLoginCache(block)
    proof = cache.proof("bob@example.test", "$argon2id$stored", PW)
    cache.remember("bob@example.test", proof, 0.05)
    assert cache.recall("bob@example.test", proof)
    time.sleep(0.1)
    assert not cache.recall("bob@example.test", proof)
    another = SharedCounts.create(2)
    try:
        assert SharedLoginCache(another).proof("bob@example.test", "$argon2id$stored", PW) != proof
    finally:
        another.close()


def test_one_process_cache_forgets_the_oldest_when_full():
    cache = LoginCache(size=2)
    proofs = {key: cache.proof(key, "h", PW) for key in ("a", "b", "c")}
    for key, proof in proofs.items():
        cache.remember(key, proof, 60)
    assert not cache.recall("a", proofs["a"])
    assert cache.recall("b", proofs["b"]) and cache.recall("c", proofs["c"])
    assert not cache.recall("b", proofs["c"])  # proofs are per account
