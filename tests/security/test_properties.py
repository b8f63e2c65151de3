"""Property tests: random input to the parsers that face the outside world gives only the documented outcomes."""

from __future__ import annotations

import contextlib
import re
from collections import Counter

from hypothesis import event, given, settings
from hypothesis import strategies as st

from satchel import SessionConfig, SessionManager
from satchel.cookies import read_cookie
from satchel.crypto import DecryptError, Encrypter
from satchel.drivers import ArraySessionHandler
from satchel.ids import is_valid_id
from satchel.payload import Envelope, PayloadError, loads

VALID_ID = re.compile(r"[A-Za-z0-9]{40}")
SECRET = "property-test-secret-key-0123456789"
ENCRYPTER = Encrypter(SECRET)

texts = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda data: data.decode("latin-1")),
    st.from_regex(r"[A-Za-z0-9]{38,42}", fullmatch=True),
)


@given(texts)
def test_id_validation_accepts_exactly_forty_ascii_letters_and_digits(value: str) -> None:
    assert is_valid_id(value) is (VALID_ID.fullmatch(value) is not None)


COOKIE_NAMES = ["satchel_session", "__Host-s", "s"]
# RFC 6265 cookie-octets, written out here rather than taken from satchel.cookies.
COOKIE_OCTETS = "".join(chr(code) for code in range(0x21, 0x7F) if chr(code) not in '",;\\')
NOT_OCTETS = [" ", "\t", '"', ",", "\\", "\x00", "\x7f", "\r", "\n", "é", "\u2028"]
MAX_VALUE = 4096  # the longest value satchel ever sets (documented in satchel.cookies)


@given(st.one_of(st.none(), texts), st.sampled_from(COOKIE_NAMES))
def test_cookie_parsing_of_random_text_returns_none_or_a_plain_value(
    header: str | None, name: str
) -> None:
    value = read_cookie(header, name)
    assert value is None or (value and all(ch in COOKIE_OCTETS for ch in value))


# What the first value of the name may be; the first four are returned.
VALUE_KINDS = [
    "plain",
    "quoted",
    "padded",
    "longest",
    "empty",
    "not octets",
    "lone quote",
    "too long",
]
octet_values = st.text(alphabet=COOKIE_OCTETS, min_size=1, max_size=40)
padding = st.text(alphabet=" \t", max_size=3)


@st.composite
def target_pairs(draw: st.DrawFn, name: str) -> tuple[str, str, str | None]:
    """``<name>=<value>``: what kind of value it is, and what ``read_cookie`` must return."""
    value = draw(octet_values)
    kind = draw(st.sampled_from(VALUE_KINDS))
    expected: str | None = None
    if kind == "plain":
        text, expected = value, value
    elif kind == "quoted":
        text, expected = f'"{value}"', value
    elif kind == "padded":
        quoted = draw(st.booleans())
        inner = f'"{value}"' if quoted else value
        text, expected = draw(padding) + inner + draw(padding), value
    elif kind == "empty":
        text = draw(st.sampled_from(["", '""', " ", ' "" ']))
    elif kind == "not octets":
        text = value + draw(st.sampled_from(NOT_OCTETS)) + draw(octet_values)
    elif kind == "lone quote":
        text = '"' + value
    elif kind == "longest":
        text = expected = (value * MAX_VALUE)[:MAX_VALUE]
    else:
        text = (value * (MAX_VALUE + 1))[: MAX_VALUE + 1]
    key = draw(padding) + name + draw(padding)
    return kind, f"{key}={text}", expected


def decoys(name: str) -> st.SearchStrategy[str]:
    """Fragments that are not cookie ``name``: other names (near misses too) and junk."""
    other_names = st.sampled_from(
        [other for other in COOKIE_NAMES if other != name]
        + [name + "_old", "x" + name, name.upper()]
    )
    values = st.text(max_size=30).map(lambda text: text.replace(";", ""))
    junk = st.text(max_size=30).map(lambda text: text.replace(";", "").replace("=", ""))
    return st.one_of(st.builds(lambda key, value: f"{key}={value}", other_names, values), junk)


@st.composite
def cookie_headers(draw: st.DrawFn) -> tuple[str, str, str, str | None]:
    """A ``Cookie`` header holding cookie ``name`` zero or more times among decoys."""
    name = draw(st.sampled_from(COOKIE_NAMES))
    pieces = draw(
        st.lists(st.one_of(target_pairs(name), decoys(name).map(lambda text: (text,))), max_size=8)
    )
    targets = [piece for piece in pieces if len(piece) == 3]
    kind, expected = (targets[0][0], targets[0][2]) if targets else ("absent", None)
    fragments = [piece[1] if len(piece) == 3 else piece[0] for piece in pieces]
    separators = st.sampled_from([";", "; ", " ; ", ";;", ";\t"])
    header = draw(st.sampled_from(["", ";", " "]))
    for fragment in fragments:
        header += fragment + draw(separators)
    return name, header, kind, expected


def test_cookie_parsing_gives_the_first_value_of_the_name_or_none() -> None:
    # The documented outcomes: the first occurrence of the name decides; its value,
    # stripped and unquoted, is returned if it is 1..4096 cookie-octets, else None.
    outcomes: Counter[str] = Counter()

    @settings(max_examples=600)
    @given(cookie_headers())
    def check(case: tuple[str, str, str, str | None]) -> None:
        name, header, kind, expected = case
        event(kind)
        assert read_cookie(header, name) == expected
        outcomes[kind] += 1

    check()
    # Every kind of first value was tried, and values really came back often.
    assert set(outcomes) == {"absent", *VALUE_KINDS}
    returned = sum(outcomes[kind] for kind in VALUE_KINDS[:4])
    assert returned >= 100


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
