"""The web admin on the https listener: who is asking, may they, and which page answers.

Rules:
- Logging in goes through the one login path (net/login.py), throttled like
  every mail login, with the main password only (app passwords are for mail
  programs). A user with a second factor then gives a TOTP code, counted by
  the same throttle.
- Every page but the login pages needs a live session (store/web_sessions.py);
  without one the browser is sent to the login page. Every POST needs the
  session's CSRF token (the login form: its own cookie's), compared in
  constant time; without it, 403 and nothing is done.
- Roles (store/roles.py) decide what a page shows and what an action may
  touch: a server administrator everything, a domain administrator the
  domains granted, every user their own account. An action on something
  outside one's reach is 403, however the request was made.
- The pages call the same functions as the CLI (store/, queue/, dkim/);
  blocking work runs in threads, never on the event loop.
- Every change is one audit line in the mail log: `admin by=... ip=...
  action=... target=...`.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from hatoba.logs import mail_log
from hatoba.store.roles import Grants, Roles
from hatoba.store.spamlists import SpamLists
from hatoba.store.web_sessions import WebSessions
from hatoba.web.admin import http as H
from hatoba.web.admin.i18n import choose
from hatoba.web.admin.render import environment, ready, render, static_files
from hatoba.web.routes import Request, Response, Route

if TYPE_CHECKING:
    from hatoba.config.schema import Config, ListenerConfig
    from hatoba.queue.spool import Spool
    from hatoba.store.directory import Directory

__all__ = ["AdminContext", "AdminApp", "Visitor", "PREFIX"]

PREFIX = "/admin"
ALL_METHODS = ("GET", "HEAD", "POST")


class LoginPath(Protocol):
    """The one login path (net/login.py Logins): the throttle, its log line and its metrics."""

    async def check(self, session: Any, username: str, mechanism: str, verify: Callable[[], str | None]) -> Any: ...


@dataclass(frozen=True)
class AdminContext:
    """What the pages work with; net/server.py builds it."""

    config: Config
    directory: Directory
    logins: LoginPath
    listener: ListenerConfig  # the https listener (the login path names its protocol by it)
    spool: Spool
    quota_of: Callable[[str], tuple[int, int]]  # blocking: (bytes stored, limit; 0 = none)


@dataclass(frozen=True)
class Visitor:
    account: str
    grants: Grants
    csrf: str
    language: str
    token: str
    client_ip: str

    def audit(self, action: str, target: str = "", **fields: object) -> None:
        mail_log("admin", by=self.account, ip=self.client_ip, action=action, target=target or None, **fields)


@dataclass(slots=True)
class _WebLogin:
    """What the login path needs to know of the web 'session' (net/login.py LoginSession)."""

    listener: Any
    client_ip: str
    tls_info: tuple[str, str, int] | None = ("TLS", "", 0)  # the https listener is TLS only
    login_account: str | None = None


Page = Callable[["AdminApp", Request, Visitor, dict[str, str]], Awaitable[Response]]


class AdminApp:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx
        path = ctx.config.paths.directory_db
        self.roles = Roles(path)
        self.sessions = WebSessions(path)
        self.spam_lists = SpamLists(path)

    def close(self) -> None:
        for tables in (self.roles, self.sessions, self.spam_lists):
            tables.close()

    # -- helpers the pages use -----------------------------------------------------------

    @staticmethod
    async def blocking(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def languages_ready(self, language: str) -> None:
        if not ready(language):
            await self.blocking(environment, language)

    def page(self, request: Request, visitor: Visitor | None, template: str, status: int = 200,
             **context: object) -> Response:
        language = visitor.language if visitor else choose(request.header("accept-language"))
        body = render(template, language, me=visitor, path=request.path, **context)
        return H.html(status, body, language=language)

    def refuse(self, request: Request, visitor: Visitor) -> Response:
        return self.page(request, visitor, "forbidden.html", 403)

    async def password_check(self, request: Request, visitor: Visitor, password: str) -> str:
        """Is `password` the visitor's own main password? ok | failed | throttled, through the
        login path: a stolen session cannot guess the password faster than a login could."""
        directory = self.ctx.directory
        result = await self.ctx.logins.check(
            _WebLogin(self.ctx.listener, request.client_ip), visitor.account, "password-check",
            lambda: directory.authenticate(visitor.account, password, app_passwords=False))
        return "ok" if result.ok else "throttled" if result.status == "throttled" else "failed"

    # -- who is asking -------------------------------------------------------------------

    async def visitor(self, request: Request) -> tuple[Visitor | None, bool]:
        """(the logged-in visitor or None, whether the second factor is still owed)."""
        token = H.cookie(request, H.SESSION_COOKIE)
        if not token:
            return None, False

        def look_up():  # type: ignore[no-untyped-def]  # one thread trip for the three reads
            session = self.sessions.find(token)
            if session is None:
                return None
            return session, self.roles.grants(session.account), self.ctx.directory.user_settings(session.account)[0]

        found = await self.blocking(look_up)
        if found is None:
            return None, False
        session, grants, language_setting = found
        language = choose(request.header("accept-language"), language_setting)
        await self.languages_ready(language)
        return Visitor(session.account, grants, session.csrf, language, token, request.client_ip), not session.verified

    def elsewhere(self, request: Request) -> Response | None:
        """The admin answers only under the server's own name: asked under another (an
        autoconfig. or mta-sts. name of a customer's domain, an IP address), the browser is
        sent there, so the pages never share a site with anyone else's."""
        hostname = self.ctx.config.server.hostname.lower().rstrip(".")
        name, _, port = request.host.strip().lower().partition(":")
        if name in (hostname, hostname + ".") and (port == "" or (port.isascii() and port.isdigit())):
            return None
        port = f":{port}" if port.isascii() and port.isdigit() and port != "443" else ""
        return Response(301, b"", H.HTML, (*H.SECURITY, ("Location", f"https://{hostname}{port}{PREFIX}/")))

    def guarded(self, handler: Page, *, need: str = "user") -> Callable[[Request], Awaitable[Response]]:
        """`handler` behind the session, role and CSRF rules. need: user | admin | server."""

        async def run(request: Request) -> Response:
            moved = self.elsewhere(request)
            if moved is not None:
                return moved
            visitor, owes_factor = await self.visitor(request)
            if visitor is None:
                return H.redirect(f"{PREFIX}/login")
            if owes_factor:
                return H.redirect(f"{PREFIX}/totp")
            if (need == "server" and not visitor.grants.server) or (need == "admin" and not visitor.grants.is_admin):
                return self.refuse(request, visitor)
            fields: dict[str, str] = {}
            if request.method == "POST":
                posted = H.form(request)
                if posted is None or not hmac.compare_digest(posted.get("csrf", "").encode(), visitor.csrf.encode()):
                    return self.page(request, visitor, "expired.html", 403)
                fields = posted
            return await handler(self, request, visitor, fields)

        return run

    # -- logging in and out ------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        moved = self.elsewhere(request)
        if moved is not None:
            return moved
        language = choose(request.header("accept-language"))
        await self.languages_ready(language)
        if request.method != "POST":
            token = secrets.token_urlsafe(24)
            body = render("login.html", language, me=None, path=request.path, login_csrf=token, error="")
            return H.html(200, body, H.set_cookie(H.LOGIN_COOKIE, token), language=language)
        posted = H.form(request) or {}
        expected = H.cookie(request, H.LOGIN_COOKIE)
        if not expected or not hmac.compare_digest(posted.get("csrf", "").encode(), expected.encode()):
            body = render("expired.html", language, me=None, path=request.path)
            return H.html(403, body, language=language)
        address, password = posted.get("address", "").strip(), posted.get("password", "")
        who = _WebLogin(self.ctx.listener, request.client_ip)
        directory = self.ctx.directory
        result = await self.ctx.logins.check(
            who, address, "web", lambda: directory.authenticate(address, password, app_passwords=False))
        if not result.ok or result.account is None:
            error = "throttled" if result.status == "throttled" else "failed"
            token = secrets.token_urlsafe(24)
            body = render("login.html", language, me=None, path=request.path, login_csrf=token, error=error,
                          address=address)
            return H.html(401 if error == "failed" else 429, body, H.set_cookie(H.LOGIN_COOKIE, token),
                          language=language)
        _, totp = await self.blocking(directory.user_settings, result.account)
        token, _session = await self.blocking(self.sessions.create, result.account, verified=totp is None)
        mail_log("admin", by=result.account, ip=request.client_ip, action="login")
        where = f"{PREFIX}/totp" if totp is not None else f"{PREFIX}/"
        return H.redirect(where, H.set_cookie(H.SESSION_COOKIE, token), H.clear_cookie(H.LOGIN_COOKIE))

    async def second_factor(self, request: Request) -> Response:
        from hatoba.web.admin import totp as T

        moved = self.elsewhere(request)
        if moved is not None:
            return moved
        token = H.cookie(request, H.SESSION_COOKIE)
        visitor, owes = await self.visitor(request)
        if visitor is None:
            return H.redirect(f"{PREFIX}/login")
        if not owes:
            return H.redirect(f"{PREFIX}/")
        if request.method != "POST":
            return self.page(request, visitor, "totp.html", error="")
        posted = H.form(request) or {}
        if not hmac.compare_digest(posted.get("csrf", "").encode(), visitor.csrf.encode()):
            return self.page(request, visitor, "expired.html", 403)
        code = posted.get("code", "")
        directory, key_path = self.ctx.directory, self.ctx.config.paths.secrets_key
        sealed = (await self.blocking(directory.user_settings, visitor.account))[1]

        def verify() -> str | None:
            step = T.code_step(key_path, sealed, code) if sealed else None
            return visitor.account if step is not None and directory.use_totp_step(visitor.account, step) else None

        result = await self.ctx.logins.check(_WebLogin(self.ctx.listener, request.client_ip), visitor.account,
                                             "totp", verify)
        if not result.ok:
            return self.page(request, visitor, "totp.html", 401,
                             error="throttled" if result.status == "throttled" else "wrong-code")
        # A new session (new token) once the second factor is given.
        await self.blocking(self.sessions.end, token)
        new_token, _ = await self.blocking(self.sessions.create, visitor.account, verified=True)
        mail_log("admin", by=visitor.account, ip=request.client_ip, action="login.totp")
        return H.redirect(f"{PREFIX}/", H.set_cookie(H.SESSION_COOKIE, new_token))

    async def logout(self, request: Request, visitor: Visitor, fields: dict[str, str]) -> Response:
        await self.blocking(self.sessions.end, visitor.token)
        visitor.audit("logout")
        return H.redirect(f"{PREFIX}/login", H.clear_cookie(H.SESSION_COOKIE))

    # -- the route table ----------------------------------------------------------------------

    def routes(self) -> list[Route]:
        from hatoba.web.admin import account, pages

        async def to_admin(request: Request) -> Response:
            return H.redirect(f"{PREFIX}/")

        files = static_files()

        async def static(request: Request) -> Response:
            body, kind = files[request.path.rsplit("/", 1)[1]]
            return Response(200, body, kind, H.SECURITY)

        guarded: list[tuple[str, Page, str]] = [
            ("/", pages.dashboard, "user"),
            ("/domains", pages.domains, "admin"),
            ("/users", pages.users, "admin"),
            ("/aliases", pages.aliases, "admin"),
            ("/dkim", pages.dkim, "admin"),
            ("/queue", pages.queue, "server"),
            ("/message", pages.message_log, "server"),
            ("/certificates", pages.certificates, "server"),
            ("/account", account.account, "user"),
            ("/app-passwords", account.app_passwords, "user"),
            ("/security", account.security, "user"),
            ("/spam", account.spam, "user"),
            ("/logout", AdminApp.logout, "user"),
        ]
        return [
            Route("/", to_admin),
            Route(PREFIX, to_admin),
            Route(f"{PREFIX}/login", self.login, methods=ALL_METHODS),
            Route(f"{PREFIX}/totp", self.second_factor, methods=ALL_METHODS),
            *(Route(f"{PREFIX}/static/{name}", static) for name in files),
            *(Route(f"{PREFIX}{path}", self.guarded(handler, need=need),
                    methods=("POST",) if path == "/logout" else ALL_METHODS)  # no logging out by a link
              for path, handler, need in guarded),
        ]
