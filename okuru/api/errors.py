"""Every error leaves the API as JSON ``{"detail": "..."}`` with a message a person can act on."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, ValidationError


class ApiError(Exception):
    """A refused request: status and message (already translated), optional details."""

    def __init__(self, status: int, detail: str, errors: Any = None):
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors


def bad_request(detail: str, errors: Any = None) -> ApiError:
    return ApiError(400, detail, errors)


def not_found(detail: str) -> Http404:
    return Http404(detail)


def form_errors(form) -> ApiError:
    """A Django form's errors as one readable line plus the per-field list."""
    errors = {k: [str(m) for m in v] for k, v in form.errors.items()}
    parts = [
        msg if key == "__all__" else f"{key}: {msg}" for key, msgs in errors.items() for msg in msgs
    ]
    return ApiError(400, " ".join(parts), errors)


def _loc(error: dict) -> str:
    # Drop the parameter source ("body", "query", "form"): the name is what the caller sent.
    loc = [str(p) for p in error.get("loc", ())][1:]
    return ".".join(loc)


def install(api: NinjaAPI) -> None:
    @api.exception_handler(ApiError)
    def api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
        body: dict[str, Any] = {"detail": exc.detail}
        if exc.errors is not None:
            body["errors"] = exc.errors
        return api.create_response(request, body, status=exc.status)

    @api.exception_handler(AuthenticationError)
    def unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        if request.headers.get("Authorization"):
            detail = _(
                "The API token is not valid: it is unknown or revoked, "
                "or its operator is deactivated."
            )
        else:
            detail = _("Authentication required: send the header Authorization: Bearer <token>.")
        response = api.create_response(request, {"detail": detail}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="okuru"'
        return response

    @api.exception_handler(PermissionDenied)
    def forbidden(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
        detail = str(exc) or _("You do not have the right to do this.")
        return api.create_response(request, {"detail": detail}, status=403)

    @api.exception_handler(Http404)
    def missing(request: HttpRequest, exc: Http404) -> HttpResponse:
        detail = str(exc) or _("Not found.")
        return api.create_response(request, {"detail": detail}, status=404)

    @api.exception_handler(ValidationError)
    def invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        parts = [
            f"{_loc(e)}: {e.get('msg', '')}" if _loc(e) else e.get("msg", "") for e in exc.errors
        ]
        detail = _("Invalid request: %(errors)s") % {"errors": "; ".join(parts)}
        return api.create_response(request, {"detail": detail, "errors": exc.errors}, status=400)
