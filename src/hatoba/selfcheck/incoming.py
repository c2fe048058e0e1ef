"""Which defences judge mail from other servers ([checks]), in plain words."""

from __future__ import annotations

from hatoba.config.schema import Config
from hatoba.selfcheck.findings import NOTHING_TO_DO, Finding

SECTION = "incoming"


def incoming_findings(config: Config) -> list[Finding]:
    checks = config.checks
    if not config.listeners.get("smtp") or not config.listeners["smtp"].enabled:
        return [Finding(SECTION, "checks.no-smtp", "info", "No mail from other servers (port 25 is off)",
                        "The smtp listener is disabled, so there is no incoming mail to judge.")]
    if not checks.enabled:
        return [Finding(
            SECTION, "checks.off", "warning", "Mail from other servers is not checked",
            "[checks] enabled = false: SPF, DKIM and DMARC are not looked at, so anyone can send"
            " \"From: your bank\" or \"From: a colleague\" and it reaches the inbox.",
            "Set [checks] enabled = true (the default).",
        )]
    dmarc = ("refused (550 5.7.1)" if checks.dmarc_reject else "delivered to Junk")
    forgery = {"junk": "go to Junk", "reject": "are refused", "accept": "are delivered as usual"}[checks.local_forgery]
    found = [Finding(
        SECTION, "checks.on", "ok", "SPF, DKIM, DMARC and ARC are checked on port 25",
        f"Each message from another server gets an Authentication-Results field (authserv-id"
        f" {config.server.hostname}); mail failing a DMARC p=reject is {dmarc}, p=quarantine goes to"
        f" Junk, and messages scoring {checks.junk_score:g} or more go to Junk.",
    )]
    if checks.local_forgery == "accept":
        found.append(Finding(
            SECTION, "checks.local-forgery", "warning", "Forged senders of your own domains are delivered",
            "[checks] local_forgery = \"accept\": mail from outside that claims a From of your own domains"
            " without passing DMARC lands in the inbox.",
            "Set [checks] local_forgery = \"junk\" (the default) or \"reject\".",
        ))
    else:
        found.append(Finding(
            SECTION, "checks.local-forgery", "ok", f"Forged senders of your own domains {forgery}",
            "Mail from outside claiming a From of your own domains without passing DMARC"
            f" {forgery}; your users send through port 587 or 465 with a login, which is not judged.",
        ))
    if config.smtp.trusted_networks:
        found.append(Finding(
            SECTION, "checks.trusted", "info", "Trusted networks are not checked",
            f"Mail from {', '.join(config.smtp.trusted_networks)} (smtp.trusted_networks) is relayed and"
            " not judged, as mail from a logged-in user.",
            "Keep smtp.trusted_networks to machines you run.",
        ))
    if checks.rspamd_url:
        learns = " and learns from what users move into and out of Junk" if checks.rspamd_controller_url else ""
        found.append(Finding(
            SECTION, "checks.rspamd", "ok", "rspamd gives the spam verdict",
            f"Each judged message is handed to rspamd at {checks.rspamd_url}, whose score decides Junk{learns};"
            " while rspamd is down, hatoba's own checks judge and the log says so.",
        ))
    else:
        found.append(Finding(
            SECTION, "checks.rspamd", "info", "Spam is scored by hatoba's own checks",
            "Without rspamd the score is the authentication results plus any blocklists; content is not looked at.",
            "For content filtering and Bayes learning, run rspamd and set [checks] rspamd_url.",
        ))
    if checks.dnsbl:
        found.append(Finding(
            SECTION, "checks.dnsbl", "ok", "DNS blocklists are asked about every client",
            f"{', '.join(checks.dnsbl)}; a client reaching {checks.dnsbl_threshold:g} is refused at RCPT.",
        ))
    else:
        found.append(Finding(
            SECTION, "checks.dnsbl", "info", "No DNS blocklist is asked",
            "Clients on public blocklists are not refused.",
            "Add sites to [checks] dnsbl (e.g. \"zen.spamhaus.org*3\"), through a resolver of your own: public"
            " resolvers are refused by most lists.",
        ))
    found.append(Finding(
        SECTION, "checks.greylisting", "ok" if checks.greylisting else "info",
        "Greylisting is on" if checks.greylisting else "Greylisting is off",
        f"New senders wait {checks.greylist_delay:g} s unless SPF or DKIM authenticates them."
        if checks.greylisting else "Mail from new senders is taken at once.",
        NOTHING_TO_DO if checks.greylisting else "Set [checks] greylisting = true to make unknown senders retry"
        " (delays their first message by minutes).",
    ))
    if checks.greet_pause:
        found.append(Finding(SECTION, "checks.early-talkers", "ok", "Early talkers are refused",
                             f"Port 25 waits {checks.greet_pause:g} s before its greeting and refuses a client"
                             " that talks first."))
    if checks.dmarc_reports:
        found.append(Finding(SECTION, "checks.dmarc-reports", "ok", "DMARC aggregate reports are sent",
                             "Once a day, to the domains whose DMARC policy asks for them (rua=)."))
    limits = config.limits
    rates = [f"{limits.client_connection_rate} connections" if limits.client_connection_rate else "",
             f"{limits.client_message_rate} messages" if limits.client_message_rate else ""]
    rates = [r for r in rates if r]
    found.append(Finding(
        SECTION, "checks.rates", "ok" if rates else "info",
        f"At most {' and '.join(rates)} a minute from one address" if rates else "No per-address rate limit",
        "Counted by every worker together; over the limit a client is told to try again later."
        if rates else "One address may open connections and send messages as fast as the other limits allow.",
        NOTHING_TO_DO if rates else "Set limits.client_connection_rate and client_message_rate to cap them.",
    ))
    if checks.trusted_arc_sealers:
        found.append(Finding(
            SECTION, "checks.arc", "info", "ARC sealers trusted to vouch for forwarded mail",
            f"A valid ARC chain sealed by {', '.join(checks.trusted_arc_sealers)} overrides a DMARC failure.",
        ))
    return found
