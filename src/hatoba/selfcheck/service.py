"""Who the server runs as: `[server] user`, `group` and `allow_root`.

Started as root (as systemd and init scripts start it), `hatoba serve`
becomes the service user after binding its ports; a server that keeps root
turns any flaw in it into the whole machine's. The rules are those of
system/privileges.py, which serve applies; this module words them.
"""

from __future__ import annotations

import os

from hatoba.config.schema import Config
from hatoba.selfcheck.findings import Finding
from hatoba.system.accounts import useradd_line
from hatoba.system.privileges import MissingAccount, service_user

CHECK = "service.user"
SET_USER = f'Set [server] user = "hatoba" (create it with: {useradd_line("hatoba")}) and remove allow_root.'


def service_findings(config: Config, euid: int | None = None) -> list[Finding]:
    """`euid`: who runs the check (default: this process); root sees what serve would do now."""
    server = config.server
    as_root = (os.geteuid() if euid is None else euid) == 0
    try:
        user = service_user(server)
    except MissingAccount as exc:
        return [Finding(
            "service", CHECK, "critical" if as_root else "warning", f"Service {exc.kind} {exc.name} does not exist",
            "Started as root, hatoba serve refuses to start: it has no unprivileged account to become.",
            f"{exc.fix[:1].upper()}{exc.fix[1:]}.",
        )]
    if user is not None and user.uid != 0:
        if user.gid == 0:
            return [Finding("service", CHECK, "critical", f"Service group of {user.name} is root",
                            "Started as root, hatoba serve refuses to run with group root's access.",
                            "Set [server] group to the user's own group.")]
        return [Finding("service", CHECK, "ok", f"Runs as user {user} when started as root",
                        f"After binding its ports hatoba drops root for user {user.name} (uid {user.uid}).")]
    setting = f'[server] user = "{server.user}"'
    if server.allow_root:
        return [Finding("service", CHECK, "critical", "hatoba runs as root when started as root",
                        f"{setting} with allow_root = true keeps every hatoba process root: a flaw in it "
                        "gives away the whole machine.", SET_USER)]
    if as_root:
        return [Finding("service", CHECK, "critical", "Started as root, hatoba refuses to start",
                        f"{setting} would keep it running as root, which it refuses without allow_root.", SET_USER)]
    return [Finding("service", CHECK, "info", "Runs as the user who starts it",
                    f"{setting}: started by another user it runs as that user; started as root it refuses to start.",
                    'Set [server] user = "hatoba" to start it as root (as systemd does).')]
