"""A Dovecot + Postfix setup as tutorials make it: users in a Dovecot passwd-file,
Maildirs at MAIL_ROOT/DOMAIN/USER/Maildir, aliases in Postfix's virtual(5) table
and, for the machine's own name, aliases(5).

passwd-file lines: "user:password:uid:gid:gecos:home:shell:extra_fields", the user
being the full address; a password without a "{SCHEME}" prefix is CRYPT
(Dovecot's default_pass_scheme); a quota comes from the extra field
"userdb_quota_rule=*:storage=SIZE".
"""

from __future__ import annotations

from pathlib import Path

from hatoba.migrate.model import SourceFileError, read_source, Source, SourceAlias, SourceForward, SourceUser, at, inside, plain_name
from hatoba.migrate.postfix_maps import read_aliases, read_virtual
from hatoba.store import legacy_hashes

MAX_PASSWD_BYTES = 64 * 1024 * 1024
_UNITS = {"": 1024, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def read_dovecot(passwd_file: Path, mail_root: Path, *, virtual: Path | None = None,
                 aliases: Path | None = None, own_domain: str = "") -> Source:
    source = Source(uidl_format="%08Xu%08Xv")
    _read_passwd(passwd_file, mail_root, source)
    if virtual is not None:
        _read_virtual(virtual, source)
    if aliases is not None:
        _read_system_aliases(aliases, own_domain, source)
    return source


def _read_passwd(path: Path, mail_root: Path, source: Source) -> None:
    try:
        data = read_source(path, MAX_PASSWD_BYTES)
    except SourceFileError as exc:
        source.problem(at(path), f"{exc}; no users read")
        return
    if data is None:
        source.problem(at(path), "not found; no users read")
        return
    seen: set[str] = set()
    for number, raw in enumerate(data.decode("utf-8", "surrogateescape").split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(":")
        where = at(path, number)
        if len(fields) < 2:
            source.problem(where, "a line without \"user:password\"; left out")
            continue
        user = fields[0].strip()
        local, _, domain = user.rpartition("@")
        if not plain_name(local) or not plain_name(domain):
            source.problem(where, f"{user!r} is not a full address (user@domain) hatoba can keep; left out")
            continue
        # The password may hold ":" only inside a scheme's data; crypt strings never do.
        password = fields[1]
        if not password:
            source.problem(where, f"{user} has no password; left out (add it with `hatoba user add`)")
            continue
        if user.lower() in seen:
            source.problem(where, f"{user} is listed twice; the first line is used")
            continue
        seen.add(user.lower())
        extra = ":".join(fields[7:])  # the rest of the line: its fields hold ":" themselves
        quota = _quota_mb(extra.split(), where, source)
        if domain.lower() not in source.domains:
            source.domains.append(domain.lower())
        maildir = _maildir(mail_root / domain.lower() / local.lower())
        if maildir is None and (mail_root / domain / local) != (mail_root / domain.lower() / local.lower()):
            maildir = _maildir(mail_root / domain / local)
        if maildir is not None and not inside(maildir, mail_root):
            source.problem(where, f"{user}'s Maildir leads out of {mail_root}; its mail is left out")
            maildir = None
        stored = legacy_hashes.from_dovecot(password)
        scheme = legacy_hashes.scheme_of(stored)
        if scheme in ("PLAIN", "CLEARTEXT") and stored.startswith("{"):
            # Kept readable by the old server: hashed now, never stored as it is.
            clear = stored.partition("}")[2]
            if not clear:
                source.problem(where, f"{user} has an empty password; left out (add it with `hatoba user add`)")
                continue
            source.users.append(SourceUser(user, None, clear, maildir, quota, where, mail_root))
            continue
        source.users.append(SourceUser(user, stored, None, maildir, quota, where, mail_root))


def _maildir(home: Path) -> Path | None:
    if (home / "Maildir" / "cur").is_dir():
        return home / "Maildir"
    if (home / "cur").is_dir():
        return home
    return None


def _quota_mb(extras: list[str], where: str, source: Source) -> int | None:
    """MiB from "userdb_quota_rule=*:storage=1G" (or quota_rule=; a bare number is KiB, as
    Dovecot reads it); None when there is none."""
    for item in extras:
        key, _, value = item.partition("=")
        if key.removeprefix("userdb_") != "quota_rule" or not value.startswith("*:"):
            continue
        for part in value[2:].split(":"):
            name, _, size = part.partition("=")
            if name != "storage":
                continue
            number = size.rstrip("BKMGTbkmgt")
            unit = size[len(number):].upper()
            if unit.endswith("B") and len(unit) == 2:
                unit = unit[0]
            if not number.isdigit() or unit not in _UNITS:
                source.problem(where, f"quota {size!r} is not a size hatoba reads; the server's default applies")
                return None
            octets = int(number) * _UNITS[unit]
            return 0 if octets == 0 else max(1, -(-octets // 1024**2))
    return None


def _read_virtual(path: Path, source: Source) -> None:
    users = {u.address.lower() for u in source.users}
    for entry in read_virtual(path, source.problems):
        key = entry.key
        if "@" not in key:
            if "." in key:
                if key.lower() not in source.domains:
                    source.domains.append(key.lower())  # a virtual alias domain
            else:
                source.problem(entry.where, f"{key} (no domain) applies to Postfix's own domains; left out")
            continue
        targets = [v for v in entry.values if "@" in v]
        for value in entry.values:
            if "@" not in value:
                source.problem(entry.where, f"{key}: {value} (no domain) cannot be carried over; left out")
        if not targets:
            continue
        if key.lower() in users:
            others = [t for t in targets if t.lower() != key.lower()]
            if others:
                source.forwards.append(SourceForward(key, others, len(others) < len(targets), entry.where))
            continue
        source.aliases.append(SourceAlias(key, targets, entry.where))


def _read_system_aliases(path: Path, own_domain: str, source: Source) -> None:
    """aliases(5) serves Postfix's own names ($mydestination): here the domain of [server] hostname."""
    if not own_domain:
        source.problem(at(path), "no domain to give these aliases; set [server] hostname")
        return
    entries = read_aliases(path, source.problems)
    if entries and own_domain not in source.domains:
        source.domains.append(own_domain)
    for entry in entries:
        targets = [v if "@" in v else f"{v}@{own_domain}" for v in entry.values]
        source.aliases.append(SourceAlias(f"{entry.key}@{own_domain}", targets, entry.where))
