"""POP3 unique ids as the old server showed them, so "leave mail on the server" clients
do not fetch everything again.

A format is Dovecot's pop3_uidl_format: "%08Xu%08Xv" (its default) is the IMAP UID and
UIDVALIDITY as 8 hex digits each, in lower case whatever the X's case (Dovecot 2.3's
var_expand prints hex with %llx: UID 1 of UIDVALIDITY 1234567890 is "00000001499602d2"); %u UID, %v UIDVALIDITY, %f the Maildir base
name, %g the message's GUID, each with an optional "0", width and X/x (hex), as Dovecot's
var_expand takes them; "%%" is a "%". "base" is the Maildir base name (qmail-pop3d,
vpopmail, hatoba itself); "courier" is Courier's "UID<uid>-<uidvalidity>".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VARIABLE = re.compile(r"%(0?)(\d*)([Xx]?)(.)")
_LONG_NAMES = {"%{uid}": "%u", "%{uidvalidity}": "%v", "%{filename}": "%f", "%{guid}": "%g"}
NAMED = {"base": "%f", "courier": "UID%u-%v", "dovecot": "%08Xu%08Xv"}


class UidlFormatError(ValueError):
    pass


@dataclass(frozen=True)
class UidlFormat:
    text: str

    @classmethod
    def parse(cls, text: str) -> UidlFormat:
        """A format, or UidlFormatError saying what is wrong with it."""
        text = NAMED.get(text.lower(), text)
        for long, short in _LONG_NAMES.items():
            text = text.replace(long, short)
        if not text:
            raise UidlFormatError("the POP3 UIDL format is empty")
        for match in re.finditer(r"%(0?\d*[Xx]?)(.?)", text):
            if match.group(2) == "%" and not match.group(1):
                continue
            if match.group(2) not in ("u", "v", "f", "g"):
                raise UidlFormatError(
                    f"the POP3 UIDL format {text!r} uses %{match.group(1)}{match.group(2)}; hatoba knows "
                    "%u (UID), %v (UIDVALIDITY), %f (file name) and %g (GUID), as in %08Xu%08Xv"
                )
        return cls(text)

    @property
    def needs_uid(self) -> bool:
        return bool({m.group(4) for m in _VARIABLE.finditer(self.text)} & {"u", "v"})

    def render(self, *, uid: int | None, uidvalidity: int | None, base: str, guid: str = "") -> str | None:
        """The UIDL of one message; None when the format needs a UID the message has not got."""
        out: list[str] = []
        pos = 0
        for match in _VARIABLE.finditer(self.text):
            out.append(self.text[pos:match.start()])
            pos = match.end()
            zero, width, hex_case, name = match.groups()
            if name == "%":
                out.append("%")
                continue
            value: int | str | None = {"u": uid, "v": uidvalidity, "f": base, "g": guid}[name]
            if value is None:
                return None
            if isinstance(value, int) and hex_case:
                value = format(value, "x")
            out.append(str(value).rjust(int(width), "0" if zero else " ") if width else str(value))
        out.append(self.text[pos:])
        return "".join(out)
