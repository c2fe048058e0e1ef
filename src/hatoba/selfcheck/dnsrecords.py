"""The DNS records each hosted domain should publish, ready to paste into a zone.

MX (RFC 5321 §5.1) at server.hostname; SPF (RFC 7208) "v=spf1 mx -all":
only the MX hosts send for the domain; DKIM (RFC 6376) from the key in use
(hatoba dkim keygen); DMARC (RFC 7489) quarantining what fails both;
MTA-STS (RFC 8461) with the policy file it points to (web/mta_sts.py);
TLS-RPT (RFC 8460); the SRV records of RFC 6186/8314 that let mail programs
find the enabled ports;
and one TLSA record (RFC 7672, DANE) for the server: "3 1 1" pins the
SHA-256 of the leaf's public key, so renewals that keep the key keep it valid.
"""

from __future__ import annotations

import hashlib

from cryptography import x509

from hatoba.config.schema import Config
from hatoba.dkim.keys import DkimKey
from hatoba.i18n import T
from hatoba.pki.keyfiles import public_der
from hatoba.selfcheck.findings import DnsRecord, Finding
from hatoba.web.mta_sts import policy_id, policy_text

# RFC 6186 §3 and RFC 8314 §5.1: (service, listener, priority); implicit TLS is
# preferred (a lower priority), IMAP over POP3 (RFC 6186 §3.4).
SRV_SERVICES = (
    ("submissions", "smtps", 0), ("submission", "submission", 10),
    ("imaps", "imaps", 0), ("imap", "imap", 10), ("pop3s", "pop3s", 20), ("pop3", "pop3", 30),
)


def srv_records(config: Config, domain: str) -> list[DnsRecord]:
    """Where mail programs find each service; "0 0 0 ." says it is not offered (RFC 6186 §3.4)."""
    host = config.server.hostname
    records = []
    for service, name, priority in SRV_SERVICES:
        listener = config.listeners.get(name)
        if listener is not None and listener.enabled:
            value = f"{priority} 1 {listener.port} {host}."
            note = T("Mail programs find %(name)s here (RFC 6186).", name=name)
        else:
            value, note = "0 0 0 .", T("%(name)s is off: mail programs should not look for it.", name=name)
        records.append(DnsRecord(domain, "SRV", f"_{service}._tcp.{domain}", "SRV", value, note))
    return records


def tlsa_value(leaf: x509.Certificate) -> str:
    """DANE-EE(3) SPKI(1) SHA-256(1) of the server certificate (RFC 7671 §5.1)."""
    return "3 1 1 " + hashlib.sha256(public_der(leaf.public_key())).hexdigest()


def is_public_name(hostname: str) -> bool:
    """False for names that no public DNS can answer: one label, or localhost (RFC 6761 §6.3)."""
    name = hostname.rstrip(".").lower()
    return "." in name and name != "localhost" and not name.endswith(".localhost")


def _not_public(host: str) -> Finding:
    return Finding(
        "dns", "dns.hostname", "warning", T("server.hostname %(host)s is not a public DNS name", host=host),
        T("%(host)s is not a fully qualified name in public DNS, so no MX record can point at it and no other "
          "server can deliver mail here; no DNS records are proposed for it.", host=host),
        T("For mail from the Internet, set server.hostname to this server's public name (e.g. mail.example.org) "
          "with an A/AAAA record, and get a certificate for it."),
    )


def expected_records(
    config: Config,
    domains: list[str],
    dkim_keys: list[DkimKey],
    leaf: x509.Certificate | None,
) -> tuple[list[DnsRecord], list[Finding]]:
    host = config.server.hostname
    by_domain = {key.domain: key for key in dkim_keys}
    records: list[DnsRecord] = []
    findings: list[Finding] = []
    if not domains:
        findings.append(Finding(
            "dns", "dns.no-domain", "warning", T("No hosted domain"),
            T("The directory holds no domain, so this server accepts mail for no one."),
            T("Add one with: hatoba domain add DOMAIN"),
        ))
    if not is_public_name(host):
        # Records naming such a host would send the Internet's mail nowhere.
        return [], [*findings, _not_public(host)]
    policy = policy_text(config)
    https = config.listeners.get("https")
    served = https is not None and https.enabled
    for domain in domains:
        records += [
            DnsRecord(domain, "MX", domain, "MX", f"10 {host}.", T("Mail for the domain goes to this server.")),
            DnsRecord(domain, "SPF", domain, "TXT", "v=spf1 mx -all",
                      T("Only the domain's MX hosts send its mail; merge with an existing SPF record, "
                        "never publish two.")),
        ]
        key = by_domain.get(domain)
        if key is not None:
            records.append(DnsRecord(domain, "DKIM", key.dns_name(), "TXT", key.txt_value(),
                                     T("Public half of %(path)s; receivers check signatures with it.",
                                       path=str(key.path))))
        else:
            findings.append(Finding(
                "dns", f"dns.{domain}.dkim-key", "warning", T("%(domain)s: no DKIM key", domain=domain),
                T("Mail from %(domain)s leaves unsigned, so receivers cannot tell it from forgeries "
                  "and DMARC relies on SPF alone.", domain=domain),
                T("Run: hatoba dkim keygen %(domain)s, then publish the record it prints.", domain=domain),
            ))
        records += [
            DnsRecord(domain, "DMARC", f"_dmarc.{domain}", "TXT",
                      f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}",
                      T("Mail failing both SPF and DKIM goes to spam; daily reports go to postmaster.")),
            DnsRecord(domain, "MTA-STS", f"_mta-sts.{domain}", "TXT", f"v=STSv1; id={policy_id(policy)}",
                      _mta_sts_note(domain, policy, served)),
            DnsRecord(domain, "TLS-RPT", f"_smtp._tls.{domain}", "TXT",
                      f"v=TLSRPTv1; rua=mailto:postmaster@{domain}",
                      T("Senders report TLS failures delivering to this server.")),
            *srv_records(config, domain),
        ]
    if leaf is not None:
        records.append(DnsRecord(
            host, "TLSA", f"_25._tcp.{host}", "TLSA", tlsa_value(leaf),
            T("DANE: counts only in a DNSSEC-signed zone; publish a new one before changing the server key."),
        ))
    return records, findings


def _mta_sts_note(domain: str, policy: str, served: bool) -> str:
    """Where the policy is served (or should be), and the policy itself on one line."""
    lines = "; ".join(policy.split("\r\n")[:-1])
    if served:
        return T("hatoba serves the policy at https://mta-sts.%(domain)s/.well-known/mta-sts.txt; point "
                 "mta-sts.%(domain)s at this server and give it a publicly trusted certificate: %(policy)s",
                 domain=domain, policy=lines)
    return T("Serve the policy at https://mta-sts.%(domain)s/.well-known/mta-sts.txt (turn on "
             "[listeners.https] and hatoba serves it): %(policy)s", domain=domain, policy=lines)
