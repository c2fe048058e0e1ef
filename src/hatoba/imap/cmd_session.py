"""IMAP commands about the connection rather than a mailbox: CAPABILITY, NOOP,
CHECK, LOGOUT, ID, STARTTLS, LOGIN, AUTHENTICATE, ENABLE, IDLE, COMPRESS
(RFC 9051 §6.1-§6.3.1, RFC 2971, RFC 5161, RFC 2177, RFC 4978).

The session (session.py) does the TLS, SASL, IDLE and DEFLATE work;
these handlers check the arguments and the state and hand it over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hatoba.imap.common import enable_condstore, refresh_selected
from hatoba.proto.imap.reader import RawCommand
from hatoba.proto.imap.scalars import ArgError, as_text
from hatoba.proto.imap.states import State, capabilities

if TYPE_CHECKING:
    from hatoba.imap.session import ImapSession


# -- any state ------------------------------------------------------------------------------


async def cmd_capability(s: ImapSession, cmd: RawCommand) -> None:
    caps = capabilities(s.facts, s.state, compress_available=s._compress is None)
    s.write(f"* CAPABILITY {caps}\r\n".encode())
    s.tagged(cmd.tag, "OK", "CAPABILITY completed")


async def cmd_noop(s: ImapSession, cmd: RawCommand) -> None:
    await refresh_selected(s)
    s.tagged(cmd.tag, "OK", f"{cmd.name} completed")


async def cmd_logout(s: ImapSession, cmd: RawCommand) -> None:
    s.write(b"* BYE hatoba logging out\r\n")
    s.tagged(cmd.tag, "OK", "LOGOUT completed")
    s.state = State.LOGOUT
    s.closed = True


async def cmd_id(s: ImapSession, cmd: RawCommand) -> None:
    s.write(b'* ID ("name" "hatoba")\r\n')  # RFC 2971; no version: less to fingerprint
    s.tagged(cmd.tag, "OK", "ID completed")


# -- not authenticated ------------------------------------------------------------------------


async def cmd_starttls(s: ImapSession, cmd: RawCommand) -> None:
    if not s.facts.tls_available:
        s.tagged(cmd.tag, "BAD", "TLS is already active" if s.facts.tls_active else "STARTTLS is not available")
        return
    await s.start_tls(cmd.tag)


async def cmd_login(s: ImapSession, cmd: RawCommand) -> None:
    if len(cmd.args) != 2:
        raise ArgError("LOGIN needs a user name and a password")
    if not s.facts.may_login:
        s.tagged(cmd.tag, "NO", "[PRIVACYREQUIRED] Use STARTTLS first, or port 993: no passwords in clear")
        return
    await s.login(cmd.tag, as_text(cmd.args[0]), as_text(cmd.args[1]), "LOGIN")


async def cmd_authenticate(s: ImapSession, cmd: RawCommand) -> None:
    await s.authenticate(cmd)


# -- authenticated ----------------------------------------------------------------------------


async def cmd_enable(s: ImapSession, cmd: RawCommand) -> None:
    known = {"CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "IMAP4REV2"}
    enabled = []
    for arg in cmd.args:
        name = as_text(arg).upper()
        if name in known and name not in s.enabled:
            s.enabled |= {name, "CONDSTORE"} if name == "QRESYNC" else {name}
            enabled.append("IMAP4rev2" if name == "IMAP4REV2" else name)
    if "CONDSTORE" in s.enabled:
        enable_condstore(s)
    if s.selected is not None and "IMAP4REV2" in s.enabled:
        s.selected.recent_flag = False
    s.write(("* ENABLED " + " ".join(enabled)).rstrip().encode() + b"\r\n")
    s.tagged(cmd.tag, "OK", "ENABLE completed")


async def cmd_idle(s: ImapSession, cmd: RawCommand) -> None:
    s.begin_idle(cmd.tag)


async def cmd_compress(s: ImapSession, cmd: RawCommand) -> None:
    if not cmd.args or as_text(cmd.args[0]).upper() != "DEFLATE":
        raise ArgError("COMPRESS DEFLATE is the only kind")
    if s._compress is not None:
        s.tagged(cmd.tag, "NO", "[COMPRESSIONACTIVE] Already compressing")
        return
    s.tagged(cmd.tag, "OK", "DEFLATE active")
    await s.flush()
    s.start_compression()


async def cmd_check(s: ImapSession, cmd: RawCommand) -> None:
    await cmd_noop(s, cmd)
