"""`hatoba check`: a security self-check of one configuration, in plain words.

Each module looks at one thing and returns findings (findings.py): the
listeners' encryption and logins (listeners.py), who may relay
(relay_policy.py), a live open-relay test against our own port 25
(relay_probe.py), outgoing TLS and the smarthost password (outbound.py), the
certificates (certificates.py, certtrust.py), the modes of the data folders
(folders.py), and the DNS records to publish and how they compare with what
DNS answers (dnsrecords.py, dnscompare.py). runner.py runs them in order;
report.py prints the result as text or JSON.

Must not import hatoba.net, queue or the protocol cores: the check looks at
the config and talks to the running server from outside, as a client would.
It never sends mail (no DATA) and never changes a file.
"""
