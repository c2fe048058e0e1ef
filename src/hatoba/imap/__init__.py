"""IMAP4rev2/rev1 over asyncio: one session per connection, the command
handlers, the selected-mailbox bookkeeping, and the NO texts (response codes)
for what the store and the logins refuse.

Parsing and response encoding live in hatoba.proto.imap (no I/O); folders and
messages in hatoba.store; streams, TLS and logins in hatoba.net, which this
package builds on. Must not import hatoba.cli, hatoba.queue, hatoba.delivery,
nor the other protocols' sessions or net/server.py (the server imports this)."""
