"""`hatoba dkim keygen|show|list`: DKIM signing keys and the DNS records for them.

The keys live in the data folder (config paths.dkim_dir); a running server
picks up a new key on the next message it signs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hatoba.cli.common import CliError, load_config
from hatoba.i18n import T, refusal
from hatoba.cli.domain import missing_action
from hatoba.config.schema import Config
from hatoba.dkim import keys
from hatoba.store.api import DirectoryError
from hatoba.store.directory import Directory


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("dkim", help="create DKIM signing keys and show the DNS records to publish")
    missing_action(p, "keygen DOMAIN|show DOMAIN|list")
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    keygen = actions.add_parser(
        "keygen", help="create a signing key for DOMAIN, use it from now on, print its DNS record"
    )
    keygen.add_argument("domain", metavar="DOMAIN")
    keygen.add_argument("--selector", metavar="S", help="DNS selector (default: rsaYYYYMM or edYYYYMM)")
    # Checked by keys.generate rather than argparse `choices`, so a wrong value
    # is the usual one-line error with exit status 1.
    keygen.add_argument("--algorithm", default="rsa", metavar="rsa|ed25519", help="key type (default rsa)")
    keygen.add_argument("--bits", type=int, metavar="2048|3072|4096", help="RSA key size (default 2048)")
    keygen.set_defaults(func=run_keygen)

    show = actions.add_parser("show", help="print the DNS record of the key DOMAIN is signed with")
    show.add_argument("domain", metavar="DOMAIN")
    show.set_defaults(func=run_show)

    actions.add_parser("list", help="one line per domain: domain, selector, algorithm").set_defaults(func=run_list)


def run_keygen(args: argparse.Namespace) -> int:
    config = load_config(args)
    if args.algorithm == "ed25519" and args.bits is not None:
        raise CliError(T("--bits is for RSA keys only; Ed25519 keys have one size"))
    try:
        key = keys.generate(
            config.paths.dkim_dir,
            args.domain,
            selector=args.selector,
            algorithm=args.algorithm,
            bits=args.bits if args.bits is not None else 2048,
        )
    except keys.DkimError as exc:
        raise CliError(refusal(exc)) from None
    for line in _warnings(config, key.domain):
        print(f"hatoba: warning: {line}", file=sys.stderr)
    size = f"{key.bits}-bit RSA" if key.algorithm == "rsa" else "Ed25519"
    print(f"wrote {size} key {key.path} (selector {key.selector}) for {key.domain}")
    print("publish this DNS record:")
    print(key.zone_line())
    print(
        f"Mail from {key.domain} is signed with selector {key.selector} from now on; "
        "publish the record now, as receivers cannot check the signatures without it."
    )
    return 0


def run_show(args: argparse.Namespace) -> int:
    config = load_config(args)
    try:
        key = keys.load(config.paths.dkim_dir, args.domain)
    except keys.DkimError as exc:
        raise CliError(refusal(exc)) from None
    if key is None:
        domain = keys.normalise_domain(args.domain)
        raise CliError(T("no DKIM key for %(domain)s: create one with `%(command)s`",
                         domain=domain, command=f"hatoba dkim keygen {domain}"))
    print(key.zone_line())
    return 0


def run_list(args: argparse.Namespace) -> int:
    config = load_config(args)
    try:
        found = keys.list_keys(config.paths.dkim_dir)
    except keys.DkimError as exc:
        raise CliError(refusal(exc)) from None
    for key in found:
        print(f"{key.domain} {key.selector} {key.algorithm}")
    return 0


def _warnings(config: Config, domain: str) -> list[str]:
    """What may stop the new key from being used, said but not refused."""
    notes = []
    db = config.paths.directory_db
    try:
        hosted = db.is_file() and _is_local(db, domain)
    except DirectoryError as exc:
        notes.append(f"could not check the local domains: {exc}")
    else:
        if not hosted:
            notes.append(
                f"{domain} is not a local domain here (`hatoba domain list`); "
                "the key was written anyway"
            )
    if not config.dkim.sign:
        notes.append("signing is off ([dkim] sign = false in the config); no mail is signed until it is on")
    return notes


def _is_local(db: Path, domain: str) -> bool:
    with Directory(db) as directory:
        return directory.is_local_domain(domain)
