"""Thin asyncio adapters: listeners, implicit TLS, STARTTLS, timeouts,
connection limits, sessions. The only package that touches sockets.
Holds no protocol logic: it feeds bytes to a proto core and writes back what
the core returns."""
