"""A live open-relay test against our own port 25, the way outsiders test us.

EHLO, MAIL FROM a foreign sender, then RCPT TO foreign recipients, plain and
wrapped in the classic tricks that once fooled relay checks (percent hack,
bang path, quoted local part, source route), and a second transaction that
pretends to come from one of our own addresses. Nothing is ever sent: no
DATA, then RSET and QUIT, so a server that does relay still delivers nothing.

Judging a 250 for a foreign recipient:
- critical ("open relay") when the probe's own address is not in
  smtp.trusted_networks: the server relays for a stranger.
- warning when the probe's address is trusted (e.g. 127.0.0.1/32 while
  checking from the server itself): relaying is what the config asks for
  that client, so this run cannot tell whether strangers may relay too.
  The relay section already flags trusted networks that are too wide; run
  the check from a machine outside them (--probe HOST:PORT) to be sure.
"""

from __future__ import annotations

import smtplib
import socket
from dataclasses import dataclass

from hatoba.config.schema import Config
from hatoba.config.template import format_address
from hatoba.i18n import T
from hatoba.policy.relay import TrustedNetworks
from hatoba.selfcheck.findings import NOTHING_TO_DO, Finding

FOREIGN_SENDER = "check@example.net"
FOREIGN_DOMAIN = "example.com"  # RFC 2606: reserved, never hosted by anyone real
TIMEOUT = 10.0


@dataclass(frozen=True)
class Attempt:
    label: str
    sender: str
    recipient: str  # written as is after "RCPT TO:<": the tricks need exact bytes
    code: int = 0
    text: str = ""
    stage: str = "RCPT"  # the command that got the reply: RCPT, or MAIL when the sender was refused

    @property
    def relayed(self) -> bool:
        return 200 <= self.code < 300


def attempts(our_domain: str) -> list[Attempt]:
    user = "relay-test"
    foreign = FOREIGN_SENDER
    return [
        Attempt(T("foreign recipient"), foreign, f"{user}@{FOREIGN_DOMAIN}"),
        Attempt(T("percent hack"), foreign, f"{user}%{FOREIGN_DOMAIN}@{our_domain}"),
        Attempt(T("bang path"), foreign, f"{FOREIGN_DOMAIN}!{user}@{our_domain}"),
        Attempt(T("quoted local part"), foreign, f'"{user}@{FOREIGN_DOMAIN}"@{our_domain}'),
        Attempt(T("source route"), foreign, f"@{our_domain}:{user}@{FOREIGN_DOMAIN}"),
        Attempt(T("sender from our domain"), f"postmaster@{our_domain}", f"{user}@{FOREIGN_DOMAIN}"),
    ]


def probe_target(config: Config, override: tuple[str, int] | None) -> tuple[str, int] | None:
    """Where to connect: `override`, else the smtp listener (a wildcard address means this machine)."""
    if override is not None:
        return override
    listener = config.listeners.get("smtp")
    if listener is None or not listener.enabled:
        return None
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(listener.host, listener.host)
    return host, listener.port


def probe_findings(config: Config, target: tuple[str, int] | None, our_domain: str) -> list[Finding]:
    if target is None:
        return [_info("relay-probe.skipped", T("Open relay test skipped"),
                      T("The smtp listener (port 25) is not enabled, so there is nothing to test."),
                      NOTHING_TO_DO)]
    where = format_address(*target)
    try:
        source, results = run_probe(target, our_domain)
    except (OSError, smtplib.SMTPException) as exc:
        return [_info(
            "relay-probe.unreachable", T("Open relay test skipped: %(address)s not reachable", address=where),
            T("Connecting to %(address)s failed (%(error)s), so the live test could not run.",
              address=where, error=_words(exc)),
            T("Start hatoba serve and run the check again, or give the address to test with --probe HOST:PORT."),
        )]
    return judge(config, where, source, results)


def run_probe(target: tuple[str, int], our_domain: str) -> tuple[str, list[Attempt]]:
    """Connect, try every attempt, reset, quit. Returns (our source address, attempts with replies).

    Connection errors before the first attempt raise (OSError, SMTPException);
    a server that hangs up later (too many refusals) ends the test with the
    replies so far.
    """
    done: list[Attempt] = []
    # No `with`: its QUIT would raise again from a server that just stalled.
    client = smtplib.SMTP(timeout=TIMEOUT)
    try:
        client.connect(target[0], target[1])
        source = client.sock.getsockname()[0] if client.sock else ""
        code, _ = client.ehlo("relay-check.invalid")
        if code != 250:
            client.helo("relay-check.invalid")
        try:
            _try_all(client, our_domain, done)
            client.docmd("RSET")
            client.docmd("QUIT")
        except OSError:
            # Hung up or stalled mid-test (SMTPServerDisconnected, a timeout):
            # judge the replies so far; an accepted recipient must not be lost.
            pass
    finally:
        client.close()
    return source, done


def _try_all(client: smtplib.SMTP, our_domain: str, done: list[Attempt]) -> None:
    sender = None
    for attempt in attempts(our_domain):
        if attempt.sender != sender:
            client.docmd("RSET")
            code, text = client.docmd("MAIL", f"FROM:<{attempt.sender}>")
            if code != 250:
                done.append(_answered(attempt, code, text, stage="MAIL"))
                sender = None
                continue
            sender = attempt.sender
        # docmd sends the argument as is; smtplib.rcpt() would re-parse and
        # "fix" the tricky addresses, testing something else.
        code, text = client.docmd("RCPT", f"TO:<{attempt.recipient}>")
        done.append(_answered(attempt, code, text))


def judge(config: Config, where: str, source: str, results: list[Attempt]) -> list[Finding]:
    relayed = [a for a in results if a.stage == "RCPT" and a.relayed]
    if not any(a.stage == "RCPT" for a in results):
        first = results[0] if results else None
        reply = f"{first.code} {first.text}" if first else T("no reply")
        return [_info(
            "relay-probe.inconclusive", T("Open relay test inconclusive (%(address)s)", address=where),
            T("%(address)s refused every MAIL FROM (%(reply)s), so no recipient could be tried.",
              address=where, reply=reply),
            T("Check that the address tested is hatoba's port 25, then run the check again."),
        )]
    deferred = [a for a in results if a.stage == "RCPT" and 400 <= a.code < 500]
    if not relayed and deferred:
        # "Try later" is no refusal: the same server may accept the retry.
        return [Finding(
            "relay-probe", "relay-probe.result", "warning",
            T("Relay test inconclusive: the server answered 4xx (%(address)s)", address=where),
            T("From %(source)s, %(address)s answered %(replies)s; a temporary refusal may turn into acceptance "
              "on a retry, so this run cannot tell whether the server relays.",
              source=source, address=where, replies=_replies(results)),
            T("Look at the server's log for why it deferred the recipients, then run the check again."),
        )]
    if not relayed:
        return [Finding(
            "relay-probe", "relay-probe.result", "ok", T("Not an open relay (%(address)s)", address=where),
            T("From %(source)s, every attempt to reach %(domain)s was refused (%(replies)s); no DATA was sent.",
              source=source, domain=FOREIGN_DOMAIN, replies=_replies(results)),
        )]
    try:
        trusted = source in TrustedNetworks.parse(config.smtp.trusted_networks)
    except ValueError:
        trusted = False
    tricks = _listed([T("%(label)s <%(recipient)s>", label=a.label, recipient=a.recipient) for a in relayed])
    if trusted:
        return [Finding(
            "relay-probe", "relay-probe.result", "warning",
            T("Relays for trusted clients: open relay for %(source)s (%(address)s)", source=source, address=where),
            T("%(address)s accepted %(accepted)s from %(source)s, which is in smtp.trusted_networks, so any program "
              "on a trusted address can send mail anywhere; this run cannot tell whether strangers can too.",
              address=where, accepted=tricks, source=source),
            T("Keep smtp.trusted_networks to machines you control, and run the check from outside them "
              "with --probe HOST:PORT."),
        )]
    return [Finding(
        "relay-probe", "relay-probe.result", "critical", T("Open relay (%(address)s)", address=where),
        T("%(address)s accepted %(accepted)s from %(source)s, a client that never logged in, so anyone can send spam "
          "through this server.", address=where, accepted=tricks, source=source),
        T("Remove wide networks from smtp.trusted_networks, set smtp.pop_before_smtp_minutes = 0, and check "
          "that the address tested is really hatoba."),
    )]


def _replies(results: list[Attempt]) -> str:
    """Each attempt and its reply code, e.g. "foreign recipient 554, percent hack 554"."""
    return _listed([T("%(label)s %(code)s", label=a.label, code=a.code) for a in results])


def _listed(items: list[str]) -> str:
    """The items joined with ", " as nested Texts, so a translation can list them its own way."""
    listed = items[0] if items else ""
    for item in items[1:]:
        listed = T("%(list)s, %(item)s", list=listed, item=item)
    return listed


def _answered(attempt: Attempt, code: int, text: bytes, stage: str = "RCPT") -> Attempt:
    words = text.decode("utf-8", "replace").replace("\n", " ")[:200]
    return Attempt(attempt.label, attempt.sender, attempt.recipient, code, words, stage)


def _info(check: str, title: str, explanation: str, fix: str) -> Finding:
    return Finding("relay-probe", check, "info", title, explanation, fix)


def _words(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return T("timed out")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__
