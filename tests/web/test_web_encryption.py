"""The cookie driver and ``encrypt = true``, driven through every framework's glue."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest
from web_support import OLD_SECRET, SECRET, FakeClock, Harness, HarnessFactory, ManagerFactory

from satchel import SessionTooLarge


def flip_one_bit(value: str, position: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    raw[position % len(raw)] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode("ascii")


def test_cookie_driver_round_trip_keeps_data_in_the_cookie(harness: HarnessFactory) -> None:
    client = harness(driver="cookie")
    client.get("/put", key="cartItems", value="apple")
    assert client.cookie is not None
    assert "apple" not in client.cookie  # encrypted, not merely signed
    client.get("/flash", value="Item added")
    assert json.loads(client.get("/get", key="status").text) == "Item added"
    assert json.loads(client.get("/get", key="cartItems").text) == "apple"
    assert json.loads(client.get("/get", key="status").text) is None


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_cookie_driver_tampered_cookie_gives_an_empty_session(
    harness: HarnessFactory, position: int
) -> None:
    client = harness(driver="cookie")
    client.get("/put", key="role", value="user")
    assert client.cookie is not None
    client.cookie = flip_one_bit(client.cookie, position)
    reply = client.get("/get", key="role")
    assert reply.status == 200
    assert json.loads(reply.text) is None


@pytest.mark.parametrize("garbage", ["!!!", "Zm9v" * 1000, "AQ", "a" * 4096])
def test_cookie_driver_garbage_cookie_gives_an_empty_session(
    harness: HarnessFactory, garbage: str
) -> None:
    client = harness(driver="cookie")
    client.cookie = garbage
    reply = client.get("/put", key="k", value="v")
    assert reply.status == 200
    assert client.cookie != garbage
    assert json.loads(client.get("/get", key="k").text) == "v"


def test_cookie_driver_truncated_cookie_gives_an_empty_session(harness: HarnessFactory) -> None:
    client = harness(driver="cookie")
    client.get("/put", key="role", value="user")
    assert client.cookie is not None
    client.cookie = client.cookie[:-10]
    assert json.loads(client.get("/get", key="role").text) is None


def test_cookie_driver_cookie_for_another_name_is_refused(
    framework: str, make_manager: ManagerFactory
) -> None:
    first = Harness(framework, make_manager(driver="cookie", cookie="app_one"))
    first.get("/put", key="role", value="admin")
    second = Harness(framework, make_manager(driver="cookie", cookie="app_two"))
    second.cookie = first.cookie  # same key, other cookie name
    assert json.loads(second.get("/get", key="role").text) is None


def test_cookie_driver_oversized_cookie_raises_with_the_size(harness: HarnessFactory) -> None:
    client = harness(driver="cookie")
    with pytest.raises(SessionTooLarge) as caught:
        client.get("/big", size="5000")
    assert caught.value.size > 4096
    assert str(caught.value.size) in str(caught.value)


def test_cookie_driver_cookie_just_under_the_limit_is_sent(harness: HarnessFactory) -> None:
    client = harness(driver="cookie")
    client.get("/big", size="2500")
    assert client.cookie is not None
    assert len(client.cookie_name) + 1 + len(client.cookie) <= 4096


def test_cookie_driver_cookie_older_than_the_lifetime_is_refused(
    harness: HarnessFactory, clock: FakeClock
) -> None:
    client = harness(driver="cookie", lifetime=1)
    client.get("/put", key="role", value="user")
    issued = client.cookie
    assert issued is not None
    clock.advance(59)  # the manager's clock: the expiry inside the sealed cookie decides
    assert json.loads(client.get("/get", key="role").text) == "user"
    client.cookie = issued  # the same cookie, replayed once it is older than the lifetime
    clock.advance(2)
    reply = client.get("/get", key="role")
    assert reply.status == 200
    assert json.loads(reply.text) is None
    # A fresh session: what it stores next goes into a new cookie.
    client.get("/put", key="role", value="guest")
    assert client.cookie not in (None, issued)
    assert json.loads(client.get("/get", key="role").text) == "guest"


def test_key_rotation_reads_old_cookies_and_reissues_them(
    framework: str, make_manager: ManagerFactory
) -> None:
    old = Harness(framework, make_manager(driver="cookie", secret_key=OLD_SECRET))
    old.get("/put", key="cartItems", value="apple")
    old_cookie = old.cookie
    rotated = Harness(
        framework,
        make_manager(driver="cookie", secret_key=SECRET, secret_key_fallbacks=(OLD_SECRET,)),
    )
    rotated.cookie = old_cookie
    reply = rotated.get("/get", key="cartItems")
    assert json.loads(reply.text) == "apple"
    # Only read, yet re-issued under the current key.
    assert reply.cookie_header(rotated.cookie_name) is not None
    assert rotated.cookie != old_cookie
    # Once the old key is gone, only the re-issued cookie still works.
    current = Harness(framework, make_manager(driver="cookie", secret_key=SECRET))
    current.cookie = rotated.cookie
    assert json.loads(current.get("/get", key="cartItems").text) == "apple"
    current.cookie = old_cookie
    assert json.loads(current.get("/get", key="cartItems").text) is None


def test_encrypt_hides_the_plaintext_at_rest(harness: HarnessFactory, tmp_path: Path) -> None:
    folder = tmp_path / "encrypted"
    client = harness(driver="file", files=str(folder), encrypt=True)
    client.get("/put", key="cartItems", value="plaintext-apple-4242")
    assert json.loads(client.get("/get", key="cartItems").text) == "plaintext-apple-4242"
    stored = list(folder.iterdir())
    assert len(stored) == 1
    content = stored[0].read_bytes()
    assert b"plaintext-apple-4242" not in content
    assert b"cartItems" not in content
    assert client.cookie is not None
    # The id itself is never a file name.
    assert stored[0].name == client.manager.storage_key(client.cookie)


def test_encrypt_with_key_rotation_on_a_server_side_driver(
    framework: str, make_manager: ManagerFactory, tmp_path: Path
) -> None:
    folder = str(tmp_path / "rotating")
    old = Harness(
        framework, make_manager(driver="file", files=folder, encrypt=True, secret_key=OLD_SECRET)
    )
    old.get("/put", key="a", value="1")
    rotated = Harness(
        framework,
        make_manager(
            driver="file",
            files=folder,
            encrypt=True,
            secret_key=SECRET,
            secret_key_fallbacks=(OLD_SECRET,),
        ),
    )
    rotated.cookie = old.cookie
    assert json.loads(rotated.get("/get", key="a").text) == "1"
    # Re-encrypted under the current key: readable without the fallback now.
    current = Harness(
        framework, make_manager(driver="file", files=folder, encrypt=True, secret_key=SECRET)
    )
    current.cookie = old.cookie
    assert json.loads(current.get("/get", key="a").text) == "1"


def test_a_stored_payload_that_fails_to_decrypt_gives_an_empty_session_and_a_warning(
    harness: HarnessFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "tampered"
    client = harness(driver="file", files=str(folder), encrypt=True)
    client.get("/put", key="role", value="user")
    (stored,) = folder.iterdir()
    stored.write_text(flip_one_bit(stored.read_text(), 30))
    sent = client.cookie
    assert sent is not None
    with caplog.at_level(logging.WARNING, logger="satchel"):
        reply = client.get("/get", key="role")
    assert reply.status == 200
    assert json.loads(reply.text) is None
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert any("decrypt" in record.getMessage() for record in warnings)
    assert all(sent not in record.getMessage() for record in caplog.records)  # never log an id
    # The session ended empty, so the cookie is removed rather than kept pointing at junk.
    assert client.cookie is None
