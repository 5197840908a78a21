"""Bearer-token authentication and the rights check shared by every endpoint."""

from __future__ import annotations

from django.http import HttpRequest
from ninja.security import HttpBearer

from okuru.accounts.access import check_rights
from okuru.accounts.models import ApiToken, Operator


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Operator | None:
        found = ApiToken.find(token.strip())
        if found is None:
            return None
        found.touch()
        # The operator acts as if logged in: audit.log and check_rights read request.user.
        request.user = found.operator
        request.api_token = found
        return found.operator


def require(request: HttpRequest, *rights: str) -> Operator:
    """The calling operator, after the same check as the UI (403 naming what is missing)."""
    check_rights(request.user, *rights)
    return request.user
