"""Decisions: who may relay, which sender a login may use, auth throttling.

Policy functions return a Decision and never raise for a "no". They must not
import hatoba.net, and get clocks and lookups as parameters."""
