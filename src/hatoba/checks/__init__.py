"""Judging incoming mail: SPF, DKIM, DMARC and ARC, Authentication-Results, the spam verdict.

Must not import hatoba.net or hatoba.queue: the SMTP session hands the checks
the message bytes and what it knows, and gets a verdict back (judge.Verdict).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from hatoba.checks.runner import CheckRunner
    from hatoba.config.schema import Config


def build_runner(config: Config, is_local_domain: Callable[[str], bool]) -> CheckRunner | None:
    """The judge of mail from other servers, or None when [checks] enabled is false.

    The libraries (pyspf, dkimpy, the Public Suffix List) are imported only here."""
    if not config.checks.enabled:
        return None
    from hatoba.checks.judge import Judge
    from hatoba.checks.lookup import Lookup
    from hatoba.checks.runner import CheckRunner

    from hatoba.checks.rspamd import Rspamd

    from hatoba.checks.dmarc import organizational_domain

    organizational_domain("example.org")  # reads the Public Suffix List now, not during the first message
    checks = config.checks
    lookup = Lookup(config.dns.resolver, timeout=min(5.0, checks.timeout))
    rspamd = Rspamd(checks.rspamd_url, controller_url=checks.rspamd_controller_url,
                    password=checks.rspamd_password, timeout=checks.timeout) if checks.rspamd_url else None
    greylisting = None
    if checks.greylisting:
        from hatoba.checks.greylisting import Greylisting
        from hatoba.store.greylist import GreylistStore

        greylisting = Greylisting(
            GreylistStore(config.paths.directory_db), delay=checks.greylist_delay,
            window=checks.greylist_window_hours * 3600, keep=checks.greylist_keep_days * 86400,
            auto_allow=checks.greylist_auto_allow,
        )
    reports = None
    if checks.dmarc_reports:
        from hatoba.checks.dmarc_reports import ReportStore

        reports = ReportStore(config.paths.directory_db)
    judge = Judge(checks, hostname=config.server.hostname, is_local_domain=is_local_domain, lookup=lookup,
                  rspamd=rspamd, greylisting=greylisting, reports=reports)
    return CheckRunner(judge)
