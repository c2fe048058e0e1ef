"""DKIM (RFC 6376): signing keys on disk and the signer for outgoing mail.

keys.py owns the key files (data/dkim/DOMAIN/SELECTOR.key and
data/dkim/DOMAIN/selector) and the DNS record to publish; sign.py adds the
DKIM-Signature header field. Must not import hatoba.net, store or queue:
the callers (submission, the CLI) wire it in.
"""
