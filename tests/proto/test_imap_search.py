"""SEARCH keys (RFC 9051 §6.4.4) against one message, and the SEARCH / ESEARCH responses (RFC 4731)."""

from datetime import date, datetime, timedelta, timezone

import pytest

from hatoba.proto.imap.search import (
    esearch_response,
    key_size,
    matches,
    needs_headers_only,
    needs_message,
    search_response,
)
from hatoba.proto.imap.types import MessageMeta, SearchKey, SeqRange, SequenceSet

LOCAL = datetime.now().astimezone().tzinfo

MESSAGE = b"""From: =?UTF-8?B?5bGx55Sw5aSq6YOO?= <yamada@example.test>
To: Bob <bob@example.test>
Cc: carol@example.test
Bcc: dave@example.test
Subject: =?UTF-8?Q?Caf=C3=A9_menu?= for Friday
Date: Mon, 03 Jun 2024 23:30:00 -1000
X-Mailer: Hatoba Test
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Cr=E8me br=FBl=E9e tonight
--b
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

c2VjcmV0IHBheWxvYWQ=
--b--
"""

META = MessageMeta(
    uid=17,
    seq=3,
    flags=frozenset({"\\Seen", "\\Flagged", "$Important", "\\Recent"}),
    internal_date=datetime(2024, 6, 5, 12, 0, tzinfo=LOCAL),
    size=500,
    modseq=9,
)


def K(name, **kw):
    return SearchKey(name, **kw)


def seq(*ranges, saved=False):
    return SequenceSet(tuple(SeqRange(a, b) for a, b in ranges), saved=saved)


def check(key, meta=META, message=MESSAGE, saved=()):
    return matches(key, meta, message, largest_seq=10, largest_uid=40, saved=saved)


CASES = [
    (K("ALL"), True),
    (K("ANSWERED"), False),
    (K("UNANSWERED"), True),
    (K("DELETED"), False),
    (K("UNDELETED"), True),
    (K("DRAFT"), False),
    (K("UNDRAFT"), True),
    (K("FLAGGED"), True),
    (K("UNFLAGGED"), False),
    (K("SEEN"), True),
    (K("UNSEEN"), False),
    (K("RECENT"), True),
    (K("OLD"), False),
    (K("NEW"), False),  # recent but seen
    (K("KEYWORD", text="$important"), True),
    (K("KEYWORD", text="$Junk"), False),
    (K("UNKEYWORD", text="$Junk"), True),
    (K("UNKEYWORD", text="$Important"), False),
    (K("LARGER", number=499), True),
    (K("LARGER", number=500), False),
    (K("SMALLER", number=501), True),
    (K("SMALLER", number=500), False),
    (K("MODSEQ", number=9), True),
    (K("MODSEQ", number=10), False),
    (K("UID", sequence=seq((17, 17))), True),
    (K("UID", sequence=seq((1, 16), (18, None))), False),
    (K("UID", sequence=seq((None, 10))), True),  # *:10 is 10:40
    (K("SEQSET", sequence=seq((1, 3))), True),
    (K("SEQSET", sequence=seq((4, None))), False),
    (K("SINCE", day=date(2024, 6, 5)), True),
    (K("SINCE", day=date(2024, 6, 6)), False),
    (K("BEFORE", day=date(2024, 6, 6)), True),
    (K("BEFORE", day=date(2024, 6, 5)), False),
    (K("ON", day=date(2024, 6, 5)), True),
    (K("ON", day=date(2024, 6, 4)), False),
    # Date: is June 3rd as written (June 4th in UTC): the written day counts.
    (K("SENTON", day=date(2024, 6, 3)), True),
    (K("SENTON", day=date(2024, 6, 4)), False),
    (K("SENTSINCE", day=date(2024, 6, 3)), True),
    (K("SENTSINCE", day=date(2024, 6, 4)), False),
    (K("SENTBEFORE", day=date(2024, 6, 4)), True),
    (K("SENTBEFORE", day=date(2024, 6, 3)), False),
    (K("FROM", text="山田"), True),  # RFC 2047 decoded
    (K("FROM", text="YAMADA@EXAMPLE"), True),
    (K("FROM", text="bob"), False),
    (K("TO", text="bob@"), True),
    (K("TO", text="carol"), False),
    (K("CC", text="Carol"), True),
    (K("CC", text="dave"), False),
    (K("BCC", text="dave"), True),
    (K("BCC", text="bob"), False),
    (K("SUBJECT", text="café MENU"), True),
    (K("SUBJECT", text="=?utf-8?"), False),
    (K("HEADER", header="x-mailer", text="hatoba"), True),
    (K("HEADER", header="X-Mailer", text="outlook"), False),
    (K("HEADER", header="X-Mailer", text=""), True),  # field present
    (K("HEADER", header="X-Spam", text=""), False),
    (K("BODY", text="CRÈME BRÛLÉE"), True),  # quoted-printable and latin-1 decoded
    (K("BODY", text="secret payload"), False),  # attachments are not text
    (K("BODY", text="Subject"), False),  # BODY is not the header
    (K("TEXT", text="crème"), True),
    (K("TEXT", text="x-mailer: hatoba"), True),  # TEXT covers the header
    (K("TEXT", text="absent words"), False),
    (K("NOT", keys=(K("SEEN"),)), False),
    (K("NOT", keys=(K("DRAFT"),)), True),
    (K("OR", keys=(K("DRAFT"), K("FLAGGED"))), True),
    (K("OR", keys=(K("DRAFT"), K("DELETED"))), False),
    (K("AND", keys=(K("SEEN"), K("FLAGGED"), K("TO", text="bob"))), True),
    (K("AND", keys=(K("SEEN"), K("DRAFT"))), False),
]


@pytest.mark.parametrize(("key", "expected"), CASES, ids=[f"{k.name}-{i}" for i, (k, _) in enumerate(CASES)])
def test_every_key(key, expected):
    assert check(key) is expected


def test_every_documented_key_is_covered():
    names = {k.name for k, _ in CASES}
    assert names >= set(
        "ALL ANSWERED BCC BEFORE BODY CC DELETED DRAFT FLAGGED FROM HEADER KEYWORD LARGER NEW NOT OLD ON OR"
        " RECENT SEEN SENTBEFORE SENTON SENTSINCE SINCE SMALLER SUBJECT TEXT TO UID UNANSWERED UNDELETED"
        " UNDRAFT UNFLAGGED UNKEYWORD UNSEEN MODSEQ SEQSET AND".split()
    )


def test_new_is_recent_and_unseen():
    meta = MessageMeta(uid=1, seq=1, flags=frozenset({"\\Recent"}))
    assert check(K("NEW"), meta, None)
    assert not check(K("OLD"), meta, None)


def test_saved_result_names_uids():
    saved_set = seq(saved=True)
    assert check(K("SEQSET", sequence=saved_set), saved=[17, 20])
    assert check(K("UID", sequence=saved_set), saved=[17])
    assert not check(K("UID", sequence=saved_set), saved=[3])


def test_sent_dates_fall_back_to_internal_date():
    msg = b"Subject: no date\n\nbody\n"
    assert check(K("SENTON", day=date(2024, 6, 5)), message=msg)


def test_internal_date_uses_local_day():
    # Stored in a far-west zone where it is still June 4th; the server's day is June 5th.
    when = datetime(2024, 6, 5, 2, 30, tzinfo=LOCAL).astimezone(timezone(timedelta(hours=-11)))
    assert when.day == 4
    meta = MessageMeta(uid=1, seq=1, internal_date=when)
    assert check(K("ON", day=date(2024, 6, 5)), meta, None)
    assert not check(K("ON", day=date(2024, 6, 4)), meta, None)


def test_header_only_message_is_enough_for_header_keys():
    header = MESSAGE[: MESSAGE.index(b"\n\n") + 2]
    assert check(K("SUBJECT", text="friday"), message=header)
    assert not check(K("BODY", text="crème"), message=header)


def test_lf_and_crlf_input_agree():
    crlf = MESSAGE.replace(b"\n", b"\r\n")
    for key, expected in CASES:
        assert check(key, message=crlf) is expected, key


def test_needs_message_and_headers_only():
    assert not needs_message(K("OR", keys=(K("SEEN"), K("UID", sequence=seq((1, 2))))))
    assert not needs_message(K("SINCE", day=date(2024, 1, 1)))
    assert needs_message(K("NOT", keys=(K("SUBJECT", text="x"),)))
    assert needs_message(K("SENTON", day=date(2024, 1, 1)))
    assert needs_headers_only(K("AND", keys=(K("FROM", text="a"), K("HEADER", header="X", text=""))))
    assert not needs_headers_only(K("OR", keys=(K("FROM", text="a"), K("BODY", text="b"))))
    assert not needs_headers_only(K("TEXT", text="a"))


def test_key_size_counts_nested_keys_and_sequence_ranges():
    assert key_size(K("SEEN")) == 1
    assert key_size(K("AND", keys=(K("SEEN"), K("OR", keys=(K("DRAFT"), K("NOT", keys=(K("FLAGGED"),))))))) == 6
    assert key_size(K("AND", keys=(K("SEQSET", sequence=seq((1, None), (1, None), (3, 4))),))) == 5


def test_many_overlapping_ranges_cost_one_pass():
    import time

    from hatoba.proto.imap.types import SeqRange, SequenceSet

    every = SequenceSet(tuple(SeqRange(1, None) for _ in range(16_000)))  # a 64 KB line of "1:*,"
    assert every.spans(100_000) == [(1, 100_000)]
    started = time.monotonic()
    assert every.resolve(100_000) == list(range(1, 100_001))
    assert every.pick(list(range(1, 100_001, 2)), 100_000) == list(range(1, 100_001, 2))
    assert time.monotonic() - started < 1  # not 16,000 passes over 100,000 messages
    odd = SequenceSet((SeqRange(9, 7), SeqRange(2, 2), SeqRange(3, 4), SeqRange(None, 20), SeqRange(12, None)))
    assert odd.spans(20) == [(2, 4), (7, 9), (12, 20)]  # reversed, adjacent and "*" ranges
    assert odd.spans(0) == [(2, 4), (7, 9)]  # "*" names nothing in an empty mailbox
    assert odd.pick([1, 2, 5, 8, 11, 12, 30], 20) == [2, 8, 12]


def test_search_response():
    assert search_response([1, 2, 3]) == b"* SEARCH 1 2 3\r\n"
    assert search_response([]) == b"* SEARCH\r\n"


def test_esearch_response():
    assert esearch_response("A282", [1, 2, 3, 9], ("MIN", "MAX", "COUNT", "ALL"), uid=True) == (
        b'* ESEARCH (TAG "A282") UID MIN 1 MAX 9 COUNT 4 ALL 1:3,9\r\n'
    )
    assert esearch_response("a", [4, 2], (), uid=False) == b'* ESEARCH (TAG "a") ALL 2,4\r\n'
    assert esearch_response("a", [], ("MIN", "COUNT", "ALL"), uid=False) == b'* ESEARCH (TAG "a") COUNT 0\r\n'
    assert esearch_response("a", [], (), uid=True) == b'* ESEARCH (TAG "a") UID\r\n'
    assert esearch_response("t", [5], ("count",), uid=False) == b'* ESEARCH (TAG "t") COUNT 1\r\n'


# -- search_positions(): many messages at once, the answers matches() gives one by one -------------------

from hatoba.proto.imap.search import ParsedHeader, search_positions  # noqa: E402


def search(key, metas, source, **kw):
    """The UIDs search_positions() finds."""
    return [metas[i].uid for i in search_positions(key, metas, source, **kw)]


OTHER = b"From: Zed <zed@example.org>\nSubject: lunch\nDate: Tue, 04 Jun 2024 08:00:00 +0000\n\nplain body\n"


class Source:
    """Messages by UID; `gone` ones answer like an expunged file; counts what was read."""

    def __init__(self, messages: dict[int, bytes], gone: set[int] = frozenset()):
        self.messages, self.gone = messages, gone
        self.header_reads: list[int] = []
        self.message_reads: list[int] = []

    def headers(self, uids, names):
        self.header_reads += uids
        return {u: ParsedHeader(self.messages[u].split(b"\n\n")[0] + b"\n") for u in uids if u not in self.gone}

    def message(self, uid):
        self.message_reads.append(uid)
        return None if uid in self.gone else self.messages[uid]


def mailbox(count: int = 6):
    """META-like messages with varied flags, sizes, dates; odd ones carry MESSAGE, even ones OTHER."""
    metas, messages = [], {}
    for i in range(count):
        uid = 10 + 3 * i
        flags = [frozenset({"\\Seen", "\\Flagged", "$Important"}), frozenset(), frozenset({"\\Deleted", "$junk"})][i % 3]
        metas.append(MessageMeta(uid=uid, seq=i + 1, flags=flags, size=100 * i,
                                 internal_date=datetime(2024, 6, 3 + i, 12, 0, tzinfo=LOCAL), modseq=5 + i))
        messages[uid] = MESSAGE if i % 2 else OTHER
    return metas, messages


def one_by_one(key, metas, messages, recent=(), saved=(), gone=()):
    out = []
    for m in metas:
        if m.uid in gone and needs_message(key):
            continue
        flags = m.flags | {"\\Recent"} if m.uid in recent else m.flags
        shown = MessageMeta(uid=m.uid, seq=m.seq, flags=flags, internal_date=m.internal_date, size=m.size,
                            modseq=m.modseq)
        if matches(key, shown, messages[m.uid], largest_seq=len(metas), largest_uid=metas[-1].uid, saved=saved):
            out.append(m.uid)
    return out


MANY = [key for key, _ in CASES] + [
    K("SEQSET", sequence=seq((2, None))),
    K("SEQSET", sequence=seq((None, None), (1, 1))),
    K("UID", sequence=seq((13, 19))),
    K("UID", sequence=seq((None, 20))),
    K("NOT", keys=(K("FROM", text="zed"),)),
    K("OR", keys=(K("SEEN"), K("SUBJECT", text="lunch"))),
    K("AND", keys=(K("UNSEEN"), K("TEXT", text="plain"))),
    K("KEYWORD", text="$JUNK"),
    K("HEADER", header="x-mailer", text=""),
    K("SENTON", day=date(2024, 6, 4)),
]


FLAG_ONLY = [K("UNSEEN"), K("AND", keys=(K("SEEN"), K("FLAGGED"))), K("AND", keys=(K("ALL"), K("UNDELETED"))),
             K("AND", keys=(K("KEYWORD", text="$IMPORTANT"), K("UNKEYWORD", text="$junk"))), K("UNANSWERED"),
             K("AND", keys=(K("DRAFT"),)), K("OLD"), K("RECENT"), K("NEW")]


@pytest.mark.parametrize("recent", [{13, 16}, set()], ids=["recent", "no-recent"])
@pytest.mark.parametrize("key", MANY + FLAG_ONLY, ids=[f"{k.name}-{i}" for i, k in enumerate(MANY + FLAG_ONLY)])
def test_search_answers_what_matches_answers(key, recent):
    metas, messages = mailbox(12)
    found = search(key, metas, Source(messages), recent=recent, saved=[16, 22])
    assert found == one_by_one(key, metas, messages, recent=recent, saved=[16, 22])


def test_flag_keys_read_no_message_and_and_narrows_before_reading_headers():
    metas, messages = mailbox(9)
    source = Source(messages)
    assert search(K("UNSEEN"), metas, source) == [m.uid for m in metas if "\\Seen" not in m.flags]
    assert source.header_reads == [] and source.message_reads == []
    found = search(K("AND", keys=(K("FROM", text="zed"), K("FLAGGED"))), metas, source)
    flagged = [m.uid for m in metas if "\\Flagged" in m.flags]
    assert sorted(source.header_reads) == flagged  # only the flagged ones had their header read
    assert found == [u for u in flagged if messages[u] is OTHER]


def test_messages_gone_meanwhile_match_nothing():
    metas, messages = mailbox()
    gone = {metas[0].uid, metas[1].uid}
    for key in (K("NOT", keys=(K("FROM", text="nobody"),)), K("NOT", keys=(K("BODY", text="nothing"),))):
        found = search(key, metas, Source(messages, gone))
        assert found == [m.uid for m in metas if m.uid not in gone]


def test_parsed_header_values_and_search_text():
    header = ParsedHeader(b"Subject: =?UTF-8?Q?Caf=C3=A9?=\r\n folded\r\nsubject: Second\r\n\r\n")
    assert header.values("SUBJECT") == [b"=?UTF-8?Q?Caf=C3=A9?= folded", b"Second"]
    assert header.text("subject") == ["café folded", "second"]
    assert header.values("From") == [] and header.text("from") == []


def test_address_keys_read_addresses_without_their_comments():
    message = b"From: <user (a comment)@ (another) example.org>\nTo: team: ann@example.org;\n\nbody\n"
    for key, hit in [(K("FROM", text="user@example.org"), True), (K("FROM", text="comment"), True),
                     (K("FROM", text="other@example.org"), False), (K("TO", text="team"), True),
                     (K("SUBJECT", text="user@example.org"), False)]:
        assert check(key, message=message) is hit, key
        assert search(key, [META], Source({META.uid: message})) == ([META.uid] if hit else []), key


def test_esearch_response_partial_and_sort_order():
    # RFC 5267 §4.4: PARTIAL low:high gives the results at those positions, NIL when none
    assert esearch_response("a", [1, 2, 4, 5], ("PARTIAL",), uid=False, partial=(2, 10)) == (
        b'* ESEARCH (TAG "a") PARTIAL (2:10 2,4:5)\r\n')
    assert esearch_response("a", [1, 2], ("PARTIAL",), uid=True, partial=(6, 6)) == (
        b'* ESEARCH (TAG "a") UID PARTIAL (6:6 NIL)\r\n')
    # RFC 5267 §3: a SORT's results keep their order; MIN and MAX are its first and last
    assert esearch_response("s", [5, 3, 4, 2, 1], ("MIN", "MAX", "ALL"), uid=False, ordered=True) == (
        b'* ESEARCH (TAG "s") MIN 5 MAX 1 ALL 5,3:4,2,1\r\n')


def test_a_header_key_never_matches_across_two_fields_and_empty_text_needs_the_field():
    two_to = b"From: A <a@example.org>\nTo: one@example.org\nTo: \"Two\" <two@example.net>\nSubject: s\n\nbody\n"
    no_to = b"From: B <b@example.org>\nSubject: t\n\nbody\n"
    metas = [MessageMeta(uid=u, seq=i + 1, flags=frozenset(), size=10, internal_date=None, modseq=1)
             for i, u in enumerate((3, 4))]
    messages = {3: two_to, 4: no_to}
    source = Source(messages)
    kept = {u: ParsedHeader(m.split(b"\n\n")[0] + b"\n") for u, m in messages.items()}
    source.headers = lambda uids, names: {u: kept[u] for u in uids}  # as the header cache keeps them
    for text, want in [("orgtwo", []), ("org\ntwo", []), ("org\x00two", []), ("two@", [3]),
                       ("TWO", [3]), ("", [3]), ("nobody", [])]:
        key = K("TO", text=text)
        assert one_by_one(key, metas, messages) == want, text
        assert search(key, metas, source) == want, text
        assert search(key, metas, source) == want, text  # again, with what the first search made
