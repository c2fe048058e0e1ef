"""A qmail + vpopmail tree (formats and their sources: docs/import-formats.md).

DIR/domains holds one folder per domain (hashed into 0/, 1/, ... beyond 99
domains; qmail's users/assign names each one, and alias domains). In each:
vpasswd ("name:passwd:uid:gid:gecos:dir:quota[:clearpw]", vpasswd.cdb being
built from it), the users' folders (dir/Maildir, dir/.qmail for a user's own
forwarding) and ".qmail-NAME" files for aliases and forwards ("." in NAME
written ":"), ".qmail-default" for unknown recipients.
"""

from __future__ import annotations

import os
import shlex
import struct
from dataclasses import dataclass
from pathlib import Path

from hatoba.migrate.model import SourceFileError, read_source, Source, SourceAlias, SourceForward, SourceUser, at, inside, plain_name

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_DOMAIN_DEPTH = 4  # domains/, then up to three levels of hashing
# vpasswd gid flag bits hatoba has no switch for (vpopmail.h).
_FLAGS = {0x02: "NO_POP (POP3 refused)", 0x08: "NO_IMAP (IMAP refused)",
          0x10: "BOUNCE_MAIL (account locked)", 0x800: "NO_SMTP (no SMTP AUTH)"}


@dataclass
class _Domain:
    name: str
    folder: Path
    aliases: list[str]  # other domains that are this one under another name


def read_vpopmail(home: Path, assign: Path | None = None) -> Source:
    source = Source(uidl_format="base")
    domains = _domains(home, assign, source)
    maildirs: dict[str, str] = {}  # a user's Maildir (any spelling of its path) -> address
    for domain in domains:
        if domain.name not in source.domains:
            source.domains.append(domain.name)
        _read_users(domain, home, source, maildirs)
    for domain in domains:
        _read_dot_qmails(domain, source, maildirs)
        for alias in domain.aliases:
            if alias not in source.domains:
                source.domains.append(alias)
            _alias_domain(alias, domain, source)
    return source


def _read(path: Path, source: Source) -> bytes | None:
    try:
        return read_source(path, MAX_FILE_BYTES)
    except SourceFileError as exc:
        source.problem(at(path), f"{exc}; not read")
        return None


# -- domains -----------------------------------------------------------------------


def _domains(home: Path, assign: Path | None, source: Source) -> list[_Domain]:
    """Every real domain with its folder; alias domains attached to theirs."""
    found: dict[str, _Domain] = {}
    by_folder: dict[str, _Domain] = {}
    aliases: list[tuple[str, Path, str]] = []
    folders = _domain_folders(home / "domains", 0)
    for folder in sorted(folders, key=lambda f: f.is_symlink()):  # real folders first, then links to them
        real = os.path.realpath(folder)
        if real in by_folder:
            if folder.is_symlink() and folder.name.lower() not in found:
                by_folder[real].aliases.append(folder.name.lower())  # an alias domain from before 2002
            continue
        domain = _Domain(folder.name.lower(), folder, [])
        found[domain.name] = by_folder[real] = domain
    if assign is not None and assign.is_file():
        data = _read(assign, source)
        for number, line in enumerate((data or b"").decode("utf-8", "replace").splitlines(), start=1):
            if not line.startswith("+"):
                continue
            fields = line[1:].split(":")
            if len(fields) < 5 or not fields[0].endswith("-"):
                source.problem(at(assign, number), "not a users/assign line; left out")
                continue
            name, real_name = fields[0][:-1].lower(), fields[1].lower()
            if name != real_name:
                aliases.append((name, assign, real_name))
    for name, where, real_name in aliases:
        if real_name in found and name not in found[real_name].aliases and name not in found:
            found[real_name].aliases.append(name)
        elif real_name not in found:
            source.problem(at(where), f"alias domain {name} of {real_name}, which has no vpasswd here; left out")
    return list(found.values())


def _domain_folders(folder: Path, depth: int) -> list[Path]:
    """Folders holding a vpasswd (or vpasswd.cdb), down through the hashing levels."""
    out: list[Path] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return out
    for entry in entries:
        path = Path(entry.path)
        if not entry.is_dir():
            continue
        if (path / "vpasswd").is_file() or (path / "vpasswd.cdb").is_file():
            out.append(path)
        elif not entry.is_symlink() and depth < MAX_DOMAIN_DEPTH and len(entry.name) == 1:
            out += _domain_folders(path, depth + 1)
    return out


def _alias_domain(alias: str, domain: _Domain, source: Source) -> None:
    """qmail delivered ALIAS's mail as the real domain's: each address there, under the alias."""
    origin = at(domain.folder)
    for user in [u for u in source.users if u.address.endswith("@" + domain.name)]:
        local = user.address.rpartition("@")[0]
        source.aliases.append(SourceAlias(f"{local}@{alias}", [user.address], origin))
    for entry in [a for a in source.aliases if a.source.endswith("@" + domain.name)]:
        local = entry.source.rpartition("@")[0]
        source.aliases.append(SourceAlias(f"{local}@{alias}", [entry.source], entry.origin))


# -- users -------------------------------------------------------------------------


def _read_users(domain: _Domain, tree: Path, source: Source, maildirs: dict[str, str]) -> None:
    path = domain.folder / "vpasswd"
    if path.is_file():
        data = _read(path, source)
        lines = (data or b"").decode("utf-8", "surrogateescape").split("\n")
        records = [(at(path, n), line) for n, line in enumerate(lines, start=1) if line.strip()]
    else:
        records = _cdb_records(domain.folder / "vpasswd.cdb", source)
    seen: set[str] = set()
    for where, line in records:
        fields = line.rstrip("\r").split(":")
        if len(fields) < 7:
            source.problem(where, f"a truncated vpasswd line ({len(fields)} of 7 or 8 fields); left out")
            continue
        name, crypted, _uid, gid, _gecos, home, quota = fields[:7]
        clear = fields[7] if len(fields) > 7 else ""
        address = f"{name}@{domain.name}"
        if not plain_name(name) or "@" in name or name.lower() in seen:
            source.problem(where, f"{address!r}: an empty or repeated name; left out")
            continue
        seen.add(name.lower())
        if not clear and not crypted:
            source.problem(where, f"{address} has no password; left out (add it with `hatoba user add`)")
            continue
        flags = int(gid) if gid.isdigit() else 0
        for bit, meaning in _FLAGS.items():
            if flags & bit:
                source.problem(where, f"{address} has {meaning}; hatoba has no such switch, so it is not "
                               "carried over")
        maildir = _user_maildir(domain, home)
        if maildir is not None and not (inside(maildir, tree) or inside(maildir, domain.folder)):
            source.problem(where, f"{address}'s folder {home} leads out of {tree}; its mail is left out")
            maildir = None
        if maildir is not None:
            for spelling in (str(Path(home) / "Maildir"), str(maildir), os.path.realpath(maildir)):
                maildirs[spelling.rstrip("/")] = address
        stored = crypted if crypted.startswith("{") else f"{{CRYPT}}{crypted}"
        user = SourceUser(address, None if clear else stored, clear or None, maildir,
                          _quota_mb(quota, maildir, where, source), where,
                          tree if maildir is not None and inside(maildir, tree) else domain.folder)
        source.users.append(user)
        if maildir is not None:
            _read_user_dot_qmail(user, maildir.parent, domain, source, maildirs)


def _user_maildir(domain: _Domain, home: str) -> Path | None:
    """dir/Maildir, found in this tree even when it was moved from where vpasswd says."""
    parts = Path(home).parts
    candidates = []
    if domain.name in [p.lower() for p in parts]:
        index = [p.lower() for p in parts].index(domain.name)
        candidates.append(domain.folder.joinpath(*parts[index + 1:]) / "Maildir")
    candidates.append(Path(home) / "Maildir")
    for candidate in candidates:
        if (candidate / "cur").is_dir():
            return candidate
    return None


def _quota_mb(text: str, maildir: Path | None, where: str, source: Source) -> int | None:
    """vpasswd's quota: "NOQUOTA", or a comma list whose size item is digits with an
    optional S, B and K/M; empty means the first line of Maildir/maildirsize."""
    text = text.strip()
    if not text and maildir is not None:
        try:
            data = read_source(maildir / "maildirsize", 1024 * 1024) or b""
        except SourceFileError:
            data = b""  # vpopmail rebuilds it when it is damaged; the default applies
        text = data.split(b"\n", 1)[0].decode("ascii", "replace").strip()
    if not text:
        return None
    if text[:2].upper() == "NO":
        return 0
    for item in text.split(","):
        item = item.strip()
        if not item or item[-1] in "Cc":
            continue
        digits = item.rstrip("SsBbKkMm")
        suffix = item[len(digits):].upper()
        if not digits.isdigit():
            break
        scale = 1024**2 if "M" in suffix else 1024 if "K" in suffix else 1
        octets = int(digits) * scale
        return 0 if octets == 0 else max(1, -(-octets // 1024**2))
    source.problem(where, f"quota {text!r} is not one hatoba reads; the server's default applies")
    return None


def _cdb_records(path: Path, source: Source) -> list[tuple[str, str]]:
    """vpasswd.cdb's records as vpasswd lines ("name:" + the data); the records lie from
    byte 2048 to the first hash table, each "klen dlen key data" (32-bit little-endian)."""
    data = _read(path, source)
    if data is None:
        return []
    if len(data) < 2048:
        source.problem(at(path), "too short to be a cdb file; no users read")
        return []
    end = min([pos for pos, _ in struct.iter_unpack("<II", data[:2048])] or [2048])
    records, pos, number = [], 2048, 0
    while pos + 8 <= min(end, len(data)):
        klen, dlen = struct.unpack_from("<II", data, pos)
        number += 1
        key = data[pos + 8:pos + 8 + klen]
        value = data[pos + 8 + klen:pos + 8 + klen + dlen]
        if pos + 8 + klen + dlen > len(data):
            source.problem(f"{path}: record {number}", "cut short; the rest of the file is not read")
            break
        records.append((f"{path}: record {number}",
                        (key + b":" + value).decode("utf-8", "surrogateescape")))
        pos += 8 + klen + dlen
    return records


# -- .qmail files --------------------------------------------------------------------


def _deliveries(path: Path, source: Source, domain: _Domain,
                maildirs: dict[str, str]) -> tuple[list[str], bool, bool] | None:
    """A .qmail file read as (addresses it forwards to, delivers to a Maildir of its own
    folder, said anything at all); None for a mailing list, reported."""
    data = _read(path, source)
    if data is None:
        return None
    targets: list[str] = []
    own = False
    anything = False
    for number, raw in enumerate(data.decode("utf-8", "replace").split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        anything = True
        where = at(path, number)
        if line.startswith("|"):
            command = line[1:].strip()
            if "ezmlm" in command:
                source.problem(where, "an ezmlm mailing list; hatoba has no lists yet, so it is left out")
                return None
            target = _vdelivermail_target(command, domain, maildirs)
            if target:
                targets.append(target)
            else:
                source.problem(where, f"runs a program ({command[:60]}); hatoba cannot carry that over")
        elif line.startswith(("/", ".")):
            if not line.endswith("/"):
                source.problem(where, f"delivers to an mbox file ({line[:60]}); left out")
                continue
            full = os.path.normpath(path.parent / line).rstrip("/")
            address = maildirs.get(full) or maildirs.get(os.path.realpath(full)) or maildirs.get(line.rstrip("/"))
            if line.rstrip("/") in ("./Maildir", "Maildir") and path.name == ".qmail":
                own = True
            elif address:
                targets.append(address)
            else:
                source.problem(where, f"delivers to {line[:60]}, no user's Maildir here; left out")
        else:
            address = line[1:].strip() if line.startswith("&") else line
            targets.append(address if "@" in address else f"{address}@{domain.name}")
    return targets, own, anything


def _vdelivermail_target(command: str, domain: _Domain, maildirs: dict[str, str]) -> str | None:
    """`vdelivermail '' TARGET` hands a message on: an address, or a user's folder."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words or not words[0].endswith("vdelivermail") or len(words) < 3:
        return None
    target = words[-1]
    if "@" in target:
        return target
    if target.startswith("/"):
        return maildirs.get(str(Path(target) / "Maildir")) or maildirs.get(target.rstrip("/"))
    return None


def _read_dot_qmails(domain: _Domain, source: Source, maildirs: dict[str, str]) -> None:
    users = {u.address.lower() for u in source.users}
    for path in sorted(domain.folder.glob(".qmail-*")):
        ext = path.name[len(".qmail-"):]
        if path.is_symlink():
            source.problem(at(path), "an ezmlm mailing list (a linked .qmail file); hatoba has no lists yet, "
                           "so it is left out")
            continue
        if ext == "default":
            _read_default(path, domain, source, maildirs)
            continue
        if ext.endswith("-default"):
            source.problem(at(path), f"addresses {ext[:-8]}-ANYTHING@{domain.name} cannot be carried over; "
                           "left out")
            continue
        read = _deliveries(path, source, domain, maildirs)
        if read is None:
            continue
        targets, _, anything = read
        address = f"{ext.replace(':', '.')}@{domain.name}"
        if address.lower() in users:
            source.problem(at(path), f"{address} is also a user; the user is kept, the .qmail file is not")
        elif targets:
            source.aliases.append(SourceAlias(address, targets, at(path)))
        elif not anything:
            source.problem(at(path), f"{address} discards its mail; left out")


def _read_default(path: Path, domain: _Domain, source: Source, maildirs: dict[str, str]) -> None:
    """.qmail-default: unknown recipients bounced (as hatoba does), deleted, or sent on (a catch-all)."""
    data = _read(path, source) or b""
    text = data.decode("utf-8", "replace")
    if "vdelivermail" in text:
        for number, line in enumerate(text.split("\n"), start=1):
            if "vdelivermail" not in line:
                continue
            words = line.split()
            action = words[-1].strip("'\"") if words else ""
            if action == "bounce-no-mailbox":
                return  # what hatoba does with unknown recipients
            if action == "delete":
                source.problem(at(path, number), f"mail to unknown addresses at {domain.name} was deleted; "
                               "hatoba refuses it instead (the sender is told)")
                return
            target = _vdelivermail_target(line.strip().lstrip("|").strip(), domain, maildirs)
            if target:
                source.aliases.append(SourceAlias(f"@{domain.name}", [target], at(path, number)))
            else:
                source.problem(at(path, number), f"unknown recipients went to {action[:60]}; left out")
            return
    read = _deliveries(path, source, domain, maildirs)
    if read and read[0]:
        source.aliases.append(SourceAlias(f"@{domain.name}", read[0], at(path)))


def _read_user_dot_qmail(user: SourceUser, home: Path, domain: _Domain, source: Source,
                         maildirs: dict[str, str]) -> None:
    """A user's own .qmail (beside Maildir/): forwarding, with or without a copy kept."""
    path = home / ".qmail"
    if not path.is_file():
        return
    read = _deliveries(path, source, domain, maildirs)
    if read is None:
        return
    targets, own, anything = read
    own = own or user.address in targets
    others = [t for t in targets if t.lower() != user.address.lower()]
    if others:
        source.forwards.append(SourceForward(user.address, others, own, at(path)))
    elif not anything:
        source.problem(at(path), f"{user.address} discards its mail (a .qmail of comments only); left out")
