"""The mail store (Maildir) and the directory of domains, users and aliases.

Owns every file under data/mail and the directory database. Must not import
hatoba.net, hatoba.proto.smtp or any protocol session."""
