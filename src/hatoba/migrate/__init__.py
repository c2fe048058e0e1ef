"""Moving in from other mail servers: vpopmail, Dovecot + Postfix, plain Maildir trees.

Reads the other system's files (never writes them) and writes through the
store. Called by cli/ only; must not import hatoba.net, hatoba.imap or any
protocol session."""
