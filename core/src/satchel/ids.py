"""Session ids: issued from ``secrets``, validated strictly, digested before storage."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

ID_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 40  # Laravel's length: 40 characters of 62 give about 238 bits


_UNBIASED_LIMIT = 256 - 256 % len(ID_ALPHABET)  # 248: bytes below it map evenly onto 62 symbols


def generate_id() -> str:
    """A new session id: 40 random alphanumeric characters from ``secrets``.

    Random bytes are mapped onto the 62 symbols with rejection sampling (bytes
    of 248 and above are dropped), so every symbol is equally likely; it costs
    one ``token_bytes`` call instead of forty ``choice`` calls.
    """
    symbols: list[str] = []
    while len(symbols) < ID_LENGTH:
        for byte in secrets.token_bytes(ID_LENGTH + 8):
            if byte < _UNBIASED_LIMIT:
                symbols.append(ID_ALPHABET[byte % len(ID_ALPHABET)])
    return "".join(symbols[:ID_LENGTH])


def is_valid_id(value: object) -> bool:
    """True only for a string of exactly 40 ASCII letters and digits.

    Anything else (empty, short, long, ``..``, NUL, CR/LF, ``;``, non-ASCII) is
    refused before it can reach a driver, a file path or a log line.
    """
    return (
        isinstance(value, str) and len(value) == ID_LENGTH and value.isascii() and value.isalnum()
    )


def storage_digest(session_id: str, digest_key: bytes | None) -> str:
    """A digest of ``session_id`` to store its session under: 64 lowercase hex characters.

    HMAC-SHA256 under ``digest_key``, or plain SHA-256 without one. A dump of
    the store therefore holds nothing that can be replayed as a cookie. Use
    :meth:`satchel.SessionManager.storage_key`, which picks the key from the
    config: the digest keyed by ``secret_key`` keeps apps with different
    secrets apart on one store.
    """
    data = session_id.encode("ascii")
    if digest_key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.digest(digest_key, data, "sha256").hex()


def log_digest(session_id: str) -> str:
    """A short digest to name a session in logs; never log the id itself."""
    return hashlib.blake2b(session_id.encode("utf-8", "replace"), digest_size=6).hexdigest()


def ids_equal(left: str, right: str) -> bool:
    """Compare two secrets in constant time."""
    return hmac.compare_digest(left.encode("utf-8"), right.encode("utf-8"))
