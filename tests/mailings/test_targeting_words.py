"""The targeting in words on the mail page, the report and the API; the compose form's live
count with its delivery history rows; the history rows' link lists."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from okuru.accounts.models import ApiToken
from okuru.customers.models import Customer, Field, View
from okuru.mailings import describe, targeting
from okuru.mailings.models import Delivery, Mail
from okuru.mailings.testing import make_mail
from tests.conftest import client_for, make_operator
from tests.mailings.extraction_setup import ELIGIBLE, make_source

pytestmark = pytest.mark.django_db
LONG = "Spring sale " + "with a very long name " * 8


@pytest.fixture
def source():
    return make_source()


def history(delivery_id: int, event: str, **extra) -> dict:
    return {"kind": "delivery_history", "delivery": delivery_id, "event": event, **extra}


def test_a_basic_mail_lists_each_condition_and_each_history_row(source):
    Field.objects.create(key="shop", label="Shop", type="text")
    d = source["delivery"]
    when = timezone.localtime(d.started_at).strftime("%Y-%m-%d %H:%M")
    tree = {
        "match": "all",
        "conditions": [
            {"field": "shop", "op": "eq", "value": "Ginza"},
            {"match": "any", "conditions": [
                {"field": "email", "op": "contains", "value": "@a"},
                {"field": "refused", "op": "eq", "value": "0"},
            ]},
            history(d.pk, "not_opened"),
            history(d.pk, "clicked", link=source["sale"].pk),
            {"kind": "delivery_history", "mail": d.mail_id, "event": "errored"},
        ],
    }  # fmt: skip
    lines = describe.lines({"kind": "basic", "filter": tree})
    assert lines == [
        "Filter: Shop equals “Ginza”",
        "Filter: PC e-mail contains “@a” or Refusal flag equals No",
        f"Narrowed by delivery history: “Spring sale” delivery #{d.pk} ({when}): did not open",
        f"Narrowed by delivery history: “Spring sale” delivery #{d.pk} ({when}): clicked "
        "(link: https://shop.example/sale)",
        "Narrowed by delivery history: “Spring sale” (all its deliveries): had an error",
    ]


def test_a_spot_mail_names_its_view_and_customer_set_and_a_list_its_size(source):
    view = View.objects.create(name="Members", fields=ELIGIBLE)
    d = source["delivery"]
    cset = {"match": "any", "conditions": [history(d.pk, "opened"), history(d.pk, "errored")]}
    lines = describe.lines({"kind": "spot", "view_id": view.pk, "customer_set": cset})
    assert lines[0] == "View: Members"
    assert lines[1] == "Customer set: any of these conditions (OR)"
    assert lines[2].endswith(": opened") and lines[3].endswith(": had an error")
    assert describe.lines({"kind": "spot", "view_id": 999}) == ["View #999 (deleted)"]


def test_a_re_delivery_names_its_source_and_audience(source):
    d = source["delivery"]
    spec = {"delivery": d.pk, "audience": "not_opened", "link": None}
    line = describe.lines({"kind": "basic", "filter": {}, "audience": spec})[0]
    assert line.startswith("Re-delivery to the recipients of “Spring sale” delivery #")
    assert line.endswith(": Not opened")


def test_gone_objects_are_named_as_gone_never_an_error(db):
    tree = {"match": "all", "conditions": [history(12345, "sent", link=999)]}
    assert describe.lines({"kind": "basic", "filter": tree}) == [
        "Filter: every customer",
        "Narrowed by delivery history: delivery #12345 (deleted): was sent (link: link #999 "
        "(deleted))",
    ]


def test_the_words_need_one_query_per_model_whatever_the_rows(
    source, django_assert_max_num_queries
):
    d = source["delivery"]
    tree = {"match": "all", "conditions": [history(d.pk, e) for e in targeting.EVENTS]}
    with django_assert_max_num_queries(4):
        describe.lines({"kind": "basic", "filter": tree}, specs={})


def test_the_mail_page_and_the_report_show_the_words_in_japanese(source):
    d = source["delivery"]
    mail = make_mail(
        name="再配信", filter={"match": "all", "conditions": [history(d.pk, "opened")]}
    )
    Delivery.objects.create(
        mail=mail, status="completed", started_at=timezone.now(),
        targeting=targeting.snapshot(mail),
    )  # fmt: skip
    client = client_for(make_operator("ja", ["mails", "reports"]), "ja")
    page = client.get(f"/mails/{mail.pk}/").content.decode()
    assert "メール配信履歴でもっと絞り込み: 「Spring sale」配信 #" in page
    assert "開封した" in page or "opened" not in page
    report = client.get(f"/mails/deliveries/{mail.deliveries.get().pk}/").content.decode()
    assert "メール配信履歴でもっと絞り込み: 「Spring sale」配信 #" in report


def test_the_api_exposes_targeting_text(source):
    d = source["delivery"]
    mail = make_mail(name="API", filter={"match": "all", "conditions": [history(d.pk, "opened")]})
    operator = make_operator("api", ["mails", "reports"])
    key = ApiToken.issue(operator, "t")[1]
    client = client_for(operator)
    r = client.get(f"/api/mails/{mail.pk}/targeting-text", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert r.status_code == 200
    assert r.json()["targeting_text"].endswith(": opened")
    r = client.get(f"/api/deliveries/{d.pk}/targeting-text", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert r.status_code == 200 and r.json()["lines"]
    assert (
        client.get("/api/mails/999/targeting-text", HTTP_AUTHORIZATION=f"Bearer {key}").status_code
        == 404
    )


# ---------------------------------------------------------------------------------------------
# The compose form


def _rows(source_value: str, event: str, link: str = "") -> dict:
    return {
        "h-TOTAL_FORMS": "1", "h-INITIAL_FORMS": "0", "h-MIN_NUM_FORMS": "0",
        "h-MAX_NUM_FORMS": "20", "h-0-source": source_value, "h-0-event": event,
        "h-0-link": link,
    }  # fmt: skip


def test_the_live_count_includes_the_history_rows(source):
    client = client_for(make_operator("m", ["mails"]))
    d = source["delivery"]
    builder = json.dumps({"match": "all", "conditions": []})
    everyone = client.get("/mails/count/", {"filter": builder}).json()
    assert everyone["count"] == Customer.objects.count() == 7
    opened = client.get("/mails/count/", {"filter": builder, **_rows(f"d:{d.pk}", "opened")})
    assert opened.json() == {"count": 3, "text": "3 customers match"}
    narrowed = {
        "match": "all",
        "conditions": [{"field": "email", "op": "starts_with", "value": "a"}],
    }
    both = client.get(
        "/mails/count/", {"filter": json.dumps(narrowed), **_rows(f"d:{d.pk}", "opened")}
    )
    assert both.json()["count"] == 1
    empty_row = client.get("/mails/count/", {"filter": builder, **_rows("", "sent")})
    assert empty_row.json()["count"] == 7


def test_the_live_count_says_what_is_wrong(source):
    client = client_for(make_operator("m", ["mails"]))
    d = source["delivery"]
    bad_link = client.get(
        "/mails/count/", {"filter": "{}", **_rows(f"d:{d.pk}", "opened", str(source["sale"].pk))}
    )
    assert bad_link.status_code == 400
    assert "A link can only be chosen with clicked or did not click." in bad_link.json()["error"]
    bad_tree = client.get("/mails/count/", {"filter": "{nope"})
    assert bad_tree.status_code == 400 and "not valid JSON" in bad_tree.json()["error"]
    assert client_for(make_operator("x", ["reports"])).get("/mails/count/").status_code == 403


def test_the_compose_form_sends_its_rows_with_the_count_and_marks_each_links_mail(source):
    other = make_mail(name=LONG, html_body='<a href="https://x.example/' + "p" * 300 + '">x</a>')
    Delivery.objects.create(mail=other, status="completed", started_at=timezone.now())
    client = client_for(make_operator("m", ["mails", "customers_read"]))
    page = client.get("/mails/new/").content.decode()
    assert 'data-count-url="/mails/count/"' in page and 'data-count-with="history-rows"' in page
    assert "history-rows.js" in page
    d = source["delivery"]
    assert f'value="d:{d.pk}" data-mail="{d.mail_id}"' in page
    link = other.links.get(url__startswith="https://x.example/")
    assert f'value="{link.pk}" data-mail="{other.pk}"' in page
    assert f'value="{source["sale"].pk}" data-mail="{d.mail_id}"' in page


def test_the_mail_page_of_a_spot_mail_reads_in_words(source):
    view = View.objects.create(name="Members", fields=ELIGIBLE)
    mail = make_mail(
        name="Spot", kind=Mail.Kind.SPOT, view=view,
        customer_set={"match": "all", "conditions": [history(source["delivery"].pk, "clicked")]},
    )  # fmt: skip
    client = client_for(make_operator("m", ["mails"]))
    page = client.get(f"/mails/{mail.pk}/").content.decode()
    assert "View: Members" in page and "Customer set: “Spring sale” delivery #" in page
