"""A small authoritative DNS server for tests: real UDP and TCP on 127.0.0.1.

Holds records as data and answers from them with dnspython's message code:
an unknown name is NXDOMAIN, a known name without the asked type is NOERROR
with an empty answer (NODATA), and a name in `servfail` gets SERVFAIL. A
`servfail` entry may also be "name TYPE" to fail only that type.

    with DnsServer({"example.org": [("MX", "10 mx.example.org.")]}) as dns:
        dns.add("mx.example.org", "A", "127.0.0.1")
        resolver = Resolver(dns.address)

UDP replies larger than the client allows (512 bytes without EDNS, else its
EDNS payload size) are sent empty with TC set, so clients retry over TCP,
which is how long DKIM keys travel in real life.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

TTL = 300
MAX_CNAME_HOPS = 8
# RFC 1035 §4.2.1: a UDP message without EDNS is at most 512 bytes.
UDP_CLASSIC_LIMIT = 512
TXT_PIECE = 255  # RFC 1035 §3.3: a character-string holds at most 255 bytes


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text.rstrip(".") or ".")


def _label(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _rdata(rtype: str, value: str) -> dns.rdata.Rdata:
    rdtype = dns.rdatatype.from_text(rtype.upper())
    if rdtype == dns.rdatatype.TXT:
        # The value is the record's text, not zone-file syntax: split it into
        # 255-byte strings as a zone compiler does for long DKIM keys.
        raw = value.encode()
        pieces = [raw[i : i + TXT_PIECE] for i in range(0, len(raw), TXT_PIECE)] or [b""]
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, rdtype, pieces)
    return dns.rdata.from_text(
        dns.rdataclass.IN, rdtype, value, origin=dns.name.root, relativize=False
    )


class DnsServer:
    """Authoritative answers from a dict of records; see the module docstring."""

    def __init__(
        self,
        records: dict[str, list[tuple[str, str]]] | None = None,
        *,
        servfail: set[str] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._records: dict[dns.name.Name, list[dns.rdata.Rdata]] = {}
        self._servfail: set[tuple[dns.name.Name, int | None]] = set()
        for name, entries in (records or {}).items():
            for rtype, value in entries:
                self.add(name, rtype, value)
        for entry in servfail or set():
            self.fail(entry)
        self.queries: list[tuple[str, str]] = []
        self.tcp_queries: list[tuple[str, str]] = []
        self.port = 0
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None

    # -- data ------------------------------------------------------------

    def add(self, name: str, rtype: str, value: str) -> None:
        rdata = _rdata(rtype, value)
        with self._lock:
            self._records.setdefault(_name(name), []).append(rdata)

    def remove(self, name: str) -> None:
        with self._lock:
            self._records.pop(_name(name), None)

    def fail(self, entry: str) -> None:
        """Answer SERVFAIL for "name" (any type) or "name TYPE"."""
        name, _, rtype = entry.strip().partition(" ")
        rdtype = dns.rdatatype.from_text(rtype.strip().upper()) if rtype.strip() else None
        with self._lock:
            self._servfail.add((_name(name), rdtype))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> DnsServer:
        self._udp, self._tcp = self._bind_pair()
        self.port = self._udp.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="test-dns", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._wake_w.send(b"x")
        self._thread.join(timeout=5)
        self._thread = None
        for sock in (self._udp, self._tcp, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    def _bind_pair() -> tuple[socket.socket, socket.socket]:
        # UDP and TCP must share one port number; the kernel picks the UDP
        # one, and that port may be taken for TCP, so try a few times.
        for _ in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind(("127.0.0.1", udp.getsockname()[1]))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            return udp, tcp
        raise RuntimeError("no free port for both UDP and TCP on 127.0.0.1")

    # -- serving -----------------------------------------------------------

    def _serve(self) -> None:
        assert self._udp is not None and self._tcp is not None
        sel = selectors.DefaultSelector()
        sel.register(self._udp, selectors.EVENT_READ, "udp")
        sel.register(self._tcp, selectors.EVENT_READ, "tcp")
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while True:
                for key, _ in sel.select():
                    if key.data == "wake":
                        return
                    if key.data == "udp":
                        self._serve_udp()
                    else:
                        conn, _ = self._tcp.accept()
                        # One short-lived thread per connection, so a client
                        # holding a TCP connection open cannot stall UDP.
                        threading.Thread(target=self._serve_tcp, args=(conn,), daemon=True).start()
        finally:
            sel.close()

    def _serve_udp(self) -> None:
        assert self._udp is not None
        try:
            data, peer = self._udp.recvfrom(65535)
        except OSError:
            return
        query = self._parse(data)
        if query is None:
            return
        response = self._answer(query, tcp=False)
        limit = max(query.payload, UDP_CLASSIC_LIMIT) if query.edns >= 0 else UDP_CLASSIC_LIMIT
        try:
            wire = response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            # RFC 2181 §9: too big for UDP -> empty reply with TC set.
            response.answer = []
            response.authority = []
            response.additional = []
            response.flags |= dns.flags.TC
            wire = response.to_wire(max_size=limit)
        self._udp.sendto(wire, peer)

    def _serve_tcp(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn:
            try:
                while True:
                    head = self._read_exactly(conn, 2)
                    if head is None:
                        return
                    data = self._read_exactly(conn, struct.unpack("!H", head)[0])
                    if data is None:
                        return
                    query = self._parse(data)
                    if query is None:
                        return
                    wire = self._answer(query, tcp=True).to_wire(max_size=65535)
                    conn.sendall(struct.pack("!H", len(wire)) + wire)
            except OSError:
                return

    @staticmethod
    def _read_exactly(conn: socket.socket, size: int) -> bytes | None:
        buf = b""
        while len(buf) < size:
            chunk = conn.recv(size - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    @staticmethod
    def _parse(data: bytes) -> dns.message.Message | None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return None
        return query if query.question else None

    def _answer(self, query: dns.message.Message, *, tcp: bool) -> dns.message.Message:
        question = query.question[0]
        seen = (_label(question.name), dns.rdatatype.to_text(question.rdtype))
        self.queries.append(seen)
        if tcp:
            self.tcp_queries.append(seen)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        with self._lock:
            self._fill(response, question.name, question.rdtype)
        return response

    def _fill(self, response: dns.message.Message, qname: dns.name.Name, rdtype: int) -> None:
        name = qname
        for _ in range(MAX_CNAME_HOPS):
            if (name, None) in self._servfail or (name, rdtype) in self._servfail:
                response.answer = []
                response.set_rcode(dns.rcode.SERVFAIL)
                return
            rdatas = self._records.get(name)
            if rdatas is None:
                # RFC 8020: a name with records below it exists (an empty
                # non-terminal such as _domainkey.example.org): NODATA.
                if not any(known.is_subdomain(name) for known in self._records):
                    response.set_rcode(dns.rcode.NXDOMAIN)
                return
            matches = [rd for rd in rdatas if rd.rdtype == rdtype]
            if matches:
                response.answer.append(dns.rrset.from_rdata_list(name, TTL, matches))
                return
            cnames = [rd for rd in rdatas if rd.rdtype == dns.rdatatype.CNAME]
            if not cnames:
                return
            # RFC 1034 §4.3.2: answer with the CNAME and follow it in the zone.
            response.answer.append(dns.rrset.from_rdata_list(name, TTL, cnames[:1]))
            name = cnames[0].target


_shared: DnsServer | None = None
_shared_lock = threading.Lock()


def shared_server() -> DnsServer:
    """One record-less server for this test process (every name NXDOMAIN), started on first use.

    Test homes point `[dns] resolver` at it, so the incoming-mail checks of any
    test that does not publish records get quick, local answers."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = DnsServer().start()
        return _shared
