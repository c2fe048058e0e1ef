"""Carrying a Source (model.py) into hatoba: domains, users with their passwords,
quotas, aliases, forwards and mail; or, for a dry run, counting what would change.

A run may be repeated until the cut-over: what an earlier run brought is
remembered in DATA/import-state.json (a digest of each user's password at the
source, the alias targets and forwards it set), so the next run changes only
what changed at the source since, and leaves alone what the operator or the
users changed in hatoba.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from hatoba.fsutil import write_atomic
from hatoba.migrate.mailfolders import Counts, Placement, sync_mailbox
from hatoba.migrate.model import Problem, Source, inside
from hatoba.migrate.uidl import UidlFormat
from hatoba.store import legacy_hashes
from hatoba.store.api import DirectoryError
from hatoba.store.directory import Directory
from hatoba.store.folder_tree import META, MailboxStore
from hatoba.store.maildir import MaildirStore

STATE_FILE = "import-state.json"


@dataclass
class Outcome:
    dry_run: bool
    domains_added: int = 0
    users_added: int = 0
    users_updated: int = 0  # password changed at the source since the last run
    users_existing: int = 0
    legacy: int = 0  # users whose password is still in the old system's hash
    aliases_added: int = 0  # alias targets
    aliases_removed: int = 0
    forwards_set: int = 0
    mail: Counts = field(default_factory=Counts)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


class Importer:
    def __init__(self, directory: Directory, data_dir: Path, mail_root: Path, *, hostname: str,
                 owner: tuple[int, int] | None, dry_run: bool) -> None:
        self.directory = directory
        self.data_dir = data_dir
        self.mail_root = mail_root
        self.addresses = MaildirStore(mail_root, hostname=hostname)
        self.mailboxes = MailboxStore(mail_root, hostname=hostname)
        self.owner = owner
        self.dry_run = dry_run
        self.state = self._read_state()
        self._maildirs_seen: dict[str, str] = {}  # a Maildir's real path -> the user it was imported for

    def _read_state(self) -> dict:  # type: ignore[type-arg]
        try:
            state = json.loads((self.data_dir / STATE_FILE).read_text("utf-8"))
        except (FileNotFoundError, ValueError):
            state = {}
        for key in ("users", "aliases", "forwards"):
            if not isinstance(state.get(key), dict):
                state[key] = {}
        return state

    def _write_state(self) -> None:
        if not self.dry_run:
            write_atomic(self.data_dir / STATE_FILE, json.dumps(self.state, indent=1, sort_keys=True).encode())

    def run(self, source: Source, uidl_format: UidlFormat) -> Outcome:
        outcome = Outcome(self.dry_run, problems=list(source.problems))
        self._domains(source, outcome)
        known_domains = set(self.directory.list_domains()) | (set(source.domains) if self.dry_run else set())
        for user in source.users:
            if user.address.rpartition("@")[2].lower() not in known_domains:
                outcome.problems.append(Problem(user.origin, f"the domain of {user.address} could not be added"))
                continue
            try:
                self._user(user, outcome, uidl_format)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise  # nothing after it would fit either: the run stops, and says so
                outcome.problems.append(Problem(user.origin, f"{user.address}: {exc.strerror or exc} "
                                                f"({exc.filename or ''}); the rest of its mail is left out"))
            finally:
                self._write_state()  # after each user: a run stopped halfway resumes where it was
        for alias in source.aliases:
            self._alias(alias.source, alias.targets, alias.origin, outcome)
        for forward in source.forwards:
            self._forward(forward.address, forward.targets, forward.keep_copy, forward.origin, outcome)
        self._write_state()
        outcome.legacy = len(self.directory.legacy_hash_users())
        return outcome

    def _domains(self, source: Source, outcome: Outcome) -> None:
        for domain in source.domains:
            if self.directory.is_local_domain(domain):
                continue
            if not self.dry_run:
                try:
                    self.directory.add_domain(domain)
                except DirectoryError as exc:
                    outcome.problems.append(Problem(domain, f"cannot add the domain: {exc}"))
                    continue
            outcome.domains_added += 1

    def _user(self, user, outcome: Outcome, uidl_format: UidlFormat) -> None:  # type: ignore[no-untyped-def]
        credential = user.clear_password if user.clear_password is not None else user.password_hash
        if credential is None:  # mail only, for a user made in hatoba (import maildir)
            self._mail(user, outcome, uidl_format)
            return
        digest = _digest(credential)
        key = user.address.lower()
        known = self.state["users"].get(key)
        exists = self.directory.user_exists(user.address)
        if user.password_hash is not None and user.clear_password is None:
            try:
                legacy_hashes.check_supported(user.password_hash)
            except legacy_hashes.UnknownScheme as exc:
                if known != digest:
                    outcome.problems.append(Problem(user.origin, f"{user.address}: {exc}; the user is imported "
                                                    "but must be given a new password (hatoba user passwd)"))
        if exists and known is None:
            outcome.users_existing += 1
            outcome.notes.append(f"{user.address} was already a hatoba user: its password is left as it is, "
                                 "its mail is merged")
        elif not exists or known != digest:
            if not self.dry_run:
                try:
                    self.directory.import_user(
                        user.address, password=user.clear_password,
                        legacy_hash=None if user.clear_password is not None else user.password_hash,
                        replace=exists)
                except DirectoryError as exc:
                    outcome.problems.append(Problem(user.origin, f"{user.address}: {exc}; left out"))
                    return
                self.state["users"][key] = digest
                self._write_state()  # the user is made: a later run knows it was this import's
                if user.quota_mb is not None:
                    self.directory.set_quota(user.address, user.quota_mb)
            if exists:
                outcome.users_updated += 1
            else:
                outcome.users_added += 1
        self._mail(user, outcome, uidl_format)

    def _mail(self, user, outcome: Outcome, uidl_format: UidlFormat) -> None:  # type: ignore[no-untyped-def]
        if user.maildir is None:
            return
        real = os.path.realpath(user.maildir)
        if user.tree is not None and not inside(Path(real), user.tree):  # again: a link made since it was read
            outcome.problems.append(Problem(user.origin, f"{user.address}'s Maildir leads out of {user.tree}; "
                                            "its mail is left out"))
            return
        first = self._maildirs_seen.setdefault(real, user.address)
        if first != user.address:  # a link to another user's Maildir: its mail is that user's alone
            outcome.problems.append(Problem(user.origin, f"{user.address}'s Maildir is {first}'s; "
                                            "its mail is left out"))
            return
        place = Placement(self.dry_run, self.owner, self._uidvalidities(user.address))
        try:
            target = self.addresses.maildir(user.address)
        except ValueError:
            outcome.problems.append(Problem(user.origin, f"{user.address} cannot be a folder name; "
                                            "its mail is left out"))
            return
        subscribed = sync_mailbox(Path(real), target, place, label=user.address, uidl_format=uidl_format)
        _add_counts(outcome.mail, place.counts)
        outcome.problems += place.problems
        outcome.notes += place.notes
        if not self.dry_run:
            self.mailboxes.for_user(user.address).adopt_imported(subscribed, place.highest_uidvalidity)
            if self.owner is not None:
                os.chown(target / META, *self.owner)

    def _uidvalidities(self, address: str):  # type: ignore[no-untyped-def]
        """New UIDVALIDITYs for the user's folders that had none: above every one handed out."""
        last = max(self.mailboxes.for_user(address).last_uidvalidity(), 0)

        def next_value() -> int:
            nonlocal last
            last = max(int(time.time()), last + 1)
            return last

        return next_value

    def _alias(self, source: str, targets: list[str], origin: str, outcome: Outcome) -> None:
        key = source.lower()
        before = {t.lower() for t in self.state["aliases"].get(key, [])}
        if self.directory.user_exists(source):
            outcome.problems.append(Problem(origin, f"{source} is a user in hatoba; the alias is left out"))
            return
        current = {t.lower() for t in self.directory.list_aliases_of(source)}
        new = [t for t in targets if t.lower() not in current]
        gone = [t for t in before if t not in {x.lower() for x in targets} and t in current]
        if not self.dry_run:
            try:
                if new:
                    self.directory.add_alias(source, new)
                for target in gone:
                    self.directory.remove_alias(source, target)
            except DirectoryError as exc:
                outcome.problems.append(Problem(origin, f"{source}: {exc}; left out"))
                return
            self.state["aliases"][key] = sorted({t.lower() for t in targets})
        outcome.aliases_added += len(new)
        outcome.aliases_removed += len(gone)

    def _forward(self, address: str, targets: list[str], keep: bool, origin: str, outcome: Outcome) -> None:
        key = address.lower()
        wanted = [sorted(t.lower() for t in targets), keep]
        if self.state["forwards"].get(key) == wanted:
            return  # as the last run left it: the user may have changed it in hatoba since
        if not self.dry_run:
            try:
                self.directory.set_forwards(address, targets, keep_copy=keep)
            except DirectoryError as exc:
                outcome.problems.append(Problem(origin, f"forwarding of {address}: {exc}; left out"))
                return
            self.state["forwards"][key] = wanted
        outcome.forwards_set += 1


def _add_counts(total: Counts, more: Counts) -> None:
    for name in vars(total):
        setattr(total, name, getattr(total, name) + getattr(more, name))
