"""Verified logins remembered for a while, as Dovecot's auth cache does.

Mail clients log in again every few minutes, and each Argon2 check costs
about 150 ms of CPU. A correct login leaves proof behind: a keyed hash of
(account, stored hash, password) under a secret that never leaves memory.
A later login with the same password gives the same proof and skips
Argon2; a changed password changes the stored hash, so it misses.

LoginCache keeps the proofs in one process. SharedLoginCache keeps them in
the memory the worker processes share (net/shared_counts.py), so a client
that logs in again on another worker is remembered there too: a slot per
account's hash, the newest login taking the slot. Workers write slots
without a lock; a slot read while half written gives a proof that does not
match, which is a miss, never a false hit.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
import time
from typing import Protocol

LOGIN_CACHE_SIZE = 10_000  # logins one process remembers at most
PROOF_SIZE = 32
SLOT = struct.Struct(f"<{PROOF_SIZE}sd")  # proof, monotonic time it expires


class Slots(Protocol):
    """Shared memory with fixed-size slots and a secret every process sees alike."""

    secret: bytes
    slot_count: int

    def read_slot(self, index: int) -> bytes: ...

    def write_slot(self, index: int, data: bytes) -> None: ...


class LoginCache:
    def __init__(self, size: int = LOGIN_CACHE_SIZE) -> None:
        self._secret = secrets.token_bytes(32)
        self._size = size
        self._entries: dict[str, tuple[bytes, float]] = {}

    def proof(self, key: str, stored_hash: str, password: str) -> bytes:
        return _proof(self._secret, key, stored_hash, password)

    def recall(self, key: str, proof: bytes) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry[1] > time.monotonic() and hmac.compare_digest(entry[0], proof)

    def remember(self, key: str, proof: bytes, seconds: float) -> None:
        entries = self._entries
        if len(entries) >= self._size:
            now = time.monotonic()
            for stale in [k for k, (_, until) in entries.items() if until <= now]:
                del entries[stale]
            if len(entries) >= self._size:
                entries.pop(next(iter(entries)))
        entries[key] = (proof, time.monotonic() + seconds)


class SharedLoginCache:
    def __init__(self, slots: Slots) -> None:
        self._slots = slots
        self._secret = slots.secret
        self._mask = slots.slot_count - 1
        assert slots.slot_count & self._mask == 0, "slot count must be a power of two"

    def proof(self, key: str, stored_hash: str, password: str) -> bytes:
        return _proof(self._secret, key, stored_hash, password)

    def recall(self, key: str, proof: bytes) -> bool:
        remembered, until = SLOT.unpack(self._slots.read_slot(self._slot(key)))
        # time.monotonic() is CLOCK_MONOTONIC: one clock for every process on the machine.
        return until > time.monotonic() and hmac.compare_digest(remembered, proof)

    def remember(self, key: str, proof: bytes, seconds: float) -> None:
        self._slots.write_slot(self._slot(key), SLOT.pack(proof, time.monotonic() + seconds))

    def _slot(self, key: str) -> int:
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=4, key=self._secret).digest()
        return int.from_bytes(digest, "little") & self._mask


def _proof(secret: bytes, key: str, stored_hash: str, password: str) -> bytes:
    text = f"{key}\0{stored_hash}\0{password}".encode("utf-8", "surrogatepass")
    return hmac.new(secret, text, hashlib.sha256).digest()


__all__ = ["LOGIN_CACHE_SIZE", "SLOT", "LoginCache", "SharedLoginCache"]
