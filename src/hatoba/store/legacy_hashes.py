"""Checking the password hashes older mail servers stored, so that imported users
keep their passwords until their first login re-hashes them to Argon2id.

Stored form: always Dovecot's "{SCHEME}data" (vpopmail's crypt strings arrive as
"{CRYPT}$1$..."), read as Dovecot 2.3 reads it (src/auth/password-scheme*.c):
its scheme names, the ".HEX"/".B64" suffixes, and hex or base64 guessed from the
length where the scheme has a fixed size.

crypt(3) hashes (DES, MD5-crypt, SHA-crypt, bcrypt, yescrypt) go to the
system's libxcrypt through ctypes: a maintained system library that knows every
variant, where Python's crypt module is deprecated and gone in 3.13 and passlib
is unmaintained. Which variants work is what that library was built with;
check_supported says so per hash.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import ctypes.util
import functools
import hashlib
import hmac
import math
import re
import struct
from collections.abc import Callable

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import VerificationError

# Costs past these would make one login take seconds to minutes on a thread other logins
# share: such a hash is refused (the user is given a new password) rather than checked.
MAX_ROUNDS = 1_000_000  # PBKDF2, SCRAM, SHA-crypt (their defaults: 5,000 to 10,000)
MAX_BCRYPT_COST = 14  # about a second; 10 to 12 is usual
MAX_ARGON2_MEMORY_KIB = 128 * 1024  # Dovecot's and argon2-cffi's defaults use 64 MiB
MAX_ARGON2_TIME = 4
MAX_ARGON2_LANES = 8
_TOO_COSTLY = "its cost is too high to check at a login"

__all__ = ["UnknownScheme", "check_supported", "from_dovecot", "is_legacy", "scheme_of", "verify"]

_Check = Callable[[bytes], bool]  # the password's UTF-8 bytes -> matches


class UnknownScheme(ValueError):
    """A stored password no verify() call could ever accept; str(exc) is a one-line reason."""


def is_legacy(stored: str) -> bool:
    """True for a "{SCHEME}data" password from another system (hatoba's own start with "$argon2")."""
    return stored.startswith("{")


def scheme_of(stored: str) -> str:
    """The scheme, upper-case, without braces or encoding suffix: "SHA512-CRYPT"; UnknownScheme
    when `stored` has no "{SCHEME}" prefix."""
    return _split(stored)[0].upper().partition(".")[0]


def check_supported(stored: str) -> None:
    """Raise UnknownScheme when verify() could never succeed for `stored`."""
    check = _parse(stored)
    if isinstance(check, _Crypt):
        check(b"")  # libcrypt judges a setting only by hashing with it: one login's cost


def verify(stored: str, password: str) -> bool:
    """True when `password` matches; raises UnknownScheme as check_supported does."""
    return _parse(stored)(password.encode())


def from_dovecot(text: str) -> str:
    """A Dovecot passwd-file password field as hatoba stores it."""
    if text.startswith("{") and "}" in text:
        label, data = text[1:].split("}", 1)
        return "{" + label.upper() + "}" + data
    return "{CRYPT}" + text  # Dovecot's default_pass_scheme


def _split(stored: str) -> tuple[str, str]:
    """(label as written, data) of "{label}data"."""
    if not stored.startswith("{") or "}" not in stored:
        raise UnknownScheme("not a {SCHEME}-prefixed password")
    label, data = stored[1:].split("}", 1)
    return label, data


def _parse(stored: str) -> _Check:
    label, data = _split(stored)
    name, _, suffix = label.upper().partition(".")
    if name == "DIGEST-MD5":
        raise UnknownScheme("DIGEST-MD5 hashes include the user name and realm; the user must set a new password")
    if name not in _SCHEMES or suffix not in _ENCODINGS:
        raise UnknownScheme(f"unknown password scheme {{{label if label.isprintable() else ascii(label)}}}")
    encoding, size, parser = _SCHEMES[name]
    try:
        return parser(_decode(data, _ENCODINGS[suffix] or encoding, size, guess=not suffix))
    except UnknownScheme:
        raise
    except ValueError as exc:  # binascii.Error and UnicodeError too
        if str(exc) == _TOO_COSTLY:
            raise UnknownScheme(f"{{{name}}} hash: {exc}; the user must set a new password") from None
        raise UnknownScheme(f"malformed {{{name}}} hash: {exc}") from None


def _decode(data: str, encoding: str, size: int, *, guess: bool) -> bytes:
    if guess and encoding and size:
        # Dovecot guesses: hex when the length fits, else base64 (its retry of bad hex as
        # base64 cannot give `size` bytes from 2 * size characters, so it is left out)
        encoding = "hex" if len(data) == 2 * size else "b64"
    try:
        raw = _DECODERS[encoding](data)
    except ValueError:
        raise ValueError(f"not valid {encoding or 'text'}") from None
    if size and len(raw) != size:
        raise ValueError(f"{len(raw)} bytes instead of {size}")
    return raw


def _b64(data: str | bytes) -> bytes:
    return base64.b64decode(data, validate=True)


_DECODERS: dict[str, Callable[[str], bytes]] = {"hex": binascii.unhexlify, "b64": _b64, "": str.encode}


def _plain(raw: bytes) -> _Check:
    return lambda password: hmac.compare_digest(password, raw)


def _plain_trunc(raw: bytes) -> _Check:
    # "<length>-<password>": an old system kept only the first <length> bytes
    length, dash, kept = raw.partition(b"-")
    if not dash or not length.isdigit():
        raise ValueError("expected <length>-<password>")
    if int(length) == len(kept):
        return lambda password: hmac.compare_digest(password[: len(kept)], kept)
    return _plain(kept)


def _digest(algorithm: str) -> Callable[[bytes], _Check]:
    def parser(raw: bytes) -> _Check:
        return lambda password: hmac.compare_digest(hashlib.new(algorithm, password).digest(), raw)
    return parser


def _salted(algorithm: str) -> Callable[[bytes], _Check]:
    size = hashlib.new(algorithm).digest_size

    def parser(raw: bytes) -> _Check:  # <digest of password + salt><salt>
        if len(raw) <= size:
            raise ValueError("too short to hold a salt")
        digest, salt = raw[:size], raw[size:]
        return lambda password: hmac.compare_digest(hashlib.new(algorithm, password + salt).digest(), digest)
    return parser


def _pbkdf2(raw: bytes) -> _Check:
    # $1$<salt>$<rounds>$<hex key>: PBKDF2-HMAC-SHA1 with the salt's text as the salt
    fields = raw.split(b"$")
    if len(fields) != 5 or fields[:2] != [b"", b"1"] or not fields[3].isdigit() or not 0 < int(fields[3]):
        raise ValueError("expected $1$salt$rounds$hash")
    if int(fields[3]) > MAX_ROUNDS:
        raise ValueError(_TOO_COSTLY)
    salt, rounds, key = fields[2], int(fields[3]), binascii.unhexlify(fields[4])
    if len(key) != 20:
        raise ValueError("the key is not 20 bytes")
    return lambda password: hmac.compare_digest(hashlib.pbkdf2_hmac("sha1", password, salt, rounds), key)


def _scram(algorithm: str) -> Callable[[bytes], _Check]:
    size = hashlib.new(algorithm).digest_size

    def parser(raw: bytes) -> _Check:  # iterations,salt,StoredKey,ServerKey (RFC 5802), base64
        fields = raw.split(b",")
        if len(fields) != 4 or not fields[0].isdigit() or not 4096 <= int(fields[0]) < 2**31:
            raise ValueError("expected iterations (4096 or more),salt,StoredKey,ServerKey")
        rounds = int(fields[0])
        if rounds > MAX_ROUNDS:
            raise ValueError(_TOO_COSTLY)
        salt, stored_key, server_key = (_b64(f) for f in fields[1:])
        if len(stored_key) != size or len(server_key) != size:
            raise ValueError(f"the keys are not {size} bytes")

        def check(password: bytes) -> bool:
            client_key = hmac.digest(hashlib.pbkdf2_hmac(algorithm, password, salt, rounds), b"Client Key", algorithm)
            return hmac.compare_digest(hashlib.new(algorithm, client_key).digest(), stored_key)
        return check
    return parser


_ARGON2 = PasswordHasher()  # verify() reads the type and parameters from the hash


def _argon2(raw: bytes) -> _Check:
    text = raw.decode("ascii")
    parameters = extract_parameters(text)  # InvalidHashError is a ValueError
    if (parameters.memory_cost > MAX_ARGON2_MEMORY_KIB or parameters.time_cost > MAX_ARGON2_TIME
            or parameters.parallelism > MAX_ARGON2_LANES):
        raise ValueError(_TOO_COSTLY)

    def check(password: bytes) -> bool:
        try:
            return _ARGON2.verify(text, password)
        except VerificationError:
            return False
    return check


# CRAM-MD5 stores HMAC-MD5's outer and inner MD5 states after the key block;
# hashlib cannot resume from a state, so the one compression step is here (RFC 1321).
_MD5_IV = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
_MD5_K = [int(abs(math.sin(i + 1)) * 2**32) & 0xFFFFFFFF for i in range(64)]
_MD5_S = [7, 12, 17, 22] * 4 + [5, 9, 14, 20] * 4 + [4, 11, 16, 23] * 4 + [6, 10, 15, 21] * 4


def _md5_state(block: bytes) -> bytes:
    """MD5's state, little-endian, after its first 64-byte block."""
    m = struct.unpack("<16I", block)
    a, b, c, d = _MD5_IV
    for i in range(64):
        if i < 16:
            f, g = (b & c) | (~b & d), i
        elif i < 32:
            f, g = (d & b) | (~d & c), (5 * i + 1) % 16
        elif i < 48:
            f, g = b ^ c ^ d, (3 * i + 5) % 16
        else:
            f, g = c ^ (b | ~d), (7 * i) % 16
        f = (f + a + _MD5_K[i] + m[g]) & 0xFFFFFFFF
        a, d, c = d, c, b
        b = (b + ((f << _MD5_S[i]) | (f >> (32 - _MD5_S[i])))) & 0xFFFFFFFF
    return struct.pack("<4I", *((x + y) & 0xFFFFFFFF for x, y in zip(_MD5_IV, (a, b, c, d))))


def _cram_md5(raw: bytes) -> _Check:
    def check(password: bytes) -> bool:
        key = (hashlib.md5(password).digest() if len(password) > 64 else password).ljust(64, b"\0")
        states = _md5_state(bytes(k ^ 0x5C for k in key)) + _md5_state(bytes(k ^ 0x36 for k in key))
        return hmac.compare_digest(states, raw)
    return check


# the method's prefix: "$6$", "$2b$"...; "_" for BSDi DES, "" for traditional DES
_CRYPT_PREFIX = re.compile(rb"\$[0-9a-z]+\$|_|")
_SHA_CRYPT_ROUNDS = re.compile(rb"\$[56]\$rounds=(\d{1,12})\$")
_BCRYPT_COST = re.compile(rb"\$2[abxy]\$(\d\d)\$")
_CRYPT_NAMES = {
    b"": "DES", b"_": "BSDi DES", b"$1$": "MD5-crypt", b"$5$": "SHA-256-crypt", b"$6$": "SHA-512-crypt",
    b"$2a$": "bcrypt", b"$2b$": "bcrypt", b"$2x$": "bcrypt", b"$2y$": "bcrypt",
    b"$y$": "yescrypt", b"$gy$": "gost-yescrypt", b"$7$": "scrypt",
}


@functools.cache
def _libcrypt() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
        crypt_rn, gensalt_rn = lib.crypt_rn, lib.crypt_gensalt_rn  # libxcrypt's; glibc's old libcrypt lacks them
    except (OSError, AttributeError):
        return None
    crypt_rn.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int)
    crypt_rn.restype = ctypes.c_char_p
    gensalt_rn.argtypes = (ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
    gensalt_rn.restype = ctypes.c_char_p
    return lib


class _Crypt:
    """A crypt(3) hash checked by libxcrypt's thread-safe crypt_rn."""

    def __init__(self, setting: bytes) -> None:
        if not setting or b"\0" in setting:
            raise ValueError("empty" if not setting else "holds a NUL")
        rounds = _SHA_CRYPT_ROUNDS.match(setting)
        cost = _BCRYPT_COST.match(setting)
        if (rounds and int(rounds.group(1)) > MAX_ROUNDS) or (cost and int(cost.group(1)) > MAX_BCRYPT_COST):
            raise ValueError(_TOO_COSTLY)
        self.setting = setting

    def __call__(self, password: bytes) -> bool:
        lib = _libcrypt()
        if lib is None:
            raise UnknownScheme("this system has no libxcrypt (libcrypt.so.1) to check crypt hashes")
        if b"\0" in password:  # C would see a shorter password
            return False
        data = ctypes.create_string_buffer(32768)  # struct crypt_data, one per call
        hashed = lib.crypt_rn(password, self.setting, data, len(data))
        if hashed is None or hashed.startswith(b"*"):
            # a method the library cannot make a salt for is one it lacks; else the hash is bad
            prefix = _CRYPT_PREFIX.match(self.setting).group()  # always matches: "" is a choice
            if lib.crypt_gensalt_rn(prefix, 0, None, 0, ctypes.create_string_buffer(256), 256) is None:
                name, shown = _CRYPT_NAMES.get(prefix), prefix.decode()
                what = f"{name} ({shown})" if name and shown else name or shown
                raise UnknownScheme(f"this system's crypt library cannot check {what} hashes")
            raise UnknownScheme("malformed crypt hash: the crypt library refuses its salt or parameters")
        if len(hashed) != len(self.setting):
            raise UnknownScheme("malformed crypt hash: its length does not fit its kind")
        return hmac.compare_digest(hashed, self.setting)


def _md5(raw: bytes) -> _Check:
    # Dovecot's "MD5": MD5-crypt, or else PLAIN-MD5
    return _Crypt(raw) if raw.startswith(b"$1$") else _parse("{PLAIN-MD5}" + raw.decode())


_ENCODINGS = {"": "", "HEX": "hex", "B64": "b64", "BASE64": "b64"}

# name -> (default encoding, raw size or 0, parser); as in Dovecot 2.3
_SCHEMES: dict[str, tuple[str, int, Callable[[bytes], _Check]]] = {
    **dict.fromkeys(["PLAIN", "CLEAR", "CLEARTEXT"], ("", 0, _plain)),
    "PLAIN-TRUNC": ("", 0, _plain_trunc),
    "PLAIN-MD5": ("hex", 16, _digest("md5")),
    "LDAP-MD5": ("b64", 16, _digest("md5")),
    "SHA": ("b64", 20, _digest("sha1")),
    "SHA1": ("b64", 20, _digest("sha1")),
    "SHA256": ("b64", 32, _digest("sha256")),
    "SHA512": ("b64", 64, _digest("sha512")),
    "SMD5": ("b64", 0, _salted("md5")),
    "SSHA": ("b64", 0, _salted("sha1")),
    "SSHA256": ("b64", 0, _salted("sha256")),
    "SSHA512": ("b64", 0, _salted("sha512")),
    **dict.fromkeys(
        ["CRYPT", "DES-CRYPT", "MD5-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT", "BLF-CRYPT"], ("", 0, _Crypt)
    ),
    "MD5": ("", 0, _md5),
    "PBKDF2": ("", 0, _pbkdf2),
    "SCRAM-SHA-1": ("", 0, _scram("sha1")),
    "SCRAM-SHA-256": ("", 0, _scram("sha256")),
    **dict.fromkeys(["ARGON2I", "ARGON2ID", "ARGON2"], ("", 0, _argon2)),
    **dict.fromkeys(["CRAM-MD5", "HMAC-MD5"], ("hex", 32, _cram_md5)),
}
