"""The operation log: one call per write, import, export and send."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from okuru.accounts.models import OperationLog, Operator


def client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy sets it.
    return request.META.get("REMOTE_ADDR") or None


def log(
    actor: HttpRequest | Operator | None,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
    *,
    operator: Operator | None = None,
) -> OperationLog:
    """Record an operation. ``actor`` is the request (web, API) or the operator (CLI, jobs).

    ``operator`` names the operator when the request has no logged-in user yet (a failed
    log-in): the entry then carries both who it was about and where it came from.
    """
    request = actor if isinstance(actor, HttpRequest) else None
    if operator is None:
        operator = getattr(request, "user", None) if request is not None else actor
    if operator is not None and not getattr(operator, "is_authenticated", False):
        operator = None
    return OperationLog.objects.create(
        operator=operator,
        operator_name=operator.get_username() if operator else "",
        group_names=operator.group_names() if operator else "",
        action=action,
        target=str(target)[:300],
        detail=detail or {},
        source_ip=client_ip(request),
    )
