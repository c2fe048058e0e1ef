"""The report as text for people (grouped by section, worst first) or as JSON for scripts.

JSON: {"findings": [...], "dns_records": [...], "summary": {...}}; each
finding has section, check, severity, title, explanation, fix.
"""

from __future__ import annotations

import json
import textwrap

from hatoba.selfcheck.findings import NOTHING_TO_DO, SECTIONS, SEVERITIES, Report

LABELS = {"critical": "CRITICAL", "warning": "WARNING", "info": "info", "ok": "ok"}
WIDTH = 100
INDENT = " " * 13


def render_json(report: Report, **about: str) -> str:
    return json.dumps({**about, **report.to_json()}, indent=2, ensure_ascii=False)


def render_text(report: Report, *, config_path: str, hostname: str) -> str:
    out = [f"hatoba check: {config_path} (server {hostname})"]
    for section, heading in SECTIONS.items():
        findings = [f for f in report.findings if f.section == section]
        findings.sort(key=lambda f: SEVERITIES.index(f.severity))  # stable: config order within a severity
        if not findings:
            continue
        out += ["", f"== {heading} =="]
        for f in findings:
            out.append(f"  [{LABELS[f.severity]}]".ljust(13) + f.title)
            if f.severity == "ok":
                continue  # the title says it; details are in --json
            out += textwrap.wrap(f.explanation, WIDTH, initial_indent=INDENT, subsequent_indent=INDENT)
            if f.fix != NOTHING_TO_DO:
                out += textwrap.wrap(f"Fix: {f.fix}", WIDTH, initial_indent=INDENT, subsequent_indent=INDENT + "  ")
    if report.dns_records:
        out += ["", "== DNS records to publish =="]
        domain = None
        for record in report.dns_records:
            if record.domain != domain:
                domain = record.domain
                out += ["", f"; {domain}"]
            status = "" if record.status == "not checked" else f"   ; {record.status}"
            out.append(record.zone_line() + status)
            if record.note:
                out += textwrap.wrap(record.note, WIDTH, initial_indent=";   ", subsequent_indent=";   ")
    summary = report.summary()
    counts = ", ".join(f"{summary[s]} {s}" for s in SEVERITIES)
    verdict = "critical problems found" if report.has_critical else "no critical problem"
    out += ["", f"Summary: {counts}: {verdict}."]
    return "\n".join(out) + "\n"
