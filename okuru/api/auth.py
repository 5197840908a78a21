"""Bearer-token authentication and the rights check shared by every endpoint."""

from __future__ import annotations

from django.http import HttpRequest
from ninja.security import HttpBearer

from okuru.accounts.access import check_rights
from okuru.accounts.models import ApiToken, Operator


class TokenAuth(HttpBearer):
    """The bearer token of an active operator who holds every one of ``rights``."""

    def __init__(self, *rights: str) -> None:
        self.rights = rights
        super().__init__()

    def authenticate(self, request: HttpRequest, token: str) -> Operator | None:
        found = ApiToken.find(token.strip())
        if found is None:
            return None
        found.touch()
        # The operator acts as if logged in: audit.log and check_rights read request.user.
        request.user = found.operator
        request.api_token = found
        # Rights are checked here, before Ninja reads the parameters and the body: a caller
        # without the right gets the 403, not a validation error about a request it may not make.
        check_rights(found.operator, *self.rights)
        return found.operator


def needs(*rights: str) -> TokenAuth:
    """Per-endpoint auth: ``@router.post(..., auth=needs("database_design"))``."""
    return TokenAuth(*rights)


def require(request: HttpRequest, *rights: str) -> Operator:
    """The calling operator, after the same check as the UI (403 naming what is missing).
    Prefer ``needs``: it runs before the body is validated."""
    check_rights(request.user, *rights)
    return request.user
