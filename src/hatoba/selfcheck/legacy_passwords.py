"""Users brought over by `hatoba import` whose password is still in the old system's hash."""

from __future__ import annotations

from hatoba.config.schema import Config
from hatoba.i18n import T
from hatoba.selfcheck.findings import Finding
from hatoba.store.api import DirectoryError
from hatoba.store.directory import Directory

NAMED = 20  # addresses named in the finding; the rest are counted


def legacy_password_findings(config: Config) -> list[Finding]:
    """Info while imported users have not logged in yet: their next login moves them to Argon2id."""
    path = config.paths.directory_db
    if not path.is_file():
        return []
    try:
        with Directory(path) as directory:
            users = directory.legacy_hash_users()
    except DirectoryError:
        return []
    if not users:
        return []
    named = ", ".join(f"{address} ({scheme})" for address, scheme in users[:NAMED])
    if len(users) > NAMED:
        named += T(" and %(count)s more", count=len(users) - NAMED)
    return [Finding("config", "config.legacy-passwords", "info",
                    T("%(count)s users still have a password hash from the old server", count=len(users)),
                    T("Brought over by hatoba import, these passwords are checked with the old system's scheme "
                      "until each user's next login, which replaces them with Argon2id: %(users)s.", users=named),
                    T("Nothing to do: users move over as they log in. Give a new password "
                      "(hatoba user passwd) to anyone who will not log in soon."))]
