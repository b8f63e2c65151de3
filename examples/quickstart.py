"""The shopping-cart walk-through on the file driver, printed step by step.

Run it with ``python examples/quickstart.py``. Each "request" starts the
session from the cookie the previous one set, works with it, and saves it.
"""

from __future__ import annotations

import tempfile

from satchel import Session, SessionConfig, SessionManager
from satchel.ids import log_digest


def show(step: str, session: Session) -> None:
    # A digest names the session: ids are secrets and never printed or logged.
    print(f"{step:<44} session {log_digest(session.id)}  data={session.all()}")


def main() -> None:
    folder = tempfile.mkdtemp(prefix="satchel-quickstart-")
    manager = SessionManager(SessionConfig(driver="file", files=folder))

    # Request 1: a visitor adds two items to the cart.
    session = manager.start(None)  # no cookie yet: a new session
    session.put("cartItems", ["apple"])
    session.push("cartItems", "pear")
    session.put("user.teams", ["shoppers"])
    session.flash("status", "Item added")
    show("request 1: put, push, flash", session)
    session.save()
    cookie = session.cookie_value()  # what the browser keeps

    # Request 2: the flash message is there, once.
    session = manager.start(cookie)
    show("request 2: flash visible", session)
    print(f"{'':<44} status={session.get('status')!r}")
    session.save()

    # Request 3: the flash message is gone; the cart stays.
    session = manager.start(cookie)
    show("request 3: flash gone", session)
    session.push("user.teams", "developers")

    # Logging in: a new id for the same data (prevents session fixation).
    session.put("user_id", 42)
    session.regenerate(destroy=True)
    session.save()
    new_cookie = session.cookie_value()
    print(f"{'login: regenerate(destroy=True)':<44} id changed: {new_cookie != cookie}")
    print(f"{'':<44} old id now gives: {manager.start(cookie).all()}")
    show("request 4: with the new id", manager.start(new_cookie))

    # Logging out: every value gone and a new id.
    session = manager.start(new_cookie)
    session.invalidate()
    session.save()
    print(f"{'logout: invalidate()':<44} data={session.all()}  cookie: {session.cookie_action()}")
    print(f"{'':<44} the old id now gives: {manager.start(new_cookie).all()}")
    print(f"sessions were stored as files in {folder}")


if __name__ == "__main__":
    main()
