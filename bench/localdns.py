"""A small authoritative DNS server on 127.0.0.1 for bench runs: answers from a dict of
records (dnspython's message code), NXDOMAIN for any other name, over UDP.

The incoming-mail checks look up SPF, DKIM and DMARC records for every message;
a bench that left them to the Internet would measure the Internet. This one
answers at once, as a resolver with a warm cache would.
"""

from __future__ import annotations

import socket
import threading

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class LocalDns:
    def __init__(self, records: dict[str, list[tuple[str, str]]]) -> None:
        self._records = {(name.rstrip(".").lower(), rtype.upper()): values
                         for name, entries in records.items()
                         for rtype, values in _group(entries).items()}
        self._names = {name for name, _ in self._records}
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, name="bench-dns", daemon=True)

    def __enter__(self) -> LocalDns:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self._sock.recvfrom(4096)
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:
                continue
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True).lower()
            rtype = dns.rdatatype.to_text(question.rdtype)
            values = self._records.get((name, rtype))
            if values:
                response.answer.append(dns.rrset.from_text_list(question.name, 300, "IN", rtype, values))
            elif name not in self._names:
                response.set_rcode(dns.rcode.NXDOMAIN)
            try:
                self._sock.sendto(response.to_wire(), peer)
            except OSError:
                return


def _group(entries: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for rtype, value in entries:
        out.setdefault(rtype, []).append(f'"{value}"' if rtype.upper() == "TXT" else value)
    return out
