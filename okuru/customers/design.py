"""Database design (データベース設計): the named actions that add, change and delete user fields.

This module is the named-actions module for fields (``customers.actions`` holds the others):
the UI, the API and the CLI all call these; nothing else creates, changes or deletes ``Field``
rows. Each action is one durable transaction that also keeps the storage in step (the
expression index behind a unique field, the values of a deleted field) and writes the
operation log.
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
    with transaction.atomic(durable=True):
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
    with transaction.atomic(durable=True):
        return _rename(key, label, actor)


def _rename(key: str, label: str, actor: Actor) -> Field:
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
    with transaction.atomic(durable=True):
        return _set_options(key, required, unique, choices, actor)


def _set_options(
    key: str,
    required: bool | None,
    unique: bool | None,
    choices: Sequence[str] | None,
    actor: Actor,
) -> Field:
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


def change_field(
    key: str,
    *,
    label: str | None = None,
    options: dict | None = None,
    label_first: bool = False,
    actor: Actor = None,
) -> Field:
    """Change a field's options (``set_field_options`` keywords) and its label: both or
    neither; a label equal to the current one is no rename. The screen changes the options
    first, so an error about them names the field as the operator knows it; the API renames
    first (``label_first``), so its error names the field as the request calls it."""
    with transaction.atomic(durable=True):
        field = _get_field(key)

        def rename() -> None:
            nonlocal field
            if label is not None and label != field.label:
                field = _rename(key, label, actor)

        if label_first:
            rename()
        if options:
            field = _set_options(
                key,
                options.get("required"),
                options.get("unique"),
                options.get("choices"),
                actor,
            )
        if not label_first:
            rename()
    return field


def delete_field(key: str, *, actor: Actor = None) -> None:
    """Delete a field and its data from every customer (the caller has asked to confirm)."""
    with transaction.atomic(durable=True):
        field = _get_field(key)
        if field.unique:
            sql.drop_unique_index(key)
        sql.remove_field_data(key)
        label = field.label
        field.delete()
        audit.log(actor, "field_delete", key, {"label": label})
