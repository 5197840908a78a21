"""``okuru extractions create|list|show|discard`` and ``okuru mails create`` on an extraction's
list: the contract's exact output, progress on stderr, the notice and e-mail, rights."""

from __future__ import annotations

import io
import json

import pytest
from django.core import mail as django_mail
from django.core.management import CommandError, call_command

from okuru.accounts.models import Notification
from okuru.customers.models import View
from okuru.mailings.models import Extraction, Mail
from tests.conftest import make_operator
from tests.extraction_setup import ELIGIBLE, make_source, members

pytestmark = pytest.mark.django_db


@pytest.fixture
def source():
    return make_source()


@pytest.fixture
def view(db) -> View:
    return View.objects.create(name="配信対象ビュー", fields=ELIGIBLE)


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_create_prints_the_contract_line_and_notifies_the_operator(source, view, member):
    d = source["delivery"]
    out, err = run(
        "extractions", "create", "--deliveries", str(d.pk), "--view", view.name,
        "--set", "opened,not_clicked", "--match", "all", "--operator", "member",
    )  # fmt: skip
    e = Extraction.objects.get()
    assert out == f"extraction {e.pk} ready (1 customers)\n"
    assert "customer IDs scanned" in err
    assert members(e) == ["b"]
    assert Notification.objects.get(operator=member).link == f"/mails/extractions/{e.pk}/"
    assert [m.subject for m in django_mail.outbox] == [
        "[Mail delivery using delivery results] Ready to use"
    ]


def test_create_takes_the_view_by_id_several_deliveries_a_link_and_any(source, view):
    d = source["delivery"]
    out, _err = run(
        "extractions", "create", "--deliveries", f"{d.pk},{d.pk}", "--view", str(view.pk),
        "--set", "clicked,errored", "--match", "any", "--link", str(source["sale"].pk),
    )  # fmt: skip
    e = Extraction.objects.get()
    assert out == f"extraction {e.pk} ready (3 customers)\n"
    assert members(e) == ["a", "d", "f"]


def test_list_show_and_discard(source, view):
    d = source["delivery"]
    run("extractions", "create", "--deliveries", str(d.pk), "--view", view.name, "--set", "opened")
    e = Extraction.objects.get()
    out, _ = run("extractions", "list")
    assert out.startswith(f"{e.pk}\tready\t")
    assert out.rstrip().endswith(f"count=3\tdeliveries={d.pk}\tmails=-")
    shown = json.loads(run("extractions", "show", str(e.pk))[0])
    assert shown["status"] == "ready" and shown["count"] == 3
    assert shown["recipient_list_id"] == e.recipient_list_id
    assert shown["deliveries"][0]["id"] == d.pk
    assert shown["deliveries"][0]["mail_name"] == "Spring sale"
    assert shown["conditions"] == ["opened"] and shown["match"] == "all"
    assert run("extractions", "discard", str(e.pk))[0] == f"extraction {e.pk} discarded\n"
    assert json.loads(run("extractions", "show", str(e.pk))[0])["recipient_list_id"] is None
    with pytest.raises(CommandError, match="only a ready or failed one can be discarded"):
        run("extractions", "discard", str(e.pk))
    with pytest.raises(CommandError, match="No such extraction: 999"):
        run("extractions", "show", "999")


def test_mails_create_on_the_list_gets_the_extraction_defaults(source, view, tmp_path):
    d = source["delivery"]
    run("extractions", "create", "--deliveries", str(d.pk), "--view", view.name, "--set", "opened")
    e = Extraction.objects.get()
    spec = tmp_path / "mail.json"
    spec.write_text(json.dumps({
        "name": "Thanks", "from_address": "news@shop.example", "subject": "Hi",
        "text_body": "Hello", "recipient_list_id": e.recipient_list_id,
    }))  # fmt: skip
    out, _ = run("mails", "create", str(spec))
    made = Mail.objects.get(name="Thanks")
    assert out == f"mail {made.pk} created\n"
    assert (made.kind, made.duplicate_rule) == ("spot", "ignore")
    shown = json.loads(run("extractions", "show", str(e.pk))[0])
    assert shown["mails"] == [made.pk]
    with pytest.raises(CommandError, match=f"Extraction #{e.pk} is used by a mail"):
        run("extractions", "discard", str(e.pk))


@pytest.mark.parametrize(
    "args,message",
    [
        (["--set", "bought"], "Unknown condition bought: use opened, not_opened"),
        (["--view", "nope"], "No such database view: nope"),
        (["--deliveries", "x"], "Not a delivery number: x"),
        (["--link", "123456"], "Link 123456 is not in the mails of these deliveries."),
    ],
)
def test_bad_input_exits_with_the_reason(source, view, args, message):
    base = {"--deliveries": str(source["delivery"].pk), "--view": view.name, "--set": "clicked"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = [x for kv in base.items() for x in kv]
    with pytest.raises(CommandError, match=message):
        run("extractions", "create", *argv)
    assert not Extraction.objects.exists()


def test_an_old_source_exits_with_the_3_month_reason(source, view):
    from datetime import timedelta

    from django.utils import timezone

    d = source["delivery"]
    d.started_at = timezone.now() - timedelta(days=100)
    d.save()
    with pytest.raises(CommandError) as e:
        run("extractions", "create", "--deliveries", str(d.pk), "--view", view.name)
    assert str(e.value) == (
        f"Delivery #{d.pk} was sent more than 3 months ago and cannot be used as a source."
    )


@pytest.mark.parametrize("missing", ["sending", "reports"])
def test_an_operator_without_the_rights_is_refused(source, view, missing):
    rights = [r for r in ("mails", "sending", "reports") if r != missing]
    make_operator("limited", rights)
    with pytest.raises(CommandError, match=f"limited does not have the {missing} right."):
        run(
            "extractions", "create", "--deliveries", str(source["delivery"].pk),
            "--view", view.name, "--operator", "limited",
        )  # fmt: skip
    assert not Extraction.objects.exists()
