"""Certificates from an ACME CA (RFC 8555): ordered, renewed and put in place by hatoba."""
