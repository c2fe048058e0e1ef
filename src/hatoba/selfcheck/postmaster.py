"""Does postmaster@ reach a mailbox? RFC 5321 §4.5.1 says it must."""

from __future__ import annotations

from hatoba.config.schema import Config
from hatoba.i18n import T
from hatoba.selfcheck.findings import Finding
from hatoba.store.api import AliasLoopError, DirectoryError
from hatoba.store.directory import Directory


def postmaster_findings(config: Config) -> list[Finding]:
    """Critical when postmaster@ of a local domain would be refused or go nowhere."""
    path = config.paths.directory_db
    if not path.is_file():
        return []  # hosted_domains reports the missing directory
    try:
        with Directory(path) as directory:
            directory.postmaster = config.server.postmaster
            unreached = [domain for domain in directory.list_domains() if not _reaches_mailbox(directory, domain)]
    except DirectoryError:
        return []  # hosted_domains reports the unreadable directory
    if not unreached:
        return [Finding("config", "config.postmaster", "ok", T("Postmaster reaches a mailbox"),
                        T("Mail to postmaster@ and abuse@ of every local domain is delivered."))]
    named = ", ".join(f"postmaster@{domain}" for domain in unreached)
    return [Finding("config", "config.postmaster", "critical", T("Postmaster reaches no mailbox"),
                    T("Mail to %(addresses)s would be refused or lost; RFC 5321 requires it to be delivered.",
                      addresses=named),
                    T("Set [server] postmaster to a user's address, or add a user "
                      "(hatoba user add) or an alias for postmaster@ the domain."))]


def _reaches_mailbox(directory: Directory, domain: str) -> bool:
    try:
        resolution = directory.resolve(f"postmaster@{domain}")
    except AliasLoopError:
        return False
    return resolution.known and bool(resolution.mailboxes or resolution.forwards)
