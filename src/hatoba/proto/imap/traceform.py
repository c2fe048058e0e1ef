"""How an IMAP command is shown in the --debug trace.

The reader hands out parsed commands, not their bytes, so the trace shows
each command rebuilt: literals as {size} with their first bytes, and the
credentials of LOGIN and AUTHENTICATE never shown (logs.trace_line's rule
for SMTP and POP3 lines, kept for IMAP).
"""

from __future__ import annotations

import re

from hatoba.proto.imap.reader import RawCommand
from hatoba.proto.imap.types import Arg, ArgList, Atom, Nil, String

_MECHANISM = re.compile(r"[A-Za-z0-9_-]{1,20}")  # RFC 4422 §3.1: a SASL mechanism name
MAX_SHOWN = 500  # characters of one traced command
LITERAL_SHOWN = 40  # bytes of a literal's content shown


def trace_form(cmd: RawCommand) -> bytes:
    """`cmd` as one line for the trace, credentials replaced by <redacted>."""
    words = [cmd.tag, cmd.name, *(_shown(arg) for arg in cmd.args)]
    # The verb may come later ("UID LOGIN user pass") or first, the tag forgotten
    # ("LOGIN user pass"): what follows it goes, but AUTHENTICATE's mechanism name.
    for at, word in enumerate(words[:3]):
        verb = word.upper()
        if verb in ("LOGIN", "AUTHENTICATE"):
            keep = at + 1
            if verb == "AUTHENTICATE" and keep < len(words) and _MECHANISM.fullmatch(words[keep]):
                keep += 1
            words = words[:keep] + (["<redacted>"] if keep < len(words) else [])
            break
    line = " ".join(words)
    if len(line) > MAX_SHOWN:
        line = line[:MAX_SHOWN] + "..."
    return line.encode("utf-8", "replace")


def _shown(arg: Arg) -> str:
    if isinstance(arg, Atom):
        return arg.value
    if isinstance(arg, Nil):
        return "NIL"
    if isinstance(arg, ArgList):
        return "(" + " ".join(_shown(item) for item in arg.items[:50]) + (" ..." if len(arg.items) > 50 else "") + ")"
    assert isinstance(arg, String)
    text = arg.value[:LITERAL_SHOWN].decode("utf-8", "replace")
    if arg.literal:
        more = "..." if len(arg.value) > LITERAL_SHOWN else ""
        return "{%d}%s%s" % (len(arg.value), text.encode("unicode_escape").decode("ascii"), more)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
