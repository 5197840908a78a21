"""The operation log: one call per write, import, export and send."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.http import HttpRequest

from okuru.accounts.logwords import ACTIONS, UnlabelledAction
from okuru.accounts.models import OperationLog, Operator

# The source IP of the request a background job was started from, while the job runs: what
# the job logs (the import itself, the export file) was asked for from there.
_job_source_ip: ContextVar[str | None] = ContextVar("okuru_job_source_ip", default=None)


@contextmanager
def source_ip(ip: str | None) -> Iterator[None]:
    """Entries logged without a request inside this block carry ``ip`` as their source IP."""
    token = _job_source_ip.set(ip)
    try:
        yield
    finally:
        _job_source_ip.reset(token)


def client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy sets it.
    return request.META.get("REMOTE_ADDR") or None


def storable(value: Any) -> Any:
    """``value`` with what no database text or JSON column stores made visible instead: a NUL
    (PostgreSQL refuses it) becomes ``\\x00``, a lone surrogate its escape. What is logged is often
    what a visitor typed (a log-in name), so logging must never fail on it."""
    if isinstance(value, str):
        if value.isprintable() or not any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in value):
            return value
        return "".join(
            c.encode("unicode_escape").decode() if c == "\x00" or "\ud800" <= c <= "\udfff" else c
            for c in value
        )
    if isinstance(value, dict):
        return {storable(str(k)): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


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
    if action not in ACTIONS:
        warnings.warn(f"no words for the logged action {action!r}", UnlabelledAction, stacklevel=2)
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
        target=storable(str(target))[:300],
        detail=storable(detail or {}),
        source_ip=client_ip(request) if request is not None else _job_source_ip.get(),
    )
