"""Who the server runs as: `[server] user`, `group` and `allow_root`.

Started as root (as systemd and init scripts start it), `hatoba serve`
becomes the service user after binding its ports; a server that keeps root
turns any flaw in it into the whole machine's. The rules are those of
system/privileges.py, which serve applies; this module words them.
"""

from __future__ import annotations

import os

from hatoba.config.schema import Config
from hatoba.i18n import T
from hatoba.selfcheck.findings import Finding
from hatoba.system.accounts import useradd_line
from hatoba.system.privileges import MissingAccount, service_user

CHECK = "service.user"
SET_USER = T('Set [server] user = "hatoba" (create it with: %(command)s) and remove allow_root.',
            command=useradd_line("hatoba"))


def service_findings(config: Config, euid: int | None = None) -> list[Finding]:
    """`euid`: who runs the check (default: this process); root sees what serve would do now."""
    server = config.server
    as_root = (os.geteuid() if euid is None else euid) == 0
    try:
        user = service_user(server)
    except MissingAccount as exc:
        if exc.kind == "group":
            title = T("Service group %(name)s does not exist", name=exc.name)
        else:
            title = T("Service user %(name)s does not exist", name=exc.name)
        return [Finding(
            "service", CHECK, "critical" if as_root else "warning", title,
            T("Started as root, hatoba serve refuses to start: it has no unprivileged account to become."),
            T("%(detail)s.", detail=f"{exc.fix[:1].upper()}{exc.fix[1:]}"),
        )]
    if user is not None and user.uid != 0:
        if user.gid == 0:
            return [Finding("service", CHECK, "critical", T("Service group of %(user)s is root", user=user.name),
                            T("Started as root, hatoba serve refuses to run with group root's access."),
                            T("Set [server] group to the user's own group."))]
        return [Finding("service", CHECK, "ok", T("Runs as user %(user)s when started as root", user=str(user)),
                        T("After binding its ports hatoba drops root for user %(user)s (uid %(uid)s).",
                          user=user.name, uid=user.uid))]
    setting = f'[server] user = "{server.user}"'
    if server.allow_root:
        return [Finding("service", CHECK, "critical", T("hatoba runs as root when started as root"),
                        T("%(setting)s with allow_root = true keeps every hatoba process root: a flaw in it "
                          "gives away the whole machine.", setting=setting), SET_USER)]
    if as_root:
        return [Finding("service", CHECK, "critical", T("Started as root, hatoba refuses to start"),
                        T("%(setting)s would keep it running as root, which it refuses without allow_root.",
                          setting=setting), SET_USER)]
    return [Finding("service", CHECK, "info", T("Runs as the user who starts it"),
                    T("%(setting)s: started by another user it runs as that user; started as root it refuses to start.",
                      setting=setting),
                    T('Set [server] user = "hatoba" to start it as root (as systemd does).'))]
