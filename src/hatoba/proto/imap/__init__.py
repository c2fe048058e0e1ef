"""The IMAP4rev1/IMAP4rev2 protocol core (RFC 3501, RFC 9051), sans-IO.

types.py (shared data types), args.py (the one command parser, with
literals), fetch.py (FETCH data items from message bytes), search.py
(SEARCH keys against a message), encode.py (strings, literals, lists).

Must not import asyncio, ssl, socket, os, or hatoba.store|policy|net|config.
"""
