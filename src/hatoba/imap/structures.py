"""BODY and BODYSTRUCTURE values kept per message file, for every session of the process.

Mail programs ask for BODYSTRUCTURE of the same messages again and again (each
time a folder is opened, for the message list), and working it out means
reading the message and parsing its MIME tree. A Maildir file never changes
once delivered (flags live in its name, after the stem), so the values found
once stay right for as long as the file exists; the key is the folder's cur/
and the file's stem. Dovecot keeps the same facts in its index cache.

Bounded: the values of at most MAX_MESSAGES messages and MAX_BYTES in all,
the least recently used dropped first; a value larger than MAX_VALUE (a
message of thousands of parts) is not kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

MAX_MESSAGES = 20_000
MAX_BYTES = 16 * 1024 * 1024
MAX_VALUE = 64 * 1024

Key = tuple[str, str]  # (the folder's cur/ directory, the file's stem)


class StructureCache:
    """A least-recently-used map of message file -> {"BODY": ..., "BODYSTRUCTURE": ...}."""

    def __init__(self, max_messages: int = MAX_MESSAGES, max_bytes: int = MAX_BYTES) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._values: OrderedDict[Key, dict[str, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # FETCH batches run in several threads

    @staticmethod
    def key(cur: str, name: str) -> Key:
        return cur, name.split(":", 1)[0]

    def get(self, key: Key) -> dict[str, bytes] | None:
        with self._lock:
            values = self._values.get(key)
            if values is not None:
                self._values.move_to_end(key)
            return values

    def put(self, key: Key, values: dict[str, bytes]) -> None:
        size = sum(len(v) for v in values.values())
        if size > MAX_VALUE:
            return
        with self._lock:
            old = self._values.pop(key, None)
            if old is not None:
                self._bytes -= sum(len(v) for v in old.values())
            self._values[key] = values
            self._bytes += size
            while len(self._values) > self.max_messages or self._bytes > self.max_bytes:
                _, dropped = self._values.popitem(last=False)
                self._bytes -= sum(len(v) for v in dropped.values())

    def __len__(self) -> int:
        return len(self._values)

    @property
    def size(self) -> int:
        """The bytes of values kept."""
        return self._bytes


STRUCTURES = StructureCache()
