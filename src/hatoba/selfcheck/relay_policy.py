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
from hatoba.i18n import T
from hatoba.selfcheck.findings import Finding

# Trusting a network wider than this (a whole site, provider or private
# range) makes every machine in it a relay: on a NAT'ed or shared network one
# compromised PC is enough to send spam through us.
MAX_TRUSTED_IPV4_PREFIX = 16
MAX_TRUSTED_IPV6_PREFIX = 48
# The private and shared ranges (RFC 1918, RFC 6598, RFC 4193) as a whole.
WHOLE_PRIVATE_RANGES = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)

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
                T("Open relay: smtp.trusted_networks holds %(network)s", network=cidr),
                T("Every client in %(network)s may send mail anywhere without logging in, so spammers can use this "
                  "server (hatoba serve refuses to start with it).", network=cidr),
                T("Remove %(network)s from smtp.trusted_networks; list only your own networks, e.g. 192.168.1.0/24, "
                  "and have users log in on 587.", network=cidr),
            ))
        elif network.is_global:
            findings.append(Finding(
                "relay", "relay.public-network", "warning",
                T("Public network %(network)s may relay without login", network=cidr),
                T("Whoever has an address in %(network)s may send mail anywhere through this server "
                  "without a password.", network=cidr),
                T("Keep only networks you control in smtp.trusted_networks, or have those clients log in on 587."),
            ))
        elif is_wide_private_network(network):
            findings.append(_wide_network(cidr))
    minutes = config.smtp.pop_before_smtp_minutes
    if minutes > 0:
        critical = minutes > MAX_POP_BEFORE_SMTP_MINUTES
        if critical:
            explanation = T("After any POP3 or IMAP login, every client sharing that address (NAT, Wi-Fi) may relay "
                            "on port 25 for %(minutes)s minutes, far longer than a mail check needs.", minutes=minutes)
        else:
            explanation = T("After any POP3 or IMAP login, every client sharing that address (NAT, Wi-Fi) may relay "
                            "on port 25 for %(minutes)s minutes.", minutes=minutes)
        findings.append(Finding(
            "relay", "relay.pop-before-smtp", "critical" if critical else "warning",
            T("POP-before-SMTP is on (%(minutes)s minutes)", minutes=minutes),
            explanation,
            T("Set smtp.pop_before_smtp_minutes = 0 and have mail programs log in on 587; if old clients need it, "
              "keep the window at %(limit)s minutes or less.", limit=MAX_POP_BEFORE_SMTP_MINUTES),
        ))
    return findings


def is_wide_private_network(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """True for a non-public network that is a whole private range or wider than a /16 (IPv6: /48).

    Loopback is exempt: only this machine's own programs are in it.
    """
    if network.is_loopback:
        return False
    if any(network.version == r.version and r.subnet_of(network) for r in WHOLE_PRIVATE_RANGES):
        return True
    limit = MAX_TRUSTED_IPV4_PREFIX if network.version == 4 else MAX_TRUSTED_IPV6_PREFIX
    return network.prefixlen < limit


def _wide_network(cidr: str) -> Finding:
    return Finding(
        "relay", "relay.wide-network", "warning",
        T("Whole network %(network)s may relay without login", network=cidr),
        T("Every machine in %(network)s may send mail anywhere through this server without a password; on a NAT'ed "
          "or shared network one compromised PC is enough to send spam in this server's name.", network=cidr),
        T("Replace %(network)s in smtp.trusted_networks with the few hosts or the small subnet that must relay "
          "without login (e.g. 192.168.1.10/32), and have everyone else log in on 587.", network=cidr),
    )


def _who_may_relay(config: Config) -> Finding:
    smtp = config.smtp
    ports = [
        name for name, lc in config.listeners.items()
        if lc.enabled and (name in ("submission", "smtps") or (name == "smtp" and smtp.auth_on_smtp_port))
    ]
    login = (T("users who log in (AUTH) on %(ports)s", ports=", ".join(ports)) if ports
             else T("no one by login (no AUTH listener)"))
    networks = (T("clients in %(networks)s without login", networks=", ".join(smtp.trusted_networks))
                if smtp.trusted_networks else T("no network without login"))
    if smtp.pop_before_smtp_minutes > 0:
        explanation = T("Relaying is allowed for %(login)s; %(networks)s; addresses with a POP3/IMAP login "
                        "in the last %(minutes)s minutes; everyone else may only send to local users.",
                        login=login, networks=networks, minutes=smtp.pop_before_smtp_minutes)
    else:
        explanation = T("Relaying is allowed for %(login)s; %(networks)s; everyone else may only send to local users.",
                        login=login, networks=networks)
    return Finding("relay", "relay.who", "info", T("Who may send mail to other domains"), explanation)
