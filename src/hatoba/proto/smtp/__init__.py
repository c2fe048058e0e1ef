"""The SMTP protocol core (server and client halves), sans I/O."""
