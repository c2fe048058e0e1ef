"""`hatoba import vpopmail|dovecot|maildir`: moving in from another mail server.

Users keep their passwords (old hashes are checked, then replaced by Argon2id at
the first login), mail keeps its IMAP UIDs, UIDVALIDITY, flags and keywords, and
POP3 clients see the UIDLs they saw before. Repeatable until the cut-over: a
second run brings only what changed. --dry-run says what would change and writes
nothing. Exit status 0 when everything came over, 2 when something was left out
(each said in one line, "FILE:LINE: reason", on standard error), 1 on a user error.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

from hatoba.cli.common import CliError, load_config
from hatoba.cli.domain import missing_action, open_directory
from hatoba.i18n import T
from hatoba.migrate.model import Source, SourceUser, inside
from hatoba.migrate.uidl import UidlFormat, UidlFormatError

SKIPPED_STATUS = 2


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("import", help="move users, passwords, aliases and mail in from another mail server")
    missing_action(p, "vpopmail|dovecot|maildir")
    kinds = p.add_subparsers(dest="kind", metavar="SOURCE")

    vpop = kinds.add_parser("vpopmail", help="qmail + vpopmail: domains/DOMAIN/vpasswd, Maildirs, .qmail files")
    vpop.add_argument("directory", metavar="DIR", type=Path, help="the vpopmail home, e.g. /home/vpopmail")
    vpop.add_argument("--qmail-assign", type=Path, metavar="FILE", default=Path("/var/qmail/users/assign"),
                      help="qmail's users/assign, for alias domains (default: %(default)s when present)")
    _common(vpop, "base")
    vpop.set_defaults(func=run_vpopmail)

    dove = kinds.add_parser("dovecot", help="Dovecot passwd-file users, their Maildirs, Postfix alias tables")
    dove.add_argument("--passwd-file", required=True, type=Path, metavar="FILE", help="Dovecot's passwd-file")
    dove.add_argument("--mail-root", required=True, type=Path, metavar="DIR",
                      help="where the Maildirs are: DIR/DOMAIN/USER/Maildir")
    dove.add_argument("--postfix-virtual", type=Path, metavar="FILE", help="Postfix's virtual(5) alias table")
    dove.add_argument("--postfix-aliases", type=Path, metavar="FILE",
                      help="Postfix's aliases(5) file (for the server's own name, [server] hostname)")
    _common(dove, "%08Xu%08Xv")
    dove.set_defaults(func=run_dovecot)

    plain = kinds.add_parser("maildir", help="Maildirs of users who already exist in hatoba")
    plain.add_argument("directory", metavar="DIR", type=Path,
                       help="one Maildir (with --user), or a tree DIR/DOMAIN/USER[/Maildir]")
    plain.add_argument("--user", metavar="ADDRESS", help="whose Maildir DIR is")
    _common(plain, "base")
    plain.set_defaults(func=run_maildir)


def _common(parser: argparse.ArgumentParser, uidl_default: str) -> None:
    parser.add_argument("--dry-run", action="store_true", help="say what would change; write nothing")
    parser.add_argument(
        "--pop3-uidl-format", default=uidl_default, metavar="FORMAT",
        help=f"the UIDLs the old POP3 server showed: a Dovecot pop3_uidl_format, 'base' (the Maildir name: "
             f"qmail-pop3d) or 'courier' (default: {uidl_default})")


def run_vpopmail(args: argparse.Namespace) -> int:
    from hatoba.migrate.vpopmail import read_vpopmail

    _require_dir(args.directory)
    return _run(args, read_vpopmail(args.directory, args.qmail_assign))


def run_dovecot(args: argparse.Namespace) -> int:
    from hatoba.migrate.dovecot import read_dovecot

    for path in (args.passwd_file, args.postfix_virtual, args.postfix_aliases):
        if path is not None and not path.is_file():
            raise CliError(T("%(path)s is not a file", path=str(path)))
    _require_dir(args.mail_root)
    hostname = load_config(args).server.hostname
    return _run(args, read_dovecot(args.passwd_file, args.mail_root, virtual=args.postfix_virtual,
                                   aliases=args.postfix_aliases, own_domain=hostname.lower()))


def run_maildir(args: argparse.Namespace) -> int:
    _require_dir(args.directory)
    source = Source()
    with open_directory(args) as directory:
        if args.user:
            if not directory.user_exists(args.user):
                raise CliError(T("no user %(address)s; see `hatoba user list`", address=args.user))
            source.users.append(SourceUser(args.user, None, None, args.directory, None, str(args.directory)))
        else:
            for domain_dir in sorted(p for p in args.directory.iterdir() if p.is_dir()):
                for user_dir in sorted(p for p in domain_dir.iterdir() if p.is_dir()):
                    maildir = user_dir / "Maildir" if (user_dir / "Maildir").is_dir() else user_dir
                    address = f"{user_dir.name}@{domain_dir.name}"
                    if not (maildir / "cur").is_dir():
                        continue
                    if not inside(maildir, args.directory):
                        source.problem(str(maildir), "leads out of the tree given (a link); left out")
                        continue
                    if not directory.user_exists(address):
                        source.problem(str(maildir), f"no user {address} in hatoba; add it first "
                                       f"(hatoba user add {address}), then import again")
                        continue
                    source.users.append(SourceUser(address, None, None, maildir, None, str(maildir),
                                                   args.directory))
    return _run(args, source)


def _require_dir(path: Path) -> None:
    if not path.is_dir():
        raise CliError(T("%(path)s is not a folder", path=str(path)))


def _run(args: argparse.Namespace, source: Source) -> int:
    from hatoba.migrate.apply import Importer
    from hatoba.migrate.report import print_outcome
    from hatoba.system.privileges import PrivilegeError, service_user

    try:
        uidl_format = UidlFormat.parse(args.pop3_uidl_format)
    except UidlFormatError as exc:
        raise CliError(str(exc)) from None
    config = load_config(args)
    owner = None
    if os.geteuid() == 0:
        try:
            user = service_user(config.server)
        except PrivilegeError as exc:
            raise CliError(str(exc)) from None
        if user is not None:
            owner = (user.uid, user.gid)
    with open_directory(args) as directory:
        importer = Importer(directory, config.paths.data_dir, config.paths.mail_dir,
                            hostname=config.server.hostname, owner=owner, dry_run=args.dry_run)
        try:
            outcome = importer.run(source, uidl_format)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise CliError(f"the import stopped: {config.paths.data_dir} is full ({exc.strerror}); free some "
                               "space and run it again: it goes on where it stopped") from None
            where = f" ({exc.filename})" if exc.filename else ""
            raise CliError(f"the import stopped: {exc.strerror or exc}{where}; fix that and run it again: it "
                           "goes on where it stopped") from None
    print_outcome(outcome, sys.stdout, sys.stderr)
    return SKIPPED_STATUS if outcome.problems else 0
