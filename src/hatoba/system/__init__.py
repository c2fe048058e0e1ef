"""Running as a system service: the service user (creating it, becoming it,
giving it its files, checking what it can reach) and the systemd unit.

Holds no mail logic. Must not import hatoba.net, hatoba.imap, hatoba.store,
hatoba.queue, hatoba.delivery or hatoba.cli: the command line and the server
call it, never the other way round."""
