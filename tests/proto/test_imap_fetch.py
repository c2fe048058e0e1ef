"""FETCH data items from message bytes (RFC 9051 §7.5.2, RFC 3516), expected bytes written by hand."""

import base64
import time
from datetime import datetime, timedelta, timezone

import pytest

from hatoba.proto.imap.fetch import FetchError, fetch, fetch_pieces, needs_message, slices_only, to_crlf
from hatoba.proto.imap.types import FetchItem, MessageMeta, Section

# Stored with LF line ends, as the store keeps messages.
MESSAGE = b"""From: =?UTF-8?B?5bGx55Sw?= <yamada@example.test>
To: "Doe, John" <john@example.test>, team: ann@example.test, Bob <bob@example.test>;
Cc: undisclosed-recipients:;
Subject: =?UTF-8?Q?caf=C3=A9?= report
Date: Wed, 17 Jul 1996 02:23:25 -0700
Message-ID: <1@example.test>
In-Reply-To: <0@example.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

preamble
--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

caf=C3=A9 au lait
second line
--inner
Content-Type: text/html; charset=utf-8

<p>caf\xc3\xa9</p>
--inner--
--outer
Content-Type: application/pdf; name="=?UTF-8?B?5pel5pys?=.pdf"
Content-Disposition: attachment; filename*=UTF-8''%E6%97%A5%E6%9C%AC.pdf
Content-Transfer-Encoding: base64
Content-Language: ja

JVBERi0xLjQKJeLjz9MK
--outer
Content-Type: message/rfc822

From: Ann <ann@example.test>
Subject: inner
Content-Type: text/plain

Hello inner
--outer
Content-Type: text/plain; name*0*=utf-8''%E6%97%A5; name*1*=%E6%9C%AC.txt
Content-Disposition: inline; filename*0="long"; filename*1="name.txt"
Content-Transfer-Encoding: x-uuencode
Content-ID: <part5@example.test>
Content-Description: notes
Content-Location: http://example.test/n

abc
--outer--
epilogue
"""

CRLF = MESSAGE.replace(b"\n", b"\r\n")
WIRE_SIZE = len(MESSAGE) + MESSAGE.count(b"\n") - MESSAGE.count(b"\r\n")  # the store's W= rule
META = MessageMeta(
    uid=5,
    seq=2,
    flags=frozenset({"$Junk", "\\Seen", "\\Answered"}),
    internal_date=datetime(1996, 7, 17, 2, 44, 25, tzinfo=timezone(-timedelta(hours=7))),
    size=WIRE_SIZE,
    modseq=42,
)


def one(item: FetchItem, message: bytes | None = MESSAGE, meta: MessageMeta = META) -> bytes:
    result = fetch([item], meta, message)
    assert result.data.startswith(b"(") and result.data.endswith(b")")
    return result.data[1:-1]


def body(section: Section, partial=None, message: bytes = MESSAGE) -> bytes:
    return one(FetchItem("BODY", section, peek=True, partial=partial), message)


def lit(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


BODYSTRUCTURE = (
    b'((("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 30 2 NIL NIL NIL NIL)'
    b'("text" "html" ("charset" "utf-8") NIL NIL "7bit" 12 1 NIL NIL NIL NIL)'
    b' "alternative" ("boundary" "inner") NIL NIL NIL)'
    b'("application" "pdf" ("name" "=?UTF-8?B?5pel5pys?=.pdf") NIL NIL "base64" 20'
    b' NIL ("attachment" ("filename*" "UTF-8\'\'%E6%97%A5%E6%9C%AC.pdf")) "ja" NIL)'
    b'("message" "rfc822" NIL NIL NIL "7bit" 85'
    b' (NIL "inner" (("Ann" NIL "ann" "example.test")) (("Ann" NIL "ann" "example.test"))'
    b' (("Ann" NIL "ann" "example.test")) NIL NIL NIL NIL NIL)'
    b' ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 11 1 NIL NIL NIL NIL) 5 NIL NIL NIL NIL)'
    b'("text" "plain" ("name*" "utf-8\'\'%E6%97%A5%E6%9C%AC.txt") "<part5@example.test>" "notes" "x-uuencode" 3 1'
    b' NIL ("inline" ("filename" "longname.txt")) NIL "http://example.test/n")'
    b' "mixed" ("boundary" "outer") NIL NIL NIL)'
)


def test_bodystructure_is_exact():
    assert one(FetchItem("BODYSTRUCTURE")) == b"BODYSTRUCTURE " + BODYSTRUCTURE


def test_bodystructure_same_for_crlf_input():
    assert one(FetchItem("BODYSTRUCTURE"), CRLF) == b"BODYSTRUCTURE " + BODYSTRUCTURE


def test_body_is_bodystructure_without_extension_data():
    assert one(FetchItem("BODY")) == (
        b'BODY ((("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 30 2)'
        b'("text" "html" ("charset" "utf-8") NIL NIL "7bit" 12 1) "alternative")'
        b'("application" "pdf" ("name" "=?UTF-8?B?5pel5pys?=.pdf") NIL NIL "base64" 20)'
        b'("message" "rfc822" NIL NIL NIL "7bit" 85'
        b' (NIL "inner" (("Ann" NIL "ann" "example.test")) (("Ann" NIL "ann" "example.test"))'
        b' (("Ann" NIL "ann" "example.test")) NIL NIL NIL NIL NIL)'
        b' ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 11 1) 5)'
        b'("text" "plain" ("name*" "utf-8\'\'%E6%97%A5%E6%9C%AC.txt") "<part5@example.test>" "notes" "x-uuencode" 3 1)'
        b' "mixed")'
    )


def test_envelope_keeps_encoded_words_and_groups():
    assert one(FetchItem("ENVELOPE")) == (
        b'ENVELOPE ("Wed, 17 Jul 1996 02:23:25 -0700" "=?UTF-8?Q?caf=C3=A9?= report"'
        b' (("=?UTF-8?B?5bGx55Sw?=" NIL "yamada" "example.test"))'
        b' (("=?UTF-8?B?5bGx55Sw?=" NIL "yamada" "example.test"))'
        b' (("=?UTF-8?B?5bGx55Sw?=" NIL "yamada" "example.test"))'
        b' (("Doe, John" NIL "john" "example.test")(NIL NIL "team" NIL)(NIL NIL "ann" "example.test")'
        b'("Bob" NIL "bob" "example.test")(NIL NIL NIL NIL))'
        b' ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))'
        b' NIL "<0@example.test>" "<1@example.test>")'
    )


def test_envelope_of_sparse_message_uses_nil_and_from_for_sender():
    msg = b"From: a@example.test (Ann Example)\nReply-To:\nTo: <@relay.test:b@example.test>\n\nhi\n"
    assert one(FetchItem("ENVELOPE"), msg) == (
        b'ENVELOPE (NIL NIL (("Ann Example" NIL "a" "example.test")) (("Ann Example" NIL "a" "example.test"))'
        b' (("Ann Example" NIL "a" "example.test")) ((NIL "@relay.test" "b" "example.test")) NIL NIL NIL NIL)'
    )


def test_body_parts_and_mime_headers():
    assert body(Section((1, 2))) == b"BODY[1.2] " + lit(b"<p>caf\xc3\xa9</p>")
    assert body(Section((1, 1))) == b"BODY[1.1] " + lit(b"caf=C3=A9 au lait\r\nsecond line")
    assert body(Section((1,), "MIME")) == b"BODY[1.MIME] " + lit(
        b"Content-Type: multipart/alternative; boundary=inner\r\n\r\n"
    )
    assert body(Section((1, 2), "MIME")) == b"BODY[1.2.MIME] " + lit(b"Content-Type: text/html; charset=utf-8\r\n\r\n")


def test_header_fields_and_not():
    assert body(Section((), "HEADER.FIELDS", ("SUBJECT", "FROM"))) == b"BODY[HEADER.FIELDS (SUBJECT FROM)] " + lit(
        b"From: =?UTF-8?B?5bGx55Sw?= <yamada@example.test>\r\nSubject: =?UTF-8?Q?caf=C3=A9?= report\r\n\r\n"
    )
    got = body(Section((), "HEADER.FIELDS.NOT", ("TO", "CC", "FROM", "SUBJECT", "DATE", "MIME-VERSION")))
    assert got == b"BODY[HEADER.FIELDS.NOT (TO CC FROM SUBJECT DATE MIME-VERSION)] " + lit(
        b"Message-ID: <1@example.test>\r\nIn-Reply-To: <0@example.test>\r\n"
        b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    )


def test_header_and_text_add_up_to_the_whole_message():
    header = CRLF[: CRLF.index(b"\r\n\r\n") + 4]
    assert body(Section((), "HEADER")) == b"BODY[HEADER] " + lit(header)
    assert body(Section((), "TEXT")) == b"BODY[TEXT] " + lit(CRLF[len(header) :])
    assert body(Section()) == b"BODY[] " + lit(CRLF)


def test_partials():
    assert body(Section((), "TEXT"), (0, 10)) == b"BODY[TEXT]<0> " + lit(b"preamble\r\n")
    assert body(Section((1, 2)), (3, 100)) == b"BODY[1.2]<3> " + lit(b"caf\xc3\xa9</p>")
    assert body(Section((1, 2)), (12, 5)) == b'BODY[1.2]<12> ""'
    assert body(Section(), (100000, 10)) == b'BODY[]<100000> ""'


def test_encapsulated_message_parts():
    inner = b"From: Ann <ann@example.test>\r\nSubject: inner\r\nContent-Type: text/plain\r\n\r\nHello inner"
    assert body(Section((3,))) == b"BODY[3] " + lit(inner)
    assert body(Section((3,), "HEADER")) == b"BODY[3.HEADER] " + lit(inner[: inner.index(b"Hello")])
    assert body(Section((3,), "TEXT")) == b"BODY[3.TEXT] " + lit(b"Hello inner")
    assert body(Section((3, 1))) == b"BODY[3.1] " + lit(b"Hello inner")
    assert body(Section((3,), "MIME")) == b"BODY[3.MIME] " + lit(b"Content-Type: message/rfc822\r\n\r\n")
    assert body(Section((3,), "HEADER.FIELDS", ("SUBJECT",))) == b"BODY[3.HEADER.FIELDS (SUBJECT)] " + lit(
        b"Subject: inner\r\n\r\n"
    )


def test_missing_parts_are_empty_strings():
    assert body(Section((9,))) == b'BODY[9] ""'
    assert body(Section((1, 2, 1))) == b'BODY[1.2.1] ""'
    assert body(Section((2,), "TEXT")) == b'BODY[2.TEXT] ""'  # not a message/rfc822 part


def test_unknown_section_text_is_an_error():
    with pytest.raises(FetchError):
        fetch([FetchItem("BODY", Section((), "BOGUS"))], META, MESSAGE)
    with pytest.raises(FetchError):
        fetch([FetchItem("X-UNKNOWN")], META, MESSAGE)


def test_binary_decodes_base64_and_reports_size():
    pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    assert one(FetchItem("BINARY", Section((2,)), peek=True)) == b"BINARY[2] " + lit(pdf)
    assert one(FetchItem("BINARY.SIZE", Section((2,)))) == b"BINARY.SIZE[2] %d" % len(pdf)
    assert one(FetchItem("BINARY", Section((1, 1)), peek=True)) == b"BINARY[1.1] " + lit(
        b"caf\xc3\xa9 au lait\r\nsecond line"
    )
    assert one(FetchItem("BINARY", Section((2,)), peek=True, partial=(1, 3))) == b"BINARY[2]<1> " + lit(b"PDF")


FOLDED_BOUNDARY = b"""Content-Type: multipart/mixed; boundary="foo
 bar"

--foo bar
Content-Type: text/x-myown; charset=us-ascii

hello

--foo bar
Content-Type: text/plain
Content-Transfer-Encoding: base64

aGk=
--foo bar--
"""


def test_folded_boundary_parameter_is_unfolded():
    # RFC 5322 §2.2.3: the CRLF of a fold goes, the space stays: the delimiter is "--foo bar".
    assert body(Section((1,)), message=FOLDED_BOUNDARY) == b"BODY[1] " + lit(b"hello\r\n")
    assert body(Section((1,), "MIME"), message=FOLDED_BOUNDARY) == b"BODY[1.MIME] " + lit(
        b"Content-Type: text/x-myown; charset=us-ascii\r\n\r\n"
    )
    assert one(FetchItem("BINARY.SIZE", Section((2,))), FOLDED_BOUNDARY) == b"BINARY.SIZE[2] 2"
    assert one(FetchItem("BODY"), FOLDED_BOUNDARY) == (
        b'BODY (("text" "x-myown" ("charset" "us-ascii") NIL NIL "7bit" 7 1)'
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "base64" 4 1) "mixed")'
    )


QP_PADDED = (
    b"Content-Transfer-Encoding: quoted-printable\n\n"
    b"hello  \nfoo\t \t= \n=62\nfoo = \t\nbar\nlast=\t"
)


def test_quoted_printable_drops_trailing_white_space():
    # RFC 2045 §6.7 rule 3: trailing white space is padding, also after a soft line break's "=".
    decoded = b"hello\r\nfoo\t \tb\r\nfoo bar\r\nlast"
    assert one(FetchItem("BINARY", Section((1,)), peek=True), QP_PADDED) == b"BINARY[1] " + lit(decoded)
    assert one(FetchItem("BINARY.SIZE", Section((1,))), QP_PADDED) == b"BINARY.SIZE[1] %d" % len(decoded)


def test_binary_with_nul_is_literal8():
    msg = b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAAEC\n"
    assert one(FetchItem("BINARY", Section((1,)), peek=True), msg) == b"BINARY[1] ~{3}\r\n\x00\x01\x02"


def test_binary_of_unknown_encoding_is_unknown_cte():
    with pytest.raises(FetchError, match=r"\[UNKNOWN-CTE\]"):
        fetch([FetchItem("BINARY", Section((4,)))], META, MESSAGE)


def test_rfc822_size_equals_crlf_size_for_lf_input():
    result = fetch([FetchItem("RFC822.SIZE"), FetchItem("BODY", Section(), peek=True)], META, MESSAGE)
    assert result.data == b"(RFC822.SIZE %d BODY[] {%d}\r\n" % (len(CRLF), len(CRLF)) + CRLF + b")"
    assert b"\n" not in CRLF.replace(b"\r\n", b"")
    assert to_crlf(MESSAGE) == CRLF == to_crlf(CRLF)


def test_slices_only_names_the_items_that_parse_nothing():
    meta = [FetchItem("UID"), FetchItem("FLAGS"), FetchItem("RFC822.SIZE")]
    for cheap in (FetchItem("BODY", Section(), peek=True), FetchItem("BODY", Section(), partial=(0, 10)),
                  FetchItem("BODY", Section(text="HEADER")), FetchItem("BODY", Section(text="TEXT")),
                  FetchItem("RFC822"), FetchItem("RFC822.HEADER"), FetchItem("RFC822.TEXT"), FetchItem("BINARY")):
        assert slices_only(meta + [cheap]), cheap
    for parsing in (FetchItem("BODYSTRUCTURE"), FetchItem("BODY"), FetchItem("ENVELOPE"),
                    FetchItem("BODY", Section(part=(1,))), FetchItem("BODY", Section(part=(1,), text="MIME")),
                    FetchItem("BODY", Section(text="HEADER.FIELDS", fields=("SUBJECT",))),
                    FetchItem("BINARY", Section(part=(2,))), FetchItem("BINARY.SIZE", Section(part=(2,)))):
        assert not slices_only(meta + [parsing]), parsing


def test_meta_items_without_message():
    items = [FetchItem("UID"), FetchItem("FLAGS"), FetchItem("INTERNALDATE"), FetchItem("RFC822.SIZE"), FetchItem("MODSEQ")]
    assert not needs_message(items)
    assert needs_message(items + [FetchItem("ENVELOPE")])
    result = fetch(items, META, None)
    assert result.data == (
        b'(UID 5 FLAGS (\\Answered \\Seen $Junk) INTERNALDATE "17-Jul-1996 02:44:25 -0700"'
        b" RFC822.SIZE %d MODSEQ (42))" % WIRE_SIZE
    )
    assert result.sets_seen is False


@pytest.mark.parametrize(
    ("item", "seen"),
    [
        (FetchItem("BODY", Section()), True),
        (FetchItem("BODY", Section(), peek=True), False),
        (FetchItem("BINARY", Section((2,))), True),
        (FetchItem("BINARY", Section((2,)), peek=True), False),
        (FetchItem("RFC822"), True),
        (FetchItem("RFC822.TEXT"), True),
        (FetchItem("RFC822.HEADER"), False),
        (FetchItem("BODYSTRUCTURE"), False),
    ],
)
def test_sets_seen(item, seen):
    assert fetch([item], META, MESSAGE).sets_seen is seen


def test_rfc822_items():
    header = CRLF[: CRLF.index(b"\r\n\r\n") + 4]
    assert one(FetchItem("RFC822")) == b"RFC822 " + lit(CRLF)
    assert one(FetchItem("RFC822.HEADER")) == b"RFC822.HEADER " + lit(header)
    assert one(FetchItem("RFC822.TEXT")) == b"RFC822.TEXT " + lit(CRLF[len(header) :])


def test_single_part_message():
    msg = b"Subject: plain\n\nline one\nline two\n"
    assert one(FetchItem("BODYSTRUCTURE"), msg) == (
        b'BODYSTRUCTURE ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 20 2 NIL NIL NIL NIL)'
    )
    assert body(Section((1,)), message=msg) == b"BODY[1] " + lit(b"line one\r\nline two\r\n")
    assert body(Section((2,)), message=msg) == b'BODY[2] ""'


def test_multipart_digest_defaults_to_message_parts():
    msg = (
        b"Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: one\n\nbody\n--d--\n"
    )
    assert one(FetchItem("BODYSTRUCTURE"), msg) == (
        b'BODYSTRUCTURE (("message" "rfc822" NIL NIL NIL "7bit" 20'
        b' (NIL "one" NIL NIL NIL NIL NIL NIL NIL NIL)'
        b' ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 4 1 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)'
        b' "digest" ("boundary" "d") NIL NIL NIL)'
    )


# -- many messages at once: meta_text, and the whole-message sections without a MIME tree ----


@pytest.mark.parametrize("names", [
    ("FLAGS",), ("FLAGS", "UID"), ("UID", "FLAGS", "MODSEQ"),
    ("RFC822.SIZE", "INTERNALDATE", "FLAGS", "UID", "MODSEQ"),
])
def test_meta_text_equals_fetch_line_by_line(names):
    from hatoba.proto.imap.fetch import meta_text

    items = [FetchItem(n) for n in names]
    metas = [
        MessageMeta(uid=7, seq=1, flags=frozenset({"\\Seen", "$Work"}), internal_date=META.internal_date,
                    size=10, modseq=3),
        MessageMeta(uid=9, seq=2, flags=frozenset(), internal_date=None, size=0, modseq=4),
        MessageMeta(uid=12, seq=3, flags=frozenset({"\\Seen", "$Work"}), internal_date=META.internal_date,
                    size=99, modseq=5),
    ]
    recent = {9}
    want = []
    for m in metas:
        flags = m.flags | {"\\Recent"} if m.uid in recent else m.flags
        shown = MessageMeta(uid=m.uid, seq=m.seq, flags=flags, internal_date=m.internal_date, size=m.size,
                            modseq=m.modseq)
        want.append(b"* %d FETCH " % m.seq + fetch(items, shown, None).data + b"\r\n")
    assert meta_text(items, [m.seq for m in metas], metas, recent) == b"".join(want)
    assert meta_text(items, [], [], recent) == b""


@pytest.mark.parametrize("raw", [b"a\nb\n", b"a\r\nb\n", b"a\rb\r\r\n\n", b"", b"\n\n\r\n"])
def test_to_crlf_turns_only_bare_lf_into_crlf(raw):
    import re

    assert to_crlf(raw) == re.sub(rb"(?<!\r)\n", b"\r\n", raw)


@pytest.mark.parametrize("section", [
    Section(), Section(text="HEADER"), Section(text="TEXT"),
    Section(text="HEADER.FIELDS", fields=("Subject", "FROM")), Section(text="HEADER.FIELDS.NOT", fields=("To",)),
])
def test_whole_message_sections_agree_with_the_mime_tree(section):
    from hatoba.proto.imap.fetch import _header_block, parse_message

    data = to_crlf(MESSAGE)
    root = parse_message(data)  # what BODY[...] of the whole message was cut from before
    via_tree = {"": data, "HEADER": data[: root.body_start], "TEXT": data[root.body_start :]}.get(section.text)
    if via_tree is None:
        via_tree = _header_block(data, root, section)
    assert via_tree
    assert body(section).endswith(b" " + lit(via_tree))


def test_fetch_pieces_give_each_literal_whole_and_alone():
    items = [FetchItem("UID"), FetchItem("BODY", Section(), peek=True), FetchItem("BODYSTRUCTURE"),
             FetchItem("BINARY", Section((2,)), peek=True), FetchItem("BODY", Section(), peek=True, partial=(3, 5)),
             FetchItem("RFC822.HEADER"), FetchItem("BODY", Section((9,)), peek=True)]
    pieces = list(fetch_pieces(items, META, MESSAGE))
    assert b"".join(pieces) == b"* 2 FETCH " + fetch(items, META, MESSAGE).data + b"\r\n"
    # The content is a piece of its own: the adapter sends it without joining it to more.
    assert CRLF in pieces
    assert CRLF[3:8] in pieces


def test_fetch_pieces_refuse_before_the_first_piece():
    items = [FetchItem("BODY", Section(), peek=True), FetchItem("BINARY", Section((4,)))]
    with pytest.raises(FetchError, match=r"\[UNKNOWN-CTE\]"):
        fetch_pieces(items, META, MESSAGE)  # not a piece taken yet: the FETCH can still be refused whole


def test_binary_named_many_times_decodes_its_part_once():
    # 300 × BINARY[1] of a 2 MB base64 part decoded it 300 times (8 s, holding the GIL).
    body = base64.encodebytes(bytes(range(256)) * 6000).replace(b"\n", b"\r\n")
    message = (b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
               b"Content-Transfer-Encoding: base64\r\n\r\n" + body + b"--b--\r\n")
    items = [FetchItem("BINARY.SIZE", section=Section(part=(1,)))] * 150 + \
        [FetchItem("BINARY", section=Section(part=(1,)), peek=True)] * 150
    meta = MessageMeta(uid=1, seq=1, flags=frozenset(), internal_date=None, size=len(message))
    start = time.perf_counter()
    pieces = list(fetch_pieces(items, meta, message))
    took = time.perf_counter() - start
    assert took < 1.0, took
    assert pieces[0].startswith(b"* 1 FETCH (BINARY.SIZE[1] 1536000 BINARY.SIZE[1] 1536000 ")
    assert pieces.count(bytes(range(256)) * 6000) == 150


# -- the whole-message download, planned once a command -----------------------------------------

WHOLE_ITEMS = [FetchItem("BODY", section=Section()), FetchItem("BODY", section=Section(), peek=True),
               FetchItem("RFC822")]
NOT_WHOLE = [FetchItem("BODY", section=Section(), partial=(0, 10)), FetchItem("BODY", section=Section(text="TEXT")),
             FetchItem("BODY", section=Section(part=(1,))), FetchItem("BINARY", section=Section()),
             FetchItem("RFC822.TEXT"), FetchItem("ENVELOPE"), FetchItem("BODYSTRUCTURE"), FetchItem("BODY")]


def test_a_whole_message_plan_gives_the_pieces_of_fetch_pieces_for_every_mix():
    import random

    from hatoba.proto.imap.fetch import whole_message_plan

    rng = random.Random(19)
    metas = ("UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ")
    bodies = [b"", b"a", b"Subject: x\n\nbody\n", b"Subject: x\r\n\r\nbody\r\n", b"x\r\ny\nz\r", b"\n" * 5,
              b"From: a@b\n\n" + bytes(range(256)) * 20]
    tried = 0
    for _ in range(3000):
        chosen = [FetchItem(name) for name in rng.sample(metas, rng.randint(0, len(metas)))]
        chosen.insert(rng.randint(0, len(chosen)), rng.choice(WHOLE_ITEMS))
        meta = MessageMeta(uid=rng.randint(1, 2**32 - 1), seq=rng.randint(1, 10**6),
                           flags=frozenset(rng.sample(["\\Seen", "\\Recent", "$Work", "\\Flagged"], rng.randint(0, 3))),
                           internal_date=rng.choice([None, META.internal_date]), size=rng.randint(0, 2**40),
                           modseq=rng.randint(1, 2**63 - 1))
        raw = rng.choice(bodies)
        plan = whole_message_plan(chosen)
        assert plan is not None, chosen
        assert plan.uses_meta == (len(chosen) > 1)
        given = meta if plan.uses_meta else None  # the plan must not need what it says it does not
        assert plan.pieces(meta.seq, given, raw) == list(fetch_pieces(chosen, meta, raw)), (chosen, raw)
        tried += 1
    assert tried == 3000


@pytest.mark.parametrize("odd", NOT_WHOLE)
def test_no_whole_message_plan_for_what_is_not_the_whole_message_with_metadata(odd):
    from hatoba.proto.imap.fetch import whole_message_plan

    assert whole_message_plan([odd]) is None
    assert whole_message_plan([FetchItem("UID"), odd, WHOLE_ITEMS[0]]) is None
    assert whole_message_plan([WHOLE_ITEMS[0], WHOLE_ITEMS[2]]) is None  # two bodies: the general way
