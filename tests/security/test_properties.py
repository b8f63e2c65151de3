"""Property tests: random input to the parsers that face the outside world gives only the documented outcomes."""

from __future__ import annotations

import contextlib
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from satchel import SessionConfig, SessionManager
from satchel.cookies import read_cookie
from satchel.crypto import DecryptError, Encrypter
from satchel.drivers import ArraySessionHandler
from satchel.ids import is_valid_id
from satchel.payload import Envelope, PayloadError, loads

VALID_ID = re.compile(r"[A-Za-z0-9]{40}")
SECRET = "property-test-secret-key-0123"
ENCRYPTER = Encrypter(SECRET)

texts = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda data: data.decode("latin-1")),
    st.from_regex(r"[A-Za-z0-9]{38,42}", fullmatch=True),
)


@given(texts)
def test_id_validation_accepts_exactly_forty_ascii_letters_and_digits(value: str) -> None:
    assert is_valid_id(value) is (VALID_ID.fullmatch(value) is not None)


@given(st.one_of(st.none(), texts), st.sampled_from(["satchel_session", "__Host-s", "s"]))
def test_cookie_parsing_returns_none_or_a_plain_value(header: str | None, name: str) -> None:
    value = read_cookie(header, name)
    assert value is None or isinstance(value, str)
    if value is not None:
        assert ";" not in value
        assert "\r" not in value
        assert "\n" not in value


class CountingArray(ArraySessionHandler):
    reads = 0

    def read(self, session_id: str) -> str:
        CountingArray.reads += 1
        return super().read(session_id)


MANAGER = SessionManager(SessionConfig(driver="counting"))
MANAGER.extend("counting", lambda config: CountingArray(7200))


@settings(max_examples=300)
@given(texts)
def test_any_cookie_value_starts_a_session_and_only_a_valid_id_reaches_the_driver(
    value: str,
) -> None:
    before = CountingArray.reads
    session = MANAGER.start(value)
    assert is_valid_id(session.id)
    assert session.all() == {}
    assert CountingArray.reads - before == (1 if is_valid_id(value) else 0)


@given(texts, st.binary(max_size=16))
def test_decrypting_random_text_only_ever_fails_cleanly(token: str, context: bytes) -> None:
    try:
        ENCRYPTER.decrypt(token, context)
    except DecryptError:
        return
    raise AssertionError("a random token authenticated")


@given(
    st.one_of(
        texts, st.from_regex(r'\{"v":1,"data":\{.{0,60}\},"meta":\{.{0,80}\}\}', fullmatch=True)
    )
)
def test_payload_decoding_only_gives_an_envelope_or_payload_error(text: str) -> None:
    with contextlib.suppress(PayloadError):
        assert isinstance(loads(text), Envelope)
