"""What every subcommand shares: the one-line user error and config lookup."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from hatoba.i18n import refusal

from hatoba.config.schema import Config

DEFAULT_CONFIG = Path("/etc/hatoba/hatoba.toml")


class CliError(Exception):
    """A user error: main() prints it as one line and exits 1, never a traceback."""


def config_path(args: argparse.Namespace) -> Path:
    """-c FILE, else $HATOBA_CONFIG, else /etc/hatoba/hatoba.toml (the contract)."""
    if getattr(args, "config", None):
        return Path(args.config)
    env = os.environ.get("HATOBA_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG


def load_config(args: argparse.Namespace) -> Config:
    from hatoba.config.load import ConfigError, load_config as load

    path = config_path(args)
    try:
        return load(path)
    except ConfigError as exc:
        raise CliError(refusal(exc)) from None
