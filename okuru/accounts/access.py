"""Authorization helpers shared by views and the API: one place for the 403."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse


def require_right(*rights: str) -> Callable:
    """View decorator: logged in, and holding every one of ``rights``."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def inner(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            check_rights(request.user, *rights)
            return view(request, *args, **kwargs)

        return inner

    return decorator


def check_rights(user, *rights: str) -> None:
    if not all(user.has_right(r) for r in rights):
        raise PermissionDenied
