"""Channel-binding data of a server-side TLS connection, for SCRAM-SHA-256-PLUS.

Two types (RFC 5802 §6 lets the client name one):
- "tls-server-end-point" (RFC 5929 §4.1): a hash of the certificate this
  server presented; TLS 1.2 and 1.3.
- "tls-exporter" (RFC 9266 §2): 32 bytes from the TLS exporter with label
  "EXPORTER-Channel-Binding" and no context; TLS 1.3 only, since RFC 9266 §3
  forbids it on TLS 1.2 without the extended master secret.

Python's ssl module offers neither the exporter nor the certificate a server
sent, so this module calls OpenSSL through ctypes, on the very SSL* that
Python's ssl uses (the stdlib lacks the API; moving the TLS stack to
pyOpenSSL would be a far larger change). It can go once CPython exposes
SSL_export_keying_material and the local certificate.

Rules:
- The SSL* is found in CPython's PySSLSocket struct (Modules/_ssl.c:
  PyObject_HEAD; PyObject *Socket; SSL *ssl; PySSLContext *ctx; ...). Before
  OpenSSL sees it, the layout is checked by reads inside Python objects only:
  the field after it must be the object's own context, whose SSL_CTX* must be
  the SSL*'s. Then OpenSSL must agree on the protocol version and that this
  is the server side.
- On any mismatch or missing symbol: "unavailable" is remembered, one DEBUG
  line is logged, and only what could be had is returned (possibly {}).
  channel_bindings() never raises; the -PLUS mechanism is then not offered.
- Only OpenSSL's libssl loaded by Python's own _ssl module is used (never a
  libssl found elsewhere, whose structs could differ).
"""

from __future__ import annotations

import ctypes
import functools
import logging
import ssl
from typing import Any


__all__ = ["TLS_EXPORTER", "TLS_SERVER_END_POINT", "channel_bindings"]

log = logging.getLogger(__name__)

TLS_EXPORTER = "tls-exporter"
TLS_SERVER_END_POINT = "tls-server-end-point"
_EXPORTER_LABEL = b"EXPORTER-Channel-Binding"  # RFC 9266 §2
_EXPORTER_LENGTH = 32

# OpenSSL's numeric ids (obj_mac.h) and EVP_MAX_MD_SIZE.
_NID_UNDEF, _NID_MD5, _NID_SHA1, _NID_MD5_SHA1, _NID_SHA256 = 0, 4, 64, 114, 672
_MAX_DIGEST = 64

_PTR = ctypes.sizeof(ctypes.c_void_p)
_HEAD = object.__basicsize__  # PyObject_HEAD: reference count and type


class _OpenSSL:
    """The few libssl functions needed, with their C signatures."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        vp, c_int, c_size = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
        self.get_ssl_ctx = _function(lib, "SSL_get_SSL_CTX", vp, [vp])
        self.is_server = _function(lib, "SSL_is_server", c_int, [vp])
        self.get_version = _function(lib, "SSL_get_version", ctypes.c_char_p, [vp])
        self.export = _function(
            lib, "SSL_export_keying_material", c_int,
            [vp, ctypes.c_char_p, c_size, ctypes.c_char_p, c_size, ctypes.c_char_p, c_size, c_int],
        )
        self.get_certificate = _function(lib, "SSL_get_certificate", vp, [vp])
        # libcrypto's, found through libssl: the certificate's signature hash, and its digest.
        c_int_p = ctypes.POINTER(c_int)
        self.signature_info = _function(lib, "X509_get_signature_info", c_int,
                                        [vp, c_int_p, c_int_p, c_int_p, ctypes.POINTER(ctypes.c_uint32)])
        self.nid_to_name = _function(lib, "OBJ_nid2sn", ctypes.c_char_p, [c_int])
        self.digest_by_name = _function(lib, "EVP_get_digestbyname", vp, [ctypes.c_char_p])
        self.x509_digest = _function(lib, "X509_digest", c_int,
                                     [vp, vp, ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint)])


def _function(lib: ctypes.CDLL, name: str, restype: Any, argtypes: list[Any]) -> Any:
    function = getattr(lib, name)  # AttributeError when the symbol is missing
    function.restype = restype
    function.argtypes = argtypes
    return function


@functools.cache
def _openssl() -> _OpenSSL | None:
    """libssl as loaded by Python's _ssl module: dlopen of the module gives its
    handle back, and dlsym on it searches the libraries it depends on."""
    try:
        import _ssl

        return _OpenSSL(ctypes.CDLL(_ssl.__file__))
    except (ImportError, AttributeError, OSError) as exc:  # no _ssl file (built in), no symbol
        log.debug("TLS channel binding unavailable: %s", exc)
        return None


_unavailable = False


def _give_up(reason: str) -> None:
    global _unavailable
    if not _unavailable:
        log.debug("TLS channel binding unavailable: %s", reason)
    _unavailable = True


def _ssl_pointer(inner: object, ssl_object: ssl.SSLObject | ssl.SSLSocket, lib: _OpenSSL) -> int | None:
    """The SSL* behind `inner` (an _ssl._SSLSocket), or None when the layout is not the one expected."""
    context = getattr(inner, "context", None)
    if context is None:
        return None
    if type(inner).__basicsize__ < _HEAD + 3 * _PTR or type(context).__basicsize__ < _HEAD + _PTR:
        return None
    # Reads inside the two Python objects (always mapped memory): the SSL* is the
    # second field, and the third must be this object's own context.
    pointer = ctypes.c_void_p.from_address(id(inner) + _HEAD + _PTR).value
    if pointer is None or ctypes.c_void_p.from_address(id(inner) + _HEAD + 2 * _PTR).value != id(context):
        return None
    # PySSLContext: PyObject_HEAD; SSL_CTX *ctx; ... Its SSL_CTX must be the SSL*'s.
    ssl_ctx = ctypes.c_void_p.from_address(id(context) + _HEAD).value
    if ssl_ctx is None or lib.get_ssl_ctx(pointer) != ssl_ctx:
        return None
    version = lib.get_version(pointer)
    if version is None or version.decode("ascii", "replace") != ssl_object.version():
        return None
    return pointer


def channel_bindings(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> dict[str, bytes]:
    """Binding type -> data for the server side of an established TLS connection; {} when unknown."""
    lib = _openssl()
    if lib is None or _unavailable:
        return {}
    version = ssl_object.version()
    inner = getattr(ssl_object, "_sslobj", None)
    if version is None or inner is None or type(inner).__name__ != "_SSLSocket":
        return {}  # no handshake yet, or not an object of Python's ssl module
    pointer = _ssl_pointer(inner, ssl_object, lib)
    if pointer is None:
        _give_up("the ssl object's layout is not CPython's PySSLSocket as expected")
        return {}
    if lib.is_server(pointer) != 1:
        return {}  # the values above are defined for the server's side only
    found: dict[str, bytes] = {}
    end_point = _server_end_point(lib, pointer)
    if end_point is not None:
        found[TLS_SERVER_END_POINT] = end_point
    if version == "TLSv1.3":  # RFC 9266 §3
        out = ctypes.create_string_buffer(_EXPORTER_LENGTH)
        if lib.export(pointer, out, _EXPORTER_LENGTH, _EXPORTER_LABEL, len(_EXPORTER_LABEL), None, 0, 0) == 1:
            found[TLS_EXPORTER] = out.raw
    return found


def _server_end_point(lib: _OpenSSL, pointer: int) -> bytes | None:
    """RFC 5929 §4.1 for the certificate this connection presented (after SNI chose it):
    its hash with the certificate's signature hash, SHA-256 for MD5 and SHA-1; None
    (undefined) for signatures without one hash, such as Ed25519. OpenSSL does it all,
    so a worker serving TLS never loads `cryptography` for this."""
    cert = lib.get_certificate(pointer)  # borrowed: owned by the SSL, not freed here
    if not cert:
        return None
    hash_nid = ctypes.c_int(_NID_UNDEF)
    if lib.signature_info(cert, ctypes.byref(hash_nid), None, None, None) != 1:
        return None
    nid = hash_nid.value
    if nid == _NID_UNDEF or nid == _NID_MD5_SHA1:
        return None
    if nid in (_NID_MD5, _NID_SHA1):
        nid = _NID_SHA256
    name = lib.nid_to_name(nid)
    algorithm = lib.digest_by_name(name) if name else None
    if not algorithm:
        return None
    out = ctypes.create_string_buffer(_MAX_DIGEST)
    size = ctypes.c_uint(0)
    if lib.x509_digest(cert, algorithm, out, ctypes.byref(size)) != 1:
        return None
    return out.raw[:size.value]
