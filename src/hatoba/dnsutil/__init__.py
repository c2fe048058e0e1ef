"""DNS lookups for outbound delivery: MX hosts (RFC 5321 §5.1, RFC 7505 null
MX), host addresses and TXT records, with every failure sorted into
temporary (try again later) or permanent (bounce).

Must not import hatoba.net, hatoba.store or hatoba.queue: callers pass a
Resolver in, so policy and delivery code can be tested against any DNS server.
"""
