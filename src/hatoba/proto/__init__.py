"""Sans-I/O protocol cores: bytes in, events out, bytes back.

Must not import asyncio, ssl, socket, os, nor hatoba.store, .policy, .net,
.queue, .config: only the standard library's pure modules and other proto
modules.
"""
