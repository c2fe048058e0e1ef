"""What the web listeners answer to everyone: autoconfiguration and the
MTA-STS policy on https, and on plain http only a redirect to https.

https:
- Thunderbird autoconfig at /mail/config-v1.1.xml (Host autoconfig.DOMAIN)
  and /.well-known/autoconfig/mail/config-v1.1.xml (any Host), for the
  domain of ?emailaddress= or else of the Host; 404 for a domain that is
  not one of ours.
- Outlook Autodiscover: POST /autodiscover/autodiscover.xml (either case of
  the path, as clients send both) with the user's address in the body.
- An Apple configuration profile at /apple/mail.mobileconfig?emailaddress=
  (web/mobileconfig.py), signed with the server's certificate, for an
  address of a local domain.
- The MTA-STS policy at /.well-known/mta-sts.txt for Host mta-sts.DOMAIN of
  a local domain (RFC 8461 §3.3); 404 for any other Host. Mode "none" is
  served too: it is how senders learn to drop a policy they cached
  (RFC 8461 §5).

http (plain): ACME HTTP-01 answers under /.well-known/acme-challenge/ while
an order has them up (acme/challenges.py); the private CA's CRL
(/crl/ca.crl, pki/crl.py) to anyone; a
name this server answers for (server.hostname,
autoconfig.DOMAIN, mta-sts.DOMAIN of a local domain) is redirected to the
same path on https when that listener is on; anything else is 404. Nothing
else is served in plain text (/metrics and /healthz aside, for [metrics]
networks: web/ops.py).

The domain look-ups read the directory, in a thread.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Callable
from urllib.parse import parse_qs

from hatoba.acme.challenges import HTTP01_PREFIX, ChallengeBoard
from hatoba.acme.files import served_tls
from hatoba.config.schema import Config
from hatoba.pki.crl import CRL_FILE, CRL_PATH, CRL_TYPE, CrlFile
from hatoba.proto.address import Address, AddressError, parse_address
from hatoba.web import autoconfig as A
from hatoba.web import mobileconfig as P
from hatoba.web import mta_sts as M
from hatoba.web.routes import NOT_FOUND, Handler, Request, Response, Route, text_response

AUTOCONFIG_PATHS = ("/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml")
AUTODISCOVER_PATHS = ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml")
AUTOCONFIG_PREFIX = "autoconfig."

IsLocalDomain = Callable[[str], bool]  # blocking: called in a thread


def https_routes(config: Config, is_local_domain: IsLocalDomain, port_of: A.PortOf) -> list[Route]:
    async def local(domain: str | None) -> bool:
        return await _is_local(is_local_domain, domain)

    async def thunderbird(request: Request) -> Response:
        if not await local(domain := _autoconfig_domain(request)):
            return NOT_FOUND
        return Response(200, A.thunderbird_xml(config, domain, port_of), A.THUNDERBIRD_TYPE)

    async def autodiscover(request: Request) -> Response:
        found = A.autodiscover_address(request.body)
        if found is None:
            return text_response(400, "Send the Autodiscover request with an EMailAddress element")
        try:
            address = parse_address(found)
        except AddressError:
            return text_response(400, "The EMailAddress is not a mail address")
        if not await local(address.domain):
            return NOT_FOUND
        return Response(200, A.autodiscover_xml(config, str(address), port_of), A.AUTODISCOVER_TYPE)

    async def apple(request: Request) -> Response:
        _, address = _asked_address(request)
        if address is None or address.quoted or not _plain(address.local):
            # A signed profile shows the address to the user: no quoted or invisible text in it.
            return text_response(400, "Ask with ?emailaddress=you@your.domain")
        if not await local(address.domain):
            return NOT_FOUND
        plist = P.profile(config, str(address), port_of)
        if plist is None:
            return NOT_FOUND  # no incoming or no outgoing listener is on
        signed = await asyncio.to_thread(_sign_profile, plist, config)
        disposition = ("Content-Disposition", f'attachment; filename="{address.domain}.mobileconfig"')
        return Response(200, signed, P.CONTENT_TYPE, (disposition,))

    async def policy(request: Request) -> Response:
        if not await local(_under(M.HOST_PREFIX, request.hostname)):
            return NOT_FOUND
        return Response(200, M.policy_text(config).encode("ascii"), M.POLICY_TYPE)

    return [
        *(Route(path, thunderbird) for path in AUTOCONFIG_PATHS),
        *(Route(path, autodiscover, methods=("POST",)) for path in AUTODISCOVER_PATHS),
        Route(P.PATH, apple),
        Route(M.POLICY_PATH, policy),
    ]


def crl_routes(config: Config) -> list[Route]:
    """The private CA's CRL (pki/crl.py), to everyone, in plain http as CRLs are (RFC 5280 §4.2.1.13):
    it is signed, and a client checking revocation must not need TLS to do it."""
    if config.tls.ca_file is None:
        return []
    cache = CrlFile(config.tls.ca_file.parent / CRL_FILE)

    async def crl(request: Request) -> Response:
        der = await asyncio.to_thread(cache.current)
        if der is None:
            return NOT_FOUND  # the certificate is not from hatoba's CA: it publishes no CRL here
        return Response(200, der, CRL_TYPE)

    return [Route(CRL_PATH, crl)]


def https_redirect(config: Config, is_local_domain: IsLocalDomain, port_of: A.PortOf):  # type: ignore[no-untyped-def]
    """The http listener's answer to paths it has no route for (see the module docstring)."""
    https = config.listeners.get("https")
    hostname = config.server.hostname.lower()

    async def redirect(request: Request) -> Response:
        if https is None or not https.enabled:
            return NOT_FOUND
        name = request.hostname
        served = name == hostname or any(
            [await _is_local(is_local_domain, _under(prefix, name)) for prefix in (AUTOCONFIG_PREFIX, M.HOST_PREFIX)])
        if not served:
            return NOT_FOUND
        https_port = port_of("https")
        port = "" if https_port == 443 else f":{https_port}"
        query = f"?{request.query}" if request.query else ""
        location = f"https://{name}{port}{request.path}{query}"
        return text_response(301, "Moved to https", (("Location", location),))

    return redirect


def _sign_profile(plist: bytes, config: Config) -> bytes:
    """Signed with the certificate the listeners serve: the ACME CA's when there is one."""
    tls = served_tls(config)
    return P.sign(plist, tls.cert, tls.key)


def acme_challenges(board: ChallengeBoard | None, then: Handler) -> Handler:
    """The http listener's fallback: ACME HTTP-01 answers (RFC 8555 §8.3) under
    /.well-known/acme-challenge/ for any Host, else `then` (the redirect)."""

    async def answer(request: Request) -> Response:
        if not request.path.startswith(HTTP01_PREFIX):
            return await then(request)
        key_authorization = board.http01(request.path) if board is not None else None
        if key_authorization is None:
            return NOT_FOUND
        if request.method not in ("GET", "HEAD"):
            return text_response(405, "Method not allowed; use GET", (("Allow", "GET, HEAD"),))
        return Response(200, key_authorization.encode("ascii"), "application/octet-stream")

    return answer


async def _is_local(is_local_domain: IsLocalDomain, domain: str | None) -> bool:
    return bool(domain) and await asyncio.to_thread(is_local_domain, domain)  # type: ignore[arg-type]


def _under(prefix: str, name: str) -> str | None:
    """DOMAIN of a host name PREFIX.DOMAIN (autoconfig., mta-sts.), else None."""
    return name[len(prefix):] if name.startswith(prefix) and len(name) > len(prefix) else None


def _asked_address(request: Request) -> tuple[bool, Address | None]:
    """(whether ?emailaddress= was given, the address parsed or None when it is not one)."""
    try:
        values = parse_qs(request.query, max_num_fields=8).get("emailaddress")
    except ValueError:  # more fields than any mail program sends
        return True, None
    if not values:
        return False, None
    try:
        return True, parse_address(values[0])
    except AddressError:
        return True, None


def _plain(text: str) -> bool:
    """No control, format (bidirectional overrides), private-use or unassigned characters."""
    return all(unicodedata.category(c)[0] != "C" for c in text)


def _autoconfig_domain(request: Request) -> str | None:
    """The domain asked about: ?emailaddress=USER@DOMAIN (Thunderbird sends it), else Host autoconfig.DOMAIN."""
    given, address = _asked_address(request)
    if given:
        return None if address is None else address.domain
    return _under(AUTOCONFIG_PREFIX, request.hostname)


__all__ = ["AUTOCONFIG_PATHS", "AUTODISCOVER_PATHS", "https_redirect", "https_routes"]
