"""Delivery of queued messages: local (into the mail store); remote comes later.

Must not import hatoba.net."""
