"""SPF, DKIM, DMARC and ARC against a real DNS server on loopback, each result read back
from the Authentication-Results field with the independent `authres` parser."""

from __future__ import annotations

import random

import pytest

from hatoba.checks.headers import without_spans
from hatoba.checks.judge import ACCEPT, JUNK, REJECT, Judge, MessageFacts
from hatoba.checks.lookup import Lookup
from hatoba.config.schema import ChecksConfig
from support.dnsserver import DnsServer
from support.mailauth import Ed25519Key, RsaKey, arc_seal, results, sign, sign_expired

HOST = "mx.hatoba.test"
CLIENT = "127.0.0.1"
LOCAL_DOMAINS = {"example.test", "ours.test", "xn--bcher-kva.test"}

RSA = RsaKey()
ED = Ed25519Key()
OTHER_RSA = RsaKey()
FORWARDER = RsaKey()


@pytest.fixture(scope="module")
def dns():
    server = DnsServer({
        # SPF: one domain per result.
        "spf-pass.test": [("TXT", "v=spf1 ip4:127.0.0.1 -all")],
        "spf-fail.test": [("TXT", "v=spf1 ip4:192.0.2.1 -all")],
        "spf-soft.test": [("TXT", "v=spf1 ip4:192.0.2.1 ~all")],
        "spf-neutral.test": [("TXT", "v=spf1 ?all")],
        "spf-none.test": [("A", "192.0.2.9")],
        "spf-perm.test": [("TXT", "v=spf1 ip4:127.0.0.1 frobnicate -all")],
        "spf-include.test": [("TXT", "v=spf1 include:spf-pass.test -all")],
        "mx.sender.test": [("TXT", "v=spf1 ip4:127.0.0.1 -all")],
        # DKIM keys of a third-party signer.
        "rsa._domainkey.signer.test": [("TXT", RSA.record)],
        "ed._domainkey.signer.test": [("TXT", ED.record)],
        "wrong._domainkey.signer.test": [("TXT", OTHER_RSA.record)],
        "broken._domainkey.signer.test": [("TXT", "v=DKIM1; k=rsa; p=bm90IGEga2V5")],
        "signer.test": [("TXT", "v=spf1 -all")],
        # DMARC policies.
        "_dmarc.signer.test": [("TXT", "v=DMARC1; p=reject; rua=mailto:dmarc@signer.test")],
        "rsa._domainkey.reject.test": [("TXT", RSA.record)],
        "reject.test": [("TXT", "v=spf1 ip4:127.0.0.1 -all")],
        "_dmarc.reject.test": [("TXT", "v=DMARC1; p=reject")],
        "_dmarc.quarantine.test": [("TXT", "v=DMARC1; p=quarantine")],
        "_dmarc.none.test": [("TXT", "v=DMARC1; p=none")],
        "_dmarc.strict.test": [("TXT", "v=DMARC1; p=reject; adkim=s; aspf=s")],
        "rsa._domainkey.strict.test": [("TXT", RSA.record)],
        "_dmarc.parent.test": [("TXT", "v=DMARC1; p=none; sp=reject")],
        "_dmarc.sampled.test": [("TXT", "v=DMARC1; p=reject; pct=0")],
        "_dmarc.twice.test": [("TXT", "v=DMARC1; p=reject"), ("TXT", "v=DMARC1; p=none")],
        "_dmarc.example.test": [("TXT", "v=DMARC1; p=none")],
        # A local domain without a DMARC record, whose own mail is signed.
        "rsa._domainkey.ours.test": [("TXT", RSA.record)],
        # A forwarder that seals with ARC.
        "arc._domainkey.forwarder.test": [("TXT", FORWARDER.record)],
    }, servfail={"spf-temp.test TXT", "down._domainkey.signer.test", "_dmarc.dnsdown.test"})
    with server:
        yield server


def judge(dns, **settings) -> Judge:  # type: ignore[no-untyped-def]
    return Judge(ChecksConfig(**settings), hostname=HOST, is_local_domain=LOCAL_DOMAINS.__contains__,
                 lookup=Lookup(dns.address, timeout=2.0), rng=random.Random(1))


def message(from_: str = "Alice <alice@signer.test>", subject: str = "Hello", body: str = "Hello Bob.\r\n",
            extra: str = "") -> bytes:
    return (
        f"{extra}From: {from_}\r\nTo: bob@example.test\r\nSubject: {subject}\r\n"
        f"Date: Mon, 07 Dec 2026 01:00:00 +0000\r\nMessage-ID: <1@signer.test>\r\n\r\n{body}"
    ).encode()


def facts(mail_from: str, helo: str = "mx.sender.test") -> MessageFacts:
    return MessageFacts(client_ip=CLIENT, helo=helo, mail_from=mail_from)


def ar(verdict):  # type: ignore[no-untyped-def]
    return results(verdict.fields, HOST)


# -- SPF ----------------------------------------------------------------------------------


@pytest.mark.parametrize("domain, expected", [
    ("spf-pass.test", "pass"),
    ("spf-include.test", "pass"),
    ("spf-fail.test", "fail"),
    ("spf-soft.test", "softfail"),
    ("spf-neutral.test", "neutral"),
    ("spf-none.test", "none"),
    ("spf-temp.test", "temperror"),
    ("spf-perm.test", "permerror"),
])
def test_spf_result_of_the_mail_from_domain(dns, domain, expected):
    verdict = judge(dns).assess(facts(f"someone@{domain}"), message())
    [spf_mailfrom] = [r for r in ar(verdict)["spf"] if r.smtp_mailfrom]
    assert (spf_mailfrom.result, spf_mailfrom.smtp_mailfrom) == (expected, domain)


def test_spf_checks_the_helo_name_too_and_the_null_sender_by_it(dns):
    verdict = judge(dns).assess(facts("someone@spf-fail.test"), message())
    [helo] = [r for r in ar(verdict)["spf"] if r.smtp_helo]
    assert (helo.result, helo.smtp_helo) == ("pass", "mx.sender.test")
    bounce = judge(dns).assess(facts("", helo="mx.sender.test"), message())
    [only] = ar(bounce)["spf"]
    assert (only.result, only.smtp_helo) == ("pass", "mx.sender.test")


def test_spf_limits_bound_a_record_that_asks_for_too_many_lookups(dns):
    names = " ".join(f"include:loop{i}.test" for i in range(12))
    dns.add("many.test", "TXT", f"v=spf1 {names} -all")
    for i in range(12):
        dns.add(f"loop{i}.test", "TXT", "v=spf1 ?all")
    verdict = judge(dns).assess(facts("a@many.test"), message())
    [spf_mailfrom] = [r for r in ar(verdict)["spf"] if r.smtp_mailfrom]
    assert spf_mailfrom.result == "permerror"


# -- DKIM ---------------------------------------------------------------------------------


def dkim_results(dns, signed: bytes):  # type: ignore[no-untyped-def]
    verdict = judge(dns).assess(facts("a@spf-pass.test"), signed)
    return ar(verdict)["dkim"]


@pytest.mark.parametrize("key, selector", [(RSA, "rsa"), (ED, "ed")], ids=["rsa", "ed25519"])
def test_a_valid_signature_passes(dns, key, selector):
    [result] = dkim_results(dns, sign(message(), key, "signer.test", selector))
    assert (result.result, result.header_d, result.header_s) == ("pass", "signer.test", selector)
    assert result.header_a == key.algorithm.decode()


@pytest.mark.parametrize("key, selector", [(RSA, "rsa"), (ED, "ed")], ids=["rsa", "ed25519"])
def test_a_changed_body_fails(dns, key, selector):
    signed = sign(message(), key, "signer.test", selector).replace(b"Hello Bob.", b"Hello Eve.")
    [result] = dkim_results(dns, signed)
    assert result.result == "fail" and "body hash" in result.reason


@pytest.mark.parametrize("key, selector", [(RSA, "rsa"), (ED, "ed")], ids=["rsa", "ed25519"])
def test_a_changed_signed_header_fails(dns, key, selector):
    signed = sign(message(), key, "signer.test", selector).replace(b"Subject: Hello", b"Subject: Pay now")
    [result] = dkim_results(dns, signed)
    assert result.result == "fail"


def test_a_signature_checked_against_another_key_fails(dns):
    [result] = dkim_results(dns, sign(message(), RSA, "signer.test", "wrong"))
    assert result.result == "fail"


def test_an_expired_signature_fails(dns):
    [result] = dkim_results(dns, sign_expired(message(), RSA, "signer.test", "rsa"))
    assert result.result == "fail" and result.reason == "signature expired"


def test_no_signature_is_none(dns):
    [result] = dkim_results(dns, message())
    assert result.result == "none"


def test_a_signature_without_a_published_key_is_a_permerror(dns):
    [result] = dkim_results(dns, sign(message(), RSA, "signer.test", "nokey"))
    assert result.result == "permerror"
    [result] = dkim_results(dns, sign(message(), RSA, "signer.test", "broken"))
    assert result.result == "permerror"


def test_a_key_that_cannot_be_fetched_now_is_a_temperror(dns):
    [result] = dkim_results(dns, sign(message(), RSA, "signer.test", "down"))
    assert result.result == "temperror"


def test_every_signature_gets_its_own_result(dns):
    twice = sign(sign(message(), RSA, "signer.test", "rsa"), ED, "signer.test", "ed")
    got = dkim_results(dns, twice.replace(b"Hello Bob.", b"Hello Bob!"))
    assert [r.result for r in got] == ["fail", "fail"]
    got = dkim_results(dns, twice)
    assert [(r.result, r.header_s) for r in got] == [("pass", "ed"), ("pass", "rsa")]


# -- DMARC --------------------------------------------------------------------------------


def test_dmarc_passes_by_an_aligned_dkim_signature(dns):
    verdict = judge(dns).assess(facts("bounces@spf-pass.test"), sign(message(), RSA, "signer.test", "rsa"))
    [result] = ar(verdict)["dmarc"]
    assert (result.result, result.header_from) == ("pass", "signer.test")
    assert verdict.action == ACCEPT


def test_dmarc_passes_by_an_aligned_spf_pass(dns):
    verdict = judge(dns).assess(facts("alice@reject.test"), message(from_="alice@reject.test"))
    [result] = ar(verdict)["dmarc"]
    assert result.result == "pass" and verdict.action == ACCEPT


def test_dmarc_reject_without_alignment_refuses_the_message(dns):
    # SPF passes for another domain, the signature is another domain's: nothing aligns.
    signed = sign(message(from_="ceo@reject.test"), RSA, "signer.test", "rsa")
    verdict = judge(dns).assess(facts("a@spf-pass.test"), signed)
    assert verdict.action == REJECT and verdict.log_reason == "dmarc-reject"
    assert "reject.test" in verdict.reason and "p=reject" in verdict.reason
    [result] = ar(verdict)["dmarc"]
    assert (result.result, result.header_from) == ("fail", "reject.test")


def test_dmarc_reject_goes_to_junk_when_the_operator_says_so(dns):
    verdict = judge(dns, dmarc_reject=False).assess(facts("a@spf-pass.test"), message(from_="ceo@reject.test"))
    assert verdict.action == JUNK


def test_dmarc_quarantine_goes_to_junk_and_none_is_delivered(dns):
    verdict = judge(dns).assess(facts("a@spf-pass.test"), message(from_="x@quarantine.test"))
    assert verdict.action == JUNK and verdict.log_reason == "dmarc-quarantine"
    assert "X-Spam: Yes\r\n" in verdict.fields
    verdict = judge(dns).assess(facts("a@spf-pass.test"), message(from_="x@none.test"))
    assert verdict.action == ACCEPT and ar(verdict)["dmarc"][0].result == "fail"


def test_strict_alignment_needs_the_very_same_domain(dns):
    signed = sign(message(from_="a@news.strict.test"), RSA, "strict.test", "rsa")
    verdict = judge(dns).assess(facts("a@spf-pass.test"), signed)
    assert ar(verdict)["dmarc"][0].result == "fail" and verdict.action == REJECT
    relaxed = sign(message(from_="a@news.signer.test"), RSA, "signer.test", "rsa")
    verdict = judge(dns).assess(facts("a@spf-pass.test"), relaxed)
    assert ar(verdict)["dmarc"][0].result == "pass"  # the organizational domain's record, relaxed


def test_a_subdomain_gets_the_organizational_domain_s_sp_policy(dns):
    verdict = judge(dns).assess(facts("a@spf-pass.test"), message(from_="x@shop.parent.test"))
    assert verdict.action == REJECT
    verdict = judge(dns).assess(facts("a@spf-pass.test"), message(from_="x@parent.test"))
    assert verdict.action == ACCEPT  # p=none for the domain itself


def test_pct_zero_applies_the_next_milder_policy(dns):
    verdict = judge(dns).assess(facts("a@spf-pass.test"), message(from_="x@sampled.test"))
    assert verdict.action == JUNK  # reject, sampled out, becomes quarantine


def test_no_policy_or_several_policies_are_none(dns):
    for domain in ("spf-pass.test", "twice.test"):
        verdict = judge(dns).assess(facts("a@spf-fail.test"), message(from_=f"x@{domain}"))
        assert ar(verdict)["dmarc"][0].result == "none" and verdict.action == ACCEPT


def test_a_policy_that_cannot_be_fetched_is_a_temperror_and_goes_to_junk(dns):
    """It might have said reject: not the inbox, and not lost either."""
    verdict = judge(dns).assess(facts("a@spf-pass.test"), message(from_="x@dnsdown.test"))
    assert ar(verdict)["dmarc"][0].result == "temperror" and verdict.action == JUNK
    assert verdict.log_reason == "dmarc-unknown"


# -- our own domains ----------------------------------------------------------------------


def test_mail_from_outside_claiming_one_of_our_domains_goes_to_junk_or_is_refused(dns):
    forged = message(from_="principal@example.test")
    verdict = judge(dns).assess(facts("x@spf-pass.test"), forged)
    assert verdict.action == JUNK and verdict.log_reason == "local-forgery"
    verdict = judge(dns, local_forgery="reject").assess(facts("x@spf-pass.test"), forged)
    assert verdict.action == REJECT and "example.test" in verdict.reason
    verdict = judge(dns, local_forgery="accept").assess(facts("x@spf-pass.test"), forged)
    assert verdict.action == ACCEPT


# -- ARC and forged fields ----------------------------------------------------------------


def forwarded_through_a_list(dns) -> bytes:  # type: ignore[no-untyped-def]
    """Signed by reject.test, passed through forwarder.test, which changed the subject and sealed it."""
    original = sign(message(from_="ceo@reject.test"), RSA, "reject.test", "rsa")
    seen = judge(dns).assess(facts("ceo@reject.test"), original)
    assert ar(seen)["dkim"][0].result == "pass"
    at_list = ("Authentication-Results: lists.forwarder.test; dkim=pass header.d=reject.test;"
               " spf=pass smtp.mailfrom=reject.test; dmarc=pass header.from=reject.test\r\n").encode()
    changed = (at_list + original).replace(b"Subject: Hello", b"Subject: [list] Hello")
    return arc_seal(changed, FORWARDER, "forwarder.test", "arc", "lists.forwarder.test")


def test_a_trusted_arc_sealer_vouches_for_mail_whose_dmarc_broke_on_the_way(dns):
    sealed = forwarded_through_a_list(dns)
    untrusted = judge(dns).assess(facts("list-bounces@spf-pass.test"), sealed)
    got = ar(untrusted)
    assert got["arc"][0].result == "pass" and got["dkim"][0].result == "fail"
    assert untrusted.action == REJECT
    trusted = judge(dns, trusted_arc_sealers=("forwarder.test",)).assess(facts("list-bounces@spf-pass.test"), sealed)
    assert trusted.action == ACCEPT
    assert "trusted forwarder.test" in trusted.fields


def test_a_broken_arc_chain_fails(dns):
    sealed = forwarded_through_a_list(dns).replace(b"Hello Bob.", b"Hello Eve.")
    verdict = judge(dns, trusted_arc_sealers=("forwarder.test",)).assess(facts("x@spf-pass.test"), sealed)
    assert ar(verdict)["arc"][0].result == "fail" and verdict.action == REJECT


def test_forged_authentication_results_and_spam_fields_are_marked_for_removal(dns):
    forged = message(extra=f"Authentication-Results: {HOST.upper()}; dkim=pass header.d=signer.test\r\n"
                           "Authentication-Results: other.test; spf=pass smtp.mailfrom=x\r\n"
                           "X-Spam: No\r\nX-Spam-Score: -100\r\n")
    verdict = judge(dns).assess(facts("a@spf-pass.test"), forged)
    kept = without_spans(forged, list(verdict.strip))
    assert b"Authentication-Results: other.test;" in kept
    assert HOST.upper().encode() not in kept and b"X-Spam" not in kept
    assert kept.endswith(b"Subject: Hello\r\nDate: Mon, 07 Dec 2026 01:00:00 +0000\r\n"
                         b"Message-ID: <1@signer.test>\r\n\r\nHello Bob.\r\n")


# -- what a hostile sender tries ------------------------------------------------------------


SPOOF = "ceo@reject.test"


@pytest.mark.parametrize("header", [
    f"From: {SPOOF}\r\nFrom: someone@spf-pass.test\r\n",
    f"From: someone@spf-pass.test\r\nFrom : {SPOOF}\r\n",
    f"From: {SPOOF}, foo\r\n",
    f"From: CEO <{SPOOF}> x\r\n",
    f"From: {SPOOF}@evil.test\r\n",
    f"From: undisclosed:;, {SPOOF}\r\n",
    f'From: "{SPOOF}" <someone@spf-pass.test>\r\n',
    f"X-A: b\rFrom: {SPOOF}\r\nFrom: someone@spf-pass.test\r\n",
    f"From: someone@spf-pass.test\r\nX-A: b\rFrom: {SPOOF}\r\n",
])
def test_no_spelling_of_from_escapes_a_dmarc_reject(dns, header):
    data = f"{header}To: bob@example.test\r\nSubject: Pay\r\n\r\nPay now.\r\n".encode()
    verdict = judge(dns).assess(facts("a@spf-pass.test"), data)
    assert verdict.action == REJECT, (verdict.action, verdict.summary)


@pytest.mark.parametrize("header", ["From: " + "(" * 5000 + "\r\n", "From: x@exa mple.test\r\n",
                                    "From: a@spf-pass.test, b@spf-none.test\r\n"])
def test_an_unreadable_from_goes_to_junk(dns, header):
    data = f"{header}To: bob@example.test\r\nSubject: Hi\r\n\r\nHi.\r\n".encode()
    verdict = judge(dns).assess(facts("a@spf-pass.test"), data)
    assert verdict.action == JUNK, (verdict.action, verdict.summary)


@pytest.mark.parametrize("header", ["", "From:\r\n", "From: undisclosed-recipients:;\r\n"])
def test_a_missing_from_shows_no_one_and_only_counts_in_the_score(dns, header):
    data = f"{header}To: bob@example.test\r\nSubject: Hi\r\n\r\nHi.\r\n".encode()
    verdict = judge(dns).assess(facts("a@spf-pass.test"), data)
    assert verdict.action == ACCEPT and verdict.score == 1.5 and ar(verdict)["dmarc"][0].result == "permerror"


def test_a_header_dkimpy_cannot_read_still_gets_its_dmarc_verdict(dns):
    signed = sign(message(from_=SPOOF), RSA, "signer.test", "rsa")
    broken = signed.replace(b"Subject: Hello", b"Subject : Hello")
    verdict = judge(dns).assess(facts("a@spf-pass.test"), broken)
    assert verdict.action == REJECT


def test_an_idn_from_is_one_of_our_domains_and_is_checked_as_such(dns):
    verdict = judge(dns).assess(facts("a@spf-pass.test"), message(from_="chef@bücher.test"))
    assert verdict.action == JUNK and verdict.log_reason == "local-forgery"


def test_our_own_domain_without_a_dmarc_record_passes_by_aligned_dkim(dns):
    signed = sign(message(from_="alice@ours.test"), RSA, "ours.test", "rsa")
    verdict = judge(dns).assess(facts("a@spf-pass.test"), signed)
    assert verdict.action == ACCEPT and verdict.from_authenticated
    verdict = judge(dns).assess(facts("a@spf-pass.test"), message(from_="alice@ours.test"))
    assert verdict.action == JUNK and verdict.log_reason == "local-forgery" and not verdict.from_authenticated


@pytest.mark.parametrize("forged", [
    f"Authentication-Results: {HOST}(c); dkim=pass header.d=reject.test",
    f"Authentication-Results: (a (b) c) {HOST}; dkim=pass header.d=reject.test",
    f"Authentication-Results: (x\\) mx.evil) {HOST}; dkim=pass header.d=reject.test",
    f'Authentication-Results: "{HOST}"; dkim=pass header.d=reject.test',
    f"authentication-results : {HOST.upper()}.; dkim=pass",
    f"X-A: b\rAuthentication-Results: {HOST}; dkim=pass header.d=reject.test",
])
def test_every_spelling_of_a_forged_authentication_results_is_removed(dns, forged):
    data = message(extra=forged + "\r\n")
    verdict = judge(dns).assess(facts("a@spf-pass.test"), data)
    kept = without_spans(data, list(verdict.strip))
    assert HOST.encode() not in kept.lower() and b"dkim=pass" not in kept


def test_a_bare_cr_in_the_header_is_refused(dns):
    signed = sign(message(), RSA, "signer.test", "rsa")
    evil = signed.replace(b"d=signer.test", b"d=evil.test\rAuthentication-Results: " + HOST.encode() + b"; dmarc=pass")
    verdict = judge(dns).assess(facts("a@spf-pass.test"), evil)
    assert verdict.action == REJECT and verdict.reply == (550, "5.6.0") and "bare carriage return" in verdict.reason


def test_tag_values_cannot_write_into_our_field(dns):
    signed = sign(message(), RSA, "signer.test", "rsa")
    evil = signed.replace(b"d=signer.test", b'd=evil.test" (x; dmarc=pass header.from=signer.test')
    verdict = judge(dns).assess(facts("a@spf-pass.test"), evil)
    lines = verdict.fields.split("\r\n")
    assert [n for n, line in enumerate(lines) if line.lower().startswith("authentication-results")] == [0]
    assert "\r" not in verdict.fields.replace("\r\n", "") and "\n" not in verdict.fields.replace("\r\n", "")
    got = ar(verdict)
    assert {r.method for r in got["dkim"] + got["dmarc"]} == {"dkim", "dmarc"}
    assert got["dmarc"][0].result == "fail"


def test_a_trusted_sealer_that_saw_the_spoof_fail_does_not_vouch_for_it(dns):
    spoof = message(from_=SPOOF)
    at_list = ("Authentication-Results: lists.forwarder.test; dkim=none;"
               " spf=fail smtp.mailfrom=reject.test; dmarc=fail header.from=reject.test\r\n").encode()
    sealed = arc_seal(at_list + spoof, FORWARDER, "forwarder.test", "arc", "lists.forwarder.test")
    verdict = judge(dns, trusted_arc_sealers=("forwarder.test",)).assess(facts("list@spf-pass.test"), sealed)
    assert ar(verdict)["arc"][0].result == "pass" and verdict.action == REJECT


def test_many_signatures_are_checked_up_to_a_limit(dns):
    signed = message()
    for _ in range(12):
        signed = sign(signed, RSA, "signer.test", "rsa")
    assert len(dkim_results(dns, signed)) == 5


def test_a_name_server_that_never_answers_costs_the_budget_once(dns):
    import socket
    import time as clock

    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes questions, answers none
    silent.bind(("127.0.0.1", 0))
    try:
        slow = Judge(ChecksConfig(timeout=1.5), hostname=HOST, is_local_domain=LOCAL_DOMAINS.__contains__,
                     lookup=Lookup(f"127.0.0.1:{silent.getsockname()[1]}", timeout=5.0))
        data = message(from_=SPOOF)
        for _ in range(8):
            data = sign(data, RSA, f"d{_}.test", "rsa")
        started = clock.monotonic()
        verdict = slow.assess(facts("a@x.test"), data)
        assert clock.monotonic() - started < 3.0
        got = ar(verdict)
        assert got["dmarc"][0].result == "temperror" and {r.result for r in got["dkim"]} == {"temperror"}
    finally:
        silent.close()


def test_a_recipient_domain_may_have_a_policy_of_its_own(dns):
    from hatoba.config.schema import DomainChecks

    strict = judge(dns, domains={"example.test": DomainChecks(local_forgery="reject"),
                                 "lax.example": DomainChecks(dmarc_reject=False, local_forgery="accept")})
    forged = message(from_="principal@example.test")
    to = lambda *r: MessageFacts(client_ip=CLIENT, helo="mx.sender.test", mail_from="x@spf-pass.test", recipients=r)  # noqa: E731
    assert strict.assess(to("bob@example.test"), forged).action == REJECT
    assert strict.assess(to("a@lax.example"), forged).action == ACCEPT
    assert strict.assess(to("a@lax.example", "bob@example.test"), forged).action == REJECT  # the strictest
    spoof = message(from_=SPOOF)
    assert strict.assess(to("a@lax.example"), spoof).action == JUNK  # lax.example turns DMARC rejects into Junk


@pytest.mark.parametrize("header", [
    f"From\x0c: CEO <{SPOOF}>\r\nFrom: x@spf-pass.test\r\n",
    f"From\r\n : CEO <{SPOOF}>\r\nFrom: x@spf-pass.test\r\n",
    f"From\x0b: CEO <{SPOOF}>\r\n",
    f"From\t: CEO <{SPOOF}>\r\n",
    "From: =?utf-8?b?Y2VvQHJlamVjdC50ZXN0?= <x@spf-pass.test>\r\n",
    'From: "ceo＠reject.test" <x@spf-pass.test>\r\n',
    'From: "ceo﹫reject.test" <x@spf-pass.test>\r\n',
])
def test_field_names_and_display_names_read_as_a_mail_program_reads_them(dns, header):
    data = f"{header}To: bob@example.test\r\nSubject: Pay\r\n\r\nPay now.\r\n".encode()
    verdict = judge(dns).assess(facts("a@spf-pass.test"), data)
    assert verdict.action == REJECT, (verdict.action, verdict.summary)


@pytest.mark.parametrize("data, why", [
    (b" Folded: first\r\nFrom: a@spf-pass.test\r\n\r\nHi\r\n", "continuation line"),
    (b"From: a@spf-pass.test\r\nX-A: b\rc\r\n\r\nHi\r\n", "bare carriage return"),
    (b"From: a@spf-pass.test\r\n" + b"X-Long: " + b"y" * (1024 * 1024) + b"\r\n\r\nHi\r\n", "larger than"),
])
def test_a_header_programs_would_read_differently_is_refused(dns, data, why):
    verdict = judge(dns).assess(facts("a@spf-pass.test"), data)
    assert verdict.action == REJECT and verdict.reply == (550, "5.6.0") and why in verdict.reason


def test_a_forged_field_behind_an_odd_name_is_still_removed(dns):
    data = message(from_="a@spf-none.test",
                   extra=f"Authentication-Results\x0c: {HOST}; dmarc=pass header.from=signer.test\r\n"
                         "X-Spam\t: No\r\n")
    verdict = judge(dns).assess(facts("a@spf-pass.test"), data)
    kept = without_spans(data, list(verdict.strip))
    assert HOST.encode() not in kept and b"X-Spam" not in kept
    assert verdict.action == JUNK  # odd field names: a message to be wary of


def test_a_subdomain_of_our_domain_is_ours_too(dns):
    verdict = judge(dns).assess(facts("a@spf-pass.test"), message(from_="it@mail.example.test"))
    assert verdict.action == JUNK and verdict.log_reason == "local-forgery"


def test_slow_name_servers_for_the_first_from_domains_do_not_starve_the_last(dns):
    import socket

    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        # A server that answers for reject.test but never for slow*.test (a delegation that hangs).
        from hatoba.checks.lookup import Lookup as L

        class Split(L):
            def records(self, name, rdtype, *, lifetime=None):  # type: ignore[no-untyped-def]
                if "slow" in name:
                    return slow.records(name, rdtype, lifetime=lifetime)
                return super().records(name, rdtype, lifetime=lifetime)

        slow = L(f"127.0.0.1:{silent.getsockname()[1]}", timeout=5.0)
        lookup = Split(dns.address, timeout=5.0)
        slow._deadline = lookup._deadline  # one thread, one deadline
        judged = Judge(ChecksConfig(timeout=3.0), hostname=HOST, is_local_domain=LOCAL_DOMAINS.__contains__,
                       lookup=lookup)
        data = message(from_=f"a@slow1.test, b@slow2.test, CEO <{SPOOF}>")
        verdict = judged.assess(facts("x@spf-pass.test"), data)
        assert verdict.action == REJECT, verdict.summary
    finally:
        silent.close()


def test_an_rsa_key_too_large_to_verify_with_is_refused_before_any_work(dns):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    import base64 as b64

    huge = rsa.generate_private_key(public_exponent=65537, key_size=4096).public_key().public_numbers()
    # A modulus of 16384 bits built from the 4096-bit one: no one needs the private half to publish it.
    n = huge.n << 12288 | 1
    der = rsa.RSAPublicNumbers(65537, n).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    dns.add("huge._domainkey.signer.test", "TXT", f"v=DKIM1; k=rsa; p={b64.b64encode(der).decode()}")
    [result] = dkim_results(dns, sign(message(), RSA, "signer.test", "huge"))
    assert result.result == "permerror" and "too large" in result.reason


def test_a_unicode_digit_in_an_arc_instance_is_no_crash(dns):
    sealed = forwarded_through_a_list(dns).replace(b"ARC-Authentication-Results: i=1", b"ARC-Authentication-Results: i=\xc2\xb2")
    verdict = judge(dns, trusted_arc_sealers=("forwarder.test",)).assess(facts("x@spf-pass.test"), sealed)
    assert verdict.log_reason != "unjudged" and verdict.action == REJECT
