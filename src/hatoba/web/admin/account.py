"""Every user's own pages: password, forwarding, APOP secret and language, app passwords, the second
factor, spam lists.

A user acts only on the account they logged in as: no field names another.
Changing the password asks for the current one, ends every other session
(store/directory.py ends them all; this one is made again) and is audited.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from hatoba.i18n import refusal
from hatoba.store.api import DirectoryError
from hatoba.store.directory import check_password
from hatoba.store.secretbox import SecretBox, SecretBoxError
from hatoba.store.spamlists import SpamListError
from hatoba.web.admin import http as H
from hatoba.web.admin import totp as T
from hatoba.web.admin.i18n import LANGUAGES

if TYPE_CHECKING:
    from hatoba.web.admin.app import AdminApp, Visitor
    from hatoba.web.routes import Request, Response


async def account(app: AdminApp, request: Request, visitor: Visitor, fields: dict[str, str]) -> Response:
    directory = app.ctx.directory
    notice = error = ""
    action = fields.get("action")
    if action == "password":
        current, new, again = fields.get("current", ""), fields.get("new", ""), fields.get("again", "")
        if new != again:
            error = "passwords-differ"
        elif (checked := await app.password_check(request, visitor, current)) != "ok":
            error = _wrong(checked)
        else:
            try:
                await app.blocking(directory.set_password, visitor.account, new)
            except DirectoryError as exc:
                error = refusal(exc)
            else:
                visitor.audit("account.password", visitor.account)
                token, session = await app.blocking(app.sessions.create, visitor.account, verified=True)
                visitor = dataclasses.replace(visitor, token=token, csrf=session.csrf)
                page = app.page(request, visitor, "account.html", notice="password-changed", error="",
                                **await _account_state(app, visitor))
                return H.html(page.status, page.body, H.set_cookie(H.SESSION_COOKIE, token), language=visitor.language)
    elif action == "apop-on":
        secret, again, current = fields.get("apop", ""), fields.get("apop_again", ""), fields.get("current", "")
        if secret != again:
            error = "passwords-differ"
        elif secret == current:
            error = "apop-not-password"
        elif (checked := await app.password_check(request, visitor, current)) != "ok":
            error = _wrong(checked)
        else:
            try:
                check_password(secret)
                sealed = await app.blocking(lambda: SecretBox(app.ctx.config.paths.secrets_key).seal(secret))
                await app.blocking(directory.set_apop_secret, visitor.account, sealed)
            except (DirectoryError, SecretBoxError) as exc:
                error = refusal(exc)
            else:
                visitor.audit("account.apop-on", visitor.account)
                notice = "apop-on"
    elif action == "apop-off":
        await app.blocking(directory.set_apop_secret, visitor.account, None)
        visitor.audit("account.apop-off", visitor.account)
        notice = "apop-off"
    elif action == "forward":
        targets = [part.strip() for part in fields.get("targets", "").replace("\n", ",").split(",") if part.strip()]
        try:
            await app.blocking(directory.set_forwards, visitor.account, targets, keep_copy=fields.get("keep") == "1")
        except DirectoryError as exc:
            error = refusal(exc)
        else:
            visitor.audit("account.forward", visitor.account, to=",".join(targets) or "off",
                          keep=fields.get("keep") == "1")
            notice = "forward-saved" if targets else "forward-off"
    elif action == "language":
        chosen = fields.get("language", "")
        await app.blocking(directory.set_language, visitor.account, chosen if chosen in LANGUAGES else None)
        visitor.audit("account.language", visitor.account, language=chosen or "browser")
        return H.redirect("/admin/account")
    elif fields:
        return app.refuse(request, visitor)
    return app.page(request, visitor, "account.html", 400 if error else 200, notice=notice, error=error,
                    **await _account_state(app, visitor))


def _wrong(checked: str) -> str:
    """The words for a current password that was not accepted."""
    return "throttled" if checked == "throttled" else "wrong-current"


async def _account_state(app: AdminApp, visitor: Visitor) -> dict[str, object]:
    """What the account page shows of the user's settings."""
    directory = app.ctx.directory
    targets, keep = await app.blocking(directory.forwards, visitor.account)
    return {"language_setting": (await app.blocking(directory.user_settings, visitor.account))[0],
            "apop": await app.blocking(directory.apop_secret, visitor.account) is not None,
            "apop_offered": app.ctx.config.pop3.apop, "forward_targets": targets, "forward_keep": keep}


async def app_passwords(app: AdminApp, request: Request, visitor: Visitor, fields: dict[str, str]) -> Response:
    directory = app.ctx.directory
    notice = error = created = ""
    action = fields.get("action")
    try:
        if action == "create":
            _, created = await app.blocking(directory.add_app_password, visitor.account, fields.get("name", ""))
            visitor.audit("app-password.create", visitor.account, name=" ".join(fields.get("name", "").split()))
            notice = "app-password-made"
        elif action == "revoke":
            await app.blocking(directory.revoke_app_password, visitor.account, fields.get("name", ""))
            visitor.audit("app-password.revoke", visitor.account, name=fields.get("name", ""))
            notice = "app-password-revoked"
        elif fields:
            return app.refuse(request, visitor)
    except DirectoryError as exc:
        error = refusal(exc)
    rows = await app.blocking(directory.app_passwords, visitor.account)
    return app.page(request, visitor, "app_passwords.html", 400 if error else 200, rows=rows, created=created,
                    notice=notice, error=error, hostname=app.ctx.config.server.hostname)


async def security(app: AdminApp, request: Request, visitor: Visitor, fields: dict[str, str]) -> Response:
    """Two-step login on or off. Both need the current password (a stolen session must not be
    able to lock the owner out, or take the second factor over); turning it on ends the other
    sessions, which were opened without it."""
    directory = app.ctx.directory
    key_path = app.ctx.config.paths.secrets_key
    notice = error = ""
    action = fields.get("action")
    has_totp = (await app.blocking(directory.user_settings, visitor.account))[1] is not None
    pending = ""
    if action == "enable" and not has_totp:
        pending = fields.get("secret", "")
        if not T.is_secret(pending):
            return app.refuse(request, visitor)
        if (checked := await app.password_check(request, visitor, fields.get("current", ""))) != "ok":
            error = _wrong(checked)
        elif not T.secret_matches(pending, fields.get("code", "")):
            error = "wrong-code"
        else:
            await app.blocking(directory.set_totp_secret, visitor.account, await app.blocking(T.seal, key_path, pending))
            await app.blocking(app.sessions.end_all, visitor.account)
            token, session = await app.blocking(app.sessions.create, visitor.account, verified=True)
            visitor = dataclasses.replace(visitor, token=token, csrf=session.csrf)
            visitor.audit("account.totp-on", visitor.account)
            page = app.page(request, visitor, "security.html", has_totp=True, secret="", uri="", notice="totp-on",
                            error="")
            return H.html(page.status, page.body, H.set_cookie(H.SESSION_COOKIE, token), language=visitor.language)
    elif action == "disable" and has_totp:
        if (checked := await app.password_check(request, visitor, fields.get("current", ""))) != "ok":
            error = _wrong(checked)
        else:
            await app.blocking(directory.set_totp_secret, visitor.account, None)
            visitor.audit("account.totp-off", visitor.account)
            notice, has_totp = "totp-off", False
    elif fields:
        return app.refuse(request, visitor)
    if not has_totp and not pending:
        pending = T.new_secret()
    uri = T.provisioning_uri(pending, visitor.account, app.ctx.config.server.hostname) if not has_totp else ""
    return app.page(request, visitor, "security.html", 400 if error else 200, has_totp=has_totp,
                    secret=pending if not has_totp else "", uri=uri, notice=notice, error=error)


async def spam(app: AdminApp, request: Request, visitor: Visitor, fields: dict[str, str]) -> Response:
    lists = app.spam_lists
    notice = error = ""
    action = fields.get("action")
    try:
        if action in ("allow", "block"):
            entry = await app.blocking(lists.set, visitor.account, fields.get("sender", ""), action)
            visitor.audit(f"spam.{action}", visitor.account, sender=entry)
            notice = "spam-saved"
        elif action == "remove":
            await app.blocking(lists.remove, visitor.account, fields.get("sender", ""))
            visitor.audit("spam.remove", visitor.account, sender=fields.get("sender", ""))
            notice = "spam-removed"
        elif fields:
            return app.refuse(request, visitor)
    except SpamListError as exc:
        error = refusal(exc)
    entries = await app.blocking(lists.entries, visitor.account)
    return app.page(request, visitor, "spam.html", 400 if error else 200, entries=entries, notice=notice, error=error)
