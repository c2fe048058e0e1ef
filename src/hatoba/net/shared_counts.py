"""Counts shared by the server's processes, in one block of shared memory.

The primary makes the block (`SharedCounts.create`) and passes its
descriptor to each listener worker it spawns (subprocess `pass_fds`); a
worker maps it (`SharedCounts.attach`). The primary is region 0, the
workers 1..workers-1.

Rules:
- Each process writes only its own region, so writes need no lock; every
  process reads all regions, and a count is their sum. A reader may see a
  change to one key half made (some rows done), which is off by one for a
  moment, no worse than the race between check and add that callers
  already accept.
- A region's table is count-min: a key maps to one bucket in each of ROWS
  rows, `add` changes those ROWS counters, and `count` is the smallest, over
  the rows, of the bucket's sum over the regions. A count is never too low;
  it is too high only when, in every row, the key's bucket also holds
  another live key, and then by the fewest connections such a key holds. With
  k distinct live keys (addresses not logged in, and account-address-protocol
  triples) and λ = k/WIDTH, a count is too high with chance about
  (1 - e^-λ)^ROWS and too high by two or more about (1 - e^-λ(1 + λ))^ROWS
  (keys of one connection each). Defaults, 4 rows of 32,768: at 1,000 keys
  (hatoba's default max_connections) 8·10^-7 and 4·10^-14; at 5,000,
  4·10^-4 and 10^-8; at 10,000, 0.5 % and 2·10^-6. A limit can only be hit
  early by that much: a key with one connection fewer than its limit is
  refused with the first chance, one with two fewer with the second, and so
  on. The hash is blake2b keyed with a random secret made by the primary and
  kept in the block's header, so every process hashes alike and a client
  cannot choose addresses or names that collide.
- A region's counters are 16 bits: one process holds fewer than 65,536 of
  any key's connections (callers check MAX_COUNT). The totals are 64 bits.
- When a worker dies the primary calls `clear(index)` before it starts the
  replacement, so the dead process's connections stop counting.

Size: 64 bytes of header, then per region 8 bytes of total and
ROWS × WIDTH × 2 bytes of table: 256 KiB a region, 4 MiB for 16.

After the regions, the same block holds the login cache every process
shares (store/login_cache.py): a 32-byte secret made by the primary, then
LOGIN_SLOTS slots of LOGIN_SLOT bytes that any process writes (640 KiB;
pages no login touched take no memory); then each process's heartbeat, the
time its event loop last turned, which the acceptors read to leave a
connection only to a worker that is alive.
"""

from __future__ import annotations

import mmap
import os
import secrets
import struct
import tempfile
import time
from hashlib import blake2b

ROWS = 4  # fixed: the methods below are written out for four rows (it halves their time)
WIDTH = 1 << 15  # a power of two, at most 2^16: a bucket is 16 bits of the hash, masked
MAX_COUNT = (1 << 16) - 1

_MAGIC = b"HATOBAC1"
_HEADER = struct.Struct("<8sIII16s")  # magic, workers, rows, width, hash key
_ROW_HASHES = struct.Struct("<4H")
_HEADER_SIZE = 64
LOGIN_SECRET_SIZE = 32
LOGIN_SLOTS = 1 << 14  # a power of two
LOGIN_SLOT = 40  # store/login_cache.SLOT.size
# A worker whose event loop has not beaten within this many seconds takes no new
# connections from the others (net/acceptor.py): it is dead, stopped or stuck.
ALIVE_WITHIN = 0.5


class SharedCounts:
    def __init__(self, mm: mmap.mmap, *, workers: int, index: int, fd: int, owns_fd: bool,
                 width: int, key: bytes) -> None:
        if not 0 <= index < workers:
            raise ValueError(f"region {index} is not one of the {workers}")
        self.fd = fd
        self.workers = workers
        self.index = index
        self._mm = mm
        self._owns_fd = owns_fd
        self._width = width
        self._mask = width - 1
        self._region = ROWS * width  # counters in one region's table
        self._hasher = blake2b(digest_size=_ROW_HASHES.size, key=key)
        totals_end = _HEADER_SIZE + 8 * workers
        self._totals = memoryview(mm)[_HEADER_SIZE:totals_end].cast("Q")
        self._table = memoryview(mm)[totals_end:totals_end + 2 * workers * self._region].cast("H")
        self._own = index * self._region  # where this process's region starts
        self._login_start = _regions_end(workers, width)
        self.secret = bytes(mm[self._login_start:self._login_start + LOGIN_SECRET_SIZE])
        self.slot_count = LOGIN_SLOTS
        self._slots_start = self._login_start + LOGIN_SECRET_SIZE
        beats_start = self._slots_start + LOGIN_SLOTS * LOGIN_SLOT
        self._beats = memoryview(mm)[beats_start:beats_start + 8 * workers].cast("d")

    @classmethod
    def create(cls, workers: int, *, width: int = WIDTH) -> SharedCounts:
        """The primary's block, zeroed, for `workers` processes; the primary is region 0.
        `width` is for tests that want collisions."""
        if workers < 1 or not 2 <= width <= 1 << 16 or width & (width - 1):
            raise ValueError("need workers >= 1 and a width that is a power of two, 2 to 65536")
        size = _size(workers, width)
        fd = _anonymous_file()
        try:
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size)
        except OSError:
            os.close(fd)
            raise
        key = secrets.token_bytes(16)
        mm[:_HEADER.size] = _HEADER.pack(_MAGIC, workers, ROWS, width, key)
        login_start = _regions_end(workers, width)
        mm[login_start:login_start + LOGIN_SECRET_SIZE] = secrets.token_bytes(LOGIN_SECRET_SIZE)
        return cls(mm, workers=workers, index=0, fd=fd, owns_fd=True, width=width, key=key)

    @classmethod
    def attach(cls, fd: int, workers: int, index: int) -> SharedCounts:
        """A worker's view of the block made by create(); it writes region `index`.
        The descriptor stays the caller's (the mapping holds its own)."""
        size = os.fstat(fd).st_size
        if size < _HEADER_SIZE:
            raise ValueError("descriptor is not a block of hatoba counts")
        mm = mmap.mmap(fd, size)
        magic, made_for, rows, width, key = _HEADER.unpack(mm[:_HEADER.size])
        if magic != _MAGIC or made_for != workers or rows != ROWS or size != _size(workers, width):
            mm.close()
            raise ValueError(f"descriptor is not a block of hatoba counts for {workers} processes")
        return cls(mm, workers=workers, index=index, fd=fd, owns_fd=False, width=width, key=key)

    def cells(self, key: str | tuple[str, ...]) -> tuple[int, ...]:
        """Where `key` is counted: its bucket in each row, as offsets within a region.
        count_at() and add_at() take it, so a check and an add hash once."""
        # A tuple's text starts with NUL, so it is never a str's; its parts contain none.
        text = key if isinstance(key, str) else "\0" + "\0".join(key)
        h = self._hasher.copy()
        h.update(text.encode("utf-8", "surrogatepass"))
        h0, h1, h2, h3 = _ROW_HASHES.unpack(h.digest())
        mask, width = self._mask, self._width
        return h0 & mask, width + (h1 & mask), 2 * width + (h2 & mask), 3 * width + (h3 & mask)

    def add(self, key: str | tuple[str, ...], delta: int) -> None:
        """Change this process's count of `key`, which must stay within 0..MAX_COUNT: taking
        from a key never added would take from the keys that share its buckets."""
        self.add_at(self.cells(key), delta)

    def add_at(self, cells: tuple[int, ...], delta: int) -> None:
        table, own = self._table, self._own
        c0, c1, c2, c3 = cells
        table[own + c0] += delta
        table[own + c1] += delta
        table[own + c2] += delta
        table[own + c3] += delta

    def count(self, key: str | tuple[str, ...]) -> int:
        """Every process's count of `key` (never less; see the module docstring for more)."""
        return self.count_at(self.cells(key))

    def count_at(self, cells: tuple[int, ...]) -> int:
        table, step = self._table, self._region  # table[c::step]: cell c in every region
        c0, c1, c2, c3 = cells
        return min(sum(table[c0::step]), sum(table[c1::step]), sum(table[c2::step]), sum(table[c3::step]))

    def total(self) -> int:
        return sum(self._totals)

    def loads(self) -> tuple[int, int]:
        """This process's connections and the fewest any other live process holds (net/acceptor.py);
        with no other alive, both are this process's."""
        totals, beats = self._totals.tolist(), self._beats.tolist()
        mine = totals[self.index]
        alive_since = time.monotonic() - ALIVE_WITHIN
        others = [t for i, (t, b) in enumerate(zip(totals, beats)) if i != self.index and b >= alive_since]
        return mine, min(others, default=mine)

    def beat(self) -> None:
        """This process's event loop turns (CLOCK_MONOTONIC: one clock for every process)."""
        self._beats[self.index] = time.monotonic()

    def add_total(self, delta: int) -> None:
        self._totals[self.index] += delta

    def read_slot(self, index: int) -> bytes:
        """Login cache slot `index` (store/login_cache.py), as a copy."""
        start = self._slots_start + index * LOGIN_SLOT
        return self._mm[start:start + LOGIN_SLOT]

    def write_slot(self, index: int, data: bytes) -> None:
        if len(data) != LOGIN_SLOT or not 0 <= index < LOGIN_SLOTS:
            raise ValueError("a login cache slot is LOGIN_SLOT bytes, at 0..LOGIN_SLOTS-1")
        start = self._slots_start + index * LOGIN_SLOT
        self._mm[start:start + LOGIN_SLOT] = data

    def clear(self, index: int) -> None:
        """Forget region `index`'s counts: its process is dead. Only the primary calls it."""
        if not 0 <= index < self.workers:
            raise ValueError(f"region {index} is not one of the {self.workers}")
        self._totals[index] = 0
        self._beats[index] = 0.0
        start = _HEADER_SIZE + 8 * self.workers + 2 * index * self._region
        self._mm[start:start + 2 * self._region] = bytes(2 * self._region)

    def close(self) -> None:
        self._beats.release()
        self._totals.release()
        self._table.release()
        self._mm.close()
        if self._owns_fd:
            os.close(self.fd)


def _regions_end(workers: int, width: int) -> int:
    return _HEADER_SIZE + workers * (8 + 2 * ROWS * width)


def _size(workers: int, width: int) -> int:
    return _regions_end(workers, width) + LOGIN_SECRET_SIZE + LOGIN_SLOTS * LOGIN_SLOT + 8 * workers


def _anonymous_file() -> int:
    """A descriptor of memory with no name: memfd, or an unlinked temporary file where
    there is none (not Linux, or a kernel before 3.17)."""
    try:
        return os.memfd_create("hatoba-counts")
    except (AttributeError, OSError):
        pass
    folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
    fd, path = tempfile.mkstemp(prefix="hatoba-counts-", dir=folder)
    os.unlink(path)
    return fd
