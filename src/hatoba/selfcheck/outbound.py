"""Outgoing mail: the TLS it demands of other servers and the smarthost password.

Rules:
- delivery/tlspolicy.py decides the TLS of each delivery; this module only
  says when the configured levels cannot work on the Internet or hand the
  smarthost password to whoever answers.
- The password rule is the one delivery/setup.py enforces for
  relayhost_password_file (no group or other bits), applied to every file
  that holds the password, the config file included.
"""

from __future__ import annotations

import stat
from pathlib import Path

from hatoba.config.schema import Config
from hatoba.i18n import T
from hatoba.selfcheck.findings import Finding

UNVERIFIED = ("may", "encrypt")


def outbound_findings(config: Config) -> list[Finding]:
    found = [_default_tls(config), _relayhost_tls(config), *_password_files(config)]
    return [f for f in found if f is not None]


def _default_tls(config: Config) -> Finding | None:
    """delivery.tls above "may" with no smarthost applies to every MX on the Internet."""
    level = config.delivery.tls
    if level not in ("encrypt", "verify") or config.delivery.relayhost:
        return None
    if level == "verify":
        explanation = T("Many public mail servers do not offer STARTTLS or show a certificate that does not verify, "
                        "and a public MX may not require TLS (RFC 3207 §4), so mail to their "
                        "domains would wait in the queue and then bounce.")
    else:
        explanation = T("Many public mail servers do not offer STARTTLS, and a public MX may not require TLS "
                        "(RFC 3207 §4), so mail to their domains would wait in the queue and then bounce.")
    return Finding(
        "delivery", "delivery.tls", "warning",
        T('TLS required towards every destination (delivery.tls = "%(level)s")', level=level),
        explanation,
        T('Set delivery.tls = "may" and require TLS only for the destinations known to support it, '
          'in [delivery.tls_policies] ("example.org" = "verify").'),
    )


def _relayhost_tls(config: Config) -> Finding | None:
    """relayhost_tls "may" or "encrypt" never checks who answers as the smarthost."""
    delivery = config.delivery
    level = delivery.relayhost_tls
    if not delivery.relayhost or level not in UNVERIFIED:
        return None
    fix = T('Set delivery.relayhost_tls = "verify" (or remove the line: "verify" is the default with a login).')
    if delivery.relayhost_username:
        return Finding(
            "delivery", "delivery.relayhost-tls", "critical",
            T('Smarthost password sent without checking the certificate (relayhost_tls = "%(level)s")', level=level),
            T("hatoba logs in to %(host)s without verifying its certificate, so anyone who can "
              "intercept the connection poses as the smarthost and receives the password.", host=delivery.relayhost),
            fix,
        )
    if level == "may":
        explanation = T("All outgoing mail goes to %(host)s, but whoever intercepts the connection can pose as it "
                        "and read or drop that mail, or make it go unencrypted.", host=delivery.relayhost)
    else:
        explanation = T("All outgoing mail goes to %(host)s, but whoever intercepts the connection can pose as it "
                        "and read or drop that mail.", host=delivery.relayhost)
    return Finding(
        "delivery", "delivery.relayhost-tls", "warning",
        T('Smarthost certificate not checked (relayhost_tls = "%(level)s")', level=level),
        explanation, fix,
    )


def _password_files(config: Config) -> list[Finding]:
    delivery = config.delivery
    holders = []
    if delivery.relayhost_password and config.config_path is not None:
        holders.append(("delivery.relayhost_password", config.config_path))
    if delivery.relayhost_password_file:
        base = config.config_path.parent if config.config_path is not None else Path.cwd()
        holders.append(("delivery.relayhost_password_file", base / Path(delivery.relayhost_password_file).expanduser()))
    return [f for key, path in holders if (f := _readable_by_others(key, path)) is not None]


def _readable_by_others(key: str, path: Path) -> Finding | None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None  # a missing password file is a start-up error of its own
    if not mode & 0o077:
        return None
    if key == "delivery.relayhost_password":
        fix = T("chmod 600 %(path)s, or move the password to relayhost_password_file (mode 0600)", path=str(path))
    else:
        fix = T("chmod 600 %(path)s", path=str(path))
    return Finding(
        "delivery", "delivery.relayhost-password", "critical",
        T("Smarthost password in a file others can read (%(path)s, mode %(mode)s)", path=str(path), mode=f"{mode:04o}"),
        T("%(key)s puts the smarthost password in %(path)s, which its group or every user of this machine can read; "
          "with it they can send mail as this server's account at the provider.", key=key, path=str(path)),
        fix,
    )
