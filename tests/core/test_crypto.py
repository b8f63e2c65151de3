"""``satchel.crypto.Encrypter``: AES-256-GCM with a context and key rotation."""

from __future__ import annotations

import base64
import os
import string

import pytest
from fixtures.base64_spellings import other_spellings
from hypothesis import given, settings
from hypothesis import strategies as st

from satchel.crypto import MIN_SECRET_BYTES, DecryptError, Encrypter, decode_token, encode_token

KEY = "current-secret-key-0123456789abcdef"
OLD = "an-old-secret-key-0123456789abcdef"
CONTEXT = b"satchel cookie:satchel_session"


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@pytest.mark.parametrize("plaintext", [b"", b"hello", bytes(range(256)) * 20])
def test_round_trip(plaintext: bytes) -> None:
    encrypter = Encrypter(KEY)
    token = encrypter.encrypt(plaintext, CONTEXT)
    assert isinstance(token, str)
    assert token.isascii()
    assert not set(token) & set("+/=;, \r\n")  # cookie-safe
    assert encrypter.decrypt(token, CONTEXT) == (plaintext, False)
    if plaintext:
        assert plaintext not in _raw(token)


def test_every_encryption_is_different() -> None:
    encrypter = Encrypter(KEY)
    tokens = {encrypter.encrypt(b"same", CONTEXT) for _ in range(20)}
    assert len(tokens) == 20  # a fresh nonce every time


def test_same_secret_in_another_process_decrypts() -> None:
    token = Encrypter(KEY).encrypt(b"shared", CONTEXT)
    assert Encrypter(KEY).decrypt(token, CONTEXT) == (b"shared", False)


def test_every_single_bit_flip_is_refused() -> None:
    encrypter = Encrypter(KEY)
    raw = _raw(encrypter.encrypt(b"payload!", CONTEXT))
    for index in range(len(raw)):
        for bit in (0x01, 0x80):
            flipped = bytearray(raw)
            flipped[index] ^= bit
            with pytest.raises(DecryptError):
                encrypter.decrypt(_token(bytes(flipped)), CONTEXT)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=0, max_size=64), st.data())
def test_random_bit_flips_are_refused(plaintext: bytes, data: st.DataObject) -> None:
    encrypter = Encrypter(KEY)
    raw = bytearray(_raw(encrypter.encrypt(plaintext, CONTEXT)))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(DecryptError):
        encrypter.decrypt(_token(bytes(raw)), CONTEXT)


def test_truncation_and_extension_are_refused() -> None:
    encrypter = Encrypter(KEY)
    token = encrypter.encrypt(b"payload", CONTEXT)
    raw = _raw(token)
    for cut in (1, 2, 5, 16, len(raw) - 1, len(raw)):
        with pytest.raises(DecryptError):
            encrypter.decrypt(_token(raw[:-cut]), CONTEXT)
    with pytest.raises(DecryptError):
        encrypter.decrypt(_token(raw + b"\x00"), CONTEXT)
    for bad in ("", "A", token[:-1], token[: len(token) // 2], "!!!!", "@" * 64):
        with pytest.raises(DecryptError):
            encrypter.decrypt(bad, CONTEXT)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=100))
def test_arbitrary_text_is_a_decrypt_error(text: str) -> None:
    with pytest.raises(DecryptError):
        Encrypter(KEY).decrypt(text, CONTEXT)


def test_another_key_is_refused() -> None:
    token = Encrypter(KEY).encrypt(b"payload", CONTEXT)
    with pytest.raises(DecryptError):
        Encrypter("another-secret-key-0123456789abcdef").decrypt(token, CONTEXT)


def test_another_context_is_refused() -> None:
    encrypter = Encrypter(KEY)
    token = encrypter.encrypt(b"payload", CONTEXT)
    for other in (b"", b"satchel cookie:other", CONTEXT + b"x", CONTEXT[:-1]):
        with pytest.raises(DecryptError):
            encrypter.decrypt(token, other)


def test_fallback_key_accepted_and_reported() -> None:
    old_token = Encrypter(OLD).encrypt(b"from before", CONTEXT)
    rotated = Encrypter(KEY, [OLD])
    assert rotated.decrypt(old_token, CONTEXT) == (b"from before", True)
    new_token = rotated.encrypt(b"now", CONTEXT)
    assert rotated.decrypt(new_token, CONTEXT) == (b"now", False)
    # The first key signs: the old key alone cannot read what the rotated one wrote.
    with pytest.raises(DecryptError):
        Encrypter(OLD).decrypt(new_token, CONTEXT)


def test_second_fallback_accepted() -> None:
    oldest = "the-oldest-secret-key-0123456789ab"
    token = Encrypter(oldest).encrypt(b"ancient", CONTEXT)
    assert Encrypter(KEY, [OLD, oldest]).decrypt(token, CONTEXT) == (b"ancient", True)
    with pytest.raises(DecryptError):
        Encrypter(KEY, [OLD]).decrypt(token, CONTEXT)


def test_fallback_still_bound_to_the_context() -> None:
    old_token = Encrypter(OLD).encrypt(b"from before", CONTEXT)
    with pytest.raises(DecryptError):
        Encrypter(KEY, [OLD]).decrypt(old_token, b"other context")


@pytest.mark.parametrize("secret", ["", "short", string.ascii_letters[: MIN_SECRET_BYTES - 1]])
def test_short_secret_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="secret_key"):
        Encrypter(secret)


def test_minimum_length_secret_accepted() -> None:
    assert MIN_SECRET_BYTES >= 32
    encrypter = Encrypter(string.ascii_letters[:MIN_SECRET_BYTES])
    assert encrypter.decrypt(encrypter.encrypt(b"ok", CONTEXT), CONTEXT) == (b"ok", False)


def test_short_fallback_secret_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        Encrypter(KEY, ["short"])


def test_only_the_canonical_spelling_of_a_token_is_decoded() -> None:
    tried = {2: 0, 3: 0}
    for size in range(1, 64):
        raw = os.urandom(size)
        token = encode_token(raw)
        assert decode_token(token) == raw
        for variant in other_spellings(token):
            with pytest.raises(DecryptError, match="canonical"):
                decode_token(variant)
            tried[len(token) % 4] += 1
    assert tried == {2: 21 * 15, 3: 21 * 3}


def test_another_spelling_of_a_sealed_value_is_refused() -> None:
    encrypter = Encrypter(KEY)
    variants = 0
    for size in range(3):  # one plaintext length for each length of token mod 4
        token = encrypter.encrypt(b"x" * size, CONTEXT)
        assert encrypter.decrypt(token, CONTEXT) == (b"x" * size, False)
        for variant in other_spellings(token):
            with pytest.raises(DecryptError):
                encrypter.decrypt(variant, CONTEXT)
            variants += 1
    assert variants == 15 + 3


@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_every_character_outside_the_url_safe_alphabet_is_refused(position: str) -> None:
    """Padding, the standard alphabet's + and /, JSON's quote and escape, spaces,
    controls and non-ASCII: none is skipped or read as another character."""
    token = encode_token(os.urandom(30))  # 40 characters, no padding needed
    alphabet = set(string.ascii_letters + string.digits + "-_")
    at = {"first": 0, "middle": len(token) // 2, "last": len(token) - 1}[position]
    outside = [chr(code) for code in range(0x110) if chr(code) not in alphabet]
    for character in [*outside, "\\u0041", "\\\\", "\U0001f600"]:
        with pytest.raises(DecryptError):
            decode_token(token[:at] + character + token[at + 1 :])
