"""What `hatoba init` does for a service: where the setup goes (a folder, or
/etc/hatoba and /var/lib/hatoba with `--system`), the service user (created
when run as root) and what it owns, and the systemd unit.

Rules:
- The service user owns the data folder and tls/ with the server's key; the
  config stays root's, readable by the user's group (it may hold a relayhost
  password), and so does the CA key: the server never needs it, and whoever
  holds it can make certificates that clients trusting ca.crt accept.
- `--root DIR` lays the system setup out under DIR; users are still the
  machine's (useradd has no other place to put them).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from hatoba.cli.common import CliError
from hatoba.i18n import refusal
from hatoba.config.schema import ServerConfig
from hatoba.system.privileges import ServiceUser as Owner

CONFIG_NAME = "hatoba.toml"
SERVICE_USER = "hatoba"
CA_KEY = "ca.key"


@dataclass(frozen=True)
class Layout:
    config_dir: Path  # hatoba.toml and tls/
    data_dir: Path
    data_setting: str  # what [paths] data_dir says
    unit: Path | None = None  # where the systemd unit goes (--system)

    @property
    def config_file(self) -> Path:
        return self.config_dir / CONFIG_NAME

    @property
    def tls_dir(self) -> Path:
        return self.config_dir / "tls"


def choose_layout(args: argparse.Namespace) -> Layout:
    from hatoba.system.unit import UNIT_NAME

    if args.system:
        if args.dir:
            raise CliError("give DIR or --system, not both (--system puts the setup in /etc/hatoba and /var/lib/hatoba)")
        if not args.root and os.geteuid() != 0:
            raise CliError("hatoba init --system needs root: it creates user hatoba and writes /etc/hatoba, "
                           "/var/lib/hatoba and the systemd unit; run it as root (sudo)")
        root = Path(args.root or "/").absolute()
        data = root / "var" / "lib" / "hatoba"
        return Layout(root / "etc" / "hatoba", data, str(data), root / "etc" / "systemd" / "system" / UNIT_NAME)
    if args.root:
        raise CliError("--root goes with --system; for a setup in a folder, give DIR")
    if not args.dir:
        raise CliError("give a folder for the setup (hatoba init DIR --hostname HOST), or --system")
    root = Path(args.dir).absolute()
    return Layout(root, root / "data", "data")


def owner_for(args: argparse.Namespace, layout: Layout) -> tuple[str, Owner | None]:
    """[server] user to write, and the user to give the files to (root only; created if missing)."""
    from hatoba.system.accounts import AccountError, ensure_user
    from hatoba.system.privileges import PrivilegeError, service_user

    root = os.geteuid() == 0
    if args.user is not None:
        name = args.user.strip()
    else:
        name = SERVICE_USER if root or args.system else ""
    if name == "root":
        raise CliError("--user root would keep hatoba running as root; give an unprivileged user (default hatoba)")
    if not name or not root:
        return name, None
    home = str(layout.data_dir) if layout.unit is not None and not args.root else "/nonexistent"
    try:
        if ensure_user(name, home):
            print(f"created system user {name}")
        owner = service_user(ServerConfig(hostname="-", user=name))
    except (AccountError, PrivilegeError) as exc:
        raise CliError(refusal(exc)) from None
    assert owner is not None
    if owner.uid == 0:
        raise CliError(f"--user {name} has uid 0 and would keep hatoba running as root; give an unprivileged user")
    return name, owner


def give_to_owner(layout: Layout, owner: Owner) -> None:
    """The data folder and tls/ (but the CA key) to the service user."""
    from hatoba.system.ownership import give_to

    try:
        give_to(layout.data_dir, owner.uid, owner.gid)
        os.chown(layout.tls_dir, owner.uid, owner.gid)
        for path in layout.tls_dir.iterdir():
            if path.name != CA_KEY:
                os.chown(path, owner.uid, owner.gid, follow_symlinks=False)
    except OSError as exc:
        raise CliError(f"cannot give {exc.filename} to user {owner.name}: {exc.strerror or exc}") from None


def install_unit(layout: Layout, made) -> None:  # type: ignore[no-untyped-def]
    """The systemd unit for this installation; an existing one is kept (init never overwrites)."""
    from hatoba.fsutil import write_new_file
    from hatoba.system.unit import hatoba_command, render_unit

    assert layout.unit is not None
    text = render_unit(hatoba_command(), layout.config_file, layout.data_dir)
    try:
        made.tree(layout.unit.parent, 0o755)
        write_new_file(layout.unit, text.encode(), 0o644)
    except FileExistsError:
        print(f"kept {layout.unit} as it is (remove it and run init again for this version's unit)")
        return
    except OSError as exc:
        raise CliError(f"cannot write {exc.filename or layout.unit}: {exc.strerror or exc}") from None
    made.file(layout.unit)


def reach_note(layout: Layout, owner: Owner) -> str | None:
    """What the service user could not reach of the new setup (serve would refuse), or None."""
    from hatoba.system.reach import program_needs, unreachable

    needs = [(layout.config_file, os.R_OK), (layout.data_dir, os.R_OK | os.W_OK | os.X_OK),
             (layout.tls_dir / "server.key", os.R_OK)]
    return unreachable(owner, needs + program_needs())
