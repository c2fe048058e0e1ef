"""Who may relay (send to other domains through us), read from the config.

The relay decision itself lives in policy/relay.py: authenticated clients
and clients in smtp.trusted_networks relay; POP-before-SMTP adds clients
whose address logged in to POP3/IMAP recently (port 25 only). This module
says who that is in words and flags the setups that make an open relay.
"""

from __future__ import annotations

import ipaddress

from hatoba.config.schema import Config
from hatoba.config.validate import is_open_relay_network
from hatoba.selfcheck.findings import Finding

# A POP-before-SMTP window longer than this keeps relaying open for whoever
# inherits the address (DHCP, NAT, hotel Wi-Fi) well after the user left.
MAX_POP_BEFORE_SMTP_MINUTES = 30


def relay_findings(config: Config) -> list[Finding]:
    findings = [_who_may_relay(config)]
    for cidr in config.smtp.trusted_networks:
        try:
            network = ipaddress.ip_network(cidr, strict=False)
            open_relay = is_open_relay_network(cidr)
        except ValueError:
            continue  # reported as a config problem
        if open_relay:
            findings.append(Finding(
                "relay", "relay.open-network", "critical",
                f"Open relay: smtp.trusted_networks holds {cidr}",
                f"Every client in {cidr} may send mail anywhere without logging in, so spammers can use this "
                "server (hatoba serve refuses to start with it).",
                f"Remove {cidr} from smtp.trusted_networks; list only your own networks, e.g. 192.168.1.0/24, "
                "and have users log in on 587.",
            ))
        elif network.is_global:
            findings.append(Finding(
                "relay", "relay.public-network", "warning",
                f"Public network {cidr} may relay without login",
                f"Whoever has an address in {cidr} may send mail anywhere through this server without a password.",
                "Keep only networks you control in smtp.trusted_networks, or have those clients log in on 587.",
            ))
    minutes = config.smtp.pop_before_smtp_minutes
    if minutes > 0:
        critical = minutes > MAX_POP_BEFORE_SMTP_MINUTES
        findings.append(Finding(
            "relay", "relay.pop-before-smtp", "critical" if critical else "warning",
            f"POP-before-SMTP is on ({minutes} minutes)",
            f"After any POP3 or IMAP login, every client sharing that address (NAT, Wi-Fi) may relay on port 25 "
            f"for {minutes} minutes" + (", far longer than a mail check needs." if critical else "."),
            "Set smtp.pop_before_smtp_minutes = 0 and have mail programs log in on 587; if old clients need it, "
            f"keep the window at {MAX_POP_BEFORE_SMTP_MINUTES} minutes or less.",
        ))
    return findings


def _who_may_relay(config: Config) -> Finding:
    smtp = config.smtp
    ports = [
        name for name, lc in config.listeners.items()
        if lc.enabled and (name in ("submission", "smtps") or (name == "smtp" and smtp.auth_on_smtp_port))
    ]
    parts = [f"users who log in (AUTH) on {', '.join(ports)}" if ports else "no one by login (no AUTH listener)"]
    parts.append(
        f"clients in {', '.join(smtp.trusted_networks)} without login" if smtp.trusted_networks
        else "no network without login"
    )
    if smtp.pop_before_smtp_minutes > 0:
        parts.append(f"addresses with a POP3/IMAP login in the last {smtp.pop_before_smtp_minutes} minutes")
    return Finding(
        "relay", "relay.who", "info", "Who may send mail to other domains",
        "Relaying is allowed for " + "; ".join(parts) + "; everyone else may only send to local users.",
    )
