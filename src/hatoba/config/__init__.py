"""Configuration: the schema (frozen dataclasses), loading and validation.

The only package that reads config files. Must not import hatoba.net."""
