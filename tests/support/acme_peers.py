"""Real ACME peers on loopback: Debian's pebble (an ACME CA for tests) and knot
(an authoritative DNS server that takes RFC 2136 updates signed with TSIG).

pebble resolves every name through the knot started beside it (-dnsserver),
so the names of a test zone point at 127.0.0.1, where hatoba's http and https
listeners answer HTTP-01 and TLS-ALPN-01, and DNS-01 records written to knot
are what pebble reads. pebble's own HTTPS uses a certificate of a CA made
here (`ca_file`); the roots it issues under are new at every start (`roots`).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import secrets
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.harness import ServerProcess, free_port_offset, make_home, wait_for
from support.peers import require

TSIG_NAME = "hatoba-acme"
ZONE = "example.test"
HOSTNAME = f"mail.{ZONE}"
NAMES = [HOSTNAME, f"autoconfig.{ZONE}", f"mta-sts.{ZONE}"]
PORTS = (25, 587, 465, 110, 995, 143, 993, 80, 443)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, what: str, proc: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:]}")
        try:
            if predicate():
                return
        except (OSError, dns.exception.DNSException):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Knot:
    """knotd serving `zone` from a zone file of A records, updatable with the TSIG key `key_file`."""

    def __init__(self, folder: Path, zone: str, names: list[str]) -> None:
        self.folder = folder
        self.zone = zone
        self.names = names
        self.port = free_port()
        self.secret = base64.b64encode(secrets.token_bytes(32)).decode()
        self.key_file = folder / "tsig.key"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> Knot:
        knotd = require("knotd", "apt-get install knot")
        (self.folder / "db").mkdir(parents=True, exist_ok=True)
        # What tsig-keygen writes (BIND's format), which hatoba reads.
        self.key_file.write_text(f'key "{TSIG_NAME}" {{\n\talgorithm hmac-sha256;\n\tsecret "{self.secret}";\n}};\n')
        records = "\n".join(f"{n}. 60 A 127.0.0.1" for n in self.names)
        (self.folder / f"{self.zone}.zone").write_text(
            f"$ORIGIN {self.zone}.\n$TTL 60\n"
            f"@ SOA ns.{self.zone}. hostmaster.{self.zone}. 1 3600 600 86400 60\n"
            f"@ NS ns.{self.zone}.\nns A 127.0.0.1\n{records}\n")
        (self.folder / "knot.conf").write_text(f"""\
server:
    listen: 127.0.0.1@{self.port}
    rundir: {self.folder}
log:
  - target: stderr
    any: info
database:
    storage: {self.folder}/db
key:
  - id: {TSIG_NAME}
    algorithm: hmac-sha256
    secret: {self.secret}
acl:
  - id: updates
    key: {TSIG_NAME}
    action: update
template:
  - id: default
    storage: {self.folder}
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: {self.zone}
    file: {self.zone}.zone
    acl: updates
""")
        self.log = self.folder / "knot.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([knotd, "-c", str(self.folder / "knot.conf")], stdout=out, stderr=out)
        try:
            _wait(self._answers, "knotd", self.proc, self.log)
        except BaseException:
            _stop(self.proc)
            raise
        return self

    def _answers(self) -> bool:
        query = dns.message.make_query(f"{self.zone}.", dns.rdatatype.SOA)
        return bool(dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.5).answer)

    def txt(self, name: str) -> list[str]:
        query = dns.message.make_query(name, dns.rdatatype.TXT)
        answer = dns.query.tcp(query, "127.0.0.1", port=self.port, timeout=2)
        return [b"".join(r.strings).decode() for rrset in answer.answer for r in rrset]

    def __exit__(self, *exc: object) -> None:
        _stop(self.proc)


def _tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate of it for 127.0.0.1 and localhost: pebble's HTTPS."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble's HTTPS test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_file, cert_file, key_file = folder / "https-ca.pem", folder / "https.pem", folder / "https.key"
    ca_file.write_bytes(ca.public_bytes(pem))
    cert_file.write_bytes(leaf.public_bytes(pem))
    key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return ca_file, cert_file, key_file


class Pebble:
    """pebble validating against `http_port` / `tls_port` on 127.0.0.1, names resolved by `dns`."""

    def __init__(self, folder: Path, dns_address: str, http_port: int, tls_port: int, *,
                 validity: int | None = None) -> None:
        self.folder = folder
        self.dns_address = dns_address
        self.http_port = http_port
        self.tls_port = tls_port
        self.validity = validity
        self.port = free_port()
        self.management_port = free_port()
        self.blocklist: list[str] = []  # names the CA refuses
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def __enter__(self) -> Pebble:
        pebble = require("pebble", "apt-get install pebble")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ca_file, cert, key = _tls_files(self.folder)
        settings = {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(cert), "privateKey": str(key),
            "httpPort": self.http_port, "tlsPort": self.tls_port,
            "ocspResponderURL": "", "externalAccountBindingRequired": False,
        }
        if self.blocklist:
            settings["domainBlocklist"] = self.blocklist
        if self.validity is not None:
            settings["certificateValidityPeriod"] = self.validity
        config = self.folder / "pebble.json"
        config.write_text(json.dumps({"pebble": settings}))
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
        self.log = self.folder / "pebble.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([pebble, "-config", str(config), "-dnsserver", self.dns_address],
                                         stdout=out, stderr=out, env=env)
        try:
            _wait(lambda: self._get(self.directory_url) is not None, "pebble", self.proc, self.log)
        except BaseException:
            _stop(self.proc)
            raise
        return self

    def _get(self, url: str) -> bytes:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(url, context=context, timeout=5) as answer:
            return answer.read()

    def roots(self) -> bytes:
        """The PEM root pebble issues under (new at every start)."""
        return self._get(f"https://127.0.0.1:{self.management_port}/roots/0")

    def __exit__(self, *exc: object) -> None:
        _stop(self.proc)


class AcmeSetup:
    """knot, pebble and `hatoba serve` (a child process) with [acme] pointed at pebble:
    the names of ZONE resolve to 127.0.0.1, pebble validates on hatoba's http/https ports.
    `keep_root`: see ServerProcess (False, the default: started as root, the server runs as
    the service user, so `tmp_path` must be a folder that user may pass)."""

    def __init__(self, tmp_path, challenges: str, *, validity: int | None = None, extra: str = "",
                 keep_root: bool = False) -> None:
        self.offset = free_port_offset(PORTS)
        self.knot = Knot(tmp_path / "knot", ZONE, NAMES)
        self.tmp = tmp_path
        self.challenges = challenges
        self.validity = validity
        self.extra = extra
        self.keep_root = keep_root

    def __enter__(self) -> "AcmeSetup":
        with contextlib.ExitStack() as started:  # a part that fails to start stops the others
            self._enter(started)
            self._stack = started.pop_all()
        return self

    def _enter(self, started: contextlib.ExitStack) -> None:
        started.enter_context(self.knot)
        self.pebble = started.enter_context(
            Pebble(self.tmp / "pebble", self.knot.address, 80 + self.offset, 443 + self.offset,
                   validity=self.validity))
        acme = (f'[acme]\ndirectory = "{self.pebble.directory_url}"\ncontact = "mailto:postmaster@{ZONE}"\n'
                f'ca_file = "{self.pebble.ca_file}"\nchallenges = {self.challenges}\n'
                f'[acme.dns_update]\nserver = "{self.knot.address}"\ntsig_key = "{self.knot.key_file}"\n')
        web = "[listeners.http]\nenabled = true\n[listeners.https]\nenabled = true\n"
        self.home = make_home(self.tmp / "hatoba", port_offset=self.offset, extra_config=web + acme + self.extra)
        self.server = started.enter_context(ServerProcess(self.home, self.offset, keep_root=self.keep_root))

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def adopt(self, peer):  # type: ignore[no-untyped-def]
        """Start `peer` and stop it with the rest."""
        return self._stack.enter_context(peer)

    @property
    def cert_file(self):
        return self.home.root / "data" / "acme" / "cert.pem"

    def serial(self) -> int | None:
        try:
            return x509.load_pem_x509_certificates(self.cert_file.read_bytes())[0].serial_number
        except (OSError, ValueError):
            return None

    def wait_issued(self, other_than: int | None = None, timeout: float = 60) -> int:
        assert wait_for(lambda: self.serial() not in (None, other_than), timeout), self.log()[-3000:]
        return self.serial()  # type: ignore[return-value]

    def log(self) -> str:
        return self.server.log_path.read_text(errors="replace")

    def port(self, standard: int) -> int:
        return standard + self.offset
