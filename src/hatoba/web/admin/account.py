"""Every user's own pages: password and language, app passwords, the second factor, spam lists.

A user acts only on the account they logged in as: no field names another.
Changing the password asks for the current one, ends every other session
(store/directory.py ends them all; this one is made again) and is audited.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from hatoba.store.api import DirectoryError
from hatoba.store.spamlists import SpamListError, SpamLists
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
        if not await app.blocking(directory.authenticate, visitor.account, current, app_passwords=False):
            error = "wrong-current"
        elif new != again:
            error = "passwords-differ"
        else:
            try:
                await app.blocking(directory.set_password, visitor.account, new)
            except DirectoryError as exc:
                error = str(exc)
            else:
                visitor.audit("account.password", visitor.account)
                token, session = await app.blocking(app.sessions.create, visitor.account, verified=True)
                visitor = dataclasses.replace(visitor, token=token, csrf=session.csrf)
                page = app.page(request, visitor, "account.html", notice="password-changed", error="",
                                language_setting=(await app.blocking(directory.user_settings, visitor.account))[0])
                return H.html(page.status, page.body, H.set_cookie(H.SESSION_COOKIE, token), language=visitor.language)
    elif action == "language":
        chosen = fields.get("language", "")
        await app.blocking(directory.set_language, visitor.account, chosen if chosen in LANGUAGES else None)
        visitor.audit("account.language", visitor.account, language=chosen or "browser")
        return H.redirect("/admin/account")
    elif fields:
        return app.refuse(request, visitor)
    setting = (await app.blocking(directory.user_settings, visitor.account))[0]
    return app.page(request, visitor, "account.html", 400 if error else 200, notice=notice, error=error,
                    language_setting=setting)


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
        error = str(exc)
    rows = await app.blocking(directory.app_passwords, visitor.account)
    return app.page(request, visitor, "app_passwords.html", 400 if error else 200, rows=rows, created=created,
                    notice=notice, error=error, hostname=app.ctx.config.server.hostname)


async def security(app: AdminApp, request: Request, visitor: Visitor, fields: dict[str, str]) -> Response:
    directory = app.ctx.directory
    key_path = app.ctx.config.paths.secrets_key
    notice = error = ""
    action = fields.get("action")
    pending = ""
    if action == "enable":
        pending = fields.get("secret", "")
        if len(pending) != 32 or not pending.isalnum():
            return app.refuse(request, visitor)
        if T.secret_matches(pending, fields.get("code", "")):
            await app.blocking(directory.set_totp_secret, visitor.account, await app.blocking(T.seal, key_path, pending))
            visitor.audit("account.totp-on", visitor.account)
            notice, pending = "totp-on", ""
        else:
            error = "wrong-code"
    elif action == "disable":
        current = fields.get("current", "")
        if await app.blocking(directory.authenticate, visitor.account, current, app_passwords=False):
            await app.blocking(directory.set_totp_secret, visitor.account, None)
            visitor.audit("account.totp-off", visitor.account)
            notice = "totp-off"
        else:
            error = "wrong-current"
    elif fields:
        return app.refuse(request, visitor)
    has_totp = (await app.blocking(directory.user_settings, visitor.account))[1] is not None
    if not has_totp and not pending:
        pending = T.new_secret()
    uri = T.provisioning_uri(pending, visitor.account, app.ctx.config.server.hostname) if pending else ""
    return app.page(request, visitor, "security.html", 400 if error else 200, has_totp=has_totp, secret=pending,
                    uri=uri, notice=notice, error=error)


async def spam(app: AdminApp, request: Request, visitor: Visitor, fields: dict[str, str]) -> Response:
    lists = await app.blocking(SpamLists, app.ctx.config.paths.directory_db)
    try:
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
            error = str(exc)
        entries = await app.blocking(lists.entries, visitor.account)
    finally:
        await app.blocking(lists.close)
    return app.page(request, visitor, "spam.html", 400 if error else 200, entries=entries, notice=notice, error=error)
