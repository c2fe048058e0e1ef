"""Delivery settings checked at start-up, without loading the delivery machinery.

The server process calls check_setup() before it listens, so a wrong
relayhost password file or tls.ca_file stops `serve` with one line; the
delivery process (queue/process.py) uses the same functions.
"""

from __future__ import annotations

from pathlib import Path

from hatoba.config.schema import Config
from hatoba.pki.tlsctx import client_context


class DeliverySetupError(Exception):
    """The outbound settings cannot work (one line for the operator, at start-up)."""


def check_setup(config: Config) -> None:
    """Fail at start-up, not at the first delivery: relayhost credentials and tls.ca_file."""
    relayhost_credentials(config)
    client_context(config.tls.ca_file, verify=True)  # TlsSetupError names the file


def relayhost_credentials(config: Config) -> tuple[str, str] | None:
    """(username, password) for the relayhost, from the config or its password file."""
    delivery = config.delivery
    if not delivery.relayhost_username:
        return None
    password = delivery.relayhost_password
    if delivery.relayhost_password_file:
        base = config.config_path.parent if config.config_path else Path.cwd()
        path = base / Path(delivery.relayhost_password_file).expanduser()
        where = f"delivery.relayhost_password_file: {path}"
        try:
            mode = path.stat().st_mode
            if mode & 0o077:
                raise DeliverySetupError(f"{where} may be read by others (mode {oct(mode & 0o777)}); chmod 600 it")
            password = path.read_text("utf-8").strip("\r\n")
        except OSError as exc:
            raise DeliverySetupError(f"{where}: {exc.strerror or exc}; create it with the password on one line") from None
        except UnicodeDecodeError:
            raise DeliverySetupError(f"{where} is not UTF-8 text") from None
    if not password:
        raise DeliverySetupError("delivery.relayhost_username is set but the password is empty")
    return delivery.relayhost_username, password
