"""Named actions on operators, permission groups, API tokens and notices.

The screens (``accounts.views``) and the CLI (``okuru createoperator``, the first start of ``okuru
run``) write through these functions. Each one is a single durable transaction around the write
and its operation-log entry: either both are stored or neither is. Callers check rights and
validate input; the operator and group actions take the bound, valid form, which knows the
columns it shows (``OwnColumnsForm``: a stale full save would undo a lock or a new password).

The log-in path (``views.login_view`` with ``Operator.claim_login`` and ``LoginSource``) keeps its
own writes: they are counted and released with conditional updates that must not wait for, or
be rolled back with, anything else.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import Group
from django.db import transaction

from okuru.accounts import audit
from okuru.accounts.models import ApiToken, Notification, Operator

Actor = Any  # HttpRequest | Operator | None, as okuru.accounts.audit.log takes it


def _group_names(groups: Iterable[Group]) -> list[str]:
    return sorted(g.name for g in groups)


# ---------------------------------------------------------------------------------------------
# Operators


def create_operator(
    operator: Operator, groups: Iterable[Group], actor: Actor, **detail
) -> Operator:
    """Save a new operator (its password already set, hashed) with its groups. ``detail`` adds
    to the log entry (the CLI says ``source="cli"``)."""
    groups = list(groups)
    with transaction.atomic(durable=True):
        operator.save()
        operator.groups.set(groups)
        audit.log(
            actor,
            "operator_create",
            operator.get_username(),
            {"groups": _group_names(groups), **detail},
        )
    return operator


def create_operator_from_form(form: Any, actor: Actor) -> Operator:
    """``OperatorCreateForm``: the operator as entered, with its password and groups."""
    operator = form.save(commit=False)
    return create_operator(operator, form.cleaned_data["groups"], actor)


def update_operator(form: Any, actor: Actor) -> Operator:
    """``OperatorForm``: the columns it shows and the groups."""
    with transaction.atomic(durable=True):
        operator = form.save()
        detail = {"changed": form.changed_data, "groups": _group_names(form.cleaned_data["groups"])}
        audit.log(actor, "operator_update", operator.get_username(), detail)
    return operator


def set_active(operator: Operator, active: bool, actor: Actor) -> None:
    with transaction.atomic(durable=True):
        operator.is_active = active
        Operator.objects.filter(pk=operator.pk).update(is_active=active)
        action = "operator_activate" if active else "operator_deactivate"
        audit.log(actor, action, operator.get_username())


def unlock(operator: Operator, actor: Actor) -> None:
    with transaction.atomic(durable=True):
        operator.unlock()
        audit.log(actor, "operator_unlock", operator.get_username())


def reset_password(operator: Operator, actor: Actor, password: str | None = None) -> None:
    """An administrator sets another operator's password: it also lifts a lock, since the
    operator is told the new password by someone who checked who they are. Without
    ``password``, the one already set on ``operator`` (a password form's ``save(commit=False)``)
    is stored."""
    if password is not None:
        operator.set_password(password)
    with transaction.atomic(durable=True):
        # Only the password column: the row may have changed since it was read.
        operator.save(update_fields=["password"])
        operator.unlock()
        audit.log(actor, "operator_password_reset", operator.get_username())


def change_password(operator: Operator, actor: Actor, password: str | None = None) -> None:
    """The operator changes their own password (the caller checked the old one); without
    ``password``, the one already set on ``operator`` is stored."""
    if password is not None:
        operator.set_password(password)
    with transaction.atomic(durable=True):
        # Only the password column: the row may have changed since it was read.
        operator.save(update_fields=["password"])
        audit.log(actor, "password_change", operator.get_username())


def update_profile(form: Any, actor: Actor) -> Operator:
    """``ProfileForm``: the operator's own name, address and language."""
    with transaction.atomic(durable=True):
        operator = form.save()
        audit.log(actor, "profile_update", operator.get_username(), {"changed": form.changed_data})
    return operator


def set_language(operator: Operator, language: str, actor: Actor) -> None:
    """Keep the language chosen with the language switch as the operator's preference."""
    with transaction.atomic(durable=True):
        Operator.objects.filter(pk=operator.pk).update(language=language)
        audit.log(actor, "language_change", operator.get_username(), {"language": language})


# ---------------------------------------------------------------------------------------------
# Permission groups


def create_group(form: Any, actor: Actor) -> Group:
    """``GroupForm``: a name and its rights."""
    with transaction.atomic(durable=True):
        group = form.save()
        audit.log(actor, "group_create", group.name, {"rights": form.cleaned_data["rights"]})
    return group


def update_group(form: Any, actor: Actor) -> Group:
    with transaction.atomic(durable=True):
        group = form.save()
        audit.log(actor, "group_update", group.name, {"rights": form.cleaned_data["rights"]})
    return group


def delete_group(group: Group, actor: Actor) -> None:
    name = group.name
    with transaction.atomic(durable=True):
        group.delete()
        audit.log(actor, "group_delete", name)


# ---------------------------------------------------------------------------------------------
# API tokens


def issue_token(operator: Operator, name: str, actor: Actor) -> tuple[ApiToken, str]:
    """A new token and its key, which exists only in this return value (stored hashed)."""
    with transaction.atomic(durable=True):
        token, key = ApiToken.issue(operator, name)
        audit.log(actor, "api_token_create", token.name, {"token": token.pk})
    return token, key


def revoke_token(token: ApiToken, actor: Actor) -> None:
    with transaction.atomic(durable=True):
        token.revoke()
        audit.log(actor, "api_token_revoke", token.name, {"token": token.pk})


# ---------------------------------------------------------------------------------------------
# Notices


def mark_notices_read(operator: Operator, actor: Actor, notice_id: Any = None) -> int:
    """Mark the operator's unread notices read (one when ``notice_id`` is given); returns how
    many changed. Only a change is logged."""
    qs = Notification.objects.filter(operator=operator, read=False)
    if notice_id is not None:
        qs = qs.filter(pk=notice_id)
    with transaction.atomic(durable=True):
        count = qs.update(read=True)
        if count:
            audit.log(actor, "notices_read", "", {"count": count})
    return count


def open_notice(notice: Notification) -> None:
    """Opening a notice reads it; that is not an operation worth a log entry."""
    if not notice.read:
        Notification.objects.filter(pk=notice.pk).update(read=True)
        notice.read = True
