"""Which defences judge mail from other servers ([checks]), in plain words."""

from __future__ import annotations

from hatoba.config.schema import Config
from hatoba.i18n import T
from hatoba.selfcheck.findings import Finding

SECTION = "incoming"


def incoming_findings(config: Config) -> list[Finding]:
    checks = config.checks
    if not config.listeners.get("smtp") or not config.listeners["smtp"].enabled:
        return [Finding(SECTION, "checks.no-smtp", "info", T("No mail from other servers (port 25 is off)"),
                        T("The smtp listener is disabled, so there is no incoming mail to judge."))]
    if not checks.enabled:
        return [Finding(
            SECTION, "checks.off", "warning", T("Mail from other servers is not checked"),
            T("[checks] enabled = false: SPF, DKIM and DMARC are not looked at, so anyone can send"
              " \"From: your bank\" or \"From: a colleague\" and it reaches the inbox."),
            T("Set [checks] enabled = true (the default)."),
        )]
    host, score = config.server.hostname, f"{checks.junk_score:g}"
    if checks.dmarc_reject:
        judged = T("Each message from another server gets an Authentication-Results field (authserv-id"
                   " %(host)s); mail failing a DMARC p=reject is refused (550 5.7.1), p=quarantine goes to"
                   " Junk, and messages scoring %(score)s or more go to Junk.", host=host, score=score)
    else:
        judged = T("Each message from another server gets an Authentication-Results field (authserv-id"
                   " %(host)s); mail failing a DMARC p=reject is delivered to Junk, p=quarantine goes to"
                   " Junk, and messages scoring %(score)s or more go to Junk.", host=host, score=score)
    found = [Finding(SECTION, "checks.on", "ok", T("SPF, DKIM, DMARC and ARC are checked on port 25"), judged)]
    if checks.local_forgery == "accept":
        found.append(Finding(
            SECTION, "checks.local-forgery", "warning", T("Forged senders of your own domains are delivered"),
            T("[checks] local_forgery = \"accept\": mail from outside that claims a From of your own domains"
              " without passing DMARC lands in the inbox."),
            T("Set [checks] local_forgery = \"junk\" (the default) or \"reject\"."),
        ))
    elif checks.local_forgery == "reject":
        found.append(Finding(
            SECTION, "checks.local-forgery", "ok", T("Forged senders of your own domains are refused"),
            T("Mail from outside claiming a From of your own domains without passing DMARC"
              " are refused; your users send through port 587 or 465 with a login, which is not judged."),
        ))
    else:  # "junk", the default (the loader accepts no other value)
        found.append(Finding(
            SECTION, "checks.local-forgery", "ok", T("Forged senders of your own domains go to Junk"),
            T("Mail from outside claiming a From of your own domains without passing DMARC"
              " go to Junk; your users send through port 587 or 465 with a login, which is not judged."),
        ))
    if config.smtp.trusted_networks:
        found.append(Finding(
            SECTION, "checks.trusted", "info", T("Trusted networks are not checked"),
            T("Mail from %(networks)s (smtp.trusted_networks) is relayed and"
              " not judged, as mail from a logged-in user.", networks=", ".join(config.smtp.trusted_networks)),
            T("Keep smtp.trusted_networks to machines you run."),
        ))
    if checks.rspamd_url:
        if checks.rspamd_controller_url:
            handed = T("Each judged message is handed to rspamd at %(url)s, whose score decides Junk"
                       " and learns from what users move into and out of Junk;"
                       " while rspamd is down, hatoba's own checks judge and the log says so.", url=checks.rspamd_url)
        else:
            handed = T("Each judged message is handed to rspamd at %(url)s, whose score decides Junk;"
                       " while rspamd is down, hatoba's own checks judge and the log says so.", url=checks.rspamd_url)
        found.append(Finding(SECTION, "checks.rspamd", "ok", T("rspamd gives the spam verdict"), handed))
    else:
        found.append(Finding(
            SECTION, "checks.rspamd", "info", T("Spam is scored by hatoba's own checks"),
            T("Without rspamd the score is the authentication results plus any blocklists; content is not looked at."),
            T("For content filtering and Bayes learning, run rspamd and set [checks] rspamd_url."),
        ))
    if checks.dnsbl:
        found.append(Finding(
            SECTION, "checks.dnsbl", "ok", T("DNS blocklists are asked about every client"),
            T("%(lists)s; a client reaching %(threshold)s is refused at RCPT.",
              lists=", ".join(checks.dnsbl), threshold=f"{checks.dnsbl_threshold:g}"),
        ))
    else:
        found.append(Finding(
            SECTION, "checks.dnsbl", "info", T("No DNS blocklist is asked"),
            T("Clients on public blocklists are not refused."),
            T("Add sites to [checks] dnsbl (e.g. \"zen.spamhaus.org*3\"), through a resolver of your own: public"
              " resolvers are refused by most lists."),
        ))
    if checks.greylisting:
        found.append(Finding(
            SECTION, "checks.greylisting", "ok", T("Greylisting is on"),
            T("New senders wait %(delay)s s unless SPF or DKIM authenticates them.",
              delay=f"{checks.greylist_delay:g}"),
        ))
    else:
        found.append(Finding(
            SECTION, "checks.greylisting", "info", T("Greylisting is off"),
            T("Mail from new senders is taken at once."),
            T("Set [checks] greylisting = true to make unknown senders retry (delays their first message by minutes)."),
        ))
    if checks.greet_pause:
        found.append(Finding(SECTION, "checks.early-talkers", "ok", T("Early talkers are refused"),
                             T("Port 25 waits %(pause)s s before its greeting and refuses a client"
                               " that talks first.", pause=f"{checks.greet_pause:g}")))
    if checks.dmarc_reports:
        found.append(Finding(SECTION, "checks.dmarc-reports", "ok", T("DMARC aggregate reports are sent"),
                             T("Once a day, to the domains whose DMARC policy asks for them (rua=).")))
    found.append(_rates(config))
    if checks.trusted_arc_sealers:
        found.append(Finding(
            SECTION, "checks.arc", "info", T("ARC sealers trusted to vouch for forwarded mail"),
            T("A valid ARC chain sealed by %(sealers)s overrides a DMARC failure.",
              sealers=", ".join(checks.trusted_arc_sealers)),
        ))
    return found


def _rates(config: Config) -> Finding:
    connections, messages = config.limits.client_connection_rate, config.limits.client_message_rate
    if not connections and not messages:
        return Finding(
            SECTION, "checks.rates", "info", T("No per-address rate limit"),
            T("One address may open connections and send messages as fast as the other limits allow."),
            T("Set limits.client_connection_rate and client_message_rate to cap them."),
        )
    if connections and messages:
        title = T("At most %(connections)s connections and %(messages)s messages a minute from one address",
                  connections=connections, messages=messages)
    elif connections:
        title = T("At most %(connections)s connections a minute from one address", connections=connections)
    else:
        title = T("At most %(messages)s messages a minute from one address", messages=messages)
    return Finding(SECTION, "checks.rates", "ok", title,
                   T("Counted by every worker together; over the limit a client is told to try again later."))
