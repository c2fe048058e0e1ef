"""DKIM verification (RFC 6376; Ed25519 keys, RFC 8463) of every signature, through dkimpy.

Each DKIM-Signature field gets its own result, as Authentication-Results
reports them (RFC 8601 §2.7.1):
- pass: the signature verifies with the key published for d= and s=;
- fail: it does not (body or signed header changed, wrong key), or it expired;
- permerror: it cannot be checked (malformed tags, no key or a malformed key,
  a key shorter than 1024 bits);
- temperror: the key could not be fetched now (DNS timeout or failure).
"""

from __future__ import annotations

from dataclasses import dataclass

import dkim

from hatoba.checks.headers import Field
from hatoba.checks.lookup import Lookup, TemporaryLookupError

MIN_RSA_BITS = 1024  # RFC 8301 §3.2: shorter keys are not to be accepted
# Signatures verified per message, the topmost first (RFC 6376 §6.1 lets a verifier limit
# them): each costs a key lookup and a pass over the body, and senders add one or two.
MAX_SIGNATURES = 5


@dataclass(frozen=True)
class DkimResult:
    result: str  # pass | fail | permerror | temperror
    domain: str  # d=
    selector: str  # s=
    identity: str = ""  # i=, when given
    algorithm: str = ""  # a=
    reason: str = ""  # why it is not a pass, in words
    signature_start: str = ""  # the first characters of b= (RFC 6008 header.b)

    @property
    def passed(self) -> bool:
        return self.result == "pass"


class _Reasons:
    """A logger for dkimpy that keeps what it says, so a failure can be told in words."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def _keep(self, msg: object, *args: object) -> None:
        text = str(msg) % args if args else str(msg)
        self.lines.append(" ".join(text.split()))

    debug = info = warning = error = exception = _keep


def verify_all(message: bytes, fields: list[Field], lookup: Lookup) -> list[DkimResult]:
    """One result per DKIM-Signature field (the first MAX_SIGNATURES), top first; [] when none."""
    count = min(MAX_SIGNATURES, sum(1 for f in fields if f.name == "dkim-signature"))
    return [_verify_one(message, index, lookup) for index in range(count)]


def _verify_one(message: bytes, index: int, lookup: Lookup) -> DkimResult:
    reasons = _Reasons()
    try:
        verifier = dkim.DKIM(message, logger=reasons, minkey=MIN_RSA_BITS, timeout=lookup.timeout)
    except Exception as exc:  # the header section itself is beyond dkimpy
        return DkimResult("permerror", "", "", reason=f"message header cannot be read: {exc}")
    try:
        ok = verifier.verify(idx=index, dnsfunc=lookup.for_dkimpy)
    except TemporaryLookupError as exc:
        return _result(verifier, "temperror", str(exc))
    except dkim.ValidationError as exc:
        text = str(exc)
        if "x= value is past" in text:
            return _result(verifier, "fail", "signature expired")
        if "body hash mismatch" in text:
            return _result(verifier, "fail", "body hash mismatch")
        return _result(verifier, "permerror", f"malformed signature: {text}")
    except dkim.KeyFormatError as exc:
        if "too small" in str(exc):
            return _result(verifier, "permerror", f"the key is shorter than {MIN_RSA_BITS} bits")
        return _result(verifier, "permerror", f"the published key is unusable: {exc}")
    except dkim.DKIMException as exc:
        return _result(verifier, "permerror", f"malformed signature: {exc}")
    except Exception as exc:  # dkimpy on input it did not expect: no verdict, never a crash
        return _result(verifier, "permerror", f"cannot verify: {exc}")
    if ok:
        return _result(verifier, "pass", "")
    # dkimpy logs (and does not raise) what was wrong with the key record.
    said = " ".join(reasons.lines).lower()
    if "too large to verify" in said:
        return _result(verifier, "permerror", "the published key is too large to verify with")
    if "missing public key" in said:
        return _result(verifier, "permerror", "no key published for the signature")
    if "keyformaterror" in said or "key" in said and ("unparsable" in said or "invalid" in said or "unknown" in said):
        return _result(verifier, "permerror", "the published key is malformed")
    return _result(verifier, "fail", "signature did not verify")


def _result(verifier: dkim.DKIM, result: str, reason: str) -> DkimResult:
    tags = verifier.signature_fields or {}

    def tag(name: bytes) -> str:
        value = tags.get(name, b"")
        return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)

    signature = "".join(tag(b"b").split())
    return DkimResult(
        result=result,
        domain=tag(b"d").lower(),
        selector=tag(b"s"),
        identity=tag(b"i"),
        algorithm=tag(b"a").lower(),
        reason=" ".join(reason.split())[:200],
        signature_start=signature[:8],
    )
