"""A shopping cart as a Starlette app on satchel sessions.

Run it from the root of a checkout::

    python3 -m venv .venv && .venv/bin/pip install -e "core[starlette]" uvicorn
    .venv/bin/python examples/cart/app.py          # http://127.0.0.1:8000

Both ways of reaching the session appear: ``request.session``
(Starlette's, which is the satchel session) and the global helper
``from satchel import session``, typed as a :class:`satchel.Session`.

Sessions use the ``file`` driver (in ``storage/sessions``) unless
``SESSION_*`` environment variables say otherwise, e.g.
``SESSION_DRIVER=cookie SESSION_SECRET_KEY=…`` (see ``SessionConfig.from_env``).

A visitor who has not acted stores nothing: pages carry a CSRF token only for
a visitor who already has a session, so a crawler or a flood of cookieless
requests never writes one (Django's CVE-2015-5143 was that flood). A POST
without a session has nothing to forge against; it must still come from this
site's own pages (its ``Origin``, or its ``Referer``), or a forged login could
sign a visitor in to the attacker's account.
"""

from __future__ import annotations

import argparse
import html
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from satchel import SessionConfig, SessionManager, session
from satchel.asgi import SessionMiddleware
from satchel.ids import ids_equal

PRODUCTS = {"apple": ("Apple", "0.50"), "pear": ("Pear", "0.65"), "fig": ("Fig", "1.20")}


def cart_count() -> int:
    # The global helper: any function called during the request reaches its session.
    return len(session.get("cartItems", []))


async def form_of(request: Request) -> dict[str, str]:
    """The posted form (url-encoded), first value of each field."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"))
    return {name: values[0] for name, values in fields.items()}


def csrf_field(request: Request) -> str:
    # Only for a visitor who has a session already: making a token for anyone else
    # would store a session per page view.
    if session.new:
        return ""
    return f'<input type="hidden" name="_token" value="{session.token()}">'


def from_this_site(request: Request) -> bool:
    """Whether the browser says the request comes from this site's own pages."""
    own = f"{request.url.scheme}://{request.url.netloc}"
    origin = request.headers.get("origin")
    if origin is not None:
        return origin == own
    referer = request.headers.get("referer")
    return referer is not None and (referer == own or referer.startswith(own + "/"))


async def checked_form(request: Request) -> dict[str, str] | None:
    """The form, or ``None`` when the request may be forged.

    With a session, its CSRF token must match the session's. Without one there
    is nothing to forge against, but the request must come from this site
    (a cross-site request never carries the SameSite=Lax cookie, so it lands here).
    """
    form = await form_of(request)
    if session.new:
        return form if from_this_site(request) else None
    if not ids_equal(form.get("_token", ""), session.token()):
        return None
    return form


def page(request: Request, title: str, body: str) -> HTMLResponse:
    user = request.session.get("user")
    status = request.session.get("status")
    if user:
        account = (
            f'Signed in as <b id="user">{html.escape(user)}</b> '
            f'<form method="post" action="/logout" class="inline">{csrf_field(request)}'
            '<button id="logout">Log out</button></form>'
        )
    else:
        account = '<a id="login-link" href="/login">Log in</a>'
    flash = f'<p id="flash" class="flash">{html.escape(status)}</p>' if status else ""
    return HTMLResponse(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · satchel cart</title>
<style>body{{font-family:sans-serif;max-width:40rem;margin:2rem auto}}
.flash{{background:#e7f7e7;padding:.5rem}} .inline{{display:inline}}</style></head>
<body><nav><a href="/">Products</a> · <a id="cart-link" href="/cart">Cart
(<span id="cart-count">{cart_count()}</span>)</a> · {account}</nav>
{flash}<h1>{title}</h1>{body}</body></html>"""
    )


async def products(request: Request) -> Response:
    rows = "".join(
        f'<li>{name} — ${price} <form method="post" action="/cart/add" class="inline">'
        f'{csrf_field(request)}<input type="hidden" name="product" value="{key}">'
        f'<button id="add-{key}">Add to cart</button></form></li>'
        for key, (name, price) in PRODUCTS.items()
    )
    return page(request, "Products", f"<ul>{rows}</ul>")


async def add_to_cart(request: Request) -> Response:
    form = await checked_form(request)
    if form is None or form.get("product") not in PRODUCTS:
        return PlainTextResponse("Bad request", status_code=400)
    session.push("cartItems", form["product"])
    session.flash("status", "Item added")
    return RedirectResponse("/", status_code=303)


async def cart(request: Request) -> Response:
    # The cart items straight from the session.
    items = request.session.get("cartItems", [])
    if not items:
        return page(request, "Cart", '<p id="empty">Your cart is empty.</p>')
    rows = "".join(f"<li>{PRODUCTS[item][0]}</li>" for item in items if item in PRODUCTS)
    return page(request, "Cart", f'<ul id="cart-items">{rows}</ul>')


async def login_form(request: Request) -> Response:
    body = (
        f'<form method="post" action="/login">{csrf_field(request)}'
        '<label>Name <input id="name" name="name" required></label> '
        '<button id="login">Log in</button></form>'
    )
    return page(request, "Log in", body)


async def login(request: Request) -> Response:
    form = await checked_form(request)
    name = (form or {}).get("name", "").strip()
    if form is None or not name:
        return PlainTextResponse("Bad request", status_code=400)
    # A privilege change: a new id (the old one is destroyed) against session fixation.
    session.regenerate(destroy=True)
    session.put("user", name[:40])
    session.flash("status", f"Welcome, {name[:40]}")
    return RedirectResponse("/", status_code=303)


async def logout(request: Request) -> Response:
    if await checked_form(request) is None:
        return PlainTextResponse("Bad request", status_code=400)
    session.invalidate()  # data gone, record destroyed, cookie removed
    return RedirectResponse("/", status_code=303)


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


def create_app(manager: SessionManager | None = None) -> SessionMiddleware:
    """The cart app wrapped in satchel's session middleware."""
    manager = manager or SessionManager(SessionConfig.from_env())
    routes = [
        Route("/", products),
        Route("/cart", cart),
        Route("/cart/add", add_to_cart, methods=["POST"]),
        Route("/login", login_form),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/health", health),
    ]
    return SessionMiddleware(Starlette(routes=routes), manager, skip_paths=["/health"])


def main() -> None:
    parser = argparse.ArgumentParser(description="The satchel shopping cart example.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    arguments = parser.parse_args()
    print(f"satchel cart on http://{arguments.host}:{arguments.port}")
    uvicorn.run(create_app(), host=arguments.host, port=arguments.port, log_level="warning")


if __name__ == "__main__":
    main()
