"""Authenticated encryption (AES-256-GCM) with key rotation.

Used by the cookie driver and by ``encrypt = true``. Keys are derived from the
configured secrets with HKDF-SHA256, so any string of enough entropy works as a
``secret_key``; :func:`check_secret` refuses one that is short or plainly not
random, because HKDF is fast and a weak secret falls to an offline search from
one cookie. The first key encrypts; the fallbacks are tried for reading
only, and a value read under a fallback is reported so it can be re-issued
under the current key. Any failure to authenticate is a ``DecryptError``:
there is no fallback decoder, and only the exact text :func:`encode_token`
writes is decoded (:func:`decode_token`).
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Sequence

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from satchel.errors import ConfigError

FORMAT_BYTE = b"\x01"
NONCE_BYTES = 12
TAG_BYTES = 16
_FORMAT = FORMAT_BYTE[0]
_SEALED_AT = 1 + NONCE_BYTES  # the format byte and the nonce come first
# HKDF's info strings: one secret gives unrelated keys for unrelated uses.
AES_KEY_INFO = b"satchel aes-256-gcm v1"
STORAGE_KEY_INFO = b"satchel storage-key hmac-sha256 v1"
MIN_SECRET_BYTES = 32  # UTF-8 bytes of a secret_key or a fallback
MIN_DISTINCT_CHARACTERS = 10  # fewer, and a secret is plainly not random
MAX_REPEATED_CHARACTERS = 7  # a longer run of one character is padding, not randomness
GENERATED_SECRET_BYTES = 32  # the randomness in a key from generate_secret()
_URLSAFE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# URL-safe to standard base64, every byte outside the URL-safe alphabet made "!",
# which the strict decoder refuses: one pass both translates and validates.
_FROM_URLSAFE = bytes(
    ord("+") if byte == ord("-")
    else ord("/") if byte == ord("_")
    else byte if chr(byte).isascii() and chr(byte).isalnum()
    else ord("!")
    for byte in range(256)
)  # fmt: skip
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
# msgspec's base64 codec, in C and strict (alphabet, padding, length): a JSON string
# of base64 is its bytes.
_base64_bytes = msgspec.json.Decoder(bytes)
_base64_text = msgspec.json.Encoder()
_PADDING = {0: b'"', 2: b'=="', 3: b'="'}
# The low bits of the last character that carry no data, by the token's length mod 4:
# they must be zero in the one spelling encode_token writes.
_SPARE_BITS = {2: 0b1111, 3: 0b11}


class DecryptError(ValueError):
    """A value failed to authenticate under every key (tampered, foreign or truncated)."""


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` is too weak to be a key, or ``None`` when it will do.

    The reason never quotes the secret. The rule is deliberately simple: at
    least 32 bytes of UTF-8, at least 10 distinct characters, and no character
    more than 7 times in a row. It catches placeholders and padded short keys;
    it cannot measure entropy, so use :func:`generate_secret` (``satchel
    key:generate``).
    """
    size = len(secret.encode("utf-8"))
    if size < MIN_SECRET_BYTES:
        return f"must be at least {MIN_SECRET_BYTES} bytes long (UTF-8), got {size}"
    distinct = len(set(secret))
    if distinct < MIN_DISTINCT_CHARACTERS:
        return (
            f"has only {distinct} distinct characters (at least {MIN_DISTINCT_CHARACTERS} needed): "
            "it is plainly not random"
        )
    longest = max(len(list(run)) for _, run in itertools.groupby(secret))
    if longest > MAX_REPEATED_CHARACTERS:
        return f"repeats one character {longest} times in a row: it is plainly not random"
    return None


def check_secret(key: str, secret: str, *, fallback: int | None = None) -> None:
    """Refuse a weak secret with a ``ConfigError`` naming ``key`` (never quoting the secret).

    ``fallback`` is the position of a secret in ``secret_key_fallbacks``, for the message.
    """
    problem = secret_problem(secret)
    if problem is not None:
        which = "" if fallback is None else f"fallback {fallback + 1}: "
        raise ConfigError(key, f"{which}{problem}; make a key with `satchel key:generate`")


def check_secrets(secret_key: str | None, fallbacks: Sequence[str] = ()) -> None:
    """:func:`check_secret` on ``secret_key`` (when set) and on each fallback.

    A weak fallback would let a forger in as surely as a weak current key.
    """
    if secret_key is not None:
        check_secret("secret_key", secret_key)
    for position, fallback in enumerate(fallbacks):
        check_secret("secret_key_fallbacks", fallback, fallback=position)


def generate_secret() -> str:
    """A fresh ``secret_key``: 32 random bytes from ``secrets``, URL-safe base64 (43 characters).

    Drawn again in the vanishingly rare case that :func:`secret_problem`
    would refuse the draw, so what it returns is always accepted.
    """
    while True:
        secret = secrets.token_urlsafe(GENERATED_SECRET_BYTES)
        if secret_problem(secret) is None:
            return secret


def derive_key(secret: str, info: bytes = AES_KEY_INFO) -> bytes:
    """A 256-bit key derived from a configured secret for the use ``info`` names."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"satchel", info=info).derive(
        secret.encode("utf-8")
    )


def encode_token(raw: bytes) -> str:
    """``raw`` as URL-safe base64 without padding: safe in a cookie value and a store."""
    # msgspec writes bytes as a JSON string of standard base64: its quotes and padding go.
    return _base64_text.encode(raw)[1:-1].translate(_TO_URLSAFE).rstrip(b"=").decode("ascii")


def decode_token(token: str) -> bytes:
    """The bytes of a token :func:`encode_token` wrote; any other text is a ``DecryptError``.

    Only that exact spelling: other alphabets, padding and the spare low bits
    of the last character set to anything but zero (which decode to the same
    bytes) are refused, so no value has a second spelling that is accepted.
    """
    encoded = token.encode("ascii", "replace")  # "?" for anything else: refused below
    tail = len(encoded) % 4
    if not encoded or tail == 1:
        raise DecryptError("not base64 of any length")
    try:
        # Outside the alphabet (padding included) is "!", which the decoder refuses.
        raw = _base64_bytes.decode(b'"' + encoded.translate(_FROM_URLSAFE) + _PADDING[tail])
    except msgspec.DecodeError as exc:
        raise DecryptError("not URL-safe base64 without padding") from exc
    if tail and _URLSAFE_ALPHABET.index(token[-1]) & _SPARE_BITS[tail]:
        raise DecryptError("not the canonical base64 spelling")
    return raw


class Encrypter:
    """Encrypts under the current key; decrypts under the current key or a fallback.

    Weak secrets are refused with a ``ConfigError`` (:func:`check_secrets`).
    """

    def __init__(self, secret_key: str, fallbacks: Sequence[str] = ()) -> None:
        check_secrets(secret_key, fallbacks)
        self._ciphers = [AESGCM(derive_key(secret)) for secret in (secret_key, *fallbacks)]

    def encrypt(self, plaintext: bytes, context: bytes) -> str:
        """Encrypt and authenticate ``plaintext``, bound to ``context`` (associated data).

        The result is URL-safe base64 without padding, safe in a cookie value.
        """
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[0].encrypt(nonce, plaintext, FORMAT_BYTE + context)
        return encode_token(FORMAT_BYTE + nonce + sealed)

    def decrypt(self, token: str, context: bytes) -> tuple[bytes, bool]:
        """Return the plaintext and whether it was read under a fallback key."""
        raw = decode_token(token)
        if len(raw) < _SEALED_AT + TAG_BYTES or raw[0] != _FORMAT:
            raise DecryptError("too short or an unknown format")
        nonce, sealed, associated = raw[1:_SEALED_AT], raw[_SEALED_AT:], FORMAT_BYTE + context
        for index, cipher in enumerate(self._ciphers):  # the current key first
            try:
                return cipher.decrypt(nonce, sealed, associated), index > 0
            except InvalidTag:
                continue
        raise DecryptError("failed to authenticate under every key")
