"""One ACME order (RFC 8555 §7.4), start to finish, with the `acme` library.

Blocking (the library speaks HTTP with requests): the manager runs it in a
thread. The steps: the account (made once, its key in data/acme), a new
order for the names, one challenge per authorization in the order of
acme.challenges, the CA told to validate, the order finalized with a CSR
for tls.key, the certificate and its chain returned. Challenges are taken
down whatever happens.

A name whose authorization fails (its DNS does not point here, say) does not
cost the others their certificate: the order is tried once more without the
failed names, unless the hostname itself failed. What was dropped, and why,
is returned for the manager to report and retry later.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import josepy as jose
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hatoba import __version__
from hatoba.acme.challenges import ChallengeBoard
from hatoba.acme.dns_update import DnsUpdateError, DnsUpdater
from hatoba.acme.files import AcmeFiles
from hatoba.fsutil import write_atomic
from hatoba.config.schema import AcmeConfig
from hatoba.pki.errors import PkiError

log = logging.getLogger(__name__)

NETWORK_TIMEOUT = 45  # seconds for one request to the CA
ORDER_DEADLINE = 180  # seconds for validation and issuance together
USER_AGENT = f"hatoba/{__version__}"
REVOKE_REASONS = {"unspecified": 0, "keyCompromise": 1, "superseded": 4, "cessationOfOperation": 5}


class AcmeError(Exception):
    """The order failed; the message is one line that says where and why."""


@dataclass
class Issued:
    chain_pem: bytes
    names: list[str]
    dropped: dict[str, str] = field(default_factory=dict)  # name -> why its validation failed


# TLS-ALPN-01 (RFC 8737), which the library no longer carries: the response is "{}"
# as for every challenge; the validation is the key authorization itself.
@challenges.ChallengeResponse.register
class TLSALPN01Response(challenges.KeyAuthorizationChallengeResponse):
    typ = "tls-alpn-01"


@challenges.Challenge.register
class TLSALPN01(challenges.KeyAuthorizationChallenge):
    response_cls = TLSALPN01Response
    typ = response_cls.typ

    def validation(self, account_key: jose.JWK, **unused: Any) -> str:
        return self.key_authorization(account_key)


def issue(acme: AcmeConfig, files: AcmeFiles, key_pem: bytes, names: list[str], board: ChallengeBoard,
          hostname: str, *, log_step: Callable[[str], None] = log.info) -> Issued:
    """A certificate for `names` and `key_pem`, from the CA; AcmeError when there is none."""
    try:
        acme_client = _client(acme, files)
        try:
            try:
                return Issued(_order(acme_client, acme, files, key_pem, names, board), names)
            except messages.Error as refusal:
                refused = _refused_names(refusal)
                if not refused:
                    raise
                raise _Invalid(refused) from None
        except _Invalid as failed:
            dropped = failed.names
            rest = [n for n in names if n not in dropped]
            if hostname in dropped or not rest:
                raise AcmeError(failed.text()) from None
            log_step(f"acme: {failed.text()}; asking again without {', '.join(sorted(dropped))}")
            return Issued(_order(acme_client, acme, files, key_pem, rest, board), rest, dropped)
    except _Invalid as failed:
        raise AcmeError(failed.text()) from None
    except AcmeError:
        raise
    except Exception as exc:  # noqa: BLE001 - the library and the CA's answers raise many kinds
        raise AcmeError(describe(exc, acme)) from None


def revoke(acme: AcmeConfig, files: AcmeFiles, cert_pem: bytes, reason: str = "unspecified") -> None:
    try:
        acme_client = _client(acme, files)
        acme_client.revoke(x509.load_pem_x509_certificate(cert_pem), REVOKE_REASONS[reason])
    except AcmeError:
        raise
    except Exception as exc:  # noqa: BLE001 - see issue()
        raise AcmeError(describe(exc, acme)) from None


def renewal_info(acme: AcmeConfig, files: AcmeFiles, cert_pem: bytes) -> tuple[float | None, float]:
    """The CA's suggested renewal time for the certificate (ARI, RFC 9773) as a Unix time, or
    None when the CA offers none; and when to ask again. AcmeError when it cannot be asked."""
    try:
        acme_client = _client(acme, files, register=False)
        when, ask_again = acme_client.renewal_time(cert_pem)
        return (when.timestamp() if when is not None else None), _timestamp(ask_again)
    except errors.ARIError as exc:
        raise AcmeError(describe(exc.__cause__ or exc, acme)) from None
    except AcmeError:
        raise
    except Exception as exc:  # noqa: BLE001 - see issue()
        raise AcmeError(describe(exc, acme)) from None


def _timestamp(moment: datetime.datetime) -> float:
    """The library gives naive local times for "ask again"."""
    return moment.timestamp() if moment.tzinfo is not None else moment.astimezone().timestamp()


# -- the account ----------------------------------------------------------------------------


def _client(acme: AcmeConfig, files: AcmeFiles, *, register: bool = True) -> client.ClientV2:
    files.make()
    key = _account_key(files)
    net = client.ClientNetwork(key, alg=jose.ES256, user_agent=USER_AGENT, timeout=NETWORK_TIMEOUT,
                               verify_ssl=str(acme.ca_file) if acme.ca_file is not None else True)  # type: ignore[arg-type]
    directory = client.ClientV2.get_directory(acme.directory_url, net)
    acme_client = client.ClientV2(directory, net)
    if register:
        _account(acme_client, acme, files)
    return acme_client


def _account_key(files: AcmeFiles) -> jose.JWK:
    path = files.account_key
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise AcmeError(f"{path} is not an unencrypted PEM private key; move it away and a new account is made") from None
    except FileNotFoundError:
        private = ec.generate_private_key(ec.SECP256R1())
        write_atomic(path, private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
        log.info("acme: made the account key %s", path)
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise AcmeError(f"{path} is not an EC key; move it away and a new account is made")
    return jose.JWKEC(key=private)


def _account(acme_client: client.ClientV2, acme: AcmeConfig, files: AcmeFiles) -> None:
    """Register the account key, or find the account it has (RFC 8555 §7.3): asked each time,
    one request per order, so an account the CA lost or a new directory URL just works."""
    contact = (acme.contact,) if acme.contact else ()
    registration = messages.NewRegistration(contact=contact, terms_of_service_agreed=True)
    try:
        regr = acme_client.new_account(registration)
    except errors.ConflictError as exc:  # the key has an account already
        regr = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
        acme_client.net.account = regr
    state = files.read_state()
    if state.get("account") != {"directory": acme.directory_url, "uri": regr.uri}:
        state["account"] = {"directory": acme.directory_url, "uri": regr.uri}
        files.write_state(state)
        log.info("acme: account %s at %s", regr.uri, acme.directory_url)


# -- the order ------------------------------------------------------------------------------


class _Invalid(Exception):
    def __init__(self, names: dict[str, str]) -> None:
        super().__init__(names)
        self.names = names

    def text(self) -> str:
        return "; ".join(f"{name}: {why}" for name, why in sorted(self.names.items()))


def _order(acme_client: client.ClientV2, acme: AcmeConfig, files: AcmeFiles, key_pem: bytes,
           names: list[str], board: ChallengeBoard) -> bytes:
    csr_pem = crypto_util.make_csr(key_pem, names)
    orderr = acme_client.new_order(csr_pem)
    cleanups: list[Callable[[], None]] = []
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=ORDER_DEADLINE)
    try:
        for authzr in orderr.authorizations:
            if authzr.body.status == messages.STATUS_VALID:
                continue  # validated lately by this account: nothing to show
            challb = _put_up(acme_client, acme, files, authzr, board, cleanups)
            response, _ = challb.response_and_validation(acme_client.net.key)
            acme_client.answer_challenge(challb, response)
        try:
            orderr = acme_client.poll_and_finalize(orderr, deadline)
        except errors.ValidationError as exc:
            raise _Invalid({a.body.identifier.value: _authz_error(a) for a in exc.failed_authzrs}) from None
    finally:
        for cleanup in cleanups:
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - a record left behind must not hide the outcome
                log.warning("acme: %s (the record is harmless, remove it when you can)", describe(exc, acme))
    return orderr.fullchain_pem.encode()


def _put_up(acme_client: client.ClientV2, acme: AcmeConfig, files: AcmeFiles,
            authzr: messages.AuthorizationResource, board: ChallengeBoard,
            cleanups: list[Callable[[], None]]) -> messages.ChallengeBody:
    """Put up the first challenge of acme.challenges that the CA offers for this name; what
    takes it down again goes to `cleanups` before anything can fail half-way."""
    name = authzr.body.identifier.value
    offered = {c.chall.typ: c for c in authzr.body.challenges}
    for kind in acme.challenges:
        challb = offered.get(kind)
        if challb is None:
            continue
        account_key = acme_client.net.key
        if kind == "http-01":
            token = challb.chall.encode("token")
            cleanups.append(lambda: board.take_down(token=token))
            board.put_http01(token, challb.chall.validation(account_key))
            return challb
        if kind == "tls-alpn-01":
            cleanups.append(lambda: board.take_down(name=name))
            board.put_tls_alpn01(name, challb.chall.validation(account_key), files.folder)
            return challb
        if kind == "dns-01":
            updater = DnsUpdater(acme.dns_update)
            record = challb.chall.validation_domain_name(name)
            value = challb.chall.validation(account_key)
            cleanups.append(lambda: updater.remove_txt(record, value))
            updater.add_txt(record, value)
            return challb
    raise _Invalid({name: f"the CA offers {', '.join(sorted(offered)) or 'no challenge'}, "
                          f"none of acme.challenges ({', '.join(acme.challenges)})"})


REFUSED_NAME_ERRORS = ("rejectedIdentifier", "unsupportedIdentifier", "caa")


def _refused_names(refusal: messages.Error) -> dict[str, str]:
    """The names a CA refused at the new order, from the problem's subproblems (RFC 8555
    §6.7.1), when it names them: they are left out and the rest asked for again."""
    refused = {}
    for problem in refusal.subproblems or ():
        kind = (problem.typ or "").rsplit(":", 1)[-1]
        if problem.identifier is not None and kind in REFUSED_NAME_ERRORS:
            refused[problem.identifier.value] = f"the CA refused it: {_error_text(problem)}"
    return refused


def _authz_error(authzr: messages.AuthorizationResource) -> str:
    for challb in authzr.body.challenges:
        if challb.error is not None:
            return f"{challb.chall.typ} failed: {_error_text(challb.error)}"
    return f"authorization {authzr.body.status.name}"


def _error_text(error: messages.Error) -> str:
    kind = (error.typ or "").rsplit(":", 1)[-1]
    detail = " ".join((error.detail or "").split())
    return f"{detail} ({kind})" if kind and detail else detail or kind or "no reason given"


def describe(exc: BaseException, acme: AcmeConfig) -> str:
    """One line for any error met on the way: the library's, requests', the DNS update's, ours."""
    if isinstance(exc, (AcmeError, DnsUpdateError, PkiError)):
        return _flat(exc)
    if isinstance(exc, messages.Error):
        return f"the CA refused: {_error_text(exc)}"
    if isinstance(exc, requests.exceptions.SSLError):
        return (f"cannot verify the CA's certificate at {acme.directory_url} "
                "(set acme.ca_file for a private or test CA)")
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return f"cannot reach the CA at {acme.directory_url}"
    if isinstance(exc, errors.TimeoutError):
        return f"the CA did not decide within {ORDER_DEADLINE} s"
    if isinstance(exc, (errors.ClientError, json.JSONDecodeError, jose.errors.Error, KeyError, TypeError,
                        AttributeError, ValueError)):
        return f"{acme.directory_url} does not answer as an ACME server ({type(exc).__name__}: {_flat(exc)})"
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return f"cannot use{where}: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {_flat(exc)}"


def _flat(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def key_pem_of(key_path: Path) -> bytes:
    """tls.key as PEM for the CSR; the CA takes ECDSA P-256/P-384 and RSA keys."""
    from hatoba.pki.keyfiles import read_signing_key

    private = read_signing_key(key_path)
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())


__all__ = ["AcmeError", "Issued", "REVOKE_REASONS", "describe", "issue", "key_pem_of", "renewal_info", "revoke"]
