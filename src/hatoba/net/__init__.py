"""Thin asyncio adapters: listeners, implicit TLS, STARTTLS, timeouts,
connection limits, sessions. The only package that touches sockets.
Holds no protocol logic: it feeds bytes to a proto core and writes back what
the core returns. The IMAP session is its own package, hatoba.imap, built on
this one: only server.py (the listener wiring) may import hatoba.imap."""
