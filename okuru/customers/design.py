"""Database design (データベース設計): the named actions that add, change and delete user fields.

The UI, the API and the CLI all call these; nothing else creates or deletes ``Field`` rows. Each
action is one transaction that also keeps the storage in step (the expression index behind a
unique field, the values of a deleted field) and writes the operation log.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.http import HttpRequest
from django.utils.translation import gettext as _

from okuru.accounts import audit
from okuru.accounts.models import Operator
from okuru.customers import sql
from okuru.customers.models import Field

Actor = HttpRequest | Operator | None


class DesignError(ValueError):
    """A design change that cannot be made, with the message for the operator."""


def _get_field(key: str) -> Field:
    field = Field.objects.select_for_update().filter(key=key).first()
    if field is None:
        raise DesignError(_("No such field: %(key)s") % {"key": key})
    return field


def _validate(field: Field) -> None:
    try:
        field.full_clean()
    except ValidationError as e:
        # One line per problem, prefixed with the attribute it is about.
        parts = []
        for name, messages in e.message_dict.items():
            for message in messages:
                parts.append(message if name == "__all__" else f"{name}: {message}")
        raise DesignError(" ".join(parts)) from None


def add_field(
    key: str,
    label: str,
    type: str,
    *,
    choices: Sequence[str] = (),
    required: bool = False,
    unique: bool = False,
    actor: Actor = None,
) -> Field:
    """Add a user field. A unique field gets its expression index in the same transaction."""
    with transaction.atomic():
        position = (Field.objects.aggregate(m=Max("position"))["m"] or 0) + 1
        field = Field(
            key=key,
            label=label,
            type=type,
            choices=[c.strip() for c in choices if c.strip()],
            required=required,
            unique=unique,
            position=position,
        )
        _validate(field)
        field.save()
        if unique:
            sql.create_unique_index(key)
        audit.log(
            actor,
            "field_add",
            key,
            {"label": label, "type": type, "required": required, "unique": unique},
        )
    return field


def rename_field(key: str, label: str, *, actor: Actor = None) -> Field:
    """Change a field's label (its key, and so its stored data, stays)."""
    with transaction.atomic():
        field = _get_field(key)
        old = field.label
        field.label = label
        _validate(field)
        field.save(update_fields=["label"])
        audit.log(actor, "field_rename", key, {"from": old, "to": label})
    return field


def set_field_options(
    key: str,
    *,
    required: bool | None = None,
    unique: bool | None = None,
    choices: Sequence[str] | None = None,
    actor: Actor = None,
) -> Field:
    """Change required / unique / choices. Making a field unique is refused while two customers
    share a value, because the index could not be built (and the key would not be a key)."""
    with transaction.atomic():
        field = _get_field(key)
        before = {"required": field.required, "unique": field.unique, "choices": field.choices}
        if required is not None:
            field.required = required
        if choices is not None:
            field.choices = [c.strip() for c in choices if c.strip()]
        make_unique = unique is True and not field.unique
        drop_unique = unique is False and field.unique
        if unique is not None:
            field.unique = unique
        _validate(field)
        if make_unique and sql.find_duplicate_values(key):
            raise DesignError(
                _(
                    "%(label)s cannot be made unique: some customers share a value."
                    " Make the values unique first."
                )
                % {"label": field.label}
            )
        field.save(update_fields=["required", "unique", "choices"])
        if make_unique:
            sql.create_unique_index(key)
        if drop_unique:
            sql.drop_unique_index(key)
        after = {"required": field.required, "unique": field.unique, "choices": field.choices}
        audit.log(actor, "field_change", key, {"from": before, "to": after})
    return field


def delete_field(key: str, *, actor: Actor = None) -> None:
    """Delete a field and its data from every customer (the caller has asked to confirm)."""
    with transaction.atomic():
        field = _get_field(key)
        if field.unique:
            sql.drop_unique_index(key)
        sql.remove_field_data(key)
        label = field.label
        field.delete()
        audit.log(actor, "field_delete", key, {"label": label})
