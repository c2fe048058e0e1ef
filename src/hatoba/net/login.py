"""The one login path: SMTP AUTH, POP3 (USER/PASS, APOP, AUTH) and IMAP
(LOGIN, AUTHENTICATE) all log in through Logins.

Rules (each has its one owner here):
- No password before TLS, outside auth.plaintext_networks (POP3, IMAP) or
  smtp.allow_plaintext_auth (SMTP): plaintext_allowed() gives the protocol
  cores the fact they enforce, and a refusal there is a protocol error that
  counts toward no limit. attempt() refuses again, in case a core did not.
- Acting as another user (a SASL authzid) is refused before any password is
  checked: not a failed login either.
- The throttle (policy/auth_throttle.py) is asked when a guess starts and
  told how it ended, so parallel guesses cannot overtake its limits; a guess
  it refuses checks no password.
- Password checks (Argon2, SQLite) and throttle records run in the login
  threads (net/workers.py), never on the event loop nor behind mailbox work.
- A failed login is answered after the throttle's delay, and a refused one
  after REFUSAL_DELAY, slept by this connection alone: a guesser slows down
  himself, not the server.
- A correct password moves the connection to its account's connection count
  (net/limits.py); over that limit the login is refused with the reason.
- Every attempt logs one line: auth result=ok|failed|throttled|busy|refused
  with the protocol, login, mechanism and client address; a throttled one
  also names the scope and the time left. Passwords never appear. The same
  line counts in hatoba_logins_total (and hatoba_login_throttled_total).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from hatoba.config.schema import SMTP_LISTENERS, Config, ListenerConfig
from hatoba.i18n import T, capitalized
from hatoba.logs import mail_log
from hatoba.net.limits import ConnectionLimiter
from hatoba.net.workers import LOGINS
from hatoba.policy.auth_throttle import Attempt, LoginThrottle, Refusal
from hatoba.policy.relay import TrustedNetworks
from hatoba.proto import sasl
from hatoba.proto.address import AddressError, parse_address
from hatoba.proto.scram import unknown_user_keys

if TYPE_CHECKING:
    from hatoba.metrics import Metrics
    from hatoba.store.directory import Directory

log = logging.getLogger(__name__)

OK = "ok"
FAILED = "failed"  # wrong password or unknown user: counted by the throttle
THROTTLED = "throttled"  # the throttle refused the try: no password was checked
BUSY = "busy"  # right password, but the account has too many connections from this address
REFUSED = "refused"  # not a login attempt at all (authzid, no TLS): counts toward nothing
# A refused try is answered after this long (or its retry_after, if shorter),
# on its own connection: a guesser that reconnects at once would otherwise
# make the server do a TLS handshake for every refusal, hundreds a second.
REFUSAL_DELAY = 2.0
# RFC 5321 §4.5.3.1: an address has at most 254 octets; longer login names are
# refused before any work (parsing a 64 MiB IMAP literal would stall the loop).
MAX_LOGIN_NAME = 512


@dataclass(frozen=True, slots=True)
class LoginResult:
    status: str
    account: str | None = None  # the canonical login (lower-cased address) when ok
    text: str = ""  # plain words for a refusal, for the client (a Text: POP3 and IMAP may translate it)
    retry_after: float = 0.0
    reason: str = ""  # REFUSED: "no-tls" or "authzid"

    @property
    def ok(self) -> bool:
        return self.status == OK


class LoginSession(Protocol):
    """What Logins needs to know of a session (net/session_base.py has it)."""

    listener: ListenerConfig
    client_ip: str
    tls_info: tuple[str, str, int] | None
    login_account: str | None


@dataclass(slots=True)
class ScramLogin:
    """A SCRAM exchange between its key look-up and its proof."""

    attempt: Attempt
    account: str | None  # the canonical login the keys belong to (None: unknown user)
    mechanism: str
    username: str  # as the client gave it, for the log


def account_key(login: str) -> str:
    """The spelling-independent name of a login: `"alice"@Example.test` and
    `alice@example.test` are one account, and one throttle scope."""
    try:
        return str(parse_address(login.strip())).lower()
    except AddressError:
        return login.strip().lower()[:320]


def protocol_of(listener: ListenerConfig) -> str:
    if listener.name in SMTP_LISTENERS:
        return "smtp"
    if listener.name in ("http", "https"):
        return "web"  # the web admin (web/admin/): a login per request, no connection to count
    return "pop3" if listener.name in ("pop3", "pop3s") else "imap"


class Logins:
    def __init__(
        self,
        *,
        config: Config,
        directory: Directory,
        throttle: LoginThrottle,
        limiter: ConnectionLimiter,
        metrics: Metrics,
    ) -> None:
        self.directory = directory
        self.metrics = metrics
        self.throttle = throttle
        self.limiter = limiter
        self.plaintext_networks = TrustedNetworks.parse(config.auth.plaintext_networks)
        self.plaintext_smtp = config.smtp.allow_plaintext_auth
        self._unknown_salt_key: bytes | None = None  # read from the throttle's key file when first needed

    def _logged(self, result: str, proto: str, **fields: object) -> None:
        """The attempt's one log line, and its count."""
        mail_log("auth", result=result, proto=proto, **fields)
        self.metrics.login(proto, result)

    # -- the TLS rule -----------------------------------------------------------------

    def plaintext_allowed(self, listener: ListenerConfig, client_ip: str) -> bool:
        """May this client send a password before TLS? (The answer is a core fact.)"""
        if listener.name in SMTP_LISTENERS:
            return self.plaintext_smtp
        return client_ip in self.plaintext_networks

    def _may_log_in(self, session: LoginSession) -> bool:
        return session.tls_info is not None or self.plaintext_allowed(session.listener, session.client_ip)

    # -- passwords ----------------------------------------------------------------------

    async def password(
        self, session: LoginSession, username: str, password: str, *, mechanism: str, authzid: str = ""
    ) -> LoginResult:
        """LOGIN, USER/PASS, AUTH PLAIN and LOGIN: check `password` for `username`."""
        return await self.check(
            session, username, mechanism, lambda: self.directory.authenticate(username, password), authzid=authzid
        )

    async def check(
        self,
        session: LoginSession,
        username: str,
        mechanism: str,
        verify: Callable[[], str | None],
        *,
        authzid: str = "",
    ) -> LoginResult:
        """One login attempt; `verify` runs in a thread and returns the canonical
        account on success, else None (APOP hands in its digest check here)."""
        started = await self._start(session, username, mechanism, authzid)
        if isinstance(started, LoginResult):
            return started
        try:
            account = await LOGINS.run(verify)
        except BaseException:
            self.throttle.abandoned(started)
            raise
        return await self._finish(session, started, account, username, mechanism)

    # -- SCRAM: the proof is checked by the mechanism itself -----------------------------

    async def scram_keys(
        self, session: LoginSession, username: str, authzid: str, mechanism: str
    ) -> tuple[ScramLogin, sasl.ScramKeys | None] | LoginResult:
        """The keys for a SCRAM exchange (None: unknown user, the exchange will fail),
        or the LoginResult that ends it before the client sees a salt."""
        started = await self._start(session, username, mechanism, authzid)
        if isinstance(started, LoginResult):
            return started
        try:
            found = await LOGINS.run(self._scram_lookup, username)
        except BaseException:
            self.throttle.abandoned(started)
            raise
        account, keys = found
        return ScramLogin(started, account, mechanism, username), keys

    def _scram_lookup(self, username: str) -> tuple[str | None, sasl.ScramKeys]:
        """In a thread: (account, its keys), or for an unknown user (None, keys
        that look like a user's: a salt that is the same for every spelling of
        the name and across restarts, as a real user's is, and that no proof matches)."""
        found = self.directory.scram_keys(username)
        if found is not None:
            return found
        if self._unknown_salt_key is None:
            self._unknown_salt_key = self.throttle.secret(b"scram-unknown-user-salt")
        return None, unknown_user_keys(account_key(username), self._unknown_salt_key)

    async def scram_verified(self, session: LoginSession, login: ScramLogin, verified: sasl.Verified) -> LoginResult:
        account = login.account if verified.ok else None
        return await self._finish(session, login.attempt, account, verified.username, login.mechanism)

    async def scram_abandoned(self, session: LoginSession, login: ScramLogin) -> None:
        """A SCRAM exchange ended after the salt went out but before its verdict
        (cancelled, malformed, dropped): a guess like any other, so it counts
        as a failed login and is logged; a client that got the server's final
        message and left has learnt its password was right, at that price."""
        try:
            await LOGINS.run(self.throttle.failed, login.attempt)
        finally:
            self._logged("abandoned", protocol_of(session.listener), login=login.username,
                     mech=login.mechanism, ip=session.client_ip)

    # -- the steps ------------------------------------------------------------------------

    async def _start(self, session: LoginSession, username: str, mechanism: str, authzid: str) -> Attempt | LoginResult:
        """The attempt the throttle counted, or why there is none."""
        refusal = self._refuse_early(session, username, mechanism, authzid)
        if refusal is not None:
            return refusal
        return await self._begin(session, username, mechanism)

    def _refuse_early(
        self, session: LoginSession, username: str, mechanism: str, authzid: str
    ) -> LoginResult | None:
        proto = protocol_of(session.listener)
        if len(username) > MAX_LOGIN_NAME or len(authzid) > MAX_LOGIN_NAME:
            self._logged(REFUSED, proto, login=username[:64] + "...", mech=mechanism,
                     ip=session.client_ip, reason="name-too-long")
            return LoginResult(REFUSED, text=T("Login name too long"), reason="name-too-long")
        if not self._may_log_in(session):
            self._logged(REFUSED, proto, login=username, mech=mechanism, ip=session.client_ip,
                     reason="no-tls")
            return LoginResult(REFUSED, text=T("Use TLS first: no passwords in clear"), reason="no-tls")
        if authzid and account_key(authzid) != account_key(username):
            self._logged(REFUSED, proto, login=username, mech=mechanism, ip=session.client_ip,
                     reason="authzid")
            return LoginResult(REFUSED, text=T("Acting as another user is not allowed"), reason="authzid")
        return None

    async def _begin(self, session: LoginSession, username: str, mechanism: str) -> Attempt | LoginResult:
        started = await LOGINS.run(self.throttle.begin, session.client_ip, account_key(username))
        if isinstance(started, Refusal):
            wait = max(1, round(started.retry_after))
            self.metrics.login_throttled(started.scope)
            self._logged(THROTTLED, protocol_of(session.listener), login=username,
                     mech=mechanism, ip=session.client_ip, scope=started.scope, subject=started.subject,
                     retry_after=f"{wait}s")
            await asyncio.sleep(min(REFUSAL_DELAY, started.retry_after))
            return LoginResult(THROTTLED, text=_capitalised(started.text), retry_after=started.retry_after)
        return started

    async def _finish(
        self, session: LoginSession, attempt: Attempt, account: str | None, username: str, mechanism: str
    ) -> LoginResult:
        proto, ip = protocol_of(session.listener), session.client_ip
        if account is None:
            delay = await LOGINS.run(self.throttle.failed, attempt)
            self._logged(FAILED, proto, login=username, mech=mechanism, ip=ip)
            if delay:
                await asyncio.sleep(delay)
            return LoginResult(FAILED)
        await LOGINS.run(self.throttle.succeeded, attempt)
        busy = None
        if session.login_account != account and proto != "web":
            busy = self.limiter.log_in(ip, account, proto, previous=session.login_account)
        if busy is not None:
            self._logged(BUSY, proto, login=account, mech=mechanism, ip=ip,
                     connections=self.limiter.connections_of(account, ip, proto))
            return LoginResult(BUSY, text=busy)
        session.login_account = account
        tls = session.tls_info
        self._logged(OK, proto, login=account, mech=mechanism, ip=ip,
                 tls=f"{tls[0]}/{tls[1]}" if tls else "none")
        return LoginResult(OK, account=account)


def _capitalised(text: str) -> str:
    """A refusal's words as a sentence that starts them; a Text stays one (hatoba/i18n.py)."""
    return capitalized(text)
