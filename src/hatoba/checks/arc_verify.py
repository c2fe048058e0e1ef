"""ARC (RFC 8617) chain validation, through dkimpy.

A forwarder or mailing list that changed a message (so its DKIM signature
broke) can vouch for what it saw with an ARC set. The chain's result is
pass, fail or none; who sealed last matters only to the policy, which trusts
the sealers the operator names ([checks] trusted_arc_sealers).
"""

from __future__ import annotations

from dataclasses import dataclass

import dkim

from hatoba.checks.lookup import Lookup, TemporaryLookupError
from hatoba.checks.dkim_verify import MIN_RSA_BITS


@dataclass(frozen=True)
class ArcResult:
    result: str  # pass | fail | none | temperror
    sealer: str = ""  # d= of the newest ARC-Seal
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.result == "pass"


def verify_chain(message: bytes, lookup: Lookup) -> ArcResult:
    try:
        cv, results, reason = dkim.arc_verify(message, dnsfunc=lookup.for_dkimpy, minkey=MIN_RSA_BITS)
    except TemporaryLookupError as exc:
        return ArcResult("temperror", reason=str(exc))
    except Exception as exc:  # dkimpy on input it did not expect: no verdict, never a crash
        return ArcResult("fail", reason=f"cannot verify: {' '.join(str(exc).split())[:160]}")
    value = cv.decode("ascii") if isinstance(cv, bytes) else "fail"  # None: a chain another sealer ended
    sealer = ""
    if results:
        raw = results[0].get("as-domain", b"")
        sealer = (raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)).lower()
    return ArcResult(value.lower(), sealer, " ".join(str(reason).split())[:160])
