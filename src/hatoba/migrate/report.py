"""What an import did (or, for a dry run, would do), said plainly."""

from __future__ import annotations

from typing import TextIO

from hatoba.migrate.apply import Outcome


def _size(octets: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if octets >= scale:
            return f"{octets / scale:.1f} {unit}"
    return f"{octets} bytes"


def print_outcome(outcome: Outcome, out: TextIO, err: TextIO) -> None:
    verb = "would bring" if outcome.dry_run else "brought"
    mail = outcome.mail
    print(f"{'dry run: ' if outcome.dry_run else ''}users: {outcome.users_added} new, "
          f"{outcome.users_updated} with a password changed at the source, "
          f"{outcome.users_existing} already here; domains added: {outcome.domains_added}", file=out)
    print(f"aliases: {outcome.aliases_added} targets added, {outcome.aliases_removed} removed; "
          f"forwards set: {outcome.forwards_set}", file=out)
    how = "" if outcome.dry_run else f" ({mail.linked} hard-linked, {mail.messages - mail.linked} copied)"
    print(f"mail: {verb} {mail.messages} messages, {_size(mail.bytes)}{how} in {mail.folders} folders; "
          f"{mail.flag_changes} flag changes, {mail.removed} removed at the source", file=out)
    if mail.new_uids:
        print(f"mail: {mail.new_uids} messages got new UIDs (their old ones were taken in hatoba)", file=out)
    if outcome.legacy:
        print(f"passwords: {outcome.legacy} users keep their old hash until they next log in "
              "(`hatoba check` lists them)", file=out)
    for note in outcome.notes:
        print(f"note: {note}", file=out)
    for problem in outcome.problems:
        print(f"skipped: {problem}", file=err)
    if outcome.problems:
        count = len(outcome.problems)
        print(f"{count} {'thing was' if count == 1 else 'things were'} left out (above); the rest was "
              f"{'checked' if outcome.dry_run else 'imported'}", file=err)
