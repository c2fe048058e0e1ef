"""`hatoba init DIR --hostname HOST`: a complete, working setup in one folder;
`hatoba init --system`: the same laid out as a system service (/etc/hatoba,
/var/lib/hatoba, the systemd unit; see cli/init_service.py).

Rules:
- Never overwrites anything: an existing DIR/hatoba.toml or key is an error.
- hatoba.toml is written last and everything made before it is removed when
  a step fails, so a failed init leaves nothing behind and can be retried.
- Secrets are private from their first byte: tls/ and data/ are 0700, keys
  and the directory database 0600; such folders that already existed are
  tightened to that mode.
- Run as root, init creates the service user (`--user`, default hatoba) if
  missing and gives it the data folder and the server's keys; the config
  stays root's (readable by the user's group), and so does the CA key, which
  the server never needs.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import stat
from pathlib import Path

from hatoba.cli.common import CliError
from hatoba.i18n import refusal
from hatoba.cli.init_service import Layout, Owner
from hatoba.config.schema import STANDARD_PORTS

# The listeners init turns on; http and https are written turned off (config/template.py).
SERVING = ("smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "init",
        help="create a new setup: config, private CA and certificate, data folder",
        description="Create DIR/hatoba.toml, DIR/tls (a private CA and a server certificate) and DIR/data.",
    )
    p.add_argument("dir", metavar="DIR", nargs="?", help="folder for the new setup (created if missing)")
    p.add_argument("--hostname", required=True, metavar="HOST", help="this server's DNS name, e.g. mail.example.org")
    p.add_argument("--domain", metavar="DOMAIN", help="a first local domain to receive mail for")
    p.add_argument(
        "--port-offset", type=int, default=0, metavar="N",
        help="listen on each standard port + N (e.g. 10000: 10025, 10587...); implies --bind 127.0.0.1",
    )
    p.add_argument("--bind", metavar="ADDR", help="IP address to listen on (default 0.0.0.0, or 127.0.0.1 with --port-offset)")
    p.add_argument(
        "--user", metavar="NAME",
        help='the user serve runs as when started as root, created if missing (default: hatoba when run as '
             'root or with --system, else ""; "" = stay as started)',
    )
    p.add_argument(
        "--system", action="store_true",
        help="instead of DIR: /etc/hatoba (config, tls), /var/lib/hatoba (data), the user and the systemd unit",
    )
    p.add_argument(
        "--root", metavar="DIR",
        help="with --system: lay it all out under DIR instead of / (a trial or an image; the files name the paths under DIR)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hatoba.cli.init_service import choose_layout, give_to_owner, install_unit, owner_for, reach_note
    from hatoba.config.validate import hostname_problem

    layout = choose_layout(args)
    problem = hostname_problem(args.hostname)
    if problem:
        raise CliError(f"--hostname: {problem}")
    hostname = args.hostname.lower()
    domain = _check_domain(args.domain) if args.domain else None
    offset = _check_offset(args.port_offset)
    bind = _check_bind(args.bind) if args.bind else ("127.0.0.1" if offset else "0.0.0.0")
    config_file = layout.config_file
    if config_file.exists():
        raise CliError(f"{config_file} already exists; hatoba init never overwrites a setup")
    if layout.config_dir.exists() and not layout.config_dir.is_dir():
        raise CliError(f"{layout.config_dir} exists and is not a folder; choose another DIR")
    user, owner = owner_for(args, layout)  # creates the user when run as root

    made = _Made()
    try:
        _create(layout, hostname, domain, offset, made)
        if owner is not None:
            give_to_owner(layout, owner)
        if layout.unit is not None:
            install_unit(layout, made)
        _write_config(layout, hostname, bind, offset, user, owner, made)
    except BaseException:
        made.remove()
        raise
    _print_summary(layout, hostname, domain, bind, offset, user)
    for path, old, new in made.tightened:
        print(f"tightened {path} from mode {old:04o} to {new:04o}: only the server may read or change it")
    if owner is not None:
        note = reach_note(layout, owner)
        if note:
            print(f"warning: {note}; hatoba serve refuses to start until then")
    return 0


def _check_domain(text: str) -> str:
    from hatoba.proto.address import AddressError, parse_domain

    try:
        return parse_domain(text)
    except AddressError as exc:
        raise CliError(f"--domain: {text!r} is not a valid domain name ({exc})") from None


def _check_offset(offset: int) -> int:
    highest = 65535 - max(STANDARD_PORTS.values())
    if not 0 <= offset <= highest:
        raise CliError(f"--port-offset: {offset} must be from 0 to {highest} so that every port stays valid")
    return offset


def _check_bind(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise CliError(f"--bind: {text!r} is not an IP address; e.g. 127.0.0.1, 0.0.0.0 or ::") from None


class _Made:
    """What init created, to remove it again when a later step fails."""

    def __init__(self) -> None:
        self.paths: list[Path] = []
        self.tightened: list[tuple[Path, int, int]] = []  # (folder, mode it had, mode now)

    def folder(self, path: Path, mode: int) -> Path:
        if not path.is_dir():
            path.mkdir(mode=mode)
            os.chmod(path, mode)  # mkdir's mode is filtered by the umask
            self.paths.append(path)
            return path
        # A folder that was there keeps no looser mode than one we make
        # (as postfix set-permissions does): a 1777 queue lets anyone swap mail.
        old = stat.S_IMODE(path.stat().st_mode)
        if old & ~mode:
            os.chmod(path, mode)
            self.tightened.append((path, old, mode))
        return path

    def tree(self, path: Path, mode: int) -> Path:
        """`path` and its missing parents, each made with `mode` (existing ones untouched)."""
        missing = [p for p in [path, *path.parents] if not p.exists()]
        for folder in reversed(missing):
            folder.mkdir(mode=mode)
            os.chmod(folder, mode)
            self.paths.append(folder)
        return path

    def file(self, path: Path) -> Path:
        self.paths.append(path)
        return path

    def remove(self) -> None:
        for path in reversed(self.paths):
            try:
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()
                else:
                    path.unlink(missing_ok=True)
            except OSError:
                pass  # best effort: the error that made us undo is the one to report


def _create(layout: Layout, hostname: str, domain: str | None, offset: int, made: _Made) -> None:
    try:
        made.tree(layout.config_dir, 0o755)
        tls = made.folder(layout.tls_dir, 0o700)
        _write_pki(tls, hostname, domain, offset, made)
        made.tree(layout.data_dir.parent, 0o755)
        data = made.folder(layout.data_dir, 0o700)
        made.folder(data / "mail", 0o700)
        made.folder(data / "queue", 0o700)
    except OSError as exc:
        raise CliError(f"cannot create {exc.filename or layout.config_dir}: {exc.strerror or exc}") from None
    _make_directory(data / "directory.sqlite3", domain, made)


def _write_pki(tls: Path, hostname: str, domain: str | None, offset: int, made: _Made) -> None:
    from hatoba.pki.ca import create_ca, issue_server_cert, write_cert_chain
    from hatoba.pki.crl import CRL_FILE, crl_url, write_crl
    from hatoba.pki.keys import write_private_key

    ca_key, ca_cert = create_ca(f"hatoba private CA for {hostname}")
    # The web names of the domain too: mail programs fetch autoconfig.DOMAIN and
    # senders mta-sts.DOMAIN over https (web/public.py).
    web_names = (f"autoconfig.{domain}", f"mta-sts.{domain}") if domain else ()
    # The CRL is served on the http listener (pki/crl.py), off until the operator turns it on.
    server_key, server_cert = issue_server_cert(ca_key, ca_cert, hostname, more_names=web_names,
                                                crl_url=crl_url(hostname, 80 + offset))
    steps = (
        ("ca.key", lambda p: write_private_key(p, ca_key)),
        ("ca.crt", lambda p: write_cert_chain(p, [ca_cert])),
        ("server.key", lambda p: write_private_key(p, server_key)),
        ("server.crt", lambda p: write_cert_chain(p, [server_cert, ca_cert])),
    )
    for name, write in steps:
        path = tls / name
        try:
            write(path)
        except FileExistsError:
            raise CliError(
                f"{path} already exists; hatoba init never overwrites keys or certificates: "
                f"move {tls} away and run it again"
            ) from None
        made.file(path)
    write_crl(tls)  # the CRL the certificate names, empty for now
    made.file(tls / CRL_FILE)


def _make_directory(db: Path, domain: str | None, made: _Made) -> None:
    from hatoba.store.api import DirectoryError
    from hatoba.store.directory import Directory

    existed = db.exists()
    if not existed:
        # SQLite's side files go too if init is undone.
        for suffix in ("-journal", "-wal", "-shm", ""):
            made.file(db.with_name(db.name + suffix))
    try:
        with Directory(db) as directory:
            if domain and not directory.is_local_domain(domain):
                directory.add_domain(domain)
    except DirectoryError as exc:
        raise CliError(refusal(exc)) from None


def _write_config(layout: Layout, hostname: str, bind: str, offset: int, user: str,
                  owner: Owner | None, made: _Made) -> None:
    from hatoba.config.load import ConfigError, load_config
    from hatoba.config.template import render_config
    from hatoba.pki.keys import write_new_file

    path = layout.config_file
    text = render_config(hostname, bind, offset, user=user, data_dir=layout.data_setting)
    try:
        # Root's file, readable by the service user's group: it may hold a relayhost password.
        write_new_file(path, text.encode(), 0o644 if owner is None else 0o640)
        made.file(path)
        if owner is not None:
            os.chown(path, 0, owner.gid)
    except FileExistsError:
        raise CliError(f"{path} already exists; hatoba init never overwrites a setup") from None
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        load_config(path)  # what init writes must start as it is
    except ConfigError as exc:
        raise CliError(f"the new config does not load: {exc}") from None


def _print_summary(layout: Layout, hostname: str, domain: str | None, bind: str, offset: int, user: str) -> None:
    config = layout.config_file
    prefix = f"hatoba -c {config}"
    host = f"[{bind}]" if ":" in bind else bind
    ports = ", ".join(f"{name} {host}:{STANDARD_PORTS[name] + offset}" for name in SERVING)
    later = [name for name in STANDARD_PORTS if name not in SERVING]
    print(f"created {config}")
    print(f"  {layout.tls_dir}: private CA (ca.crt, ca.key), certificate and key for {hostname} (server.crt, server.key)")
    print(f"  {layout.data_dir}: directory database, mail store, queue")
    if layout.unit is not None:
        print(f"  {layout.unit}: the systemd unit")
    if domain:
        print(f"  local domain {domain}")
    if user:
        print(f"started as root, serve runs as user {user}")
    print(f"listeners: {ports}" + (f" ({', '.join(later)}: off)" if later else ""))
    print("next steps:")
    if not domain:
        print(f"  {prefix} domain add example.org")
    user_domain = domain or "example.org"
    print(f"  {prefix} user add you@{user_domain}")
    if layout.unit is None:
        print(f"  {prefix} serve")
    else:
        print("  systemctl daemon-reload && systemctl enable --now hatoba")
        print("  journalctl -u hatoba")
    print(f"mail programs verify the server with {layout.tls_dir / 'ca.crt'} (or install a public certificate)")
