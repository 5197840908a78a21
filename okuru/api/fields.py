"""Database design: list, add, rename (and change options of), delete fields.

The work is done by the named actions in ``okuru.customers.design``, as in the UI and the CLI.
"""

from typing import Any

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Router, Schema, Status

from okuru.api.auth import needs
from okuru.api.errors import bad_request, not_found
from okuru.customers import design
from okuru.customers.fields import STANDARD_KEYS, FieldSpec, catalogue, spec_for
from okuru.customers.models import Field

router = Router(tags=["fields"])


class FieldOut(Schema):
    key: str
    label: str
    type: str
    choices: list[str]
    required: bool
    unique: bool
    standard: bool


class FieldIn(Schema):
    key: str
    label: str
    type: str
    choices: list[str] = []
    required: bool = False
    unique: bool = False


class FieldPatch(Schema):
    label: str | None = None
    choices: list[str] | None = None
    required: bool | None = None
    unique: bool | None = None


def field_json(spec: FieldSpec) -> dict[str, Any]:
    return {
        "key": spec.key,
        "label": str(spec.label),
        "type": spec.type,
        "choices": list(spec.choices),
        "required": spec.required,
        "unique": spec.unique,
        "standard": spec.standard,
    }


def _user_field(key: str) -> Field:
    if key in STANDARD_KEYS:
        raise bad_request(
            _("%(key)s is a standard field: it cannot be changed or deleted.") % {"key": key}
        )
    field = Field.objects.filter(key=key).first()
    if field is None:
        raise not_found(_("No such field: %(key)s") % {"key": key})
    return field


@router.get("/fields", auth=needs("customers_read"), response=list[FieldOut], summary="List fields")
def list_fields(request: HttpRequest):
    """Every field of the master database, standard fields first, in display order."""
    return [field_json(s) for s in catalogue().values()]


@router.post(
    "/fields", auth=needs("database_design"), response={201: FieldOut}, summary="Add a field"
)
def add_field(request: HttpRequest, payload: FieldIn):
    try:
        field = design.add_field(
            payload.key.strip(),
            payload.label.strip(),
            payload.type,
            choices=payload.choices,
            required=payload.required,
            unique=payload.unique,
            actor=request,
        )
    except design.DesignError as e:
        raise bad_request(str(e)) from None
    return Status(201, field_json(spec_for(field)))


@router.patch(
    "/fields/{key}",
    auth=needs("database_design"),
    response=FieldOut,
    summary="Rename a field or change its options",
)
def change_field(request: HttpRequest, key: str, payload: FieldPatch):
    """A new ``label`` renames the field (its key and data stay); ``required``, ``unique`` and
    ``choices`` change its options. All of it or none."""
    field = _user_field(key)
    options = payload.dict(exclude_none=True, exclude={"label"})
    label = payload.label.strip() if payload.label is not None else None
    try:
        field = design.change_field(
            key, label=label, options=options, label_first=True, actor=request
        )
    except design.DesignError as e:
        raise bad_request(str(e)) from None
    return field_json(spec_for(field))


@router.delete(
    "/fields/{key}",
    auth=needs("database_design"),
    response={204: None},
    summary="Delete a field and its data",
)
def delete_field(request: HttpRequest, key: str):
    """Deletes the field and its value on every customer. There is no undo."""
    _user_field(key)
    try:
        design.delete_field(key, actor=request)
    except design.DesignError as e:
        raise bad_request(str(e)) from None
    return Status(204, None)
