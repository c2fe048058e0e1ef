"""Administrators: which users may manage the server or a domain, in the directory database.

A role is (account, scope): scope "*" is a server administrator (everything),
a domain name is that domain's administrator (its users, aliases, DKIM key,
its part of the check report). Every user, administrator or not, manages
their own password, app passwords and spam lists. Granted with
`hatoba admin grant ADDRESS server|DOMAIN`; a user removed loses its roles
(store/directory.py), and so does a removed domain.
Blocking SQLite; callers use threads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hatoba.i18n import T, refusal
from hatoba.proto.address import AddressError, parse_address, parse_domain
from hatoba.store.api import DirectoryError
from hatoba.store.sqltx import DirectoryTables, write_transaction

__all__ = ["SERVER", "Grants", "Roles"]

SERVER = "*"


@dataclass(frozen=True, slots=True)
class Grants:
    """What one account may administer."""

    server: bool
    domains: frozenset[str]

    def may_manage(self, domain: str) -> bool:
        return self.server or domain.lower() in self.domains

    @property
    def is_admin(self) -> bool:
        return self.server or bool(self.domains)


class Roles(DirectoryTables):
    TABLES = ("admin_roles", "users", "domains")
    WHAT = "administrator table"
    ERROR = DirectoryError

    @staticmethod
    def _scope(text: str, domain_only: bool = False) -> str:
        """"server" (or "*") → "*"; else a domain name, normalised. `domain_only`: always a
        domain (the web admin's domain forms), so no spelling of a domain can mean the server."""
        if not domain_only and text.strip().lower() in ("server", SERVER):
            return SERVER
        try:
            return parse_domain(text)
        except AddressError as exc:
            raise DirectoryError(T("%(scope)s is neither 'server' nor a domain name: %(reason)s",
                                   scope=repr(text), reason=refusal(exc))) from None

    @staticmethod
    def _account(text: str) -> str:
        try:
            return str(parse_address(text.strip())).lower()
        except AddressError as exc:
            raise DirectoryError(T("%(text)s is not an address: %(reason)s", text=repr(text),
                                   reason=refusal(exc))) from None

    def grant(self, address: str, scope: str, *, domain_only: bool = False) -> tuple[str, str]:
        """(account, scope) granted; the account must be a user, a domain scope a local domain."""
        account, scope = self._account(address), self._scope(scope, domain_only)
        with write_transaction(self._conn(), self.path, DirectoryError) as conn:
            if conn.execute("SELECT 1 FROM users WHERE address_key = ?", (account,)).fetchone() is None:
                raise DirectoryError(T("no user %(address)s; an administrator logs in as a user: "
                                       "`%(command)s` first", address=address, command=f"hatoba user add {address}"))
            if scope != SERVER and conn.execute("SELECT 1 FROM domains WHERE name = ?", (scope,)).fetchone() is None:
                raise DirectoryError(T("%(domain)s is not a local domain: add it first with `%(command)s`",
                                       domain=scope, command=f"hatoba domain add {scope}"))
            conn.execute("INSERT OR IGNORE INTO admin_roles (account, scope, granted) VALUES (?, ?, ?)",
                         (account, scope, time.time()))
        return account, scope

    def revoke(self, address: str, scope: str, *, domain_only: bool = False) -> tuple[str, str]:
        account, scope = self._account(address), self._scope(scope, domain_only)
        with write_transaction(self._conn(), self.path, DirectoryError) as conn:
            if not conn.execute("DELETE FROM admin_roles WHERE account = ? AND scope = ?", (account, scope)).rowcount:
                if scope == SERVER:
                    raise DirectoryError(T("%(account)s does not administer the server; "
                                           "`hatoba admin list` shows who does", account=account))
                raise DirectoryError(T("%(account)s does not administer %(domain)s; `hatoba admin list` shows who does",
                                       account=account, domain=scope))
        return account, scope

    def grants(self, account: str) -> Grants:
        rows = self._conn().execute("SELECT scope FROM admin_roles WHERE account = ?", (account.lower(),)).fetchall()
        scopes = {str(r[0]) for r in rows}
        return Grants(SERVER in scopes, frozenset(scopes - {SERVER}))

    def listing(self) -> list[tuple[str, str]]:
        """(account, "server" or domain) of every role, by account."""
        rows = self._conn().execute("SELECT account, scope FROM admin_roles ORDER BY account, scope").fetchall()
        return [(str(a), "server" if s == SERVER else str(s)) for a, s in rows]
