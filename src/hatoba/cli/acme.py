"""`hatoba cert acme status|renew|revoke`: the certificate from the ACME CA.

status reads data/acme/ and says what is served, until when, when it renews
and what the last attempt did. renew and revoke leave a request for the
running server (acme/files.py), whose listeners answer the challenges, and
return once it has answered: with the new certificate installed and served,
or with the reason it is not. revoke first revokes the certificate at the
CA (with the account key), then asks for a new one.

Started as root, the command first becomes the user `hatoba serve` runs as
([server] user) before it reads or writes anything in data/acme: the folder
and the ones above it are that user's, and root must not follow what it
placed there. A server that runs as root (allow_root) is served as root
only when every folder on the way is root's and no one else may write it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import stat
import time
from pathlib import Path

from hatoba.cli.common import CliError, load_config
from hatoba.i18n import refusal

PICKED_UP_WITHIN = 15.0  # seconds a running server takes to see a request
ANSWERED_WITHIN = 600.0  # an order's validation and issuance, with room for a busy CA
ORDER_STALE = 900.0  # an "ordering" mark older than this is a server that died mid-order


def register(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = actions.add_parser("acme", help="the certificate from the ACME CA ([acme]): status, renew, revoke")
    what = p.add_subparsers(dest="acme_action", metavar="status|renew|revoke")
    p.set_defaults(func=lambda args: _missing(p))
    what.add_parser("status", help="what is served, until when, and what the last attempt did"
                    ).set_defaults(func=run_status)
    what.add_parser("renew", help="order a new certificate now; returns when the server serves it"
                    ).set_defaults(func=run_renew)
    what.add_parser("revoke", help="revoke the certificate at the CA, then order a new one"
                    ).set_defaults(func=run_revoke)


def _missing(parser: argparse.ArgumentParser) -> int:
    parser.print_usage()
    raise CliError("say what: hatoba cert acme status, renew or revoke")


def _setup(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from hatoba.acme.files import AcmeFiles

    config = load_config(args)
    if not config.acme.enabled:
        raise CliError(f"ACME is off in {config.config_path}: set [acme] directory "
                       '(e.g. "letsencrypt") and restart hatoba')
    files = AcmeFiles.of(config)
    _as_service_user(config, files.folder)
    if not files.folder.is_dir():
        raise CliError(f"{files.folder} does not exist: no hatoba has run with [acme] on yet; "
                       "start hatoba serve (it orders a certificate at start)")
    return config, files


def _as_service_user(config, folder: Path) -> None:  # type: ignore[no-untyped-def]
    """As root, become the user hatoba serve runs as (see the module docstring)."""
    if os.geteuid() != 0:
        return
    from hatoba.system.privileges import PrivilegeError, drop, plan

    try:
        user = plan(config.server, 0)
        if user is not None:
            drop(user)
            return
    except PrivilegeError as exc:
        raise CliError(refusal(exc)) from None
    for path in (folder, *folder.parents):  # the server runs as root: so may we, where only root writes
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        sticky_shared = stat.S_ISVTX & st.st_mode and path != folder
        if stat.S_ISLNK(st.st_mode) or st.st_uid != 0 or (st.st_mode & 0o022 and not sticky_shared):
            raise CliError(f"{path} is a link, or another user owns or may write it: acting as root under it "
                           "would let that user redirect root's writes; run hatoba as its [server] user, "
                           "or give the data folder to root")


def run_status(args: argparse.Namespace) -> int:
    from hatoba.acme.files import belongs_to_key, number, read_chain, served_tls, table
    from hatoba.acme.manager import covered_names, renew_time, wanted_names

    config, files = _setup(args)
    state = _read_state(files)
    print(f"CA: {config.acme.directory_url}")
    account = table(state, "account")
    print(f"account: {account.get('uri') or 'none yet (made at the first order)'}")
    chain = read_chain(files.cert)
    if not chain:
        print(f"certificate: none yet; the listeners serve {config.tls.cert}")
    else:
        leaf = chain[0]
        served = served_tls(config).cert == files.cert
        print(f"certificate: {files.cert} ({'served' if served else 'NOT served'})")
        print(f"  names: {', '.join(sorted(covered_names(leaf)))}")
        print(f"  serial: {leaf.serial_number:x}, issuer: {leaf.issuer.rfc4514_string()}")
        print(f"  valid: {_when(leaf.not_valid_before_utc.timestamp())} to {_when(leaf.not_valid_after_utc.timestamp())}")
        ari = table(state, "ari")
        ari_time = number(ari, "renew_at") or None if ari.get("serial") == f"{leaf.serial_number:x}" else None
        print(f"  renews: {_when(renew_time(leaf, ari_time))}"
              f" ({'as the CA suggests (ARI)' if ari_time else 'at two thirds of its lifetime'})")
        if not served:
            why = ("it is not for tls.key" if not belongs_to_key(leaf, config.tls.key) else "it has expired")
            print(f"  the listeners serve {config.tls.cert}: {why}")
    try:
        from hatoba.store.directory import Directory

        domains = Directory(config.paths.directory_db).list_domains()
    except Exception:  # noqa: BLE001 - the directory is optional here: status must still print
        domains = []
    print(f"names wanted: {', '.join(wanted_names(config, domains))}")
    for name, why in sorted(table(state, "dropped").items()):
        print(f"  left out: {name}: {why}")
    if state.get("last_error"):
        print(f"last attempt: {_when(number(state, 'last_attempt'))} failed: {state['last_error']}")
        print(f"next try: {_when(number(state, 'next_attempt'))} "
              f"(failures in a row: {number(state, 'failures'):.0f})")
    elif number(state, "renewed_at"):
        print(f"last renewal: {_when(number(state, 'renewed_at'))}")
    return 0


def run_renew(args: argparse.Namespace) -> int:
    config, files = _setup(args)
    return _ask_server(files)


def run_revoke(args: argparse.Namespace) -> int:
    from hatoba.acme.files import read_chain
    from hatoba.acme.order import AcmeError, revoke

    config, files = _setup(args)
    chain = read_chain(files.cert)
    if not chain:
        raise CliError(f"there is no certificate from the CA in {files.cert} to revoke")
    leaf = chain[0]
    try:
        files.account_key.read_bytes()
    except PermissionError:
        raise CliError(f"cannot read {files.account_key}: run this as root or as the server's user") from None
    except FileNotFoundError:
        raise CliError(f"{files.account_key} is missing; only the account that ordered it can revoke it") from None
    except OSError as exc:
        raise CliError(f"cannot read {files.account_key}: {exc.strerror}") from None
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        revoke(config.acme, files, leaf.public_bytes(Encoding.PEM))
    except AcmeError as exc:
        hint = "; if it was revoked already, get a new one with: hatoba cert acme renew" if "alreadyRevoked" in str(exc) else ""
        raise CliError(f"the CA did not revoke {leaf.serial_number:x}: {exc}{hint}") from None
    state = _read_state(files)
    state["revoked"] = f"{leaf.serial_number:x}"
    files.write_state(state)
    print(f"revoked {leaf.serial_number:x} at {config.acme.directory_url}; ordering a new certificate")
    return _ask_server(files)


def _ask_server(files) -> int:  # type: ignore[no-untyped-def]
    """Leave a request for the running server and wait for its answer."""
    from hatoba.acme.files import number, table

    try:
        token = files.write_request()
    except OSError as exc:
        raise CliError(f"cannot write a request into {files.folder}: {exc.strerror}; "
                       "run this as root or as the server's user") from None
    request = files.request(token)
    start = time.monotonic()
    while True:
        time.sleep(0.25)
        state = _read_state(files)
        answered = table(table(state, "answered"), token)
        if answered:
            result = str(answered.get("result", ""))
            if result.startswith("failed"):
                raise CliError(f"no new certificate: {result.removeprefix('failed: ')}")
            print(result)
            return 0
        waited = time.monotonic() - start
        ordering = time.time() - number(state, "ordering") < ORDER_STALE
        if waited > PICKED_UP_WITHIN and request.exists() and not ordering:
            request.unlink(missing_ok=True)
            raise CliError(f"no running hatoba took the request within {PICKED_UP_WITHIN:.0f} s: start "
                           "hatoba serve with this config (it orders a certificate at start)")
        if waited > ANSWERED_WITHIN:
            request.unlink(missing_ok=True)
            raise CliError(f"the server has not answered in {ANSWERED_WITHIN:.0f} s; "
                           "see its log and hatoba cert acme status")


def _read_state(files) -> dict:  # type: ignore[no-untyped-def, type-arg]
    try:
        return files.read_state()
    except PermissionError:
        raise CliError(f"cannot read {files.state}: run this as the server's user (or as root)") from None


def _when(timestamp: float) -> str:
    if not timestamp:
        return "never"
    try:
        return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, ValueError, OSError):
        return "an impossible date"


__all__ = ["register"]
