"""The IMAP command reader and argument helpers (RFC 9051 §9, RFC 3501 §9)."""

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings, strategies as st

from hatoba.proto.imap import mutf7
from hatoba.proto.imap.args import (
    ArgError,
    ArgRefused,
    CommandError,
    CommandReader,
    ContinuationRequest,
    ListArgs,
    RawCommand,
    as_number,
    as_text,
    parse_date,
    parse_datetime,
    parse_fetch_items,
    parse_flags,
    parse_list_args,
    parse_mailbox,
    parse_search,
    parse_sequence_set,
    parse_status_items,
    parse_store,
)
from hatoba.proto.imap.types import NIL, ArgList, Atom, FetchItem, SearchKey, Section, SeqRange, SequenceSet, String
from hatoba.proto.smtp.events import NEED_DATA


def read_all(data, **kw):
    """Everything the reader yields for `data`, up to NEED_DATA."""
    r = CommandReader(**kw)
    r.feed(data)
    return drain(r)


def drain(r):
    out = []
    while (item := r.next()) is not NEED_DATA:
        out.append(item)
    return out


def args_of(line: bytes):
    """The Args of "t X <line>" as the reader tokenizes them."""
    (cmd,) = read_all(b"t X " + line + b"\r\n")
    assert isinstance(cmd, RawCommand), cmd
    return cmd.args


# -- CommandReader ------------------------------------------------------------------------


def test_simple_command_and_pipelining():
    out = read_all(b"a1 noop\r\na2 LOGIN alice \"se\\\"cr\\\\et\"\r\na3 logout\n")
    assert out == [
        RawCommand("a1", "NOOP", ()),
        RawCommand("a2", "LOGIN", (Atom("alice"), String(b'se"cr\\et'))),
        RawCommand("a3", "LOGOUT", ()),
    ]


def test_tokens_nil_lists_flags_and_8bit_quoted():
    args = args_of(b'NIL nil (\\Seen $Junk (a "b")) () "\xc3\xa9t\xc3\xa9" [Gmail]/Sent 1:* %')
    assert args == (
        NIL, NIL, ArgList((Atom("\\Seen"), Atom("$Junk"), ArgList((Atom("a"), String(b"b"))))), ArgList(()),
        String("été".encode()), Atom("[Gmail]/Sent"), Atom("1:*"), Atom("%"),
    )


def test_fetch_atom_keeps_brackets_whole():
    args = args_of(b"1 (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100> BODY[]) (CHANGEDSINCE 5)")
    assert args[1] == ArgList((Atom("FLAGS"), Atom("BODY.PEEK[HEADER.FIELDS (From To)]<0.100>"), Atom("BODY[]")))


def test_uid_keeps_subcommand_as_first_argument():
    assert read_all(b"x uid fetch 1:* FLAGS\r\n") == [RawCommand("x", "UID", (Atom("fetch"), Atom("1:*"), Atom("FLAGS")))]


def test_synchronizing_literal_asks_once_then_reads():
    r = CommandReader()
    r.feed(b"a LOGIN {5}\r\n")
    assert r.next() == ContinuationRequest(5)
    assert r.next() is NEED_DATA
    r.feed(b"alice {6}\r\n")
    assert r.next() == ContinuationRequest(6)
    r.feed(b"secret\r\n")
    assert r.next() == RawCommand("a", "LOGIN", (String(b"alice", literal=True), String(b"secret", literal=True)))
    assert r.next() is NEED_DATA


@pytest.mark.parametrize("marker,lit8", [(b"{11+}", False), (b"~{11+}", True), (b"{11}", False), (b"~{11}", True)])
def test_literal_kinds(marker, lit8):
    out = read_all(b"a APPEND INBOX (\\Seen) " + marker + b"\r\nhello\x00\r\nxx)\r\n")
    assert out[-1] == RawCommand("a", "APPEND", (Atom("INBOX"), ArgList((Atom("\\Seen"),)),
                                                 String(b"hello\x00\r\nxx)", literal=True, literal8=lit8)))
    assert (out[0] == ContinuationRequest(11)) == (b"+" not in marker)
    assert len(out) == (1 if b"+" in marker else 2)


def test_literal_inside_list_and_zero_length():
    out = read_all(b"a X ({3+}\r\nabc {0+}\r\n) tail\r\n")
    assert out == [RawCommand("a", "X", (ArgList((String(b"abc", literal=True), String(b"", literal=True))), Atom("tail")))]


def test_multiappend_style_several_literals():
    out = read_all(b"a APPEND box {1+}\r\nx (\\Seen) {2+}\r\nyz\r\nb NOOP\r\n")
    assert out[0].args == (Atom("box"), String(b"x", literal=True), ArgList((Atom("\\Seen"),)), String(b"yz", literal=True))
    assert out[1] == RawCommand("b", "NOOP", ())


def test_sync_literal_too_big_is_toobig_and_reader_goes_on():
    out = read_all(b"a APPEND box {101}\r\nb NOOP\r\n", max_literal=100)
    assert out == [CommandError("a", "Literal too big", toobig=True), RawCommand("b", "NOOP", ())]


def test_nonsync_literal_too_big_is_fatal():
    r = CommandReader(max_literal=100)
    r.feed(b"a APPEND box {101+}\r\n" + b"x" * 101 + b"\r\nb NOOP\r\n")
    err = r.next()
    assert err == CommandError("a", "Literal too big", fatal=True, toobig=True)
    r.feed(b"c NOOP\r\n")
    assert r.next() is NEED_DATA


def test_literals_of_one_command_share_max_literal():
    # Each literal fits alone; together they would let one command hold any amount.
    sync = read_all(b"a LOGIN {60}\r\n" + b"x" * 60 + b" {60}\r\n", max_literal=100)
    assert sync == [ContinuationRequest(60), CommandError("a", "Literal too big", toobig=True)]
    nonsync = read_all(b"a LOGIN {60+}\r\n" + b"x" * 60 + b" {60+}\r\n" + b"y" * 60, max_literal=100)
    assert nonsync == [CommandError("a", "Literal too big", fatal=True, toobig=True)]


def test_max_command_caps_line_and_literals_together_until_raised():
    r = CommandReader(max_line=100, max_literal=100, max_command=100)
    r.feed(b"a LOGIN " + b"u" * 40 + b" {60}\r\n")  # 48 line bytes + 60 > 100
    assert drain(r) == [CommandError("a", "Literal too big", toobig=True)]
    r.feed(b"b LOGIN {30+}\r\n" + b"p" * 30 + b" " + b"q" * 70 + b"\r\n")  # 15 + 30 + 71 > 100
    assert drain(r) == [CommandError("b", "Command line too long")]
    r.set_limits(100, 1000)  # logged in: the two budgets apart again
    r.feed(b"c APPEND box {500+}\r\n" + b"m" * 500 + b"\r\n")
    (append,) = drain(r)
    assert append.args == (Atom("box"), String(b"m" * 500, literal=True))


def test_literal_minus_limits_nonsync_to_4096():
    ok = read_all(b"a X {4096+}\r\n" + b"y" * 4096 + b"\r\n", literal_minus=True)
    assert ok[0].args == (String(b"y" * 4096, literal=True),)
    bad = read_all(b"a X {4097+}\r\n", literal_minus=True)
    assert bad == [CommandError("a", "Literal too big", fatal=True, toobig=True)]
    sync = read_all(b"a X {5000}\r\n", literal_minus=True)
    assert sync == [ContinuationRequest(5000)]


def test_bad_line_skips_the_announced_nonsync_literal():
    # The literal's bytes must not run as a command (command injection).
    out = read_all(b'a X "open {9+}\r\nb LOGOUT\r\nc NOOP\r\n')
    assert out == [CommandError("a", "Invalid quoted string"), RawCommand("c", "NOOP", ())]


def test_nul_byte_is_an_error():
    out = read_all(b"a LOGIN x\x00y z\r\nb NOOP\r\n")
    assert out == [CommandError("a", "NUL byte in command"), RawCommand("b", "NOOP", ())]


@pytest.mark.parametrize("line,text", [
    (b"a X (b", "Missing )"),
    (b"a X b)", "Unexpected )"),
    (b'a X "b"c', "Missing space between arguments"),
    (b'a X "b\\n"', "Invalid quoted string"),
    (b"a X {5", "Invalid literal"),
    (b"a X {5}x", "Invalid literal"),
    (b"a X \xff", "Invalid UTF-8 in command"),
    (b"a", "Missing or invalid command name"),
    (b"a (X)", "Missing or invalid command name"),
    (b"a X \x01", "Invalid character in command"),
    (b"a X " + b"(" * 40, "Lists nested too deeply"),
])
def test_syntax_errors_keep_the_tag(line, text):
    assert read_all(line + b"\r\nb NOOP\r\n") == [CommandError("a", text), RawCommand("b", "NOOP", ())]


def test_missing_tag_and_empty_lines():
    assert read_all(b"\r\n\r\n+ NOOP\r\n* NOOP\r\n") == [CommandError(None, "Missing or invalid tag")] * 2


def test_long_line_is_refused_with_tag_and_skipped():
    r = CommandReader(max_line=50)
    r.feed(b"a7 LOGIN " + b"x" * 100)
    assert r.next() == CommandError("a7", "Command line too long")
    r.feed(b"y" * 5000)
    assert r.next() is NEED_DATA
    r.feed(b"\r\nb NOOP\r\n")
    assert r.next() == RawCommand("b", "NOOP", ())


@pytest.mark.parametrize("split", [None, 7, 60, 113])
def test_literal_announced_by_a_dropped_line_is_dropped_too(split):
    # The literal's bytes must not run as a command (command injection).
    payload = b"c DELETE INBOX\r\n"
    data = b"a7 X " + b"x" * 100 + b" {%d+}\r\n" % len(payload) + payload + b" more\r\nb NOOP\r\n"
    r = CommandReader(max_line=50)
    out = []
    for chunk in ([data] if split is None else [data[i:i + split] for i in range(0, len(data), split)]):
        r.feed(chunk)
        out += drain(r)
    assert out == [CommandError("a7", "Command line too long"), RawCommand("b", "NOOP", ())]


def test_dropped_line_announcing_a_huge_literal_ends_the_connection():
    r = CommandReader(max_line=50, literal_minus=True)
    r.feed(b"a7 X " + b"x" * 100 + b" {999999+}\r\n")
    error = drain(r)[-1]
    assert error.fatal and error.tag == "a7"


def test_line_limit_is_exact_and_counts_all_lines_of_a_command():
    line = b"a X " + b"y" * 46  # 50 bytes
    assert read_all(line + b"\r\n", max_line=50) == [RawCommand("a", "X", (Atom("y" * 46),))]
    assert read_all(line + b"y\r\n", max_line=50) == [CommandError("a", "Command line too long")]
    # 11 + 42 line bytes > 50 once the line after the literal is added
    out = read_all(b"a X (a {2+}\r\nzz " + b"q" * 40 + b")\r\nb NOOP\r\n", max_line=50)
    assert out == [CommandError("a", "Command line too long"), RawCommand("b", "NOOP", ())]


def test_raw_lines():
    r = CommandReader(max_line=20)
    r.feed(b"dXNlcg==\r\nDONE\n" + b"z" * 30 + b"\r\n*\r\na NOOP\r\n")
    assert r.next_raw_line() == b"dXNlcg=="
    assert r.next_raw_line() == b"DONE"
    assert r.next_raw_line() is None  # too long, dropped
    assert r.next_raw_line() == b"*"
    assert r.next() == RawCommand("a", "NOOP", ())
    assert r.next_raw_line() is NEED_DATA


STREAM = (b"a1 LOGIN {5}\r\nalice \"p w\"\r\na2 APPEND INBOX (\\Seen) \"1-Jan-2020 00:00:00 +0000\" ~{4+}\r\n\x00\x01\r\n\r\n"
          b"a3 FETCH 1:* (BODY.PEEK[HEADER.FIELDS (A B)]<0.10>)\r\nbad \"x\r\n" + b"L" * 90 + b"\r\n"
          b"a4 X {200}\r\na5 X {3+}\r\nabc (x) {2}\r\nhi\r\nDONE\r\n")


def events(chunks):
    r = CommandReader(max_line=80, max_literal=100)
    out = []
    for c in chunks:
        r.feed(c)
        out += drain(r)
    return out


def test_whole_stream_events():
    out = events([STREAM])
    assert [type(e).__name__ for e in out] == [
        "ContinuationRequest", "RawCommand", "RawCommand", "RawCommand", "CommandError", "CommandError",
        "CommandError", "ContinuationRequest", "RawCommand", "CommandError"]
    assert out[2].args[-1] == String(b"\x00\x01\r\n", literal=True, literal8=True)
    assert out[5] == CommandError(None, "Command line too long")
    assert out[6].toobig and not out[6].fatal


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_split_anywhere_gives_the_same_events(cuts):
    cuts = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(STREAM)])]
    assert events(chunks) == events([STREAM])


def test_byte_at_a_time_gives_the_same_events():
    assert events([bytes([b]) for b in STREAM]) == events([STREAM])


# -- helpers ------------------------------------------------------------------------------


def test_sequence_sets():
    assert parse_sequence_set("1:*") == SequenceSet((SeqRange(1, None),))
    assert parse_sequence_set("*:4") == SequenceSet((SeqRange(None, 4),))
    assert parse_sequence_set("1,3:5,7") == SequenceSet((SeqRange(1, 1), SeqRange(3, 5), SeqRange(7, 7)))
    assert parse_sequence_set("$") == SequenceSet((), saved=True)
    assert parse_sequence_set("2,4:7,9,12:*").resolve(15) == [2, 4, 5, 6, 7, 9, 12, 13, 14, 15]
    assert parse_sequence_set("4294967295").ranges == (SeqRange(4294967295, 4294967295),)


@pytest.mark.parametrize("bad", ["", "0", "01", "1:", ":2", "1,,2", "1:2:3", "a", "-1", "4294967296", "$,1", "1 2"])
def test_bad_sequence_sets(bad):
    with pytest.raises(ArgError):
        parse_sequence_set(bad)


def test_as_text_and_as_number():
    assert as_text(Atom("abc")) == "abc"
    assert as_text(String("日本".encode())) == "日本"
    assert as_text(NIL) == "NIL"
    assert as_number(Atom("0")) == 0
    assert as_number(Atom("9223372036854775807")) == 2**63 - 1
    assert as_number(Atom("17"), nonzero=True) == 17
    for bad, kw in [(Atom("9223372036854775808"), {}), (Atom("0"), {"nonzero": True}), (Atom("01"), {"nonzero": True}),
                    (Atom("-1"), {}), (String(b"1"), {}), (Atom("1" * 30), {}), (Atom("5"), {"limit": 4})]:
        with pytest.raises(ArgError):
            as_number(bad, **kw)
    with pytest.raises(ArgError):
        as_text(ArgList(()))
    with pytest.raises(ArgError):
        as_text(String(b"\xff"))


def test_flags():
    assert parse_flags(ArgList((Atom("\\seen"), Atom("\\ANSWERED"), Atom("$Junk"), Atom("\\Seen")))) == (
        "\\Seen", "\\Answered", "$Junk")
    assert parse_flags(Atom("\\recent")) == ("\\Recent",)
    assert parse_flags(ArgList(())) == ()
    # flag-keyword = atom: "NIL" is one there, as in STORE 1 +FLAGS NIL (no nstring may stand in a flag list).
    assert parse_flags(NIL) == ("NIL",)
    assert parse_flags(ArgList((Atom("\\Seen"), NIL))) == ("\\Seen", "NIL")
    for bad in (Atom("\\Foo"), Atom("\\*"), String(b"x"), ArgList((ArgList(()),)), Atom("a]b"), Atom("a%")):
        with pytest.raises(ArgError):
            parse_flags(bad)


def test_dates():
    assert parse_date("1-Feb-1994") == date(1994, 2, 1)
    assert parse_date("28-feb-2000") == date(2000, 2, 28)
    dt = parse_datetime("17-Jul-1996 02:44:25 -0700")
    assert dt == datetime(1996, 7, 17, 2, 44, 25, tzinfo=timezone(timedelta(hours=-7)))
    assert dt.utcoffset() == timedelta(hours=-7)
    assert parse_datetime(" 7-Jul-1996 02:44:25 +0530").day == 7
    for bad in ("30-Feb-1994", "1-Foo-1994", "1-Feb-94", "1 Feb 1994", ""):
        with pytest.raises(ArgError):
            parse_date(bad)
    for bad in ("17-Jul-1996 24:00:00 +0000", "17-Jul-1996 02:44:25", "17-Jul-1996 02:44 -0700",
                "17-Jul-1996 02:44:25 -0760", "1-Feb-1994"):
        with pytest.raises(ArgError):
            parse_datetime(bad)


def test_mailboxes():
    assert parse_mailbox(Atom("inbox")) == "INBOX"
    assert parse_mailbox(String(b"InBoX")) == "INBOX"
    assert parse_mailbox(Atom("~peter/mail/&U,BTFw-/&ZeVnLIqe-")) == "~peter/mail/台北/日本語"
    assert parse_mailbox(Atom("a&-b")) == "a&b"
    assert parse_mailbox(String("台北".encode()), utf8_accepted=True) == "台北"
    assert parse_mailbox(Atom("&-x"), utf8_accepted=True) == "&-x"
    for bad in (Atom("&Jjo"), Atom("&AGE-"), String("台北".encode()), ArgList(())):
        with pytest.raises(ArgError):
            parse_mailbox(bad)
    # A well-formed name that is not modified UTF-7 names no mailbox: a refusal (NO), not a syntax error.
    for refused in (Atom("&Jjo"), Atom("&AGE-"), Atom("!#$&'+,-.0123456789:;<=>?@^_`|[}")):
        with pytest.raises(ArgRefused):
            parse_mailbox(refused)


def test_list_patterns_that_are_not_modified_utf7_match_nothing():
    largs = parse_list_args(args_of(b'"" (INBOX a&b% x)'))
    assert largs.patterns == ("INBOX", "x")
    assert parse_list_args(args_of(b'"" a&b%')).patterns == ()
    assert parse_list_args(args_of(b'a&b "*"')).patterns == ()


def test_mutf7_rfc_example_and_strictness():
    assert mutf7.encode("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert mutf7.decode("&Jjo-!") == "☺!"
    assert mutf7.encode("😀 & x") == "&2D3eAA- &- x"
    for bad in ("&", "&U,BTFw", "&AGE-", "&U,BTF-", "é", "&2D0-", "a\x01", "&U,BTFx-"):
        with pytest.raises(ValueError):
            mutf7.decode(bad)


def test_status_items():
    assert parse_status_items(args_of(b"(messages UIDNEXT unseen HIGHESTMODSEQ messages)")[0]) == (
        "MESSAGES", "UIDNEXT", "UNSEEN", "HIGHESTMODSEQ")
    for bad in (ArgList(()), Atom("MESSAGES"), ArgList((Atom("FOO"),))):
        with pytest.raises(ArgError):
            parse_status_items(bad)


def test_store():
    assert parse_store(args_of(b"+FLAGS.SILENT (\\deleted)")) == ("+", True, ("\\Deleted",), None)
    assert parse_store(args_of(b"FLAGS \\Seen $X")) == ("", False, ("\\Seen", "$X"), None)
    assert parse_store(args_of(b"(UNCHANGEDSINCE 320162338) -flags ()")) == ("-", False, (), 320162338)
    for bad in (b"FLAGS", b"XFLAGS (a)", b"(FOO 1) FLAGS (a)", b"(UNCHANGEDSINCE x) FLAGS (a)", b"FLAGS (a) (b)", b""):
        with pytest.raises(ArgError):
            parse_store(args_of(bad))


def test_fetch_macros_and_items():
    items, mods = parse_fetch_items(args_of(b"fast"))
    assert [i.name for i in items] == ["FLAGS", "INTERNALDATE", "RFC822.SIZE"] and mods == {}
    assert [i.name for i in parse_fetch_items(args_of(b"ALL"))[0]][-1] == "ENVELOPE"
    assert [i.name for i in parse_fetch_items(args_of(b"FULL"))[0]][-1] == "BODY"
    items, _ = parse_fetch_items(args_of(
        b"(flags body[] BODY.PEEK[1.2.MIME] body[HEADER.FIELDS.NOT (Subject \"X-A\")]<10.20> BINARY.PEEK[1]<0.5> "
        b"BINARY.SIZE[2] BODY BODYSTRUCTURE RFC822.HEADER UID MODSEQ BODY[TEXT] BODY[3.HEADER] BINARY[])"))
    assert items == [
        FetchItem("FLAGS"),
        FetchItem("BODY", Section()),
        FetchItem("BODY", Section((1, 2), "MIME"), peek=True),
        FetchItem("BODY", Section((), "HEADER.FIELDS.NOT", ("SUBJECT", "X-A")), partial=(10, 20)),
        FetchItem("BINARY", Section((1,)), peek=True, partial=(0, 5)),
        FetchItem("BINARY.SIZE", Section((2,))),
        FetchItem("BODY"), FetchItem("BODYSTRUCTURE"), FetchItem("RFC822.HEADER"), FetchItem("UID"),
        FetchItem("MODSEQ"), FetchItem("BODY", Section((), "TEXT")), FetchItem("BODY", Section((3,), "HEADER")),
        FetchItem("BINARY", Section()),
    ]
    items, _ = parse_fetch_items(args_of(b"BODY[HEADER.FIELDS (DATE FROM)]"))
    assert items == [FetchItem("BODY", Section((), "HEADER.FIELDS", ("DATE", "FROM")))]


def test_fetch_modifiers():
    items, mods = parse_fetch_items(args_of(b"(FLAGS) (CHANGEDSINCE 12345 VANISHED)"))
    assert mods == {"CHANGEDSINCE": 12345, "VANISHED": True}
    for bad in (b"(FLAGS) (CHANGEDSINCE 0)", b"(FLAGS) (FOO)", b"(FLAGS) ()", b"FLAGS FLAGS", b"(FLAGS) (VANISHED) x"):
        with pytest.raises(ArgError):
            parse_fetch_items(args_of(bad))


@pytest.mark.parametrize("bad", [
    b"", b"()", b"(ALL)", b"FOO", b"BODY[MIME]", b"BODY[0]", b"BODY[1.0]", b"BODY[HEADER.FIELDS]",
    b"BODY[HEADER.FIELDS ()]", b"BODY[FOO]", b"BODY[]<0.0>", b"BODY[]<5>", b"FLAGS<0.1>", b"BINARY[TEXT]",
    b"BINARY.SIZE[1]<0.1>", b"BINARY.SIZE.PEEK[1]", b"BODY.PEEK", b"NIL", b'"FLAGS"', b"BODY[1.HEADER.FIELDS (A]",
])
def test_bad_fetch_items(bad):
    with pytest.raises(ArgError):
        parse_fetch_items(args_of(bad))


def test_search_rfc_examples():
    key, opts = parse_search(args_of(b'FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"'))
    assert opts == {}
    assert key == SearchKey("AND", keys=(
        SearchKey("FLAGGED"), SearchKey("SINCE", day=date(1994, 2, 1)),
        SearchKey("NOT", keys=(SearchKey("FROM", text="Smith"),))))
    key, _ = parse_search(args_of(b"OR (seen 2:4) UID 9:* larger 100"))
    assert key.keys[0] == SearchKey("OR", keys=(
        SearchKey("AND", keys=(SearchKey("SEEN"), SearchKey("SEQSET", sequence=parse_sequence_set("2:4")))),
        SearchKey("UID", sequence=parse_sequence_set("9:*"))))
    assert key.keys[1] == SearchKey("LARGER", number=100)


def test_search_options_and_keys():
    key, opts = parse_search(args_of(b'RETURN (MIN COUNT save) CHARSET utf-8 TEXT {5+}\r\n\xc3\xa9t\xc3\xa9 $'))
    assert opts == {"return": ("MIN", "COUNT", "SAVE"), "charset": "UTF-8"}
    assert key.keys == (SearchKey("TEXT", text="été"), SearchKey("SEQSET", sequence=SequenceSet((), saved=True)))
    assert parse_search(args_of(b"RETURN () ALL"))[1] == {"return": ()}
    # RFC 5267 §4: UPDATE, and PARTIAL with its range made ascending
    assert parse_search(args_of(b"RETURN (update PARTIAL 4:2) ALL"))[1] == {
        "return": ("UPDATE", "PARTIAL"), "partial": (2, 4)}
    key, _ = parse_search(args_of(
        b'HEADER X-Spam "yes" KEYWORD $Junk UNKEYWORD foo SENTON "3-Mar-2003" BEFORE 1-Jan-2000 SMALLER 5 '
        b'MODSEQ "/flags/\\\\draft" all 620162338 MODSEQ 7 NEW OLD RECENT UNDRAFT bcc x cc y to z subject s body b'))
    assert key.keys[:6] == (
        SearchKey("HEADER", header="X-Spam", text="yes"), SearchKey("KEYWORD", text="$Junk"),
        SearchKey("UNKEYWORD", text="foo"), SearchKey("SENTON", day=date(2003, 3, 3)),
        SearchKey("BEFORE", day=date(2000, 1, 1)), SearchKey("SMALLER", number=5))
    assert key.keys[6:8] == (SearchKey("MODSEQ", number=620162338), SearchKey("MODSEQ", number=7))
    assert [k.name for k in key.keys[8:]] == ["NEW", "OLD", "RECENT", "UNDRAFT", "BCC", "CC", "TO", "SUBJECT", "BODY"]


def test_search_charset_errors():
    with pytest.raises(ArgError, match=r"^\[BADCHARSET \(UTF-8 US-ASCII\)\] "):
        parse_search(args_of(b"CHARSET ISO-8859-1 ALL"))
    assert parse_search(args_of(b"CHARSET US-ASCII ALL"), utf8_accepted=True)[1] == {"charset": "US-ASCII"}


@pytest.mark.parametrize("bad", [
    b"", b"FOO", b"FROM", b"SINCE 32-Jan-2000", b"OR ALL", b"NOT", b"UID x", b"LARGER -1", b"()", b"KEYWORD \\Seen",
    b"MODSEQ \"/flags/x\" bogus 5", b"RETURN (FOO) ALL", b"RETURN ALL", b"CHARSET", b"0:5", b"NIL",
    b"NOT " * 60 + b"ALL",
    b"RETURN (PARTIAL 1) ALL", b"RETURN (PARTIAL 1:*) ALL", b"RETURN (PARTIAL *:1) ALL", b"RETURN (PARTIAL 0:3) ALL",
    b"RETURN (PARTIAL) ALL", b"RETURN (SAVE UPDATE) ALL",
])
def test_bad_search(bad):
    with pytest.raises(ArgError):
        parse_search(args_of(bad))


def test_list_args():
    assert parse_list_args(args_of(b'"" %')) == ListArgs("", ("%",))
    assert parse_list_args(args_of(b'~/Mail/ &U,BTFw-*')) == ListArgs("~/Mail/", ("台北*",))
    largs = parse_list_args(args_of(
        b'(SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" "foo/*") RETURN (CHILDREN STATUS (MESSAGES UNSEEN) special-use)'))
    assert largs == ListArgs("", ("INBOX", "foo/*"), ("SUBSCRIBED", "RECURSIVEMATCH"),
                             ("CHILDREN", "STATUS", "SPECIAL-USE"), ("MESSAGES", "UNSEEN"), True)
    assert parse_list_args(args_of(b'() "" %')).extended
    for bad in (b'"" ', b"(RECURSIVEMATCH) \"\" %", b"(FOO) \"\" %", b'"" % RETURN', b'"" % RETURN (FOO)',
                b'"" % (CHILDREN)', b'"" ()', b'"" % RETURN (STATUS)'):
        with pytest.raises(ArgError):
            parse_list_args(args_of(bad))
