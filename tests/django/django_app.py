"""A small Django app for the engine's request tests: its views and URLs (``ROOT_URLCONF``).

Each view does one thing to ``request.session`` and answers JSON, so a test
(through Django's test ``Client`` or a real server) reads what happened.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from django.contrib import auth
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from satchel.django import SessionStore


def _state(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    return {
        "cart": request.session.get("cart", []),
        "user": user.get_username() if user is not None and user.is_authenticated else None,
    }


def untouched(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


def show(request: HttpRequest) -> HttpResponse:
    return JsonResponse(_state(request))


def add(request: HttpRequest, item: str) -> HttpResponse:
    request.session["cart"] = [*request.session.get("cart", []), item]
    return JsonResponse(_state(request))


def expire_in(request: HttpRequest, seconds: int) -> HttpResponse:
    request.session.set_expiry(seconds)
    request.session["expiry"] = seconds
    return JsonResponse({"expiry": seconds})


def sign_in(request: HttpRequest) -> HttpResponse:
    user = auth.authenticate(
        request, username=request.POST["username"], password=request.POST["password"]
    )
    if user is None:
        return JsonResponse({"error": "bad credentials"}, status=403)
    auth.login(request, user)
    return JsonResponse(_state(request))


def sign_out(request: HttpRequest) -> HttpResponse:
    auth.logout(request)
    return JsonResponse(_state(request))


def flush(request: HttpRequest) -> HttpResponse:
    request.session.flush()
    return JsonResponse({"ok": True})


def ended_elsewhere(request: HttpRequest) -> HttpResponse:
    """Change the session while another request (a logout, say) deletes its record."""
    request.session["cart"] = ["late"]
    SessionStore(request.session.session_key).delete()
    return JsonResponse({"ok": True})


# Long enough that a second request of the session arrives while the first still runs.
SLOW_SECONDS = 0.3


def slow_count(request: HttpRequest) -> HttpResponse:
    """Read, wait, write: two of these at once lose a count unless the session is locked."""
    count = request.session.get("count", 0)
    time.sleep(SLOW_SECONDS)
    request.session["count"] = count + 1
    return JsonResponse({"count": count + 1})


async def async_slow_count(request: HttpRequest) -> HttpResponse:
    session: SessionBase = request.session
    count = await session.aget("count", 0)
    await asyncio.sleep(SLOW_SECONDS)
    await session.aset("count", count + 1)
    return JsonResponse({"count": count + 1})


async def async_show(request: HttpRequest) -> HttpResponse:
    session: SessionBase = request.session
    return JsonResponse({"cart": await session.aget("cart", [])})


async def async_add(request: HttpRequest, item: str) -> HttpResponse:
    session: SessionBase = request.session
    await session.aset("cart", [*(await session.aget("cart", [])), item])
    return JsonResponse({"cart": await session.aget("cart")})


async def async_sign_in(request: HttpRequest) -> HttpResponse:
    user = await auth.aauthenticate(
        request, username=request.POST["username"], password=request.POST["password"]
    )
    if user is None:
        return JsonResponse({"error": "bad credentials"}, status=403)
    await auth.alogin(request, user)
    return JsonResponse(
        {"cart": await request.session.aget("cart", []), "user": user.get_username()}
    )


async def async_sign_out(request: HttpRequest) -> HttpResponse:
    await auth.alogout(request)
    return JsonResponse({"cart": await request.session.aget("cart", [])})


urlpatterns = [
    path("untouched", untouched),
    path("show", show),
    path("add/<str:item>", add),
    path("expire/<int:seconds>", expire_in),
    path("login", sign_in),
    path("logout", sign_out),
    path("flush", flush),
    path("ended-elsewhere", ended_elsewhere),
    path("slow-count", slow_count),
    path("async/slow-count", async_slow_count),
    path("async/show", async_show),
    path("async/add/<str:item>", async_add),
    path("async/login", async_sign_in),
    path("async/logout", async_sign_out),
]
