"""hatoba: a complete, secure-by-default mail server."""

__version__ = "0.1.0"
