"""The POP3 protocol core (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH), sans I/O.

server.py turns client bytes into events and reply bytes; body.py turns a
stored message into the RETR/TOP wire form (CRLF, dot-stuffing, terminator).

Must not import asyncio, ssl, socket, os, nor hatoba.store, .policy, .net,
.queue, .config: the network adapter and the mail store live outside and
talk to this core through events and MessageInfo values only.
"""
