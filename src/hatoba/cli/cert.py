"""`hatoba cert ...`: keys, requests, certificates, a private CA, and checking a TLS setup.

These tools need no config file. They never overwrite a file: every output
is created new (keys 0600, certificates 0644), so a slip of the keyboard
cannot destroy a key. The work is done in hatoba.pki; this module reads the
arguments, asks pki, and prints the result.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from hatoba.cli.common import CliError
from hatoba.i18n import refusal
from hatoba.cli.domain import missing_action
from hatoba.pki.errors import PkiError

ACTIONS = "key|csr|selfsign|ca-init|ca-sign|revoke|show|verify|unprotect|import|acme"
# The CA/Browser Forum's limit since 2020; TLS scanners hold private CAs to it too.
MAX_LEAF_DAYS = 397  # pki/ca.LEAF_DAYS (not imported: it would load cryptography for --help)
# CAs: a century is more than enough, and keeps the end date far from datetime's limits.
MAX_CA_DAYS = 36500


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("cert", help="make keys, requests and certificates; run a private CA; check a TLS setup")
    missing_action(p, ACTIONS)
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    key = actions.add_parser("key", help="make a new private key (0600, never overwrites)")
    key.add_argument("out", metavar="OUT", type=Path)
    _key_type_flags(key)
    _passphrase_flag(key, "encrypt the new key with a passphrase read as one line from stdin")
    key.set_defaults(func=_guarded(run_key))

    csr = actions.add_parser("csr", help="make a certificate signing request (SHA-256)")
    csr.add_argument("--key", required=True, type=Path, help="the private key the request is for")
    csr.add_argument("--cn", required=True, help="common name, e.g. mail.example.org")
    _san_flag(csr)
    csr.add_argument("out", metavar="OUT", type=Path)
    _passphrase_flag(csr)
    csr.set_defaults(func=_guarded(run_csr))

    selfsign = actions.add_parser("selfsign", help="make a self-signed server certificate")
    selfsign.add_argument("--key", required=True, type=Path)
    selfsign.add_argument("--cn", required=True)
    _san_flag(selfsign)
    selfsign.add_argument("--days", type=int, default=MAX_LEAF_DAYS, help=f"validity (default and most {MAX_LEAF_DAYS})")
    selfsign.add_argument("out", metavar="OUT", type=Path)
    _passphrase_flag(selfsign)
    selfsign.set_defaults(func=_guarded(run_selfsign))

    ca_init = actions.add_parser("ca-init", help="make a private CA: DIR/ca.key and DIR/ca.crt")
    ca_init.add_argument("dir", metavar="DIR", type=Path)
    ca_init.add_argument("--cn", help="the CA's name (default: hatoba private CA and today's date)")
    ca_init.add_argument("--days", type=int, default=3650, help="validity (default 3650)")
    _key_type_flags(ca_init)
    _passphrase_flag(ca_init, "encrypt ca.key with a passphrase read as one line from stdin")
    ca_init.set_defaults(func=_guarded(run_ca_init))

    ca_sign = actions.add_parser("ca-sign", help="sign a request (or a key) with the CA")
    ca_sign.add_argument("--ca-cert", required=True, type=Path, help="the CA certificate (may be followed by its issuers)")
    ca_sign.add_argument("--ca-key", required=True, type=Path)
    ca_sign.add_argument("--csr", type=Path, help="a certificate signing request to sign")
    ca_sign.add_argument("--cn", help="without --csr: the common name of the certificate")
    ca_sign.add_argument("--key", type=Path, help="without --csr: the key (only its public half is used)")
    _san_flag(ca_sign)
    ca_sign.add_argument("--days", type=int, help=f"validity (default {MAX_LEAF_DAYS}; 1825 with --intermediate)")
    ca_sign.add_argument("--intermediate", action="store_true", help="issue a sub-CA (path length 0), not a server certificate")
    ca_sign.add_argument("out", metavar="OUT", type=Path)
    ca_sign.add_argument("--chain-out", type=Path, metavar="CHAIN", help="also write the new certificate followed by the CA chain")
    _passphrase_flag(ca_sign, "read the passphrase of encrypted keys as one line from stdin")
    ca_sign.set_defaults(func=_guarded(run_ca_sign))

    revoke = actions.add_parser("revoke", help="revoke a certificate of hatoba's CA: its CRL lists it from now on")
    revoke.add_argument("what", metavar="CERT|SERIAL", help="a certificate file, or its serial number in hex")
    revoke.set_defaults(func=_guarded(run_revoke))

    show = actions.add_parser("show", help="describe each certificate, request or key in a PEM file")
    show.add_argument("file", metavar="FILE", type=Path)
    _passphrase_flag(show)
    show.set_defaults(func=_guarded(run_show))

    verify = actions.add_parser("verify", help="check a certificate chain, its key, host name, dates and trust")
    verify.add_argument("cert", metavar="CERT", type=Path, help="the certificate file (server certificate first)")
    verify.add_argument("--key", type=Path, help="check that this private key belongs to the certificate")
    verify.add_argument("--host", help="check that clients connecting to this name accept the certificate")
    verify.add_argument("--ca-file", type=Path, help="trusted roots (default: the system store)")
    verify.add_argument("--chain", type=Path, help="intermediates kept in a file of their own")
    _passphrase_flag(verify)
    verify.set_defaults(func=_guarded(run_verify))

    unprotect = actions.add_parser("unprotect", help="write an unencrypted copy (0600) of an encrypted key")
    unprotect.add_argument("infile", metavar="IN", type=Path)
    unprotect.add_argument("out", metavar="OUT", type=Path)
    _passphrase_flag(unprotect)
    unprotect.set_defaults(func=_guarded(run_unprotect))

    imp = actions.add_parser("import", help="split a combined PEM file into server.key, server.crt and ca.crt")
    imp.add_argument("combined", metavar="COMBINED", type=Path)
    imp.add_argument("--out-dir", required=True, type=Path, metavar="DIR")
    _passphrase_flag(imp)
    imp.set_defaults(func=_guarded(run_import))

    from hatoba.cli import acme

    acme.register(actions)


def _key_type_flags(parser: argparse.ArgumentParser) -> None:
    # No argparse choices: a wrong value gets hatoba's one-line error with the fix.
    parser.add_argument("--type", default="ecdsa", help="ecdsa (default) or rsa")
    parser.add_argument("--bits", type=int, help="RSA key size: 2048, 3072 (default) or 4096")
    parser.add_argument("--curve", help="ECDSA curve: P-256 (default) or P-384")


def _san_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="NAME",
        help="a DNS name or IP address the certificate is for (repeat for more; the CN is added)",
    )


def _passphrase_flag(parser: argparse.ArgumentParser, text: str = "") -> None:
    parser.add_argument(
        "--passphrase-stdin",
        action="store_true",
        help=text or "read the passphrase of an encrypted key as one line from stdin",
    )


def _guarded(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn PkiError (the pki package's one-line user error) into CliError."""

    def call(args: argparse.Namespace) -> int:
        try:
            return int(run(args))
        except PkiError as exc:
            raise CliError(refusal(exc)) from None

    return call


# -- shared helpers ------------------------------------------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _passphrase(args: argparse.Namespace, new: bool = False) -> bytes | None:
    """The --passphrase-stdin passphrase: one line from a pipe, or typed unseen at a terminal.

    At a terminal the passphrase for a new key is asked twice, since a typo
    nobody saw would lock the key away for good.
    """
    if not args.passphrase_stdin:
        return None
    if sys.stdin.isatty():
        passphrase = _typed_passphrase(new)
    else:
        line = sys.stdin.readline()
        if not line:
            raise CliError("no passphrase on standard input; write it as one line")
        passphrase = line.removesuffix("\n").removesuffix("\r")
    if not passphrase:
        raise CliError("the passphrase on standard input is empty")
    return passphrase.encode("utf-8")


def _typed_passphrase(new: bool) -> str:
    import getpass

    try:
        passphrase = getpass.getpass("passphrase for the new key: " if new else "passphrase: ")
        if new and passphrase and getpass.getpass("the same passphrase again: ") != passphrase:
            raise CliError("the two passphrases do not match; nothing was written")
    except EOFError:
        raise CliError("no passphrase was typed") from None
    return passphrase


def _sans(args: argparse.Namespace) -> list[str]:
    return list(args.san)


def _must_be_new(*paths: Path) -> None:
    """Refuse early, before slow key generation, when an output exists."""
    for path in paths:
        if path.exists():
            raise CliError(f"{path} already exists; it is never overwritten: remove it or choose another name")


def _days(value: int | None, default: int, limit: int = MAX_LEAF_DAYS, ca: bool = False) -> int:
    days = default if value is None else value
    if days < 1:
        raise CliError(f"--days {days}: give a number of days of 1 or more")
    if days > limit and ca:
        raise CliError(f"--days {days}: a CA certificate may last {limit} days (100 years) at most")
    if days > limit:
        raise CliError(f"--days {days}: server certificates may last {limit} days at most (clients refuse longer ones)")
    return days


def _write_certs(path: Path, certs: list[x509.Certificate]) -> None:
    from hatoba.pki.ca import cert_to_pem
    from hatoba.pki.pemfiles import write_output

    # Certificates are public: 0644.
    write_output(path, b"".join(cert_to_pem(c) for c in certs), 0o644)


def _names_text(names: list[x509.GeneralName]) -> str:
    from hatoba.pki.checks import format_name

    return ", ".join(format_name(n) for n in names)


# -- actions ---------------------------------------------------------------------------


def run_key(args: argparse.Namespace) -> int:
    from hatoba.pki.keyfiles import describe_key, new_key, write_key

    _must_be_new(args.out)
    passphrase = _passphrase(args, new=True)
    key = new_key(args.type, args.bits, args.curve)
    write_key(args.out, key, passphrase)
    protection = ", encrypted" if passphrase else ""
    print(f"wrote {args.out}: {describe_key(key.public_key())} private key (mode 0600{protection})")
    return 0


def run_csr(args: argparse.Namespace) -> int:
    from hatoba.pki.csr import build_csr, csr_names
    from hatoba.pki.keyfiles import read_signing_key
    from cryptography.hazmat.primitives.serialization import Encoding

    from hatoba.pki.pemfiles import write_output

    _must_be_new(args.out)
    key = read_signing_key(args.key, _passphrase(args))
    csr = build_csr(key, args.cn, _sans(args))
    write_output(args.out, csr.public_bytes(Encoding.PEM), 0o644)
    print(f"wrote {args.out}: request for {csr.subject.rfc4514_string()} with {_names_text(csr_names(csr))}")
    return 0


def run_selfsign(args: argparse.Namespace) -> int:
    from hatoba.pki.ca import self_signed_leaf
    from hatoba.pki.csr import common_name, subject_names
    from hatoba.pki.keyfiles import read_signing_key

    _must_be_new(args.out)
    days = _days(args.days, MAX_LEAF_DAYS)
    key = read_signing_key(args.key, _passphrase(args))
    names = subject_names(args.cn, _sans(args))
    cert = self_signed_leaf(key, common_name(args.cn), names, days)
    _write_certs(args.out, [cert])
    print(f"wrote {args.out}: self-signed certificate for {_names_text(names)}, valid {days} days")
    return 0


def run_ca_init(args: argparse.Namespace) -> int:
    from hatoba.pki.ca import self_signed_ca
    from hatoba.pki.csr import common_name
    from hatoba.pki.keyfiles import describe_key, new_key, write_key

    key_path, cert_path = args.dir / "ca.key", args.dir / "ca.crt"
    _must_be_new(key_path, cert_path)
    days = _days(args.days, 3650, MAX_CA_DAYS, ca=True)
    subject = common_name(args.cn or f"hatoba private CA {_now():%Y-%m-%d}")
    passphrase = _passphrase(args, new=True)
    key = new_key(args.type, args.bits, args.curve)
    # path_length None: this root may issue sub-CAs (`ca-sign --intermediate`), which get path length 0.
    cert = self_signed_ca(key, subject, days, path_length=None)
    try:
        args.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create {args.dir}: {exc.strerror or exc}") from None
    write_key(key_path, key, passphrase)
    try:
        _write_certs(cert_path, [cert])
    except PkiError:
        key_path.unlink()  # a key without its certificate is of no use
        raise
    print(f"wrote {key_path}: {describe_key(key.public_key())} CA key (mode 0600{', encrypted' if passphrase else ''})")
    print(f"wrote {cert_path}: CA {subject.rfc4514_string()}, valid {days} days; give this file to clients")
    return 0


def run_ca_sign(args: argparse.Namespace) -> int:
    from hatoba.pki.ca import check_issuer, issue_leaf, issue_sub_ca
    from hatoba.pki.chain import path_from
    from hatoba.pki.keyfiles import read_signing_key, same_key

    _must_be_new(*(p for p in (args.out, args.chain_out) if p is not None))
    if args.csr is not None and (args.cn or args.key):
        raise CliError("give either --csr, or --cn with --key, not both")
    if args.csr is None and not (args.cn and args.key):
        raise CliError("say what to sign: --csr REQUEST, or --cn NAME with --key KEY")
    if args.intermediate and args.san:
        raise CliError("--san is for server certificates; a sub-CA (--intermediate) has no host names")
    if args.intermediate:
        days = _days(args.days, 1825, MAX_CA_DAYS, ca=True)
    else:
        days = _days(args.days, MAX_LEAF_DAYS)
    passphrase = _passphrase(args)

    ca_certs = _read_certs(args.ca_cert)
    ca_key = read_signing_key(args.ca_key, passphrase)
    ca_cert = next((c for c in ca_certs if same_key(ca_key.public_key(), c.public_key())), ca_certs[0])
    check_issuer(ca_key, ca_cert, sub_ca=args.intermediate)

    subject, public, names = _request(args, passphrase)
    if args.intermediate:
        cert = issue_sub_ca(ca_key, ca_cert, public, subject, days)
        what = f"sub-CA {subject.rfc4514_string()}"
    else:
        cert = issue_leaf(ca_key, ca_cert, public, subject, names, days)
        what = f"server certificate for {_names_text(names)}"
    _write_certs(args.out, [cert])
    lifetime = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    print(f"wrote {args.out}: {what}, signed by {ca_cert.subject.rfc4514_string()}, valid {lifetime} days")
    if lifetime < days:
        print(f"note: shortened to end with the CA certificate, on {ca_cert.not_valid_after_utc:%Y-%m-%d}")
    if args.chain_out is not None:
        chain = [cert] + path_from(ca_cert, ca_certs)
        _write_certs(args.chain_out, chain)
        print(f"wrote {args.chain_out}: {len(chain)} certificates, the new one first, then its issuers")
    return 0


def _request(
    args: argparse.Namespace, passphrase: bytes | None
) -> tuple[x509.Name, CertificatePublicKeyTypes, list[x509.GeneralName]]:
    """(subject, public key, SANs) of what to sign, from --csr or from --cn and --key."""
    from cryptography.x509.oid import NameOID

    from hatoba.pki.csr import check_csr, common_name, csr_names, request_names, subject_names, with_common_name
    from hatoba.pki.keyfiles import check_public_key, read_key
    from hatoba.pki.pemfiles import read_csr

    if args.csr is None:
        public = read_key(args.key, passphrase).public_key()
        check_public_key(public, str(args.key))
        names = [] if args.intermediate else subject_names(args.cn, _sans(args))
        return common_name(args.cn), public, names
    csr = read_csr(args.csr)
    check_csr(csr, str(args.csr))
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value).strip() if cns else ""
    if args.intermediate:
        names = []
    elif _sans(args) or not csr_names(csr):
        # --san replaces the request's names: the CA decides what it certifies.
        names = subject_names(cn, _sans(args))
    else:
        names = with_common_name(cn, request_names(csr, str(args.csr)))
    # The subject is the CN alone: other attributes (O=, OU=) would be
    # vouched for by the CA without anyone having checked them.
    if not cn and names:
        cn = names[0].value if isinstance(names[0], x509.DNSName) else str(names[0].value)
    if not cn:
        raise CliError(f"{args.csr} has no common name and no subjectAltName; give the names with --san")
    return common_name(cn), csr.public_key(), names


def _read_certs(path: Path) -> list[x509.Certificate]:
    from hatoba.pki.pemfiles import read_certs

    return read_certs(path)


def run_revoke(args: argparse.Namespace) -> int:
    """Add a serial to the CA's revoked.txt (pki/crl.py); the server's CRL lists it at the next fetch."""
    from hatoba.cli.common import load_config
    from hatoba.pki.ca import load_certs
    from hatoba.pki.crl import revoke, write_crl

    config = load_config(args)
    if config.tls.ca_file is None or not (config.tls.ca_file.parent / "ca.key").exists():
        raise CliError("this setup has no CA key beside tls.ca_file: only certificates of hatoba's own CA "
                       "(hatoba init) can be revoked here; ask the CA that issued yours")
    ca_dir = config.tls.ca_file.parent
    ca_cert = load_certs(config.tls.ca_file)[0]
    path = Path(args.what)
    if path.exists():
        try:
            cert = load_certs(path)[0]
        except (ValueError, IndexError):
            raise CliError(f"{path} holds no PEM certificate; give a certificate file or a serial in hex") from None
        if cert.issuer != ca_cert.subject:
            raise CliError(f"{path} was not issued by {ca_cert.subject.rfc4514_string()}; its CRL cannot revoke it")
        serial = cert.serial_number
    else:
        try:
            serial = int(args.what.replace(":", ""), 16)
        except ValueError:
            raise CliError(f"{args.what!r} is neither a file nor a serial number in hex") from None
    if not os.access(ca_dir / "ca.key", os.R_OK):
        raise CliError(f"cannot read {ca_dir / 'ca.key'}: run this as root (the CA key is root's alone)")
    added = revoke(ca_dir, serial)
    write_crl(ca_dir)
    if added:
        print(f"revoked {serial:x}; the CRL at /crl/ca.crl on the http listener lists it from now on")
    else:
        print(f"{serial:x} was revoked already")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from hatoba.pki.certinfo import cert_rows, csr_rows, key_rows
    from hatoba.pki.keyfiles import is_encrypted, parse_key
    from hatoba.pki.pemfiles import parse_cert, parse_csr, read_bytes, split_pem

    blocks = split_pem(read_bytes(args.file))
    if not blocks:
        return _show_der(args.file, read_bytes(args.file))
    passphrase = _passphrase(args)
    now = _now()
    counts = {kind: sum(1 for b in blocks if b.kind == kind) for kind in ("certificate", "request", "key", "other")}
    seen = dict.fromkeys(counts, 0)
    for block in blocks:
        seen[block.kind] += 1
        of = f" {seen[block.kind]} of {counts[block.kind]}" if counts[block.kind] > 1 else ""
        if block.kind == "certificate":
            _print_rows(f"certificate{of}", cert_rows(parse_cert(block, args.file), now))
        elif block.kind == "request":
            _print_rows(f"certificate request{of}", csr_rows(parse_csr(block, args.file)))
        elif block.kind == "key":
            encrypted = is_encrypted(block.data)
            key = parse_key(block.data, str(args.file), passphrase) if passphrase or not encrypted else None
            _print_rows(f"private key{of}", key_rows(key, encrypted))
        else:
            print(f"{block.label}: not a certificate, request or key (skipped)")
    return 0


def _show_der(path: Path, data: bytes) -> int:
    """A DER (binary) certificate or request, as some CAs hand them out."""
    from hatoba.pki.certinfo import cert_rows, csr_rows

    try:
        _print_rows("certificate (DER)", cert_rows(x509.load_der_x509_certificate(data), _now()))
        return 0
    except ValueError:
        pass
    try:
        _print_rows("certificate request (DER)", csr_rows(x509.load_der_x509_csr(data)))
        return 0
    except ValueError:
        pass
    raise CliError(f"{path} holds no PEM data and no DER certificate or request")


def _print_rows(title: str, rows: list[tuple[str, str]]) -> None:
    print(f"{title}:")
    width = max(len(label) for label, _ in rows) + 1
    for label, value in rows:
        print(f"  {label + ':':<{width}} {value}")


def run_verify(args: argparse.Namespace) -> int:
    from hatoba.pki.checks import (
        check_host, check_key, check_order, check_strength, check_trust, check_validity, is_root,
    )
    from hatoba.pki.keyfiles import read_key

    certs = _read_certs(args.cert)
    if args.chain is not None:
        certs += [c for c in _read_certs(args.chain) if c not in certs]
    key = read_key(args.key, _passphrase(args)) if args.key is not None else None
    now = _now()
    order, chain = check_order(certs)
    checks = [order]
    if key is not None:
        checks.append(check_key(chain[0], key, args.key, certs))
    if args.host:
        checks.append(check_host(chain[0], args.host))
    checks += [check_validity(c, now) for c in chain]
    checks += [check_strength(c, is_root(chain, i)) for i, c in enumerate(chain)]
    checks.append(check_trust(chain, args.ca_file, now))
    for check in checks:
        print(check.line())
    failed = sum(1 for c in checks if not c.ok)
    if failed:
        print(f"{failed} of {len(checks)} checks failed")
        return 1
    print(f"all {len(checks)} checks passed")
    return 0


def run_unprotect(args: argparse.Namespace) -> int:
    from hatoba.pki.keyfiles import is_encrypted, read_key, write_key
    from hatoba.pki.pemfiles import read_bytes

    _must_be_new(args.out)
    was_encrypted = is_encrypted(read_bytes(args.infile))
    key = read_key(args.infile, _passphrase(args))
    write_key(args.out, key)
    note = "" if was_encrypted else f" ({args.infile} was not encrypted)"
    print(f"wrote {args.out}: the key without a passphrase, mode 0600{note}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from hatoba.pki.bundle import split_bundle
    from hatoba.pki.chain import describe
    from hatoba.pki.keyfiles import write_key
    from hatoba.pki.pemfiles import read_bytes

    bundle = split_bundle(read_bytes(args.combined), str(args.combined), _passphrase(args))
    key_path, crt_path, ca_path = (args.out_dir / n for n in ("server.key", "server.crt", "ca.crt"))
    _must_be_new(key_path, crt_path, *([ca_path] if bundle.root is not None else []))
    try:
        args.out_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create {args.out_dir}: {exc.strerror or exc}") from None
    write_key(key_path, bundle.key)
    print(f"wrote {key_path}: the private key of {describe(bundle.chain[0])} (mode 0600, not encrypted)")
    _write_certs(crt_path, bundle.chain)
    print(
        f"wrote {crt_path}: {describe(bundle.chain[0])}"
        + "".join(f", then {describe(c)}" for c in bundle.chain[1:])
    )
    if bundle.root is not None:
        _write_certs(ca_path, [bundle.root])
        print(f"wrote {ca_path}: the root {describe(bundle.root)}")
    else:
        top = bundle.chain[-1]
        print(f"no root certificate in {args.combined}: {ca_path} not written (the chain ends at {top.issuer.rfc4514_string()})")
    for cert in bundle.unrelated:
        print(
            f"left out {describe(cert)} (valid until {cert.not_valid_after_utc:%Y-%m-%d}): "
            "not on the server certificate's chain, or an older copy"
        )
    for warning in bundle.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for label in bundle.other_blocks:
        print(f"left out a {label} block")
    return 0
