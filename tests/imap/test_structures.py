"""The per-message-file cache of BODY/BODYSTRUCTURE values stays within its bounds."""

from __future__ import annotations

from hatoba.imap.structures import MAX_VALUE, StructureCache
from hatoba.proto.imap import fetch as F
from hatoba.proto.imap.types import FetchItem, MessageMeta


def test_key_is_the_stem_so_a_flag_change_keeps_the_values():
    assert StructureCache.key("/m/cur", "1.abc.host:2,S") == StructureCache.key("/m/cur", "1.abc.host:2,FS")
    assert StructureCache.key("/m/cur", "1.abc.host:2,S") != StructureCache.key("/n/cur", "1.abc.host:2,S")


def test_least_recently_used_dropped_past_the_message_count():
    cache = StructureCache(max_messages=2)
    cache.put(("c", "a"), {"BODY": b"1"})
    cache.put(("c", "b"), {"BODY": b"2"})
    assert cache.get(("c", "a")) == {"BODY": b"1"}  # now the most recent
    cache.put(("c", "c"), {"BODY": b"3"})
    assert cache.get(("c", "b")) is None and cache.get(("c", "a")) is not None and len(cache) == 2


def test_bytes_bounded_and_huge_values_not_kept():
    cache = StructureCache(max_bytes=10)
    cache.put(("c", "a"), {"BODY": b"x" * 6})
    cache.put(("c", "b"), {"BODY": b"y" * 6})
    assert cache.get(("c", "a")) is None and cache.size == 6
    cache.put(("c", "b"), {"BODY": b"z" * 4})  # replacing counts the old value out
    assert cache.size == 4
    big = StructureCache()
    big.put(("c", "a"), {"BODYSTRUCTURE": b"(" * (MAX_VALUE + 1)})
    assert big.get(("c", "a")) is None and big.size == 0


def test_kept_values_are_what_a_full_parse_answers():
    message = (b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
               b"hi\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--b--\r\n")
    items = [FetchItem("BODY"), FetchItem("BODYSTRUCTURE")]
    meta = MessageMeta(uid=1, seq=1)
    parsed = F.fetch(items, meta, message).data
    values = F.structure_values(message)
    assert F.structure_names(items) == {"BODY", "BODYSTRUCTURE"}
    kept = F.fetch(items, meta, b"", known=values).data
    assert kept == parsed and b'("boundary" "b")' in parsed
    assert F.structure_names([FetchItem("BODY"), FetchItem("RFC822")]) is None  # needs the message
