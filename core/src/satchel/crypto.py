"""Authenticated encryption (AES-256-GCM) with key rotation.

Used by the cookie driver and by ``encrypt = true``. Keys are derived from the
configured secrets with HKDF-SHA256, so any string of enough entropy works as a
``secret_key``. The first key encrypts; the fallbacks are tried for reading
only, and a value read under a fallback is reported so it can be re-issued
under the current key. Any failure to authenticate is a ``DecryptError``:
there is no fallback decoder.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT_BYTE = b"\x01"
NONCE_BYTES = 12
TAG_BYTES = 16
MIN_SECRET_LENGTH = 16
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


class DecryptError(ValueError):
    """A value failed to authenticate under every key (tampered, foreign or truncated)."""


def derive_key(secret: str) -> bytes:
    """A 256-bit AES key derived from a configured secret."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"satchel", info=b"satchel aes-256-gcm v1"
    ).derive(secret.encode("utf-8"))


class Encrypter:
    """Encrypts under the current key; decrypts under the current key or a fallback."""

    def __init__(self, secret_key: str, fallbacks: Sequence[str] = ()) -> None:
        # A weak fallback would let a forger in as surely as a weak current key.
        for name, secret in [("secret_key", secret_key)] + [
            ("secret_key_fallbacks", fallback) for fallback in fallbacks
        ]:
            if len(secret) < MIN_SECRET_LENGTH:
                raise ValueError(
                    f"{name}: every secret must be at least {MIN_SECRET_LENGTH} characters long"
                )
        self._ciphers = [AESGCM(derive_key(secret)) for secret in (secret_key, *fallbacks)]

    def encrypt(self, plaintext: bytes, context: bytes) -> str:
        """Encrypt and authenticate ``plaintext``, bound to ``context`` (associated data).

        The result is URL-safe base64 without padding, safe in a cookie value.
        """
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[0].encrypt(nonce, plaintext, FORMAT_BYTE + context)
        return base64.urlsafe_b64encode(FORMAT_BYTE + nonce + sealed).rstrip(b"=").decode("ascii")

    def decrypt(self, token: str, context: bytes) -> tuple[bytes, bool]:
        """Return the plaintext and whether it was read under a fallback key."""
        # Only the exact form ``encrypt`` produces: URL-safe base64 without
        # padding. Re-encoded variants of a genuine value are refused too.
        if not _TOKEN.fullmatch(token):
            raise DecryptError("not URL-safe base64 without padding")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError) as exc:
            raise DecryptError("not base64") from exc
        if len(raw) < 1 + NONCE_BYTES + TAG_BYTES or raw[:1] != FORMAT_BYTE:
            raise DecryptError("too short or an unknown format")
        nonce, sealed = raw[1 : 1 + NONCE_BYTES], raw[1 + NONCE_BYTES :]
        for index, cipher in enumerate(self._ciphers):
            try:
                return cipher.decrypt(nonce, sealed, FORMAT_BYTE + context), index > 0
            except InvalidTag:
                continue
        raise DecryptError("failed to authenticate under every key")
