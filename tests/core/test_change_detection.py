"""A save writes exactly when the data changed: unchanged values cost no write, and a value
replaced by one that JSON alone cannot tell apart (a tuple for a list, ``1.0`` for ``1``)
is written and comes back as it was put.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import pytest

from satchel import SaveOutcome, SessionConfig, SessionManager

# What each stored value is replaced with: equal under ``==`` or encoding to the same
# JSON as the stored one, yet not the same value.
LOOK_ALIKES = [
    pytest.param([1, 2], (1, 2), id="list-to-tuple"),
    pytest.param([1, 2], {1, 2}, id="list-to-set"),
    pytest.param(1, 1.0, id="int-to-float"),
    pytest.param(1, True, id="int-to-bool"),
    pytest.param(0, False, id="zero-to-false"),
    pytest.param({"1": "a"}, {1: "a"}, id="str-key-to-int-key"),
    pytest.param("2024-05-01", dt.date(2024, 5, 1), id="str-to-date"),
    pytest.param(
        "12345678-1234-5678-1234-567812345678",
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        id="str-to-uuid",
    ),
    pytest.param("1.5", decimal.Decimal("1.5"), id="str-to-decimal"),
    pytest.param(1, decimal.Decimal("1"), id="int-to-decimal"),
    pytest.param(None, float("nan"), id="none-to-nan"),
]


def stored_with(manager: SessionManager, value: Any) -> str:
    session = manager.start(None)
    session.put({"value": value, "other": {"kept": [1, "two", None]}})
    session.save()
    return session.id


@pytest.mark.parametrize(("stored", "replacement"), LOOK_ALIKES)
def test_a_look_alike_replacement_is_written_and_read_back_as_put(
    recording_manager: SessionManager, recording: Any, stored: Any, replacement: Any
) -> None:
    cookie = stored_with(recording_manager, stored)
    session = recording_manager.start(cookie)
    session["value"] = replacement
    assert session.modified
    assert session.save() is SaveOutcome.WRITTEN
    again = recording_manager.start(cookie).get("value")
    assert type(again) is type(replacement)
    if replacement == replacement:  # NaN is the one value unequal to itself
        assert again == replacement


# The ways a container in the session reaches the application, to be changed in place.
HANDED_OUT = {
    "get": lambda session: session.get("value"),
    "item": lambda session: session["value"],
    "items": lambda session: dict(session.items())["value"],
    "all": lambda session: session.all()["value"],
    "dotted": lambda session: session.get("box.inner")["value"],
}


@pytest.mark.parametrize("reach", HANDED_OUT.values(), ids=HANDED_OUT.keys())
@pytest.mark.parametrize(("stored", "replacement"), LOOK_ALIKES)
def test_a_look_alike_change_made_in_place_is_written(
    recording_manager: SessionManager,
    recording: Any,
    stored: Any,
    replacement: Any,
    reach: Any,
) -> None:
    cookie = stored_with(recording_manager, {"nested": stored})
    setup = recording_manager.start(cookie)
    setup.put("box.inner.value", {"nested": stored})
    setup.save()
    session = recording_manager.start(cookie)
    reach(session)["nested"] = replacement  # behind the session's back
    assert session.modified
    assert session.save() is SaveOutcome.WRITTEN
    again = recording_manager.start(cookie)
    changed = again.get("value.nested"), again.get("box.inner.value.nested")
    assert type(replacement) in {type(value) for value in changed}


def test_reading_strings_and_numbers_leaves_the_session_unwritten(
    recording_manager: SessionManager, recording: Any
) -> None:
    cookie = stored_with(recording_manager, "text")
    session = recording_manager.start(cookie)
    assert session.get("value") == "text"
    assert session["value"] == "text"
    assert session.get("other.kept.0") == 1
    assert session.has("other")
    assert "value" in session
    assert len(session) == 2
    assert not session.modified
    assert session.save() is SaveOutcome.UNCHANGED


def test_a_session_read_and_left_as_it_was_is_not_written(
    recording_manager: SessionManager, recording: Any
) -> None:
    cookie = stored_with(recording_manager, {"list": [1, 2.5, "x"], "flag": True})
    writes = recording.count("write")
    session = recording_manager.start(cookie)
    assert session.get("value.list") == [1, 2.5, "x"]
    session["value"] = {"flag": True, "list": [1, 2.5, "x"]}  # equal, in another order
    assert not session.modified
    assert session.save() is SaveOutcome.UNCHANGED
    assert recording.count("write") == writes


def test_flash_data_aged_out_of_a_session_only_read_is_merged_away(clock: Any) -> None:
    # A merging save removes what this request removed: the aged-out notice, compared
    # with the values as they were loaded, before aging forgot it.
    manager = SessionManager(SessionConfig(driver="array", merge_on_save=True), clock)
    cookie = stored_with(manager, "text")
    flashing = manager.start(cookie)
    flashing.flash("notice", "saved")
    flashing.save()
    showing = manager.start(cookie)
    assert showing.get("notice") == "saved"
    assert showing.save() is SaveOutcome.WRITTEN  # the notice's last request: kept no more
    after = manager.start(cookie)
    assert after.get("notice") is None
    assert after.get("value") == "text"
