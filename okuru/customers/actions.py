"""Named actions on customers, database views, newsletter topics and export settings.

The screens (``customers.views``), the API (``okuru.api``) and the CLI write through these
functions and nothing else saves these rows. Each one is a single durable transaction around the
write and its operation-log entry: either both are stored or neither is. Callers check rights
and parse input (``CustomerForm``, ``ViewForm``, …); the actions take the parsed values.

User fields have their own actions in ``customers.design``, because changing a field also
changes the storage behind it (the unique index, the values of a deleted field).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from okuru.accounts import audit
from okuru.bounces import suppression
from okuru.customers.fields import FieldSpec
from okuru.customers.models import Customer, ExportSetting, Topic, View

Actor = Any  # HttpRequest | Operator | None, as okuru.accounts.audit.log takes it


# ---------------------------------------------------------------------------------------------
# Customers


def save_customer(
    customer: Customer | None, values: dict[str, Any], specs: dict[str, FieldSpec], actor: Actor
) -> Customer:
    """Create a customer (``customer`` None) or change one: ``values`` maps field keys to
    parsed values (None clears a user field). Raises ValidationError when a unique value is
    taken by another customer at the same moment."""
    created = customer is None
    if customer is None:
        customer = Customer(data={})
    for key, value in values.items():
        spec = specs[key]
        if spec.standard:
            setattr(customer, spec.column, value)
        elif value is None:
            customer.data.pop(key, None)
        else:
            customer.data[key] = value
    customer.updated_at = timezone.now()
    try:
        with transaction.atomic(durable=True):
            customer.save()
            # An address that complained or refused before (even as a deleted customer)
            # refuses again, whoever edits the record.
            customer.refused = customer.refused or bool(suppression.enforce([customer.pk]))
            audit.log(
                actor,
                "customer_create" if created else "customer_update",
                str(customer.pk),
                {"fields": sorted(values)},
            )
    except IntegrityError:
        # The unique expression indexes are the last word when two edits race.
        if created:
            customer.pk = None
        raise ValidationError(
            _("Another customer already has a value that must be unique.")
        ) from None
    return customer


def delete_customer(customer: Customer, actor: Actor) -> None:
    pk = customer.pk
    with transaction.atomic(durable=True):
        # A customer who refuses all mail keeps refusing if the address comes back.
        suppression.remember_customer(customer)
        customer.delete()
        audit.log(actor, "customer_delete", str(pk))


# ---------------------------------------------------------------------------------------------
# Database views


def create_view(name: str, filter: dict, fields: list[str], owner: Any, actor: Actor) -> View:
    with transaction.atomic(durable=True):
        view = View.objects.create(name=name, filter=filter, fields=fields, owner=owner)
        audit.log(actor, "view_create", view.name, {"id": view.pk, "fields": view.fields})
    return view


def update_view(view: View, name: str, filter: dict, fields: list[str], actor: Actor) -> View:
    with transaction.atomic(durable=True):
        view.name, view.filter, view.fields = name, filter, fields
        view.save(update_fields=["name", "filter", "fields"])
        audit.log(actor, "view_update", view.name, {"id": view.pk, "fields": view.fields})
    return view


def delete_view(view: View, actor: Actor) -> None:
    """Raises ProtectedError while a mail or an export setting uses the view."""
    pk = view.pk
    with transaction.atomic(durable=True):
        view.delete()
        audit.log(actor, "view_delete", view.name, {"id": pk})


# ---------------------------------------------------------------------------------------------
# Newsletter topics


def add_topic(key: str, name: str, actor: Actor) -> Topic:
    with transaction.atomic(durable=True):
        topic = Topic.objects.create(key=key, name=name)
        audit.log(actor, "topic_add", topic.key, {"name": topic.name})
    return topic


def rename_topic(topic: Topic, name: str, actor: Actor) -> Topic:
    with transaction.atomic(durable=True):
        old, topic.name = topic.name, name
        topic.save(update_fields=["name"])
        audit.log(actor, "topic_rename", topic.key, {"from": old, "to": topic.name})
    return topic


def delete_topic(topic: Topic, actor: Actor) -> None:
    """The caller has checked that no customer unsubscribed from the topic: deleting it
    would drop their choice silently."""
    with transaction.atomic(durable=True):
        topic.delete()
        audit.log(actor, "topic_delete", topic.key, {"name": topic.name})


# ---------------------------------------------------------------------------------------------
# Export settings


def save_export_setting(
    name: str,
    *,
    fields: list[str],
    filter: dict,
    view: View | None,
    encoding: str,
    owner: Any,
    actor: Actor,
) -> ExportSetting:
    """Save the settings under ``name``, replacing the ones saved under that name before."""
    with transaction.atomic(durable=True):
        setting, _created = ExportSetting.objects.update_or_create(
            name=name,
            defaults={
                "fields": fields,
                "filter": filter,
                "view": view,
                "encoding": encoding,
                "owner": owner,
            },
        )
        audit.log(actor, "export_setting_save", setting.name, {"id": setting.pk})
    return setting


def delete_export_setting(setting: ExportSetting, actor: Actor) -> None:
    pk = setting.pk
    with transaction.atomic(durable=True):
        setting.delete()
        audit.log(actor, "export_setting_delete", setting.name, {"id": pk})
