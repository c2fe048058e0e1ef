"""A folder's header cache: the few header fields SEARCH, SORT, THREAD and ENVELOPE read.

Reading 10,000 message files to answer SEARCH FROM costs half a second;
this keeps, per UID, the fields in CACHED_FIELDS as the message writes them
(folded lines and all), in memory and in the file "hatoba-headers" next to
hatoba-uidlist, so a later search, or a later process, opens no message.

File (0600, ours alone; no other tool reads it):

  b"HHC1 <uidvalidity>\\n", then records appended one write() each:
  crc32 (4 bytes) | uid (4) | stem length (2) | raw length (4) | stem | raw
  (big-endian; the crc covers everything after it).

Rules:
- A message file never changes once delivered (Maildir), so an entry holds
  as long as its UID names the same file: each entry carries the file's
  stem and is used only when the folder's entry for that UID has it. Flags
  live in file names, not here: a flag change touches nothing in the cache.
- A new UIDVALIDITY throws every entry away. Entries of expunged UIDs are
  dropped from memory when the folder changes, and from the file when it is
  rewritten: once they are a quarter of it, or after a damaged record.
- A record that fails its crc ends the reading (a crash tore it, or another
  process appended over a tear); everything after it is rebuilt on demand.
- Callers hold the folder lock around every method, so one process never
  writes the file from two threads; another process may append meanwhile:
  an append is one write() with O_APPEND, which the kernel does not interleave.
- The cache is never needed: a missing, unreadable or foreign file only
  means the headers are read from the messages again.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Container
from pathlib import Path

from hatoba.fsutil import write_all
from hatoba.proto.imap.headers import header_fields
from hatoba.proto.imap.search import ParsedHeader

__all__ = ["CACHED_FIELDS", "HEADER_CACHE", "HeaderCache", "cached_part"]

log = logging.getLogger(__name__)

HEADER_CACHE = "hatoba-headers"
# What SEARCH (FROM TO CC BCC SUBJECT SENT*), SORT, THREAD and ENVELOPE read,
# plus the few more a mail client's header list asks for.
CACHED_FIELDS = frozenset({
    "bcc", "cc", "content-type", "date", "from", "in-reply-to", "message-id", "newsgroups", "priority",
    "references", "reply-to", "sender", "subject", "to", "x-priority",
})
_MAGIC = b"HHC1"
_RECORD = struct.Struct(">IIHI")  # crc, uid, stem length, raw length
_COMPACT_MIN = 256  # dead records tolerated in the file before a rewrite, at least


def cached_part(header: bytes) -> bytes:
    """The fields of a header block the cache keeps, as written; every one ends in a line end.

    header_fields() reads the result back to the same names and values.
    """
    out = []
    for f in header_fields(header):
        if f.name.lower() in CACHED_FIELDS:
            raw = f.raw.lstrip(b" \t")  # a first line that starts with blanks would fold into the one before
            out.append(raw if raw.endswith((b"\n", b"\r")) else raw + b"\n")
    return b"".join(out)


class HeaderCache:
    """uid -> (stem, ParsedHeader of the cached fields) of one folder."""

    def __init__(self, folder_path: Path) -> None:
        self.path = folder_path / HEADER_CACHE
        self.uidvalidity: int | None = None  # None until loaded
        self._entries: dict[int, tuple[str, ParsedHeader]] = {}
        self._pending: list[bytes] = []  # records not yet in the file
        self._in_file = 0  # records the file holds (live or dead)
        self._rewrite = False  # the file must be written anew, not appended to
        self._pruned_at: int | None = None  # folder generation of the last prune

    # -- reading ------------------------------------------------------------------------

    def use(self, uidvalidity: int) -> None:
        """Load the file on first use; forget everything when the folder got a new UIDVALIDITY."""
        if self.uidvalidity == uidvalidity:
            return
        if self.uidvalidity is None:
            self._load(uidvalidity)
            if self.uidvalidity == uidvalidity:
                return
        self.uidvalidity = uidvalidity
        self._entries.clear()
        self._pending.clear()
        self._in_file = 0
        self._rewrite = True

    def _load(self, uidvalidity: int) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot read %s: %s", self.path, exc.strerror)
            return
        head, sep, _ = data[:64].partition(b"\n")
        words = head.split(b" ")
        if not sep or len(words) != 2 or words[0] != _MAGIC or words[1] != b"%d" % uidvalidity:
            return  # another UIDVALIDITY, or not ours: use() starts afresh
        self.uidvalidity = uidvalidity
        pos, end = len(head) + 1, len(data)
        count = 0
        while pos + _RECORD.size <= end:
            crc, uid, stem_len, raw_len = _RECORD.unpack_from(data, pos)
            body = pos + _RECORD.size
            stop = body + stem_len + raw_len
            if stop > end or zlib.crc32(data[pos + 4 : stop]) != crc:
                break
            stem = data[body : body + stem_len].decode("utf-8", "surrogateescape")
            self._entries[uid] = (stem, ParsedHeader(data[body + stem_len : stop]))
            count += 1
            pos = stop
        self._in_file = count
        if pos != end:
            log.info("damaged record in %s; it will be rewritten", self.path)
            self._rewrite = True

    def get(self, uid: int, stem: str) -> ParsedHeader | None:
        entry = self._entries.get(uid)
        if entry is None or entry[0] != stem:
            return None
        return entry[1]

    def __len__(self) -> int:
        return len(self._entries)

    def uids(self) -> set[int]:
        return set(self._entries)

    # -- changing -----------------------------------------------------------------------

    def add(self, uid: int, stem: str, raw: bytes) -> ParsedHeader:
        """Remember the cached part `raw` (from cached_part) of message `uid`; written by save()."""
        header = ParsedHeader(raw)
        self._entries[uid] = (stem, header)
        stem_bytes = stem.encode("utf-8", "surrogateescape")
        tail = struct.pack(">IHI", uid, len(stem_bytes), len(raw)) + stem_bytes + raw
        self._pending.append(struct.pack(">I", zlib.crc32(tail)) + tail)
        return header

    def prune(self, live: Container[int], generation: int) -> None:
        """Forget entries of UIDs no longer in the folder (once per folder generation)."""
        if generation == self._pruned_at:
            return
        self._pruned_at = generation
        dead = [uid for uid in self._entries if uid not in live]
        for uid in dead:
            del self._entries[uid]

    @property
    def unsaved(self) -> bool:
        """Entries the file does not hold yet (dropping the cache now would lose their work).

        A rewrite still owed is not counted: loading the file again finds the same need.
        """
        return bool(self._pending)

    def save(self) -> None:
        """Put new entries in the file: appended, or the whole file anew when it holds too many dead ones."""
        if self.uidvalidity is None or (not self._pending and not self._rewrite):
            return
        dead = self._in_file + len(self._pending) - len(self._entries)
        try:
            if self._rewrite or dead > max(_COMPACT_MIN, len(self._entries) // 4):
                self._write_all()
            else:
                self._append()
        except OSError as exc:  # a full disk costs speed only
            log.warning("cannot write %s: %s", self.path, exc.strerror)
            self._pending.clear()

    def _append(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            st = os.fstat(fd)
            if st.st_mode & 0o777 != 0o600:
                os.fchmod(fd, 0o600)
            head = self._head() if st.st_size == 0 else b""  # new (or emptied): it needs its first line
            write_all(fd, head + b"".join(self._pending))
        finally:
            os.close(fd)
        self._in_file += len(self._pending)
        self._pending.clear()

    def _write_all(self) -> None:
        records = []
        for uid, (stem, header) in self._entries.items():
            stem_bytes = stem.encode("utf-8", "surrogateescape")
            tail = struct.pack(">IHI", uid, len(stem_bytes), len(header.raw)) + stem_bytes + header.raw
            records.append(struct.pack(">I", zlib.crc32(tail)) + tail)
        tmp = self.path.with_name(f".{HEADER_CACHE}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # a left-over temporary file keeps its old mode otherwise
            write_all(fd, self._head() + b"".join(records))
        finally:
            os.close(fd)
        # No fsync: after a crash a torn or empty file is only a cache to rebuild.
        os.replace(tmp, self.path)
        self._in_file = len(records)
        self._pending.clear()
        self._rewrite = False

    def _head(self) -> bytes:
        return _MAGIC + b" %d\n" % (self.uidvalidity or 0)

