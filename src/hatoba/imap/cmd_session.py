"""IMAP commands about the connection rather than a mailbox: CAPABILITY, NOOP,
CHECK, LOGOUT, ID, STARTTLS, LOGIN, AUTHENTICATE, ENABLE, IDLE, COMPRESS
(RFC 9051 §6.1-§6.3.1, RFC 2971, RFC 5161, RFC 2177, RFC 4978).

The session (session.py) does the TLS, SASL, IDLE and DEFLATE work;
these handlers check the arguments and the state and hand it over.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from hatoba.i18n import LANGUAGES, T, translations
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
    s.tagged(cmd.tag, "OK", T("CAPABILITY completed"))


async def cmd_noop(s: ImapSession, cmd: RawCommand) -> None:
    await refresh_selected(s)
    s.tagged(cmd.tag, "OK", T("%(command)s completed", command=cmd.name))


async def cmd_logout(s: ImapSession, cmd: RawCommand) -> None:
    s.untagged("BYE", T("hatoba logging out"))
    s.tagged(cmd.tag, "OK", T("LOGOUT completed"))
    s.state = State.LOGOUT
    s.closed = True


async def cmd_id(s: ImapSession, cmd: RawCommand) -> None:
    s.write(b'* ID ("name" "hatoba")\r\n')  # RFC 2971; no version: less to fingerprint
    s.tagged(cmd.tag, "OK", T("ID completed"))


IMAP_LANGUAGES = ("i-default", *LANGUAGES)  # RFC 5255 §3.1: i-default (English here) is always there
MAX_LANGUAGE_RANGES = 20


async def cmd_language(s: ImapSession, cmd: RawCommand) -> None:
    """RFC 5255 §3: no argument lists the languages; ranges pick the first we have (a regional tag
    its language; "default" the user's own setting from the web admin, else i-default). The
    untagged LANGUAGE goes first: the tagged OK is already in the new language (§3.2)."""
    if not cmd.args:
        s.write(b"* LANGUAGE (" + " ".join(IMAP_LANGUAGES).encode() + b")\r\n")
        s.tagged(cmd.tag, "OK", T("LANGUAGE completed"))
        return
    for arg in cmd.args[:MAX_LANGUAGE_RANGES]:
        chosen = await _language_of(s, as_text(arg).strip().lower())
        if chosen is not None:
            await asyncio.to_thread(translations, chosen)  # a catalog's first read takes ~0.2 s
            s.language = chosen
            s.write(b"* LANGUAGE (" + chosen.encode() + b")\r\n")
            s.tagged(cmd.tag, "OK", T("LANGUAGE completed"))
            return
    s.tagged(cmd.tag, "NO", T("Unsupported language; this server speaks English (en) and Japanese (ja)"))


async def _language_of(s: ImapSession, asked: str) -> str | None:
    if asked == "default":
        if s.user is None:
            return "i-default"
        setting, _ = await asyncio.to_thread(s.ctx.directory.user_settings, s.user)
        return setting if setting in IMAP_LANGUAGES else "i-default"
    if asked in ("i-default", "*"):
        return "i-default"
    primary = asked.split("-", 1)[0]
    return primary if primary in IMAP_LANGUAGES else None


# -- not authenticated ------------------------------------------------------------------------


async def cmd_starttls(s: ImapSession, cmd: RawCommand) -> None:
    if not s.facts.tls_available:
        s.tagged(cmd.tag, "BAD", T("TLS is already active") if s.facts.tls_active else T("STARTTLS is not available"))
        return
    await s.start_tls(cmd.tag)


async def cmd_login(s: ImapSession, cmd: RawCommand) -> None:
    if len(cmd.args) != 2:
        raise ArgError(T("LOGIN needs a user name and a password"))
    if not s.facts.may_login:
        s.tagged(cmd.tag, "NO", T("[PRIVACYREQUIRED] Use STARTTLS first, or port 993: no passwords in clear"))
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
    s.tagged(cmd.tag, "OK", T("ENABLE completed"))


async def cmd_idle(s: ImapSession, cmd: RawCommand) -> None:
    s.begin_idle(cmd.tag)


async def cmd_compress(s: ImapSession, cmd: RawCommand) -> None:
    if not cmd.args or as_text(cmd.args[0]).upper() != "DEFLATE":
        raise ArgError(T("COMPRESS DEFLATE is the only kind"))
    if s._compress is not None:
        s.tagged(cmd.tag, "NO", T("[COMPRESSIONACTIVE] Already compressing"))
        return
    s.tagged(cmd.tag, "OK", T("DEFLATE active"))
    await s.flush()
    s.start_compression()


async def cmd_check(s: ImapSession, cmd: RawCommand) -> None:
    await cmd_noop(s, cmd)
