"""`hatoba -c FILE restore DIR`: a backup put back as the instance FILE names.

The work is in store/restore.py. Here: the config path (FILE need not exist
yet), the refusal to restore over a server that is running, and the report.
"""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from hatoba.cli.common import CliError, config_path

PROBE_TIMEOUT = 0.5  # seconds to wait for a listener of a server that may be running


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "restore",
        help="put a backup back: the config FILE, its certificates and keys, the data folder",
        description=(
            "Check the backup DIR against its manifest, then write its config to FILE (-c), its "
            "certificates and keys beside it and its data folder where that config says. Nothing "
            "that exists is overwritten: --force moves it aside (NAME.before-restore-TIME)."
        ),
    )
    p.add_argument("dir", metavar="DIR", help="a folder written by `hatoba backup`")
    p.add_argument("--force", action="store_true",
                   help="move an existing config, data folder or key aside instead of refusing")
    p.add_argument("--keep-uidvalidity", action="store_true",
                   help="keep the folders' UIDVALIDITY: only when the server was stopped before the backup "
                        "was made (IMAP clients then keep their caches)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hatoba.store.restore import restore_backup
    from hatoba.store.snapshot import BackupError

    target = config_path(args)
    if args.force and target.exists():
        _refuse_if_serving(target)
    try:
        done = restore_backup(Path(args.dir), target, force=args.force, keep_uidvalidity=args.keep_uidvalidity)
    except BackupError as exc:
        raise CliError(f"restore: {exc}") from None
    m = done.manifest
    d, mail, queue = m.directory, m.tallies["data/mail"], m.tallies["data/queue"]
    print(f"restored the backup of {m.hostname} made {m.created} by hatoba {m.hatoba} into {done.config_file}")
    print(f"  directory: {d['domains']} domains, {d['users']} users, {d['aliases']} aliases; "
          f"mailboxes: {mail['messages']} messages; queue: {queue['messages']} messages")
    print(f"  data folder {done.data_dir} ({done.links} hard links, {done.copies} copies)")
    for original, aside in done.moved_aside:
        print(f"  moved {original} aside to {aside}")
    if done.renewed:
        print(f"  {done.renewed} folders have a new UIDVALIDITY: IMAP clients fetch their lists again")
    _check_config(done.config_file)
    print(f"start it with: hatoba -c {done.config_file} serve")
    return 0


def _refuse_if_serving(config_file: Path) -> None:
    """A running server keeps using what --force would move aside: refuse while one answers."""
    from hatoba.config.load import ConfigError, load_config

    try:
        config = load_config(config_file, validate=False)
    except ConfigError:
        return  # not a config we can read: nothing to ask
    for listener in config.listeners.values():
        if not listener.enabled:
            continue
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(listener.host, listener.host)
        try:
            with socket.create_connection((host, listener.port), timeout=PROBE_TIMEOUT):
                pass
        except OSError:
            continue
        raise CliError(
            f"restore: a server answers on {host}:{listener.port}, a listener of {config_file}; "
            "stop it before restoring over its instance"
        )


def _check_config(config_file: Path) -> None:
    from hatoba.config.load import ConfigError, load_config

    try:
        load_config(config_file)
    except ConfigError as exc:
        print(f"  warning: the restored config does not load as it is ({exc}); fix it before serve")
