"""`hatoba -c FILE backup DIR`: a consistent copy of the instance while it serves.

The work is in store/backup.py; this prints what was copied.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hatoba.cli.common import CliError, load_config


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "backup",
        help="copy config, keys, directory, mailboxes and queue into DIR, while serving",
        description=(
            "Write a consistent copy of this instance into DIR (new or empty): the config, certificates "
            "and keys, the directory database, DKIM keys, every mailbox and the queue, and a manifest. "
            "Messages are hard links where DIR is on the same file system: copy DIR elsewhere "
            "(e.g. tar, rsync -H) to survive the loss of the disk. `hatoba restore DIR` puts it back."
        ),
    )
    p.add_argument("dir", metavar="DIR", help="a new or empty folder for the backup")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hatoba.store.backup import make_backup
    from hatoba.store.snapshot import BackupError

    config = load_config(args)
    try:
        made = make_backup(config, Path(args.dir))
    except BackupError as exc:
        raise CliError(f"backup: {exc}") from None
    m = made.manifest
    d, mail, queue = m.directory, m.tallies["data/mail"], m.tallies["data/queue"]
    listed = sum(1 for name in m.files if not name.startswith("data/"))
    print(f"backup of {m.source} written to {os.path.abspath(args.dir)} and synced to disk "
          f"in {made.seconds:.1f} s")
    print(f"  directory: {d['domains']} domains, {d['users']} users, {d['aliases']} aliases "
          f"(schema {d['schema_version']})")
    print(f"  mailboxes: {mail['messages']} messages; queue: {queue['messages']} messages "
          f"({made.links} hard links, {made.copies} copies)")
    print(f"  config, certificates and keys: {listed} files")
    if m.vanished:
        print(f"  {m.vanished} messages were expunged while it ran and are not in it")
    return 0
