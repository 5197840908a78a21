"""Database views (データベース・ビュー): a named saved filter plus an ordered field list.

Input is checked by ``ViewForm``, the form of the view editor.
"""

import json
from typing import Any

from django.db.models import ProtectedError
from django.http import HttpRequest, QueryDict
from django.utils.translation import gettext as _
from ninja import Router, Schema, Status

from okuru.api.auth import needs
from okuru.api.errors import ApiError, form_errors, not_found
from okuru.customers import actions
from okuru.customers.fields import catalogue
from okuru.customers.forms import ViewForm
from okuru.customers.models import View

router = Router(tags=["views"])


class ViewOut(Schema):
    id: int
    name: str
    filter: dict[str, Any]
    fields: list[str]
    delivery_eligible: bool
    owner: str | None
    created: str


class ViewIn(Schema):
    name: str
    filter: dict[str, Any] | None = None
    fields: list[str]


class ViewPatch(Schema):
    name: str | None = None
    filter: dict[str, Any] | None = None
    fields: list[str] | None = None


def view_json(view: View) -> dict[str, Any]:
    return {
        "id": view.pk,
        "name": view.name,
        "filter": view.filter or {"match": "all", "conditions": []},
        "fields": list(view.fields),
        "delivery_eligible": view.is_delivery_eligible,
        "owner": view.owner.get_username() if view.owner else None,
        "created": view.created.isoformat(),
    }


def _get_view(view_id: int) -> View:
    view = View.objects.select_related("owner").filter(pk=view_id).first()
    if view is None:
        raise not_found(_("No view with ID %(id)s.") % {"id": view_id})
    return view


def _form(name: str, tree: dict | None, fields: list[str], view: View | None) -> ViewForm:
    data = QueryDict(mutable=True)
    data["name"] = name
    data["filter"] = json.dumps(tree or {})
    data.setlist("fields", fields)
    form = ViewForm(catalogue(), data, instance=view)
    if not form.is_valid():
        raise form_errors(form)
    return form


@router.get(
    "/views", auth=needs("customers_read"), response=list[ViewOut], summary="List database views"
)
def list_views(request: HttpRequest):
    return [view_json(v) for v in View.objects.select_related("owner")]


@router.get(
    "/views/{view_id}",
    auth=needs("customers_read"),
    response=ViewOut,
    summary="Get a database view",
)
def get_view(request: HttpRequest, view_id: int):
    return view_json(_get_view(view_id))


@router.post(
    "/views",
    auth=needs("customers_read", "customers_write"),
    response={201: ViewOut},
    summary="Create a database view",
)
def create_view(request: HttpRequest, payload: ViewIn):
    d = _form(payload.name, payload.filter, payload.fields, None).cleaned_data
    view = actions.create_view(d["name"], d["filter"], d["fields"], request.user, request)
    return Status(201, view_json(view))


@router.patch(
    "/views/{view_id}",
    auth=needs("customers_read", "customers_write"),
    response=ViewOut,
    summary="Change a database view",
)
def update_view(request: HttpRequest, view_id: int, payload: ViewPatch):
    view = _get_view(view_id)
    d = _form(
        payload.name if payload.name is not None else view.name,
        payload.filter if payload.filter is not None else view.filter,
        payload.fields if payload.fields is not None else view.fields,
        view,
    ).cleaned_data
    actions.update_view(view, d["name"], d["filter"], d["fields"], request)
    return view_json(view)


@router.delete(
    "/views/{view_id}",
    auth=needs("customers_read", "customers_write"),
    response={204: None},
    summary="Delete a database view",
)
def delete_view(request: HttpRequest, view_id: int):
    view = _get_view(view_id)
    try:
        actions.delete_view(view, request)
    except ProtectedError:
        raise ApiError(409, _("This view is in use and cannot be deleted.")) from None
    return Status(204, None)
