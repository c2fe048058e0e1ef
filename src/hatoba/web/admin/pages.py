"""The administrators' pages: dashboard, domains, users, aliases, DKIM, queue, one message's log, certificates.

Each action calls the function the CLI calls for it (store/directory.py,
store/roles.py, queue/spool.py, dkim/keys.py) and says its result or its
refusal in the CLI's words. A domain administrator's request naming a
domain not granted is 403, whether it came from a link or a typed URL.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from hatoba.proto.address import AddressError, parse_address, parse_domain
from hatoba.queue.ids import is_queue_id
from hatoba.queue.listing import queue_rows
from hatoba.queue.spool import SpoolError
from hatoba.i18n import refusal
from hatoba.store.api import DirectoryError
from hatoba.web.admin import http as H
from hatoba.web.admin import maillog

if TYPE_CHECKING:
    from hatoba.web.admin.app import AdminApp, Visitor
    from hatoba.web.routes import Request, Response

PAGE_SIZE = 50


def _normal_domain(text: str) -> str:
    """A domain as the directory spells it ("" for none; the text itself when it is no domain,
    which then matches none of the visitor's)."""
    if not text.strip():
        return ""
    try:
        return parse_domain(text.strip())
    except AddressError:
        return text


def _page_of(items: list, asked: dict[str, str]) -> tuple[list, int, int]:  # type: ignore[type-arg]
    """(the items of the page asked for, its number, the number of pages), PAGE_SIZE a page."""
    pages = max(1, (len(items) + PAGE_SIZE - 1) // PAGE_SIZE)
    text = asked.get("page", "1")
    number = min(pages, max(1, int(text))) if text.isascii() and text.isdigit() and len(text) < 10 else 1
    return items[(number - 1) * PAGE_SIZE: number * PAGE_SIZE], number, pages


def _domain_of(text: str) -> str | None:
    """The domain of an address, or of "@domain"; None when it is neither."""
    text = text.strip()
    try:
        if text.startswith("@"):
            return parse_domain(text[1:])
        return parse_address(text).domain
    except AddressError:
        return None


async def _managed_domains(app: AdminApp, visitor: Visitor) -> list[str]:
    domains: list[str] = await app.blocking(app.ctx.directory.list_domains)
    return [d for d in domains if visitor.grants.may_manage(d)]


def _report(app: AdminApp):  # type: ignore[no-untyped-def]
    """Blocking: `hatoba check --no-live --no-dns` (the live probes are the CLI's to run)."""
    from hatoba.selfcheck.runner import Options, run

    return run(app.ctx.config, Options(live=False, dns=False))


# -- dashboard ------------------------------------------------------------------------------


async def dashboard(app: AdminApp, request: Request, visitor: Visitor, fields: dict[str, str]) -> Response:
    used, limit = await app.blocking(app.ctx.quota_of, visitor.account)
    context: dict[str, object] = {"used": used, "limit": limit, "findings": [], "records": [], "queue": None,
                                  "recent": [], "log_file": None}
    if visitor.grants.is_admin:
        report = await app.blocking(_report, app)
        managed = set(await _managed_domains(app, visitor))
        if visitor.grants.server:
            context["findings"] = [f for f in report.findings if f.severity != "ok"]
            context["summary"] = report.summary()
            context["queue"] = await app.blocking(app.ctx.spool.census)
            log_file = app.ctx.config.log.file
            context["log_file"] = log_file
            if log_file is not None:
                context["recent"] = await app.blocking(maillog.recent_deliveries, log_file)
        context["records"] = [r for r in report.dns_records if r.domain in managed]
    return app.page(request, visitor, "dashboard.html", **context)


# -- domains ---------------------------------------------------------------------------------


async def domains(app: AdminApp, request: Request, visitor: Visitor, fields: dict[str, str]) -> Response:
    directory = app.ctx.directory
    notice = error = ""
    if fields:
        if not visitor.grants.server:
            return app.refuse(request, visitor)
        action, name = fields.get("action"), fields.get("domain", "")
        try:
            if action == "add":
                done = await app.blocking(directory.add_domain, name)
                visitor.audit("domain.add", done)
                notice = "domain-added"
            elif action == "remove":
                done = await app.blocking(directory.remove_domain, name)
                visitor.audit("domain.remove", done)
                notice = "domain-removed"
            elif action in ("grant", "revoke"):
                change = app.roles.grant if action == "grant" else app.roles.revoke
                account, scope = await app.blocking(change, fields.get("address", ""), name, domain_only=True)
                visitor.audit(f"admin.{action}", account, scope=scope)
                notice = "admin-granted" if action == "grant" else "admin-revoked"
            else:
                return app.refuse(request, visitor)
        except DirectoryError as exc:
            error = refusal(exc)
    managed = await _managed_domains(app, visitor)
    counts = await app.blocking(lambda: {d: len(directory.list_users(d)) for d in managed})
    admins = await app.blocking(app.roles.listing)
    return app.page(request, visitor, "domains.html", 400 if error else 200, domains=managed, counts=counts,
                    admins=admins, notice=notice, error=error)


# -- users --------------------------------------------------------------------------------------


async def users(app: AdminApp, request: Request, visitor: Visitor, fields: dict[str, str]) -> Response:
    directory = app.ctx.directory
    managed = await _managed_domains(app, visitor)
    asked = H.query(request)
    domain = _normal_domain(fields.get("domain") or asked.get("domain") or "") or (
        "" if visitor.grants.server else (managed[0] if managed else ""))
    if domain and domain not in managed:
        return app.refuse(request, visitor)
    notice = error = ""
    shown_password = ""
    if fields:
        address = fields.get("address", "").strip()
        target = _domain_of(address)
        if target is None or not visitor.grants.may_manage(target):
            if target is not None:
                return app.refuse(request, visitor)
            error = "bad-address"
        elif fields.get("action") != "add" and not await _may_change_account(app, visitor, address):
            return app.refuse(request, visitor)
        else:
            action = fields.get("action")
            try:
                if action == "add":
                    if not visitor.grants.server and (await app.blocking(app.ctx.quota_of, address))[0]:
                        # A removed user's mail is left in place: whoever makes the address again
                        # reads it. Only a server administrator may (it may be a server admin's).
                        return app.refuse(request, visitor)
                    done = await app.blocking(directory.add_user, address, fields.get("password", ""))
                    visitor.audit("user.add", done)
                    notice = "user-added"
                elif action == "passwd":
                    if not await app.blocking(directory.user_exists, address):
                        raise DirectoryError(f"no user {address}; see `hatoba user list`")
                    done = await app.blocking(directory.set_password, address, fields.get("password", ""))
                    visitor.audit("user.passwd", done)
                    notice = "password-changed"
                elif action == "quota":
                    text = fields.get("quota", "").strip().lower()
                    megabytes = None if text in ("", "default") else 0 if text == "none" else int(text) if text.isdigit() else -1
                    if megabytes == -1:
                        raise DirectoryError(f"{text!r} is not a size in MiB, 'none' or 'default'")
                    done = await app.blocking(directory.set_quota, address, megabytes)
                    visitor.audit("user.quota", done, quota=text or "default")
                    notice = "quota-set"
                elif action == "remove":
                    done = await app.blocking(directory.remove_user, address)
                    visitor.audit("user.remove", done)
                    notice = "user-removed"
                else:
                    return app.refuse(request, visitor)
            except DirectoryError as exc:
                error = refusal(exc)
    search = asked.get("q", "").strip().lower()[:200]
    if domain:
        everyone = await app.blocking(directory.list_users, domain)
    else:
        everyone = await app.blocking(lambda: [u for d in managed for u in directory.list_users(d)])
    matching = [u for u in everyone if search in u.lower()] if search else everyone
    shown, page_number, pages = _page_of(matching, asked)
    usage = await app.blocking(lambda: {u: app.ctx.quota_of(u) for u in shown})  # one thread trip for the page
    return app.page(request, visitor, "users.html", 400 if error else 200, domains=managed, domain=domain,
                    users=shown, usage=usage, search=search, page_number=page_number, pages=pages,
                    total=len(matching), notice=notice, error=error, shown_password=shown_password)


async def _may_change_account(app: AdminApp, visitor: Visitor, address: str) -> bool:
    """Whether `visitor` may set the password or limit of, or remove, the user `address`: a server
    administrator may; a domain administrator not for a user who administers anything beyond the
    domains it administers itself, nor for the account postmaster@ of every domain reaches
    (either would let it climb to their rights or read their mail)."""
    if visitor.grants.server:
        return True
    try:
        key = str(parse_address(address.strip())).lower()
    except AddressError:
        return False
    theirs = await app.blocking(app.roles.grants, key)
    if theirs.server or not theirs.domains <= visitor.grants.domains:
        return False
    postmaster = await app.blocking(app.ctx.directory.resolve, "postmaster@" + key.rsplit("@", 1)[-1])
    return key not in {m.lower() for m in postmaster.mailboxes} or key == visitor.account


# -- aliases ----------------------------------------------------------------------------------------


async def aliases(app: AdminApp, request: Request, visitor: Visitor, fields: dict[str, str]) -> Response:
    directory = app.ctx.directory
    managed = await _managed_domains(app, visitor)
    notice = error = ""
    if fields:
        source = fields.get("source", "").strip()
        target = _domain_of(source)
        if target is None:
            error = "bad-address"
        elif not visitor.grants.may_manage(target):
            return app.refuse(request, visitor)
        else:
            action = fields.get("action")
            try:
                if action == "add":
                    targets = [t.strip() for t in fields.get("targets", "").replace("\n", ",").split(",") if t.strip()]
                    if not targets:
                        raise DirectoryError("give at least one target address")
                    await app.blocking(directory.add_alias, source, targets)
                    visitor.audit("alias.add", source, to=",".join(targets))
                    notice = "alias-added"
                elif action == "remove":
                    one = fields.get("target", "").strip() or None
                    await app.blocking(directory.remove_alias, source, one)
                    visitor.audit("alias.remove", source, to=one)
                    notice = "alias-removed"
                else:
                    return app.refuse(request, visitor)
            except DirectoryError as exc:
                error = refusal(exc)
    everything: dict[str, list[str]] = await app.blocking(directory.list_aliases)
    asked = H.query(request)
    search = asked.get("q", "").strip().lower()[:200]
    mine = [(s, t) for s, t in everything.items() if (d := _domain_of(s)) is not None and d in managed
            and (not search or search in s.lower() or any(search in x.lower() for x in t))]
    shown, page_number, pages = _page_of(mine, asked)
    return app.page(request, visitor, "aliases.html", 400 if error else 200, aliases=dict(shown), domains=managed,
                    search=search, page_number=page_number, pages=pages, total=len(mine), notice=notice, error=error)


# -- DKIM ----------------------------------------------------------------------------------------------


async def dkim(app: AdminApp, request: Request, visitor: Visitor, fields: dict[str, str]) -> Response:
    from hatoba.dkim import keys

    dkim_dir = app.ctx.config.paths.dkim_dir
    managed = await _managed_domains(app, visitor)
    notice = error = ""
    if fields:
        domain = fields.get("domain", "").strip().lower()
        if domain not in managed:
            return app.refuse(request, visitor)
        algorithm = fields.get("algorithm", "rsa")
        try:
            key = await app.blocking(keys.generate, dkim_dir, domain, algorithm=algorithm, bits=2048)
            visitor.audit("dkim.keygen", key.domain, selector=key.selector, algorithm=key.algorithm)
            notice = "dkim-made"
        except keys.DkimError as exc:
            error = refusal(exc)
    found = {k.domain: k for k in await app.blocking(keys.list_keys, dkim_dir)}
    rows = [(d, found.get(d)) for d in managed]
    return app.page(request, visitor, "dkim.html", 400 if error else 200, rows=rows, notice=notice, error=error)


# -- queue ----------------------------------------------------------------------------------------------


async def queue(app: AdminApp, request: Request, visitor: Visitor, fields: dict[str, str]) -> Response:
    spool = app.ctx.spool
    notice = error = ""
    if fields:
        action, qid = fields.get("action"), fields.get("id", "")
        try:
            if action == "flush":
                await app.blocking(spool.request_flush)
                visitor.audit("queue.flush")
                notice = "queue-flushed"
            elif not is_queue_id(qid) or not await app.blocking(spool.exists, qid):
                error = "no-message"
            elif action == "hold":
                await app.blocking(spool.set_held, qid, True)
                visitor.audit("queue.hold", qid)
                notice = "queue-held"
            elif action == "release":
                await app.blocking(spool.set_held, qid, False)
                await app.blocking(spool.request_flush)
                visitor.audit("queue.release", qid)
                notice = "queue-released"
            elif action == "delete":
                await app.blocking(spool.remove, qid)
                visitor.audit("queue.delete", qid)
                notice = "queue-deleted"
            else:
                return app.refuse(request, visitor)
        except (SpoolError, OSError) as exc:
            error = refusal(exc)
    rows = await app.blocking(queue_rows, spool)
    return app.page(request, visitor, "queue.html", 400 if error else 200, rows=rows, now=time.time(),
                    notice=notice, error=error)


async def message_log(app: AdminApp, request: Request, visitor: Visitor, fields: dict[str, str]) -> Response:
    qid = H.query(request).get("id", "")
    log_file = app.ctx.config.log.file
    lines: list[str] = []
    if is_queue_id(qid) and log_file is not None:
        lines = await app.blocking(maillog.lines_of, log_file, qid)
    return app.page(request, visitor, "message.html", qid=qid if is_queue_id(qid) else "", lines=lines,
                    log_file=log_file)


# -- certificates -------------------------------------------------------------------------------------


def _chain(app: AdminApp) -> list[dict[str, object]]:
    from cryptography import x509

    from hatoba.acme.files import read_chain, served_tls

    tls = served_tls(app.ctx.config)
    out: list[dict[str, object]] = []
    for cert in read_chain(tls.cert):
        try:
            names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
                x509.DNSName)
        except x509.ExtensionNotFound:
            names = []
        out.append({"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
                    "names": names, "not_after": cert.not_valid_after_utc.timestamp(),
                    "days_left": int((cert.not_valid_after_utc.timestamp() - time.time()) // 86400)})
    return out


async def certificates(app: AdminApp, request: Request, visitor: Visitor, fields: dict[str, str]) -> Response:
    chain = await app.blocking(_chain, app)
    report = await app.blocking(_report, app)
    findings = [f for f in report.findings if f.section == "certificates"]
    acme = app.ctx.config.acme
    return app.page(request, visitor, "certificates.html", chain=chain, findings=findings,
                    cert_path=str(app.ctx.config.tls.cert), acme=acme.directory_url if acme.enabled else "")
