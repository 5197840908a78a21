"""The named actions of customers.actions and customers.design: each write and its
operation-log entry are one transaction, whichever door (screen, API, CLI) they come through."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.test import Client

from okuru.accounts.models import OperationLog
from okuru.customers import actions, design
from okuru.customers.fields import catalogue
from okuru.customers.models import Customer, ExportSetting, Field, Topic, View
from tests.api.client import api_client

pytestmark = pytest.mark.django_db


class LogDown(Exception):
    """The operation log's write failed."""


def break_the_log(monkeypatch) -> None:
    """Every operation-log write fails from now on."""

    def create(*args, **kwargs):
        raise LogDown

    monkeypatch.setattr(OperationLog.objects, "create", create)


@pytest.fixture(name="log_down")
def _log_down(monkeypatch) -> None:
    break_the_log(monkeypatch)


@pytest.fixture
def customer(db):
    Field.objects.create(key="name", label="Name", type="text")
    return Customer.objects.create(email="a@example.com", data={"name": "Aoki"})


def send(client: Client, method: str, url: str, data=None):
    """The response, or the exception the request raised: either way the write must be gone."""
    try:
        if data is None:
            return getattr(client, method)(url)
        if method == "post" and not url.startswith("/api/"):
            return client.post(url, data)
        return getattr(client, method)(url, json.dumps(data), content_type="application/json")
    except LogDown:
        return None


def row(customer: Customer) -> tuple:
    fresh = Customer.objects.get(pk=customer.pk)
    return fresh.email, fresh.data, fresh.updated_at


# --- customers --------------------------------------------------------------------------------


def test_it_saves_a_customer_and_logs_it_in_one_go(owner):
    specs = catalogue()
    customer = actions.save_customer(None, {"email": "n@example.com"}, specs, owner)
    entry = OperationLog.objects.get(action="customer_create")
    assert (entry.target, entry.detail) == (str(customer.pk), {"fields": ["email"]})
    actions.save_customer(customer, {"email": "m@example.com"}, specs, owner)
    assert Customer.objects.get(pk=customer.pk).email == "m@example.com"
    assert OperationLog.objects.filter(action="customer_update").count() == 1


def test_it_leaves_the_customer_unchanged_when_the_screen_edit_cannot_be_logged(
    owner_client, customer, log_down
):
    before = row(customer)
    send(owner_client, "post", f"/customers/{customer.pk}/", {"email": "new@example.com"})
    assert row(customer) == before


def test_it_leaves_the_customer_unchanged_when_the_api_edit_cannot_be_logged(
    owner, customer, log_down
):
    before = row(customer)
    send(api_client(owner), "patch", f"/api/customers/{customer.pk}", {"name": "Ueda"})
    assert row(customer) == before


def test_it_creates_no_customer_when_the_creation_cannot_be_logged(owner_client, owner, log_down):
    send(owner_client, "post", "/customers/new/", {"email": "new@example.com"})
    send(api_client(owner), "post", "/api/customers", {"email": "other@example.com"})
    assert not Customer.objects.exists()


def test_it_keeps_the_customer_when_the_deletion_cannot_be_logged(
    owner_client, owner, customer, log_down
):
    send(owner_client, "post", f"/customers/{customer.pk}/delete/", {})
    send(api_client(owner), "delete", f"/api/customers/{customer.pk}")
    assert Customer.objects.filter(pk=customer.pk).exists()


def test_it_names_a_unique_value_taken_at_the_same_moment(owner):
    design.add_field("code", "Code", "text", unique=True)
    specs = catalogue()
    actions.save_customer(None, {"code": "K1"}, specs, owner)
    # The form's own check ran before the other save: the index is the last word.
    with pytest.raises(actions.ValidationError, match="already has a value that must be unique"):
        actions.save_customer(None, {"code": "K1"}, specs, owner)
    assert Customer.objects.count() == 1
    assert OperationLog.objects.filter(action="customer_create").count() == 1


# --- views, topics, export settings -----------------------------------------------------------


def test_it_keeps_views_as_they_were_when_their_writes_cannot_be_logged(owner, log_down):
    view = View.objects.create(name="All", filter={}, fields=["customer_id"], owner=owner)
    with pytest.raises(LogDown):
        actions.create_view("New", {}, ["email"], owner, owner)
    with pytest.raises(LogDown):
        actions.update_view(view, "Renamed", {}, ["email"], owner)
    with pytest.raises(LogDown):
        actions.delete_view(view, owner)
    assert list(View.objects.values_list("name", "fields")) == [("All", ["customer_id"])]


def test_it_keeps_topics_as_they_were_when_their_writes_cannot_be_logged(owner, log_down):
    topic = Topic.objects.create(key="news", name="News")
    with pytest.raises(LogDown):
        actions.add_topic("sale", "Sale", owner)
    with pytest.raises(LogDown):
        actions.rename_topic(topic, "Letters", owner)
    with pytest.raises(LogDown):
        actions.delete_topic(topic, owner)
    assert list(Topic.objects.values_list("key", "name")) == [("news", "News")]


def test_it_keeps_export_settings_as_they_were_when_their_writes_cannot_be_logged(owner, log_down):
    setting = ExportSetting.objects.create(name="Weekly", fields=["email"], owner=owner)
    with pytest.raises(LogDown):
        actions.save_export_setting(
            "Weekly",
            fields=["customer_id"],
            filter={},
            view=None,
            encoding="utf-8",
            owner=owner,
            actor=owner,
        )
    with pytest.raises(LogDown):
        actions.delete_export_setting(setting, owner)
    assert list(ExportSetting.objects.values_list("name", "fields")) == [("Weekly", ["email"])]


# --- fields -----------------------------------------------------------------------------------


def test_it_keeps_fields_as_they_were_when_their_changes_cannot_be_logged(owner, monkeypatch):
    design.add_field("code", "Code", "text")
    Customer.objects.create(data={"code": "K1"})
    break_the_log(monkeypatch)
    with pytest.raises(LogDown):
        design.add_field("plan", "Plan", "text", actor=owner)
    with pytest.raises(LogDown):
        design.change_field("code", label="Key", options={"unique": True}, actor=owner)
    with pytest.raises(LogDown):
        design.delete_field("code", actor=owner)
    assert list(Field.objects.values_list("key", "label", "unique")) == [("code", "Code", False)]
    assert Customer.objects.get().data == {"code": "K1"}


def test_it_changes_a_fields_options_and_label_together_or_not_at_all(owner):
    design.add_field("code", "Code", "text")
    Customer.objects.create(data={"code": "K1"})
    Customer.objects.create(data={"code": "K1"})
    with pytest.raises(design.DesignError, match="Code cannot be made unique"):
        design.change_field("code", label="Key", options={"unique": True}, actor=owner)
    assert Field.objects.values_list("label", "unique").get() == ("Code", False)
    field = design.change_field("code", label="Key", options={"required": True}, actor=owner)
    assert (field.label, field.required) == ("Key", True)
    assert list(OperationLog.objects.values_list("action", flat=True).order_by("pk")) == [
        "field_add",
        "field_change",
        "field_rename",
    ]


def test_it_keeps_the_field_when_the_cli_rename_cannot_be_logged(owner, monkeypatch):
    design.add_field("code", "Code", "text")
    break_the_log(monkeypatch)
    with pytest.raises(LogDown):
        call_command("fields", "rename", "code", "Key")
    assert Field.objects.get().label == "Code"
