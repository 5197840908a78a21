"""Suppression survives everything: re-import, customer deletion (a keyed hash is kept), edits;
and the list cleaning admin (search, formula-safe export, operation-logged removal, rights)."""

from __future__ import annotations

import pytest

from okuru.accounts.models import OperationLog
from okuru.bounces import actions, suppression, tasks
from okuru.bounces.models import Suppression
from okuru.customers.importer import run_import
from okuru.customers.models import Customer
from okuru.mailings.models import ListCleaning
from okuru.mailings.testing import Sink, make_relay
from tests.bounces.inbound import arf, deliver, row_of
from tests.conftest import client_for, make_operator


@pytest.fixture
def complained(db):
    with Sink() as s:
        make_relay(s.port)
        Customer.objects.create(email="Angry@Example.com")
        delivery = deliver()
    row = row_of(delivery, "Angry@Example.com")
    bounce, _new = actions.receive(arf(row), "file")
    assert bounce.outcome == "complaint"
    return Customer.objects.get(pk=row.customer_id)


def write(tmp_path, text: str):
    path = tmp_path / "in.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_suppression_table_keeps_a_keyed_hash_not_the_address(complained):
    entry = Suppression.objects.get()
    assert entry.reason == "complaint"
    assert "angry" not in entry.digest and len(entry.digest) == 64
    assert entry.digest == suppression.address_digest(" ANGRY@example.COM ")
    assert suppression.is_suppressed("angry@example.com")
    assert not suppression.is_suppressed("calm@example.com")


def test_a_complaint_survives_a_re_import_that_clears_the_flag(complained, tmp_path):
    path = write(tmp_path, f"Customer ID,refusal flag\n{complained.pk},0\n")
    run_import(path, mode="update", key="customer_id")
    assert Customer.objects.get(pk=complained.pk).refused is True


def test_a_complaint_survives_deletion_and_a_new_import(complained, tmp_path, owner):
    r = client_for(owner).post(f"/customers/{complained.pk}/delete/")
    assert r.status_code == 302 and not Customer.objects.filter(pk=complained.pk).exists()
    path = write(tmp_path, "Customer ID,PC e-mail\n,angry@example.com\n,new@example.com\n")
    run_import(path, mode="insert", key="customer_id")
    assert dict(Customer.objects.values_list("email", "refused")) == {
        "angry@example.com": True,
        "new@example.com": False,
    }


def test_a_deleted_refuser_stays_suppressed_when_created_again(owner, db):
    gone = Customer.objects.create(mobile_email="Mob@Example.jp", refused=True)
    client = client_for(owner)
    # The hash is kept before the row goes.
    client.post(f"/customers/{gone.pk}/delete/")
    assert not Customer.objects.filter(pk=gone.pk).exists()
    assert Suppression.objects.filter(reason="refused").count() == 1
    r = client.post("/customers/new/", {"mobile_email": "mob@example.jp"})
    assert r.status_code == 302
    assert Customer.objects.get(mobile_email="mob@example.jp").refused is True


def test_a_customer_not_refusing_leaves_no_hash_when_deleted(owner, db):
    c = Customer.objects.create(email="fine@example.com")
    client_for(owner).post(f"/customers/{c.pk}/delete/")
    assert not Suppression.objects.exists()


def test_an_operator_edit_cannot_clear_a_complaint(complained, owner):
    data = {"email": complained.email, "refused": ""}
    r = client_for(owner).post(f"/customers/{complained.pk}/", data)
    assert r.status_code in (200, 302)
    assert Customer.objects.get(pk=complained.pk).refused is True


def test_the_sweep_restores_flags_cleared_by_any_path(complained):
    Customer.objects.filter(pk=complained.pk).update(refused=False)  # raw SQL, any writer
    tasks.sweep_suppressions.call()
    assert Customer.objects.get(pk=complained.pk).refused is True


# -- the list cleaning admin --------------------------------------------------------------------


@pytest.fixture
def cleaned(db):
    for address, kind in [
        ("gone@example.com", "unknown_user"),
        ("=cmd|'/c calc'!a0@example.com", "bad_format"),
        ("other@example.net", "unknown_user"),
    ]:
        ListCleaning.objects.create(address=address, reason=kind)


def test_list_cleaning_lists_and_searches_case_insensitively(cleaned, member):
    client = client_for(member)
    r = client.get("/bounces/list-cleaning/?q=GONE")
    assert r.status_code == 200
    text = r.content.decode()
    assert "gone@example.com" in text and "other@example.net" not in text


def test_list_cleaning_exports_formula_safe_csv(cleaned, member):
    r = client_for(member).get("/bounces/list-cleaning/export/")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    body = b"".join(r.streaming_content).decode("utf-8-sig")
    lines = body.splitlines()
    assert lines[0] == "Address,Error kind,Added"
    assert any(line.startswith("'=cmd") for line in lines)
    assert not any(line.startswith("=") for line in lines)
    assert OperationLog.objects.filter(action="list_cleaning.export").count() == 1


def test_removing_entries_is_operation_logged(cleaned, member):
    ids = list(
        ListCleaning.objects.filter(address__endswith="example.com").values_list("id", flat=True)
    )
    r = client_for(member).post("/bounces/list-cleaning/", {"entry": [str(i) for i in ids]})
    assert r.status_code == 302
    assert list(ListCleaning.objects.values_list("address", flat=True)) == ["other@example.net"]
    entry = OperationLog.objects.get(action="list_cleaning.remove")
    assert entry.detail == {"count": 2, "id": sorted(ids)}
    assert "example.com" not in str(entry.detail) + entry.target


@pytest.mark.parametrize(
    "rights,status",
    [
        (["sending"], 403),
        (["customers_read"], 403),
        (["sending", "customers_read"], 200),
    ],
)
def test_list_cleaning_needs_sending_and_customers_read(cleaned, rights, status):
    op = make_operator("someone", rights)
    assert client_for(op).get("/bounces/list-cleaning/").status_code == status
    assert client_for(op).get("/bounces/").status_code == status


def test_the_export_also_needs_the_export_right(cleaned):
    op = make_operator("no-export", ["sending", "customers_read"])
    assert client_for(op).get("/bounces/list-cleaning/export/").status_code == 403


def test_a_sending_time_hard_error_lists_the_address_case_insensitively(db):
    assert actions.note_hard_failure("Bad@Example.COM", "unknown_user") is True
    assert actions.note_hard_failure("bad@example.com", "bad_format") is False
    assert actions.note_hard_failure("soft@example.com", "mailbox_full") is False
    assert list(ListCleaning.objects.values_list("address", "reason")) == [
        ("bad@example.com", "unknown_user")
    ]
