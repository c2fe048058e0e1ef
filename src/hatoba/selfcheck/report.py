"""The report as text for people (grouped by section, worst first) or as JSON for scripts.

JSON: {"findings": [...], "dns_records": [...], "summary": {...}}; each
finding has section, check, severity, title, explanation, fix.
"""

from __future__ import annotations

import json
import textwrap

from hatoba.i18n import T, say
from hatoba.selfcheck.findings import NOTHING_TO_DO, SECTIONS, SEVERITIES, Report

LABELS = {"critical": "CRITICAL", "warning": "WARNING", "info": "info", "ok": "ok"}
WIDTH = 100
INDENT = " " * 13


def render_json(report: Report, **about: str) -> str:
    return json.dumps({**about, **report.to_json()}, indent=2, ensure_ascii=False)


def render_text(report: Report, *, config_path: str, hostname: str, language: str = "en") -> str:
    """The report for a terminal, in `language` where the texts have a translation (hatoba/i18n.py)."""

    def s(text: str) -> str:
        return say(text, language)

    out = [s(T("hatoba check: %(path)s (server %(host)s)", path=config_path, host=hostname))]
    for section, heading in SECTIONS.items():
        findings = [f for f in report.findings if f.section == section]
        findings.sort(key=lambda f: SEVERITIES.index(f.severity))  # stable: config order within a severity
        if not findings:
            continue
        out += ["", f"== {s(heading)} =="]
        for f in findings:
            out.append(f"  [{LABELS[f.severity]}]".ljust(13) + s(f.title))
            if f.severity == "ok":
                continue  # the title says it; details are in --json
            out += textwrap.wrap(s(f.explanation), WIDTH, initial_indent=INDENT, subsequent_indent=INDENT)
            if f.fix != NOTHING_TO_DO:
                out += textwrap.wrap(s(T("Fix: %(fix)s", fix=f.fix)), WIDTH, initial_indent=INDENT,
                                     subsequent_indent=INDENT + "  ")
    if report.dns_records:
        out += ["", f"== {s(T('DNS records to publish'))} =="]
        domain = None
        for record in report.dns_records:
            if record.domain != domain:
                domain = record.domain
                out += ["", f"; {domain}"]
            status = "" if record.status == "not checked" else f"   ; {record.status}"
            out.append(record.zone_line() + status)
            if record.note:
                out += textwrap.wrap(s(record.note), WIDTH, initial_indent=";   ", subsequent_indent=";   ")
    summary = report.summary()
    words = {"critical": T("critical"), "warning": T("warning"), "info": T("info"), "ok": T("ok")}
    counts = ", ".join(f"{summary[severity]} {s(words[severity])}" for severity in SEVERITIES)
    verdict = T("critical problems found") if report.has_critical else T("no critical problem")
    out += ["", s(T("Summary: %(counts)s: %(verdict)s.", counts=counts, verdict=verdict))]
    return "\n".join(out) + "\n"
