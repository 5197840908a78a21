"""Authorization helpers shared by views and the API: one place for the 403."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _


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
    """Raise PermissionDenied, naming the missing rights, unless ``user`` holds all of them."""
    missing = [r for r in rights if not user.has_right(r)]
    if missing:
        raise PermissionDenied(
            _("You do not have the right to do this (needs: %(rights)s).")
            % {"rights": ", ".join(right_labels(missing))}
        )


def right_labels(codes: list[str]) -> list[str]:
    from okuru.accounts.models import RIGHTS

    labels = {code: str(label) for code, label in RIGHTS}
    return [labels.get(code, code) for code in codes]
