"""The Django application of the comparison (its ``ROOT_URLCONF``).

The row's payload, and for the floor its raw client, come in the WSGI environ
(``request.META``), so one urlconf serves every Django row.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from benchmarks.peer_apps import RAW_COOKIE, raw_view, use_mapping


def view(request: HttpRequest) -> HttpResponse:
    meta = request.META
    if meta["bench.floor"]:
        cookie = raw_view(
            meta["bench.raw"], request.path, meta.get("HTTP_COOKIE"), meta["bench.payload"]
        )
        response = HttpResponse("ok")
        if cookie:
            response["Set-Cookie"] = f"{RAW_COOKIE}={cookie}; Path=/; HttpOnly"
        return response
    if request.path == "/untouched":
        return HttpResponse("ok")
    return HttpResponse(use_mapping(request.session, request.path, meta["bench.payload"]))


urlpatterns = [
    path(name, view) for name in ("login", "untouched", "read-only", "read-modify-write")
]
