"""DNS-01 records through RFC 2136 dynamic updates, signed with TSIG (RFC 8945).

For servers the CA cannot reach on port 80 or 443: the TXT record
_acme-challenge.NAME is added on the primary server that takes updates
([acme.dns_update] server), hatoba waits until that server answers it, and
removes it once the CA has decided. dnspython builds, signs and sends the
messages; this module only knows which records to write where.

The key file is what tsig-keygen and ddns-confgen (BIND) write,
    key "NAME" { algorithm hmac-sha256; secret "BASE64"; };
or the one-line "ALGORITHM:NAME:SECRET" of nsupdate -y and knot's keymgr -t.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from hatoba.config.load import ConfigError, parse_listen_address
from hatoba.config.schema import AcmeDnsUpdate

TTL = 60
TIMEOUT = 10.0  # seconds for one DNS exchange
VISIBLE_WITHIN = 30.0  # seconds the primary gets to answer a record it took

ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1")  # RFC 8945 §6
_BIND_KEY = re.compile(r'key\s+"?([^"\s{]+)"?\s*\{(.*?)\}\s*;', re.S)
_BIND_ALGORITHM = re.compile(r'algorithm\s+"?([\w.-]+)"?\s*;')
_BIND_SECRET = re.compile(r'secret\s+"([A-Za-z0-9+/=\s]+)"\s*;')
_ONE_LINE = re.compile(r"^[#\s]*(hmac-[\w-]+):([\w.-]+):([A-Za-z0-9+/=]+)\s*$", re.M)


class DnsUpdateError(Exception):
    """The record could not be written or seen; the message says which and why."""


@dataclass(frozen=True)
class TsigKey:
    name: str
    algorithm: str
    secret: str  # base64


def read_tsig_key(path: Path) -> TsigKey:
    try:
        text = path.read_text(encoding="ascii")
    except OSError as exc:
        raise DnsUpdateError(f"cannot read the TSIG key {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise DnsUpdateError(f"{path} is not a TSIG key file (it is not text)") from None
    key = None
    match = _BIND_KEY.search(text)
    if match:
        algorithm = _BIND_ALGORITHM.search(match.group(2))
        secret = _BIND_SECRET.search(match.group(2))
        if algorithm and secret:
            key = TsigKey(match.group(1), algorithm.group(1).lower(), "".join(secret.group(1).split()))
    line = _ONE_LINE.search(text)
    if key is None and line:
        key = TsigKey(line.group(2), line.group(1).lower(), line.group(3))
    if key is None:
        raise DnsUpdateError(f"{path} holds no TSIG key (write one with: tsig-keygen NAME > {path.name})")
    if key.algorithm not in ALGORITHMS:
        raise DnsUpdateError(f"{path}: TSIG algorithm {key.algorithm} is not one hatoba signs with; "
                             "make a hmac-sha256 key (tsig-keygen -a hmac-sha256 NAME)")
    return key


class DnsUpdater:
    def __init__(self, settings: AcmeDnsUpdate) -> None:
        assert settings.tsig_key is not None
        try:
            self.host, self.port = parse_listen_address(settings.server, "acme.dns_update.server")
        except ConfigError as exc:
            raise DnsUpdateError(str(exc)) from None
        self.zone_setting = settings.zone
        key = read_tsig_key(settings.tsig_key)
        try:
            self.keyring = {dns.name.from_text(key.name): dns.tsig.Key(key.name, key.secret, key.algorithm)}
        except (ValueError, dns.exception.DNSException) as exc:
            raise DnsUpdateError(f"the TSIG key {key.name} in {settings.tsig_key} is unusable: {exc}") from None
        self.key_name = dns.name.from_text(key.name)

    def add_txt(self, name: str, value: str) -> None:
        record = dns.name.from_text(name)
        zone = self._zone_of(record)
        update = self._update(zone)
        update.add(record, TTL, dns.rdatatype.TXT, _quoted(value))
        self._send(update, f"add TXT {name}")
        self._await_visible(record, value)

    def remove_txt(self, name: str, value: str) -> None:
        record = dns.name.from_text(name)
        update = self._update(self._zone_of(record))
        update.delete(record, dns.rdatatype.TXT, _quoted(value))
        self._send(update, f"remove TXT {name}")

    def _update(self, zone: dns.name.Name) -> dns.update.UpdateMessage:
        return dns.update.UpdateMessage(zone, keyring=self.keyring, keyname=self.key_name)

    def _send(self, message: dns.message.Message, what: str) -> None:
        try:
            answer = dns.query.tcp(message, self.host, port=self.port, timeout=TIMEOUT)
        except (OSError, EOFError, ValueError, dns.exception.DNSException) as exc:
            raise DnsUpdateError(f"cannot {what} on {self.host}:{self.port}: {_why(exc)}") from None
        if answer.rcode() != dns.rcode.NOERROR:
            raise DnsUpdateError(
                f"{self.host}:{self.port} refused to {what}: {dns.rcode.to_text(answer.rcode())}"
                " (does its ACL let this TSIG key update the zone?)")

    def _zone_of(self, record: dns.name.Name) -> dns.name.Name:
        """acme.dns_update.zone, else the zone the server holds `record` in: the owner of
        the SOA it answers (RFC 2136 §4: the update names the zone)."""
        if self.zone_setting:
            return dns.name.from_text(self.zone_setting)
        query = dns.message.make_query(record, dns.rdatatype.SOA)
        try:
            answer = dns.query.tcp(query, self.host, port=self.port, timeout=TIMEOUT)
        except (OSError, EOFError, ValueError, dns.exception.DNSException) as exc:
            raise DnsUpdateError(f"cannot ask {self.host}:{self.port} for the zone of {record}: {_why(exc)}") from None
        for rrset in (*answer.answer, *answer.authority):
            if rrset.rdtype == dns.rdatatype.SOA and record.is_subdomain(rrset.name):
                return rrset.name
        raise DnsUpdateError(f"{self.host}:{self.port} holds no zone for {record}; set acme.dns_update.zone")

    def _await_visible(self, record: dns.name.Name, value: str) -> None:
        deadline = time.monotonic() + VISIBLE_WITHIN
        while True:
            query = dns.message.make_query(record, dns.rdatatype.TXT)
            try:
                answer = dns.query.tcp(query, self.host, port=self.port, timeout=TIMEOUT)
                texts = {b"".join(r.strings).decode("ascii", "replace")
                         for rrset in answer.answer for r in rrset if rrset.rdtype == dns.rdatatype.TXT}
                if value in texts:
                    return
            except (OSError, EOFError, ValueError, dns.exception.DNSException):
                pass
            if time.monotonic() > deadline:
                raise DnsUpdateError(f"{self.host}:{self.port} took the TXT record {record} but does not answer it")
            time.sleep(0.2)


def _quoted(value: str) -> str:
    return f'"{value}"'  # base64url: no quote or backslash to escape


def _why(exc: BaseException) -> str:
    if isinstance(exc, dns.exception.Timeout):
        return "no answer"
    if isinstance(exc, EOFError):
        return "it closed the connection (is it a DNS server?)"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


__all__ = ["DnsUpdateError", "DnsUpdater", "TsigKey", "read_tsig_key"]
