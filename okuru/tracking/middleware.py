"""The open pixel and the click redirect, answered before the rest of the middleware runs.

These two URLs take most of Okuru's traffic and need nothing that sessions, CSRF, locale,
messages, authentication, WhiteNoise or URL resolving provide: through the whole stack, that
work cost twice what answering them does. This middleware, first in ``MIDDLEWARE``, answers
them directly and hands everything else on untouched — including a click it cannot redirect,
so that the full stack renders the "link not valid" page in the visitor's language. Django's
request lifecycle (signals, the closing of broken or old database connections) still runs
around it.

The paths are the ones in ``okuru.tracking.urls``, which never change (sent mail carries them).
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from okuru.tracking import views

OPEN_PREFIX, OPEN_SUFFIX = "/t/o/", ".gif"
CLICK_PREFIX = "/t/c/"


def _token(path: str, prefix: str, suffix: str = "") -> str | None:
    """The token in ``path`` if it is ``prefix<token>suffix`` with a token that is not empty
    (it may be damaged, slashes and all: the views answer any token)."""
    if not (path.startswith(prefix) and path.endswith(suffix)):
        return None
    token = path[len(prefix) : len(path) - len(suffix)]
    return token or None


def tracking_shortcut(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        if request.method in ("GET", "HEAD"):
            path = request.path_info
            token = _token(path, OPEN_PREFIX, OPEN_SUFFIX)
            if token is not None:
                views.note_open(token)
                return views.pixel()
            token = _token(path, CLICK_PREFIX)
            if token is not None:
                target = views.click_target(token)
                if target is not None:
                    return views.redirect_click(request, *target)
        return get_response(request)

    return middleware
