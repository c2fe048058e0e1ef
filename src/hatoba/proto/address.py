"""The one mail address parser: SMTP paths, bare addresses, domains, ESMTP parameters.

Used by the SMTP server core (MAIL FROM / RCPT TO), the relay policy, the
directory and the CLI, so that every part of hatoba agrees on what an address
is and on its canonical spelling.

Rules:
- Every public function returns a value or raises AddressError; any other
  exception is a bug (the fuzz tests hold us to this).
- AddressError messages are one line of plain ASCII that never echoes the
  input: they may be sent to an SMTP client as they are.
- Domains come out lower-case, without a trailing dot, with U-labels turned
  into A-labels (xn--...), so that comparing two domains is comparing strings.
- Local parts keep their case (the directory compares them case-insensitively)
  and are stored dequoted; str(Address) quotes them again only when needed.
- We implement the RFC 5321 Mailbox syntax (no comments, no folding white
  space, no obsolete RFC 5322 forms) for both SMTP paths and operator input:
  an address that SMTP cannot carry is of no use to a mail server.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass, field

from hatoba.proto.errors import RemoteProtocolError

__all__ = [
    "Address",
    "AddressError",
    "Path",
    "parse_address",
    "parse_domain",
    "parse_path",
    "quote_local",
    "split_esmtp_params",
]

# RFC 5321 §4.5.3.1.1, §4.5.3.1.2; RFC 1035 §2.3.4 for labels.
MAX_LOCAL_OCTETS = 64
MAX_DOMAIN_OCTETS = 255
MAX_LABEL_OCTETS = 63


class AddressError(RemoteProtocolError):
    """An address, path, domain or ESMTP parameter is malformed.

    The message is one ASCII line saying what is wrong, safe to show to the peer.
    """


@dataclass(frozen=True)
class Address:
    """A mailbox: local part and domain, as parsed by parse_path/parse_address.

    Build it with parse_address() rather than by hand: the constructor does not
    validate or normalise. `quoted` records how the local part was written; it
    takes no part in equality or hashing because `"john"@x` and `john@x` name
    the same mailbox (RFC 5322 §3.4.1, RFC 5321 §4.1.2).
    """

    local: str
    domain: str
    quoted: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        return f"{quote_local(self.local)}@{self.domain}"

    @property
    def has_routing_chars(self) -> bool:
        """True when the local part could route mail elsewhere.

        '%' (percent hack), '!' (UUCP bang path) and a quoted '@' were all used
        to relay through servers that split local parts naively; the relay
        policy refuses them for local domains.
        """
        return any(c in self.local for c in "%!@")

    @property
    def requires_smtputf8(self) -> bool:
        """True when the address cannot be sent without SMTPUTF8 (RFC 6531 §3.2).

        The domain is always stored as A-labels, so only the local part counts.
        """
        return not self.local.isascii()


@dataclass(frozen=True)
class Path:
    """An SMTP reverse-path or forward-path (RFC 5321 §4.1.2).

    `address` is None for the null reverse-path "<>". `source_route` keeps the
    domains of an obsolete A-d-l for logging only: RFC 5321 §3.6.1 and §4.1.2
    say servers MUST ignore the route and deliver to the mailbox.
    """

    address: Address | None
    source_route: tuple[str, ...] = ()

    def __str__(self) -> str:
        # The route is dropped on purpose (RFC 5321 §4.1.2: ignore it).
        return "<>" if self.address is None else f"<{self.address}>"


# ---------------------------------------------------------------------------
# Character classes
#
# RFC 5322 §3.2.3
#   atext = ALPHA / DIGIT / "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" /
#           "-" / "/" / "=" / "?" / "^" / "_" / "`" / "{" / "|" / "}" / "~"
# RFC 5321 §4.1.2
#   qtextSMTP       = %d32-33 / %d35-91 / %d93-126
#   quoted-pairSMTP = %d92 %d32-126
# RFC 6531 §3.3
#   atext     =/ UTF8-non-ascii
#   qtextSMTP =/ UTF8-non-ascii
# ---------------------------------------------------------------------------

_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")
# Unicode categories never allowed in an address: controls (C0 and C1; NUL
# included), surrogates (what surrogateescape makes of invalid UTF-8), and
# the line/paragraph separators that some software treats as line breaks.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def _is_atext(c: str) -> bool:
    return c in _ATEXT or ord(c) > 127


def _is_qtext(c: str) -> bool:
    o = ord(c)
    return (32 <= o <= 126 and c not in '"\\') or o > 127


def _check_characters(text: str, *, smtputf8: bool) -> None:
    """Refuse characters that are wrong anywhere, before any parsing."""
    for c in text:
        if c.isascii():
            if ord(c) < 32 or ord(c) == 127:
                raise AddressError(f"control character U+{ord(c):04X} not allowed in an address")
            continue
        if unicodedata.category(c) == "Cs":
            raise AddressError("address is not valid UTF-8")
        if unicodedata.category(c) in _FORBIDDEN_CATEGORIES:
            raise AddressError(f"control character U+{ord(c):04X} not allowed in an address")
        if not smtputf8:
            # RFC 6531 §3.2: 8-bit addresses only after MAIL FROM ... SMTPUTF8.
            raise AddressError("non-ASCII characters in an address need SMTPUTF8")


def _is_dot_string(text: str) -> bool:
    # RFC 5321 §4.1.2: Dot-string = Atom *("." Atom); Atom = 1*atext
    return all(atom and all(_is_atext(c) for c in atom) for atom in text.split("."))


def quote_local(local: str) -> str:
    """Return the canonical spelling of a local part (RFC 5321 §4.1.2).

    A local part that is a valid Dot-string is written bare; anything else is
    written as a Quoted-string with only '"' and '\\' escaped, the shortest
    form, so it never exceeds the length of any spelling we accepted.
    """
    if local and _is_dot_string(local):
        return local
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# ---------------------------------------------------------------------------
# Domains
#
# RFC 5321 §4.1.2
#   Domain     = sub-domain *("." sub-domain)
#   sub-domain = Let-dig [Ldh-str]
#   Let-dig    = ALPHA / DIGIT
#   Ldh-str    = *( ALPHA / DIGIT / "-" ) Let-dig
# RFC 6531 §3.3
#   sub-domain =/ U-label
# ---------------------------------------------------------------------------

_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\Z")
# RFC 5892 §2.1 (LetterDigits): the categories IDNA2008 lets into a U-label,
# once upper case has been mapped away (Lu, Lt) as UTS #46 does.
_ULABEL_CATEGORIES = frozenset({"Ll", "Lo", "Lm", "Mn", "Mc", "Nd"})


def _ulabel_to_alabel(label: str) -> str:
    """Turn one non-ASCII label into its A-label (RFC 5890 §2.3.2.1).

    Why not the stdlib "idna" codec: it implements IDNA2003, which maps 'ß'
    to "ss" and so would send mail for straße.example to strasse.example. We
    apply a small UTS #46-style mapping (NFKC, lower case, NFC), accept the
    IDNA2008 letter/digit/mark repertoire and encode with Punycode (RFC 3492).
    The full contextual and bidi rules (RFC 5892 Appendix A, RFC 5893) are not
    checked; DNS is the final judge of whether such a domain exists.
    """
    mapped = unicodedata.normalize("NFC", unicodedata.normalize("NFKC", label).lower())
    if mapped.isascii():
        # e.g. full-width Latin letters: NFKC folds them to plain ASCII.
        return _check_ldh_label(mapped)
    if not mapped:
        raise AddressError("empty label in domain")
    for c in mapped:
        if c.isascii():
            if not (c.isalnum() or c == "-"):
                raise AddressError(f"character U+{ord(c):04X} not allowed in a domain label")
        elif unicodedata.category(c) not in _ULABEL_CATEGORIES:
            raise AddressError(f"character U+{ord(c):04X} not allowed in a domain label")
    if unicodedata.category(mapped[0]) in ("Mn", "Mc"):
        # RFC 5891 §4.2.3.2: a label must not begin with a combining mark.
        raise AddressError("domain label begins with a combining mark")
    if mapped[0] == "-" or mapped[-1] == "-" or mapped[2:4] == "--":
        # RFC 5891 §4.2.3.1: hyphen restrictions.
        raise AddressError("misplaced hyphen in internationalised domain label")
    alabel = "xn--" + mapped.encode("punycode").decode("ascii")
    if len(alabel) > MAX_LABEL_OCTETS:
        raise AddressError(f"domain label longer than {MAX_LABEL_OCTETS} octets")
    return alabel


def _check_ldh_label(label: str) -> str:
    """Validate one lower-case ASCII label; return it."""
    if not label:
        raise AddressError("empty label in domain")
    if len(label) > MAX_LABEL_OCTETS:
        raise AddressError(f"domain label longer than {MAX_LABEL_OCTETS} octets")
    if not _LDH_LABEL.match(label):
        raise AddressError("domain labels may hold only letters, digits and inner hyphens")
    if label.startswith("xn--"):
        # An A-label must decode to a U-label that encodes back to it
        # (RFC 5891 §5.4), otherwise two spellings could name one domain.
        try:
            decoded = label[4:].encode("ascii").decode("punycode")
        except UnicodeError:
            raise AddressError("invalid IDNA A-label (xn--) in domain") from None
        if decoded.isascii():
            raise AddressError("invalid IDNA A-label (xn--) in domain")
        try:
            again = _ulabel_to_alabel(decoded)
        except AddressError:
            raise AddressError("invalid IDNA A-label (xn--) in domain") from None
        if again != label:
            raise AddressError("invalid IDNA A-label (xn--) in domain")
    return label


def _normalise_domain(text: str) -> str:
    """Validate a Domain (no trailing dot); return it lower-case with A-labels."""
    if not text:
        raise AddressError("missing domain")
    labels = []
    for label in text.split("."):
        if label.isascii():
            labels.append(_check_ldh_label(label.lower()))
        else:
            labels.append(_ulabel_to_alabel(label))
    domain = ".".join(labels)
    if len(domain) > MAX_DOMAIN_OCTETS:
        raise AddressError(f"domain longer than {MAX_DOMAIN_OCTETS} octets")
    return domain


def parse_domain(text: str) -> str:
    """Validate and normalise a domain name given by an operator or in config.

    Returns it lower-case, without a trailing dot, U-labels turned into
    A-labels: parse_domain("Bücher.Example.") == "xn--bcher-kva.example".
    Address literals are not domains and are refused.
    """
    _check_characters(text, smtputf8=True)
    if text.endswith(".") and text != ".":
        # The root dot is DNS syntax, not part of the name (RFC 1034 §3.1).
        text = text[:-1]
    if text.startswith("["):
        raise AddressError("an address literal is not a domain name")
    return _normalise_domain(text)


# ---------------------------------------------------------------------------
# Address literals
#
# RFC 5321 §4.1.2, §4.1.3
#   address-literal  = "[" ( IPv4-address-literal / IPv6-address-literal /
#                            General-address-literal ) "]"
#   IPv4-address-literal  = Snum 3("."  Snum)
#   IPv6-address-literal  = "IPv6:" IPv6-addr
#   General-address-literal  = Standardized-tag ":" 1*dcontent
#   Standardized-tag  = Ldh-str
#                     ; Standardized-tag MUST be specified in a
#                     ; Standards-Track RFC and registered with IANA
# ---------------------------------------------------------------------------

_IPV4_CHARS = re.compile(r"[0-9.]+\Z")
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]+\Z")
_GENERAL_TAG = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]:")


def _parse_address_literal(text: str) -> str:
    """Validate "[...]"; return its canonical spelling."""
    if not text.endswith("]"):
        raise AddressError("unterminated address literal")
    inner = text[1:-1]
    if inner[:5].lower() == "ipv6:":
        # The character check keeps out ipaddress's "%scope" suffix.
        if not _IPV6_CHARS.match(inner[5:]):
            raise AddressError("invalid IPv6 address literal")
        try:
            ip6 = ipaddress.IPv6Address(inner[5:])
        except ValueError:
            raise AddressError("invalid IPv6 address literal") from None
        return f"[IPv6:{ip6.compressed}]"
    if _IPV4_CHARS.match(inner):
        try:
            # Leading zeros are refused: "010" reads as 8 or as 10 depending
            # on the software, and a literal must name one host.
            ip4 = ipaddress.IPv4Address(inner)
        except ValueError:
            raise AddressError("invalid IPv4 address literal") from None
        return f"[{ip4}]"
    if _GENERAL_TAG.match(inner):
        # No General-address-literal tag has ever been registered.
        raise AddressError("unsupported address literal; use [IPv4] or [IPv6:...]")
    raise AddressError("invalid address literal")


# ---------------------------------------------------------------------------
# Mailboxes
#
# RFC 5321 §4.1.2
#   Mailbox        = Local-part "@" ( Domain / address-literal )
#   Local-part     = Dot-string / Quoted-string
#                  ; MAY be case-sensitive
#   Dot-string     = Atom *("."  Atom)
#   Atom           = 1*atext
#   Quoted-string  = DQUOTE *QcontentSMTP DQUOTE
#   QcontentSMTP   = qtextSMTP / quoted-pairSMTP
# ---------------------------------------------------------------------------


def _parse_quoted(text: str) -> tuple[str, int]:
    """Parse a Quoted-string at the start of text; return (value, end index)."""
    out: list[str] = []
    i = 1
    while i < len(text):
        c = text[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            if i + 1 >= len(text):
                break
            nxt = text[i + 1]
            if not (32 <= ord(nxt) <= 126):
                # RFC 6531 §3.3 does not extend quoted-pairSMTP to UTF-8.
                raise AddressError("only printable ASCII may follow a backslash in a quoted local part")
            out.append(nxt)
            i += 2
            continue
        if not _is_qtext(c):
            raise AddressError(f"character U+{ord(c):04X} not allowed in a quoted local part")
        out.append(c)
        i += 1
    raise AddressError("unterminated quoted local part")


def _parse_mailbox(text: str) -> Address:
    """Parse Mailbox; characters were already checked by the caller."""
    if text.startswith('"'):
        local, end = _parse_quoted(text)
        quoted = True
        raw_local = text[:end]
        if text[end : end + 1] != "@":
            if end == len(text):
                raise AddressError("missing @domain after the local part")
            raise AddressError("expected '@' after the quoted local part")
        domain_text = text[end + 1 :]
    else:
        raw_local, at, domain_text = text.rpartition("@")
        if not at:
            # The bare "<Postmaster>" (RFC 5321 §4.1.1.3) is no address: the
            # SMTP core's RCPT takes it before parsing.
            raise AddressError("missing @domain after the local part")
        local, quoted = raw_local, False
        if not raw_local:
            raise AddressError("empty local part")
        for atom in raw_local.split("."):
            if not atom:
                raise AddressError("local part has an empty atom (leading, trailing or double dot)")
            for c in atom:
                if not _is_atext(c):
                    raise AddressError(
                        f"character U+{ord(c):04X} not allowed in an unquoted local part; quote it"
                    )
    if not local:
        raise AddressError("empty local part")
    if len(raw_local.encode("utf-8")) > MAX_LOCAL_OCTETS:
        raise AddressError(f"local part longer than {MAX_LOCAL_OCTETS} octets")
    if domain_text.startswith("["):
        domain = _parse_address_literal(domain_text)
    else:
        domain = _normalise_domain(domain_text)
    return Address(local, domain, quoted)


def parse_address(text: str, *, smtputf8: bool = True) -> Address:
    """Parse a bare address as typed by an operator: "user@example.org".

    Surrounding spaces and tabs are ignored; angle brackets are not accepted.
    The domain is required.
    """
    text = text.strip(" \t")
    _check_characters(text, smtputf8=smtputf8)
    if not text:
        raise AddressError("empty address")
    if text.startswith("<"):
        raise AddressError("give the address without angle brackets, like user@example.org")
    return _parse_mailbox(text)


# ---------------------------------------------------------------------------
# Paths
#
# RFC 5321 §4.1.2
#   Reverse-path   = Path / "<>"
#   Forward-path   = Path
#   Path           = "<" [ A-d-l ":" ] Mailbox ">"
#   A-d-l          = At-domain *( "," At-domain )
#                  ; Note that this form, the so-called "source
#                  ; route", MUST BE accepted, SHOULD NOT be
#                  ; generated, and SHOULD be ignored.
#   At-domain      = "@" Domain
# ---------------------------------------------------------------------------


def parse_path(text: str, *, smtputf8: bool = False, allow_null: bool = False) -> Path:
    """Parse the path of MAIL FROM / RCPT TO, e.g. "<user@example.org>".

    `text` is the path alone: the caller has split off ESMTP parameters
    (split_esmtp_params) and the space some clients put after the colon.
    `smtputf8` allows UTF-8 in the local part and domain (RFC 6531 §3.3);
    `allow_null` allows "<>" (reverse-path only, RFC 5321 §4.5.5).
    """
    _check_characters(text, smtputf8=smtputf8)
    if not text:
        raise AddressError("missing path; expected <address>")
    if not (text.startswith("<") and text.endswith(">")) or len(text) < 2:
        raise AddressError("path must be enclosed in angle brackets: <address>")
    inner = text[1:-1]
    if not inner:
        if allow_null:
            return Path(None)
        raise AddressError("null path <> not allowed here")
    route: tuple[str, ...] = ()
    if inner.startswith("@"):
        adl, colon, inner = inner.partition(":")
        if not colon:
            raise AddressError("source route must end with ':' before the mailbox")
        domains = []
        for at_domain in adl.split(","):
            if not at_domain.startswith("@"):
                raise AddressError("each source route hop must be @domain")
            domains.append(_normalise_domain(at_domain[1:]))
        route = tuple(domains)
    return Path(_parse_mailbox(inner), route)


# ---------------------------------------------------------------------------
# ESMTP parameters
#
# RFC 5321 §4.1.2
#   Mail-parameters  = esmtp-param *(SP esmtp-param)
#   Rcpt-parameters  = esmtp-param *(SP esmtp-param)
#   esmtp-param      = esmtp-keyword ["=" esmtp-value]
#   esmtp-keyword    = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
#   esmtp-value      = 1*(%d33-60 / %d62-126)
#                    ; any CHAR excluding "=", SP, and control
#                    ; characters.
# RFC 6531 §3.3
#   esmtp-value      =/ UTF8-non-ascii
# ---------------------------------------------------------------------------

_ESMTP_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")


def _path_end(text: str) -> int:
    """Index just after the '>' that closes the path at the start of text."""
    in_quote = False
    i = 0
    while i < len(text):
        c = text[i]
        if in_quote:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
        elif c == ">":
            return i + 1
        i += 1
    raise AddressError("path has no closing '>'")


def split_esmtp_params(text: str) -> tuple[str, dict[str, str | None]]:
    """Split "<a@b> SIZE=1000 SMTPUTF8" into ("<a@b>", {"SIZE": "1000", "SMTPUTF8": None}).

    The path part ends at the first '>' outside a quoted local part, so it may
    hold spaces only inside quotes; when it does not start with '<' it ends at
    the first space and parse_path() reports the missing brackets. Keywords
    are upper-cased; a repeated keyword is an error. Runs of spaces between
    parameters and trailing spaces are tolerated (common client sloppiness).
    Values may hold UTF-8 (RFC 6531 §3.3); whether SMTPUTF8 was negotiated is
    for the caller to check.
    """
    if not text:
        raise AddressError("missing path; expected <address>")
    if text.startswith("<"):
        end = _path_end(text)
        path, rest = text[:end], text[end:]
        if rest and not rest.startswith(" "):
            raise AddressError("expected a space between the path and its parameters")
    else:
        path, _, rest = text.partition(" ")
    params: dict[str, str | None] = {}
    for param in rest.split(" "):
        if not param:
            continue
        keyword, eq, value = param.partition("=")
        if not _ESMTP_KEYWORD.match(keyword):
            raise AddressError("malformed ESMTP parameter keyword")
        if eq:
            if not value:
                raise AddressError("ESMTP parameter has '=' but no value")
            for c in value:
                o = ord(c)
                if o > 127:
                    if unicodedata.category(c) in _FORBIDDEN_CATEGORIES:
                        raise AddressError("invalid character in ESMTP parameter value")
                elif not (33 <= o <= 126) or c == "=":
                    raise AddressError("invalid character in ESMTP parameter value")
        key = keyword.upper()
        if key in params:
            raise AddressError("ESMTP parameter given twice")
        params[key] = value if eq else None
    return path, params
