"""hatoba.store.legacy_hashes against real hashes: fixed ones made by Dovecot 2.3.19's
`doveadm pw`, `openssl passwd`, Perl's crypt() and Dovecot's own samples, and
fresh ones from doveadm where it is installed."""

import subprocess

import pytest
from hypothesis import given, settings, strategies as st
from support.peers import needs

from hatoba.store.legacy_hashes import UnknownScheme, check_supported, from_dovecot, is_legacy, scheme_of, verify

PW = "correct horse battery"
UNI = "pässwörd ✓"  # hashed as its UTF-8 bytes, as the old systems did

# doveadm pw -s SCHEME -p "correct horse battery"
DOVEADM = [
    "{PLAIN}correct horse battery",
    "{CLEAR}correct horse battery",
    "{CLEARTEXT}correct horse battery",
    "{PLAIN-MD5}88e4ddd2402d92d50e1879d6ecd9ffd4",
    "{LDAP-MD5}iOTd0kAtktUOGHnW7Nn/1A==",
    "{SMD5}zML2MMs3B5mBgooih5NxJ0y0gkA=",
    "{SHA}mN7MYuzjmaIu0w1JDvMzvn/ec4U=",
    "{SHA1}mN7MYuzjmaIu0w1JDvMzvn/ec4U=",
    "{SSHA}C+61JN4hAdkiFCux+SR16Fq/ERvf5mWT",
    "{SHA256}kCjqDRXeyqNbLaIcApCvOxpboKMKWRkG+JtQdOIJ6nI=",
    "{SSHA256}uwokofZmc7I/Sc0V9VFPrWNTFZHwriVjRn5zvhQAxeGFsEyj",
    "{SHA512}zvYeTk7ae6ii/qoSBhf896UTrZIEQjsl4kO30/VW+ShT6VsVatr/3Zon0OUHNq1qa7zFDOipvTUWL315nomlIQ==",
    "{SSHA512}p+z6i8RlcXUQbExxW73SW5keplJ5hYwH49SoBYn6NlS+Gzqva7JHDKYIYoKP0MTtuUW53GXoFBoEGsrbUk81/pmJ8XM=",
    "{MD5}$1$ne3Apl1o$vgPmteO9CAF75XZpJfVjM1",
    "{MD5-CRYPT}$1$JO16Aymm$IsZymTK5Wkh3CvbOC11wY/",
    "{SHA256-CRYPT}$5$5amkc5poFMG9ncT8$IL5x8mwqaX38pjLUuJ0JJ0.54v5RRrahEOP/Qgk2mC0",
    "{SHA512-CRYPT}$6$QDRHWofIU.9IGyG/$R7QzXKjbxGZZzo.uA26OlBINmYFnUb1XDl8y6z14eT8ZaWoqqoWcSnvr2YoEPCE4Jdzp0tMIOE2Ld.3zsxQXY.",
    "{BLF-CRYPT}$2y$05$bQvRDrXCZqcKBHc/wvo5MOsoNDqcF9xHNBNjuqkfE32WHqm3pm2K2",
    "{DES-CRYPT}lHY7dMLM2q1k6",
    "{CRYPT}$2y$05$09z6ZYkx6HmhPl3x1f4mZe8Ne3ZyFXTBbqeu1qa4nFQuE5ZjnQmua",
    "{PBKDF2}$1$7u1saGxqiGHqTF38$5000$3ef72653bc8f0f3de25189364dacb12a04af39a0",
    "{SCRAM-SHA-1}4096,dbjPdTOqHkz6xDAHeMu+jQ==,MR4UPi7Ye2JcBKpFiVUR9XXE/CQ=,k0Y5xElmRjHx+HANHgknAEt04lI=",
    "{SCRAM-SHA-256}4096,BoS0c5vTDacRMOjebuJZVw==,yTn5FIOF9ZHXvwb6aj6BGKGhP3wuJcMnkAKGCf8WXYg=,"
    "leGe/AsPFam0YBUee2FGojuEbQNQBlgdJp5EKOsp/J8=",
    "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$030Ho1SsKMAQCMNEhHl11g$Fg+weJvHBG+i6jj9bnsoGW8hrzr80/IMVDsofJrpiT0",
    "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$QB+aziRtHMCKIa2JDDMP/w$dvvlMZOL/9WbqkmEeU79q4+D/BlrQs11GoH1LQUZJlM",
    "{CRAM-MD5}83b1f18da0d222b257057a021ab40d776e1efb2767611d85cc3f47dcb2d338d3",
    "{HMAC-MD5}83b1f18da0d222b257057a021ab40d776e1efb2767611d85cc3f47dcb2d338d3",
    # the encoding suffixes, and the other encoding where Dovecot guesses from the length
    "{PLAIN.B64}Y29ycmVjdCBob3JzZSBiYXR0ZXJ5",
    "{PLAIN.HEX}636f727265637420686f7273652062617474657279",
    "{PLAIN-MD5.B64}iOTd0kAtktUOGHnW7Nn/1A==",
    "{PLAIN-MD5}iOTd0kAtktUOGHnW7Nn/1A==",
    "{LDAP-MD5.HEX}88e4ddd2402d92d50e1879d6ecd9ffd4",
    "{SHA.HEX}98decc62ece399a22ed30d490ef333be7fde7385",
    "{SHA}98decc62ece399a22ed30d490ef333be7fde7385",
    "{SHA256.hex}9028ea0d15decaa35b2da21c0290af3b1a5ba0a30a591906f89b5074e209ea72",
    "{SSHA.HEX}f22e7f743c4a64b151667fb54836688a90f43ad994c0b64f",
    "{SSHA512.HEX}bdc3a26f26ac74c3340b696fd9592a4bd22d80443d8c4b2f5b834e31eaba29956828d6f9f1c7b172c495d617d488101443bb"
    "8536afa2e467af4f8ec9d39de3b5f5c418b0",
    "{SMD5.B64}9SFsDXsto8XsT8t5evlvVyCT/og=",
    "{CRAM-MD5.B64}g7HxjaDSIrJXBXoCGrQNd24e+ydnYR2FzD9H3LLTONM=",
    "{SHA512.BASE64}zvYeTk7ae6ii/qoSBhf896UTrZIEQjsl4kO30/VW+ShT6VsVatr/3Zon0OUHNq1qa7zFDOipvTUWL315nomlIQ==",
    # openssl passwd -1 / -5 / -6 (vpopmail's form), Perl's crypt() with libxcrypt settings
    "{CRYPT}$1$Z1r4vVFs$4X/LE6lXcRPKr.CLK2Ua9/",
    "{CRYPT}$5$K5GbSDyE.5jm0u3u$3cSGfAZDXxWx65.OTm1VOHWCTRlTQX2rjzYX32ZQAb7",
    "{CRYPT}$6$uERIrTf62P6UOkeU$aMB2bRiSsN2tvcuLVq0L4JQaqUQ/CoTzYMJe3EiNGJkEOZ63ZR4gpC84/bsrXWp.s9I5I1vycvCDOrlDMmaC6/",
    "{CRYPT}$5$rounds=1000$abcdefghijklmnop$knDILjgPD6VKvJygJ7NaolczhFfDifGAjikzo23JwdB",
    "{CRYPT}$2b$04$BV9kGTk4BgDbKB54p2qlZ.LH81dsprzhf.sH3XiSjAC8Htlpq7FWG",
    "{CRYPT}$2a$04$MzMR9BYhRj/F.DN1.rd6n.esyFJKeJ5cbRCCGeRIb11b3liVGU0.m",
    "{CRYPT}kkWFqPtbKY.Is",
    "{CRYPT}_J9..S2dV7gG2d9o6IFY",
]

# the same tools with "pässwörd ✓"
UNICODE = [
    "{PLAIN}pässwörd ✓",
    "{PLAIN-MD5}424f0acb4def3f5d2db59084752ce66d",
    "{SSHA}XdwO7yyOY7teT6R9o81ZKbZUjcMVgvcj",
    "{SHA512}784MgrYYcbdkf87Er4sVebUAVsG9IbxvYyHMghkay9dn0zL5m0yPgzK1OkKXFPaWSsxxmwjMrY6fn70j2E0yiQ==",
    "{SHA256-CRYPT}$5$OcVHel9zX7jH.H01$fduSqiogMsCY1gc2GdAY/tngj5UtYhP3F1TZ8OP4eK0",
    "{CRAM-MD5}f543e9103b237c5ccd72c620515bc14215f337babefa35ec9b5d188745594be9",
    "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$gkYCSPgeIsSbnMMOop03Rg$qDlD0EgZryCYZimm7kKsx0j9DYkBCsDXzQYz52/EiQE",
    "{CRYPT}$6$With2MU38uIv0rTJ$6kOhKTV5jWVgffWRhzK8gbDTn6AzmH7iRkDUpq.AjVl5IiapSgPHPnRV/4DO..fAthw4HW4OhCEbfw6DWuOBL1",
    "{CRYPT}$2b$04$BV9kGTk4BgDbKB54p2qlZ.2lJ6sNf4J0PHNfCrxwYpeRSCDGMVfaW",
]

# libxcrypt variants a system may lack; Perl's crypt(), "correct horse battery" then "pässwörd ✓"
OPTIONAL_CRYPT = [
    ("{CRYPT}$y$j9T$PSDULU.Hx/GOzkV.hjA/e1$5LTjo.puDuVYn7WJtcpGypnU/WJnp7l9OKNrFsBHZDB", PW),
    ("{CRYPT}$y$j9T$PSDULU.Hx/GOzkV.hjA/e1$nvPDopYlyx4s/ZNZ58B3BzLuuC40A/4.fGsRHeoFQv3", UNI),
    ("{CRYPT}$gy$j9T$BgqBsUzK3xFU0NiXLI3PX0$Kx9h16uYCT/XUmkAU7qgtRwTs.anjotNZ8uS/1krwhA", PW),
    ("{CRYPT}$7$BU..../....q0mavjBVN/cHIXNg2KSyG0$m6q3JUN3RjX3qlHoONZqiGwuQLQmach7wE/.clVAds6", PW),
]

# Dovecot's own crypt samples (src/auth/password-scheme-crypt.c), with their password
DOVECOT_SAMPLES = [
    "{DES-CRYPT}JBOZ0DgmtucwE",
    "{SHA256-CRYPT}$5$rounds=1000$0123456789abcdef$K/DksR0DT01hGc8g/kt9McEgrbFMKi9qrb1jehe7hn4",
    "{SHA512-CRYPT}$6$rounds=1000$0123456789abcdef$ZIAd5WqfyLkpvsVCVUU1GrvqaZTqvhJoouxdSqJO71l9Ld3tVrfOatEjarhghvEYADk"
    "q//LpDnTeO90tcbtHR1",
]


def assert_checks(stored: str, password: str) -> None:
    check_supported(stored)
    assert verify(stored, password)
    assert not verify(stored, "x" + password)  # changed up front: DES reads only 8 bytes


@pytest.mark.parametrize("stored", DOVEADM)
def test_fixed_hashes(stored):
    assert_checks(stored, PW)


@pytest.mark.parametrize("stored", UNICODE)
def test_fixed_hashes_of_a_non_ascii_password(stored):
    assert_checks(stored, UNI)
    assert not verify(stored, UNI.encode().decode("latin-1"))  # the same bytes read as Latin-1


@pytest.mark.parametrize("stored", DOVECOT_SAMPLES)
def test_dovecot_crypt_samples(stored):
    assert_checks(stored, "08/15!test~4711")


@pytest.mark.parametrize("stored, password", OPTIONAL_CRYPT)
def test_optional_crypt_variants(stored, password):
    try:
        check_supported(stored)
    except UnknownScheme as exc:
        assert str(exc).startswith("this system's crypt library cannot check")
        pytest.skip(str(exc))
    assert_checks(stored, password)


def test_plain_trunc():
    # "<length>-<password>": the old system kept only the first <length> bytes
    assert verify("{PLAIN-TRUNC}8-correct ", PW)
    assert verify("{PLAIN-TRUNC}8-correct ", "correct ")
    assert not verify("{PLAIN-TRUNC}8-correct ", "correct")
    assert verify("{PLAIN-TRUNC}30-correct horse battery", PW)
    assert not verify("{PLAIN-TRUNC}30-correct horse battery", PW + "!")


def test_long_cram_md5_key_is_hashed_first():
    # doveadm pw -s CRAM-MD5 -p <70 x>: HMAC hashes keys longer than its 64-byte block
    stored = "{CRAM-MD5}8103bb3a2a4b96a9ca9cce4efecc8d22ebe7163dff7401afb5aa16d4edcf9f1f"
    assert verify(stored, "x" * 70)
    assert not verify(stored, "x" * 69)


def test_md5_falls_back_to_plain_md5():
    assert verify("{MD5}88e4ddd2402d92d50e1879d6ecd9ffd4", PW)
    assert not verify("{MD5}88e4ddd2402d92d50e1879d6ecd9ffd4", UNI)


@pytest.mark.parametrize("stored, reason", [
    ("{SHA}mN7MYuzjmaIu0w1JDvMzvn/ec4", "malformed {SHA} hash"),  # cut short
    ("{SHA256.HEX}9028ea0d15decaa35b2da21c0290af3b1a5ba0a30a591906f89b5074e209ea7z", "not valid hex"),
    ("{SSHA}mN7MYuzjmaIu0w1JDvMzvn/ec4U=", "too short to hold a salt"),
    ("{LDAP-MD5}iOTd0kAtktUOGHnW7Nn/1Aé=", "malformed {LDAP-MD5} hash"),
    ("{CRAM-MD5}83b1f18da0d222b257", "malformed {CRAM-MD5} hash"),
    ("{PLAIN-TRUNC}correct horse battery", "expected <length>-<password>"),
    ("{PBKDF2}$1$7u1saGxqiGHqTF38$0$3ef72653bc8f0f3de25189364dacb12a04af39a0", "expected $1$salt$rounds$hash"),
    ("{PBKDF2}7u1saGxqiGHqTF38$5000$3ef72653bc8f0f3de25189364dacb12a04af39a0", "expected $1$salt$rounds$hash"),
    ("{SCRAM-SHA-256}1024,BoS0c5vTDacRMOjebuJZVw==,yTn5FIOF9ZHXvwb6aj6BGKGhP3wuJcMnkAKGCf8WXYg=,"
     "leGe/AsPFam0YBUee2FGojuEbQNQBlgdJp5EKOsp/J8=", "4096 or more"),
    ("{SCRAM-SHA-1}4096,dbjPdTOqHkz6xDAHeMu+jQ==,MR4UPi7Ye2JcBKpFiVUR9XXE,k0Y5xElmRjHx+HANHgknAEt04lI=",
     "the keys are not 20 bytes"),
    ("{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$QB+aziRtHMCKIa2JDDMP", "malformed {ARGON2ID} hash"),
    ("{CRYPT}", "malformed {CRYPT} hash: empty"),
    ("{CRYPT}$1$Z1r4vVFs$4X/LE6lXcRPKr.CLK2Ua", "its length does not fit"),
    ("{CRYPT}$2b$04$BV9kGTk4BgDbKB54p2", "refuses its salt or parameters"),
    ("{CRYPT}!", "refuses its salt or parameters"),  # a locked account
    ("{CRYPT}$hx$salt$hash", "this system's crypt library cannot check $hx$ hashes"),
    ("{FOO}bar", "unknown password scheme {FOO}"),
    ("{sha.xyz}mN7MYuzjmaIu0w1JDvMzvn/ec4U=", "unknown password scheme {sha.xyz}"),
    ("{DIGEST-MD5}5a4d5b1a31ac8bef3ad3d31cb15cd4b5", "user name and realm"),
    ("$argon2id$v=19$m=65536,t=3,p=1$QB+aziRtHMCKIa2JDDMP/w$x", "not a {SCHEME}-prefixed password"),
    ("{SHA mN7MYuzjmaIu0w1JDvMzvn/ec4U=", "not a {SCHEME}-prefixed password"),
])
def test_unusable_hashes_say_why(stored, reason):
    with pytest.raises(UnknownScheme) as caught:
        check_supported(stored)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)
    with pytest.raises(UnknownScheme):
        verify(stored, PW)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["PLAIN-TRUNC", "PLAIN-MD5", "SHA", "SSHA512", "SMD5.HEX", "CRYPT", "MD5",
                     "SCRAM-SHA-1", "ARGON2ID", "CRAM-MD5", "SHA256.B64"]),
    st.text(st.sampled_from("$1,.-=/+aAzZ09fé\0"), max_size=60),
)
def test_damaged_hashes_give_false_or_unknown_scheme(scheme, data):
    try:
        assert verify("{%s}%s" % (scheme, data), PW) in (True, False)
    except UnknownScheme:
        pass


def test_nul_in_password_never_matches_a_crypt_hash():
    stored = "{CRYPT}$1$Z1r4vVFs$4X/LE6lXcRPKr.CLK2Ua9/"
    assert verify(stored, PW)
    assert not verify(stored, PW + "\0tail")  # C would read only up to the NUL


def test_from_dovecot():
    assert from_dovecot("$1$Z1r4vVFs$4X/LE6lXcRPKr.CLK2Ua9/") == "{CRYPT}$1$Z1r4vVFs$4X/LE6lXcRPKr.CLK2Ua9/"
    assert from_dovecot("kkWFqPtbKY.Is") == "{CRYPT}kkWFqPtbKY.Is"
    assert from_dovecot("{ssha512.b64}abc=") == "{SSHA512.B64}abc="
    assert from_dovecot("{no-brace") == "{CRYPT}{no-brace"  # Dovecot's default scheme takes all of it
    assert verify(from_dovecot("$6$uERIrTf62P6UOkeU$aMB2bRiSsN2tvcuLVq0L4JQaqUQ/CoTzYMJe3EiNGJkEOZ63ZR4gpC84/bsrXWp."
                               "s9I5I1vycvCDOrlDMmaC6/"), PW)


def test_is_legacy_and_scheme_of():
    assert is_legacy("{CRYPT}$1$Z1r4vVFs$4X/LE6lXcRPKr.CLK2Ua9/")
    assert not is_legacy("$argon2id$v=19$m=65536,t=3,p=1$QB+aziRtHMCKIa2JDDMP/w$x")
    assert scheme_of("{sha512-crypt}$6$x") == "SHA512-CRYPT"
    assert scheme_of("{PLAIN-MD5.b64}iOTd0kAtktUOGHnW7Nn/1A==") == "PLAIN-MD5"


# every scheme doveadm makes that verify can check (CRYPT gives BLF-CRYPT, MD5 gives MD5-CRYPT)
LIVE = ["PLAIN", "CLEAR", "CLEARTEXT", "PLAIN-MD5", "LDAP-MD5", "SMD5", "SHA", "SHA1", "SSHA", "SHA256", "SSHA256",
        "SHA512", "SSHA512", "MD5", "MD5-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT", "BLF-CRYPT", "DES-CRYPT", "CRYPT",
        "PBKDF2", "SCRAM-SHA-1", "SCRAM-SHA-256", "ARGON2I", "ARGON2ID", "CRAM-MD5", "HMAC-MD5",
        "PLAIN.B64", "PLAIN-MD5.B64", "SHA256.HEX", "SSHA.HEX", "SSHA512.HEX", "SMD5.B64", "CRAM-MD5.B64"]


@needs("doveadm", why="Debian package dovecot-core")
@pytest.mark.parametrize("scheme", LIVE)
def test_fresh_doveadm_hashes(scheme):
    made = subprocess.run(["doveadm", "pw", "-s", scheme, "-p", UNI],
                          capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    assert scheme_of(made) == scheme.partition(".")[0]
    assert_checks(made, UNI)
