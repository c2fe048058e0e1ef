"""PKI: keys, certificate requests, private CA, certificates, TLS contexts.

Must not import hatoba.net, store or queue."""
