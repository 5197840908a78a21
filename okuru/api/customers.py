"""Customers: list (filter + keyset paging), count, get, create, update, delete.

Writes go through ``CustomerForm``, the form of the customer edit page, so a value is parsed
by the field's own parser (the one import uses) and the messages are the same.
"""

from typing import Any

from django import forms
from django.db import transaction
from django.http import HttpRequest, QueryDict
from django.utils.translation import gettext as _
from ninja import Body, Query, Router, Schema, Status

from okuru.accounts import audit
from okuru.api.auth import needs
from okuru.api.errors import bad_request, form_errors, not_found
from okuru.bounces import suppression
from okuru.customers import filters
from okuru.customers.fields import FieldSpec, catalogue, parse_flag, row_value
from okuru.customers.forms import CustomerForm
from okuru.customers.models import Customer

router = Router(tags=["customers"])
MAX_LIMIT = 1000
MAX_FILTER_CHARS = 100_000


class CustomerPage(Schema):
    items: list[dict[str, Any]]
    next_after: int | None = None


class Count(Schema):
    count: int


class ListParams(Schema):
    filter: str | None = None
    after: int | None = None
    limit: int = 100


def customer_json(customer: Customer, specs: dict[str, FieldSpec]) -> dict[str, Any]:
    return {key: row_value(spec, customer) for key, spec in specs.items()}


def _get_customer(customer_id: int) -> Customer:
    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is None:
        raise not_found(_("No customer with Customer ID %(id)s.") % {"id": customer_id})
    return customer


def _tree(raw: str | None, specs: dict[str, FieldSpec] | None = None) -> dict:
    if raw is not None and len(raw) > MAX_FILTER_CHARS:
        raise bad_request(_("The filter is too long."))
    try:
        tree = filters.parse_tree(raw)
        filters.compile_filter(tree, specs)
    except filters.FilterError as e:
        raise bad_request(str(e)) from None
    return tree


@router.get(
    "/customers", auth=needs("customers_read"), response=CustomerPage, summary="List customers"
)
def list_customers(request: HttpRequest, params: Query[ListParams]):
    """Customers in Customer ID order. ``filter`` is a filter tree as JSON; page on with
    ``after`` = the previous page's ``next_after``."""
    if not 1 <= params.limit <= MAX_LIMIT:
        raise bad_request(_("limit must be between 1 and %(max)s.") % {"max": MAX_LIMIT})
    specs = catalogue()
    qs = filters.filtered(_tree(params.filter, specs), specs).order_by("id")
    if params.after is not None:
        qs = qs.filter(id__gt=params.after)
    rows = list(qs[: params.limit + 1])
    more = len(rows) > params.limit
    rows = rows[: params.limit]
    return {
        "items": [customer_json(c, specs) for c in rows],
        "next_after": rows[-1].pk if more else None,
    }


@router.get(
    "/customers/count", auth=needs("customers_read"), response=Count, summary="Count customers"
)
def count_customers(request: HttpRequest, filter: str | None = None):
    specs = catalogue()
    return {"count": filters.count(_tree(filter, specs), specs)}


@router.get(
    "/customers/{customer_id}",
    auth=needs("customers_read"),
    response=dict[str, Any],
    summary="Get a customer",
)
def get_customer(request: HttpRequest, customer_id: int):
    return customer_json(_get_customer(customer_id), catalogue())


def _form_value(spec: FieldSpec, value: Any) -> str | list[str]:
    """A JSON value as the edit form would submit it."""
    if spec.type == "flag":
        if isinstance(value, bool):
            return "true" if value else "false"
        try:
            return "true" if parse_flag(str(value).strip()) else "false"
        except ValueError as e:
            raise bad_request(f"{spec.key}: {e}") from None
    if spec.type == "multiselect":
        if value is None:
            return []
        if isinstance(value, str):
            return [v.strip() for v in value.split("|") if v.strip()]
        if not isinstance(value, list):
            raise bad_request(_("%(key)s: give a list of choices.") % {"key": spec.key})
        return [str(v) for v in value]
    if isinstance(value, (list, dict)):
        raise bad_request(_("%(key)s: give a single value.") % {"key": spec.key})
    return "" if value is None else str(value)


def _bound_form(
    specs: dict[str, FieldSpec], payload: dict[str, Any], customer: Customer | None
) -> CustomerForm:
    """The edit form bound to the payload; fields not in the payload keep their values."""
    for key in payload:
        spec = specs.get(key)
        if spec is None:
            raise bad_request(_("Unknown field: %(key)s") % {"key": key})
        if spec.readonly:
            raise bad_request(_("%(key)s is set by Okuru and cannot be written.") % {"key": key})
    unbound = CustomerForm(specs, customer=customer)
    data = QueryDict(mutable=True)
    for key, spec in unbound.specs.items():
        if key in payload:
            value = _form_value(spec, payload[key])
        elif customer is not None:
            value = _form_value(spec, unbound.initial.get(key))
        else:
            continue
        if isinstance(value, list):
            data.setlist(key, value)
        elif spec.type != "flag" or value == "true":
            data[key] = value
    return CustomerForm(specs, data, customer=customer)


def _save(request: HttpRequest, form: CustomerForm, action: str) -> Customer:
    if not form.is_valid():
        raise form_errors(form)
    try:
        with transaction.atomic():
            customer = form.save()
            audit.log(request, action, str(customer.pk), {"fields": sorted(form.values)})
    except forms.ValidationError as e:
        raise bad_request(" ".join(e.messages)) from None
    return customer


@router.post(
    "/customers",
    auth=needs("customers_read", "customers_write"),
    response={201: dict[str, Any]},
    summary="Create a customer",
)
def create_customer(request: HttpRequest, payload: Body[dict[str, Any]]):
    """The body maps field keys to values: text, numbers, true/false for flags, lists for
    multi-selects. Dates are YYYY-MM-DD, date-times YYYY-MM-DD HH:MM:SS (local time) or ISO
    8601 with an offset."""
    specs = catalogue()
    customer = _save(request, _bound_form(specs, payload, None), "customer_create")
    return Status(201, customer_json(customer, specs))


@router.patch(
    "/customers/{customer_id}",
    auth=needs("customers_read", "customers_write"),
    response=dict[str, Any],
    summary="Update a customer",
)
def update_customer(request: HttpRequest, customer_id: int, payload: Body[dict[str, Any]]):
    """Only the fields in the body change; null or an empty value clears a field."""
    customer = _get_customer(customer_id)
    specs = catalogue()
    customer = _save(request, _bound_form(specs, payload, customer), "customer_update")
    return customer_json(customer, specs)


@router.delete(
    "/customers/{customer_id}",
    auth=needs("customers_read", "customers_write"),
    response={204: None},
    summary="Delete a customer",
)
def delete_customer(request: HttpRequest, customer_id: int):
    customer = _get_customer(customer_id)
    with transaction.atomic():
        suppression.remember_customer(customer)
        customer.delete()
        audit.log(request, "customer_delete", str(customer_id))
    return Status(204, None)
