"""What a mail program needs to set itself up: servers, ports, encryption.

Two formats, built from the listeners that are enabled, implicit TLS first
(RFC 8314 §5.1 prefers it), never a port where the password would cross
unencrypted (every STARTTLS port refuses a login before TLS):

- Thunderbird's autoconfig, clientConfig version 1.1, as its documentation
  on wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat lists
  the elements and values.
- Outlook's Autodiscover, the "POX" 2006a response schema (what Outlook
  and many phones ask with a POST of the user's address).

The login is always the whole address (hatoba's logins are). Nothing here
reads the network or the disk: the callers pass the config and the domain.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from xml.sax.saxutils import escape

from hatoba.config.schema import Config

THUNDERBIRD_TYPE = "application/xml; charset=utf-8"
AUTODISCOVER_TYPE = "text/xml; charset=utf-8"
AUTODISCOVER_RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
AUTODISCOVER_OUTLOOK_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"


@dataclass(frozen=True)
class Offer:
    """One way in for a mail program."""

    kind: str  # imap, pop3, smtp
    port: int
    implicit_tls: bool  # else STARTTLS, required before the login


# (kind, listener) in the order offered: implicit TLS first, IMAP before POP3.
_INCOMING = (("imap", "imaps", True), ("imap", "imap", False), ("pop3", "pop3s", True), ("pop3", "pop3", False))
_OUTGOING = (("smtp", "smtps", True), ("smtp", "submission", False))


PortOf = Callable[[str], int]  # a listener's name -> the port it listens on


def offers(config: Config, port_of: PortOf | None = None) -> list[Offer]:
    """The enabled listeners a user's mail program may use, in order of preference.
    `port_of` gives the port each listens on (the config's, unless the server bound another)."""
    found = []
    for kind, name, implicit in (*_INCOMING, *_OUTGOING):
        listener = config.listeners.get(name)
        if listener is not None and listener.enabled:
            found.append(Offer(kind, port_of(name) if port_of is not None else listener.port, implicit))
    return found


def thunderbird_xml(config: Config, domain: str, port_of: PortOf | None = None) -> bytes:
    """The clientConfig document for `domain` (a local domain)."""
    host = escape(config.server.hostname)
    dom = escape(domain)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<clientConfig version="1.1">',
        f'  <emailProvider id="{dom}">',
        f"    <domain>{dom}</domain>",
        f"    <displayName>{dom} mail</displayName>",
        f"    <displayShortName>{dom}</displayShortName>",
    ]
    for offer in offers(config, port_of):
        element = "outgoingServer" if offer.kind == "smtp" else "incomingServer"
        lines += [
            f'    <{element} type="{offer.kind}">',
            f"      <hostname>{host}</hostname>",
            f"      <port>{offer.port}</port>",
            f"      <socketType>{'SSL' if offer.implicit_tls else 'STARTTLS'}</socketType>",
            "      <authentication>password-cleartext</authentication>",
            "      <username>%EMAILADDRESS%</username>",
            f"    </{element}>",
        ]
    lines += ["  </emailProvider>", "</clientConfig>", ""]
    return "\n".join(lines).encode("utf-8")


_EMAIL_ELEMENT = re.compile(rb"<(?:\w+:)?EMailAddress\s*>\s*([^<\s]{1,320})\s*</(?:\w+:)?EMailAddress\s*>")


def autodiscover_address(body: bytes) -> str | None:
    """The address an Autodiscover request asks about, or None.

    Only the one element is looked for, with a pattern over a body the
    server has already bounded: no XML parser meets entities or DTDs
    from the network, and an address that is not one fails later, when
    the caller parses it.
    """
    found = _EMAIL_ELEMENT.search(body)
    if found is None:
        return None
    try:
        return found.group(1).decode("ascii")
    except UnicodeDecodeError:
        return None


def autodiscover_xml(config: Config, address: str, port_of: PortOf | None = None) -> bytes:
    """The 2006a response for `address` (a user of a local domain)."""
    host = escape(config.server.hostname)
    login = escape(address)
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<Autodiscover xmlns="{AUTODISCOVER_RESPONSE_NS}">',
        f'  <Response xmlns="{AUTODISCOVER_OUTLOOK_NS}">',
        "    <Account>",
        "      <AccountType>email</AccountType>",
        "      <Action>settings</Action>",
    ]
    for offer in offers(config, port_of):
        lines += [
            "      <Protocol>",
            f"        <Type>{offer.kind.upper()}</Type>",
            f"        <Server>{host}</Server>",
            f"        <Port>{offer.port}</Port>",
            f"        <LoginName>{login}</LoginName>",
            "        <DomainRequired>off</DomainRequired>",
            "        <SPA>off</SPA>",
            "        <SSL>on</SSL>",
            "        <AuthRequired>on</AuthRequired>",
            f"        <Encryption>{'SSL' if offer.implicit_tls else 'TLS'}</Encryption>",
            "      </Protocol>",
        ]
    lines += ["    </Account>", "  </Response>", "</Autodiscover>", ""]
    return "\n".join(lines).encode("utf-8")


__all__ = [
    "AUTODISCOVER_TYPE", "THUNDERBIRD_TYPE", "Offer", "autodiscover_address", "autodiscover_xml", "offers",
    "thunderbird_xml",
]
