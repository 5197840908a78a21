"""The mail screens: list, create/edit, targeting, preview, test send, counts, send/reserve."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from okuru.accounts.models import OperationLog
from okuru.customers.models import Customer, Topic, View
from okuru.mailings import testing
from okuru.mailings.models import Delivery, Mail
from okuru.tracking.testing import sent_delivery
from tests.conftest import client_for, make_operator

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def relay():
    return testing.make_relay(testing.free_port())


@pytest.fixture
def mail():
    testing.make_customers(3, domain="views.example")
    return testing.make_mail(name="Spring sale")


def formset(prefix: str, rows: list[dict] | None = None) -> dict[str, str]:
    rows = rows or []
    data = {
        f"{prefix}-TOTAL_FORMS": str(max(2, len(rows))),
        f"{prefix}-INITIAL_FORMS": "0",
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "20",
    }
    for i in range(max(2, len(rows))):
        row = rows[i] if i < len(rows) else {}
        data[f"{prefix}-{i}-source"] = row.get("source", "")
        data[f"{prefix}-{i}-event"] = row.get("event", "sent")
        data[f"{prefix}-{i}-link"] = row.get("link", "")
    return data


def mail_data(**overrides) -> dict[str, str]:
    data = {
        "name": "Autumn news",
        "kind": "basic",
        "from_address": "news@shop.example",
        "from_name": "Shop",
        "reply_to": "",
        "return_path_domain": "",
        "relay": "",
        "error_threshold": "5",
        "duplicate_rule": "ignore",
        "address_field": "email",
        "open_tracking": "on",
        "click_tracking": "on",
        "topic": "",
        "subject": "Hello {{ customer_id }}",
        "text_body": "Hi {{ email }}",
        "html_body": "",
        "view": "",
        "recipient_list": "",
        "filter": json.dumps({"match": "all", "conditions": []}),
        "customer_set_match": "all",
    }
    # As a browser sends it: only the rows of the mail's kind are on the page.
    history, customer_set = overrides.pop("history", None), overrides.pop("customer_set", None)
    data.update(overrides)
    if data["kind"] == "spot":
        data.update(formset("cs", customer_set))
    else:
        data.update(formset("h", history))
    return data


# ---------------------------------------------------------------------------------------------
# Rights


def test_every_mail_screen_needs_the_mails_right(outsider_client, mail):
    urls = [
        "/mails/",
        "/mails/new/",
        f"/mails/{mail.pk}/",
        f"/mails/{mail.pk}/edit/",
        f"/mails/{mail.pk}/preview/",
        f"/mails/{mail.pk}/counts/",
    ]
    for url in urls:
        r = outsider_client.get(url)
        assert r.status_code == 403, url
    r = outsider_client.post(f"/mails/{mail.pk}/test/", {"addresses": "a@example.com"})
    assert r.status_code == 403
    r = outsider_client.post("/mails/new/", mail_data())
    assert r.status_code == 403
    assert Mail.objects.count() == 1


def test_anonymous_visitors_are_sent_to_log_in(client, mail):
    r = client.get("/mails/")
    assert r.status_code == 302 and "/accounts/login/" in r["Location"]


def test_sending_needs_the_sending_right(mail):
    composer = client_for(make_operator("composer", ["mails", "customers_read"]))
    r = composer.post(f"/mails/{mail.pk}/send/", {"action": "now"})
    assert r.status_code == 403
    assert not Delivery.objects.exists()
    page = composer.get(f"/mails/{mail.pk}/")
    assert page.status_code == 200
    assert b"Send now" not in page.content


def test_outsider_cannot_act_on_deliveries(outsider_client, mail):
    d = Delivery.objects.create(mail=mail, status="reserved", scheduled_at=timezone.now())
    for action in ("cancel", "pause", "resume", "stop"):
        r = outsider_client.post(f"/mails/deliveries/{d.pk}/{action}/")
        assert r.status_code == 403
    d.refresh_from_db()
    assert d.status == "reserved"


# ---------------------------------------------------------------------------------------------
# List, create, edit


def test_list_shows_mails(member_client, mail):
    r = member_client.get("/mails/")
    assert r.status_code == 200
    assert b"Spring sale" in r.content


def test_create_a_basic_mail_with_filter_and_history_condition(member_client, member):
    source = sent_delivery(2, domain="src.example")
    tree = {"match": "all", "conditions": [{"field": "email", "op": "has_value"}]}
    data = mail_data(
        filter=json.dumps(tree),
        history=[{"source": f"d:{source.pk}", "event": "opened"}],
    )
    r = member_client.post("/mails/new/", data)
    assert r.status_code == 302, r.content.decode()[:3000]
    mail = Mail.objects.get(name="Autumn news")
    assert mail.owner == member
    assert mail.filter == {
        "match": "all",
        "conditions": [
            {"field": "email", "op": "has_value"},
            {"kind": "delivery_history", "delivery": source.pk, "event": "opened"},
        ],
    }
    assert OperationLog.objects.filter(action="mail.create", target=f"mail:{mail.pk}").exists()
    # The edit page splits them apart again.
    page = member_client.get(f"/mails/{mail.pk}/edit/").content.decode()
    assert "data-fb" in page
    assert f'value="d:{source.pk}" selected' in page


def test_history_link_must_belong_to_the_target_mail(member_client):
    source = sent_delivery(1, domain="src.example")
    other = sent_delivery(1, domain="other.example")
    foreign = other.mail.links.first()
    data = mail_data(
        history=[{"source": f"d:{source.pk}", "event": "clicked", "link": str(foreign.pk)}]
    )
    r = member_client.post("/mails/new/", data)
    assert r.status_code == 400
    assert b"This link is not in the target mail." in r.content
    assert not Mail.objects.filter(name="Autumn news").exists()


def test_an_unknown_merge_field_is_refused_at_save(member_client):
    r = member_client.post("/mails/new/", mail_data(subject="Hello {{ nickname }}"))
    assert r.status_code == 400
    assert b"Unknown merge field in subject: nickname" in r.content
    assert not Mail.objects.filter(name="Autumn news").exists()


def test_a_template_syntax_error_is_shown_with_its_line(member_client):
    r = member_client.post("/mails/new/", mail_data(html_body="<p>\n{{ email </p>"))
    assert r.status_code == 400
    assert b"Template error in HTML body at line 2" in r.content


def test_sandbox_escapes_are_refused_at_save(member_client):
    r = member_client.post("/mails/new/", mail_data(text_body="{{ email.__class__ }}"))
    assert r.status_code == 400
    assert b"may use merge fields and filters only" in r.content


def test_edit_content_of_a_reserved_mail_but_not_its_targeting(member_client, mail):
    d = Delivery.objects.create(mail=mail, status="reserved", scheduled_at=timezone.now())
    page = member_client.get(f"/mails/{mail.pk}/edit/")
    assert b"its target conditions cannot be changed" in page.content
    base = mail_data(name=mail.name, subject="New subject {{ customer_id }}")
    r = member_client.post(f"/mails/{mail.pk}/edit/", base)
    assert r.status_code == 302
    mail.refresh_from_db()
    assert mail.subject == "New subject {{ customer_id }}"
    tree = {"match": "all", "conditions": [{"field": "email", "op": "has_value"}]}
    # The targeting fields are read-only while reserved: a posted change is not taken.
    assert "Fixed: a delivery of this mail is reserved or running." in page.content.decode()
    r = member_client.post(f"/mails/{mail.pk}/edit/", {**base, "filter": json.dumps(tree)})
    assert r.status_code == 302
    mail.refresh_from_db()
    assert mail.filter == {}
    r = member_client.post(f"/mails/{mail.pk}/edit/", {**base, "duplicate_rule": "newest"})
    assert r.status_code == 302
    mail.refresh_from_db()
    assert mail.duplicate_rule == "ignore"
    # Cancel the reservation: now the targeting can change.
    member_client.post(f"/mails/deliveries/{d.pk}/cancel/")
    r = member_client.post(f"/mails/{mail.pk}/edit/", {**base, "filter": json.dumps(tree)})
    assert r.status_code == 302
    mail.refresh_from_db()
    assert mail.filter == tree


def test_create_a_spot_delivery_with_a_view_and_customer_set(member_client):
    source = sent_delivery(2, domain="src.example")
    view = View.objects.create(
        name="Mailable",
        fields=["email", "email_error_count", "refused", "unsubscribed"],
        filter={},
    )
    data = mail_data(
        kind="spot",
        view=str(view.pk),
        customer_set=[{"source": f"m:{source.mail_id}", "event": "not_opened"}],
        customer_set_match="any",
    )
    r = member_client.post("/mails/new/?kind=spot", data)
    assert r.status_code == 302, r.content.decode()[:2000]
    mail = Mail.objects.get(name="Autumn news")
    assert mail.kind == "spot" and mail.view == view
    assert mail.customer_set == {
        "match": "any",
        "conditions": [{"kind": "delivery_history", "mail": source.mail_id, "event": "not_opened"}],
    }
    assert mail.filter == {}


def test_a_spot_delivery_refuses_a_view_that_is_not_delivery_eligible(member_client):
    view = View.objects.create(name="Names only", fields=["email"], filter={})
    r = member_client.post("/mails/new/", mail_data(kind="spot", view=str(view.pk)))
    assert r.status_code == 400
    assert "The view Names only cannot be used for delivery" in r.content.decode()


# ---------------------------------------------------------------------------------------------
# Preview, counts, test send


def test_preview_renders_for_a_chosen_customer_in_a_sandboxed_iframe(member_client):
    testing.make_customers(2, domain="pv.example")
    mail = testing.make_mail(
        name="Scripted",
        html_body='<p>Hi {{ email }}</p><script>alert("x")</script>'
        '<img src=x onerror="alert(1)"><a href="https://shop.example/">go</a>',
    )
    customer = Customer.objects.order_by("id").last()
    r = member_client.get(f"/mails/{mail.pk}/preview/?customer={customer.pk}")
    assert r.status_code == 200
    page = r.content.decode()
    assert 'sandbox=""' in page
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert 'onerror="alert' not in page
    assert f"Hi {customer.email}" in page
    # No tracking in a preview: the link is the mail's own, no pixel.
    assert "/t/c/" not in page and "/t/o/" not in page


def test_preview_of_an_unknown_customer_says_so(member_client, mail):
    r = member_client.get(f"/mails/{mail.pk}/preview/?customer=999999")
    assert b"No customer has the Customer ID 999999." in r.content


def test_counts_show_matched_after_exclusions_and_after_duplicates(member_client):
    testing.make_customers(4, domain="cnt.example")
    Customer.objects.filter(email="user1@cnt.example").update(refused=True)
    Customer.objects.filter(email="user2@cnt.example").update(email="USER3@cnt.example")
    mail = testing.make_mail(name="Counts", duplicate_rule="newest")
    r = member_client.get(f"/mails/{mail.pk}/counts/")
    assert r.status_code == 200
    page = r.content.decode()
    assert '<b id="count-matched">4</b>' in page
    assert '<b id="count-after-exclusions">3</b>' in page
    assert '<b id="count-after-duplicates">2</b>' in page
    assert "Refusal flag" in page


def test_test_send_goes_to_the_addresses_over_smtp(member_client, relay):
    testing.make_customers(1, domain="ts.example")
    with testing.Sink() as sink:
        relay.port = sink.port
        relay.save()
        mail = testing.make_mail(name="Test me")
        r = member_client.post(
            f"/mails/{mail.pk}/test/", {"addresses": "a@example.com\nb@example.com"}
        )
        assert r.status_code == 302
        sink.wait_for(2)
    assert sorted(sink.received) == ["a@example.com", "b@example.com"]
    msg = sink.handler.parsed(0)
    assert msg["Subject"].startswith("[TEST] Hello ")
    assert "/t/o/" not in msg.get_body(("html",)).get_content()
    log = OperationLog.objects.get(action="mail.test_send")
    assert log.detail["to"] == ["a@example.com", "b@example.com"]
    assert not Delivery.objects.exists()


@pytest.mark.parametrize(
    "addresses,message",
    [
        ("not-an-address", "Not a valid e-mail address: not-an-address"),
        ("a@x.example\r\nBcc: evil@x.example", "Not a valid e-mail address: Bcc: evil@x.example"),
        ("\n".join(f"u{i}@x.example" for i in range(6)), "A test goes to at most 5 addresses."),
        ("", "This field is required."),
    ],
)
def test_test_send_refuses_bad_addresses(member_client, mail, addresses, message):
    r = member_client.post(f"/mails/{mail.pk}/test/", {"addresses": addresses}, follow=True)
    assert message in r.content.decode()
    assert not OperationLog.objects.filter(action="mail.test_send").exists()


# ---------------------------------------------------------------------------------------------
# Send, reserve, cancel, pause, resume, stop


def test_send_now_reserves_a_delivery_due_now(member_client, mail):
    r = member_client.post(f"/mails/{mail.pk}/send/", {"action": "now"})
    d = Delivery.objects.get(mail=mail)
    assert r.status_code == 302 and r["Location"] == f"/mails/deliveries/{d.pk}/"
    assert d.status == "reserved" and d.scheduled_at <= timezone.now()
    assert OperationLog.objects.filter(action="delivery.reserve").exists()


def test_reserve_for_a_time_and_cancel(member_client, mail):
    when = timezone.localtime() + timedelta(days=2)
    r = member_client.post(
        f"/mails/{mail.pk}/send/",
        {"action": "reserve", "when": when.strftime("%Y-%m-%dT%H:%M")},
    )
    assert r.status_code == 302
    d = Delivery.objects.get(mail=mail)
    assert d.status == "reserved"
    assert d.scheduled_at.replace(second=0, microsecond=0) == when.replace(second=0, microsecond=0)
    r = member_client.post(f"/mails/deliveries/{d.pk}/cancel/", follow=True)
    assert b"cancelled" in r.content
    d.refresh_from_db()
    assert d.status == "cancelled"
    assert OperationLog.objects.filter(action="delivery.cancel").exists()


def test_reserve_refuses_a_past_time(member_client, mail):
    when = timezone.localtime() - timedelta(hours=1)
    r = member_client.post(
        f"/mails/{mail.pk}/send/",
        {"action": "reserve", "when": when.strftime("%Y-%m-%dT%H:%M")},
        follow=True,
    )
    assert b"Choose a time in the future for a reservation." in r.content
    assert not Delivery.objects.exists()


def test_reserve_without_a_time_says_so(member_client, mail):
    r = member_client.post(f"/mails/{mail.pk}/send/", {"action": "reserve"}, follow=True)
    assert b"Choose the time to reserve the delivery for." in r.content
    assert not Delivery.objects.exists()


def test_send_refuses_a_spot_mail_without_recipients(member_client):
    mail = testing.make_mail(name="No target", kind="spot")
    r = member_client.post(f"/mails/{mail.pk}/send/", {"action": "now"}, follow=True)
    assert b"A spot delivery needs a view or a recipient list." in r.content
    assert not Delivery.objects.exists()


def test_pause_resume_and_stop_a_running_delivery(member_client, mail):
    d = testing.start(mail)
    assert d.status == "running"
    member_client.post(f"/mails/deliveries/{d.pk}/pause/")
    d.refresh_from_db()
    assert d.status == "paused"
    member_client.post(f"/mails/deliveries/{d.pk}/resume/")
    d.refresh_from_db()
    assert d.status == "running"
    member_client.post(f"/mails/deliveries/{d.pk}/stop/")
    d.refresh_from_db()
    assert d.status == "stopped"
    r = member_client.post(f"/mails/deliveries/{d.pk}/resume/", follow=True)
    assert b"This delivery is Stopped; only a paused delivery can be resumed." in r.content
    actions = set(OperationLog.objects.values_list("action", flat=True))
    assert {"delivery.pause", "delivery.resume", "delivery.stop"} <= actions


def test_unknown_delivery_actions_are_404(member_client, mail):
    d = Delivery.objects.create(mail=mail)
    assert member_client.post(f"/mails/deliveries/{d.pk}/explode/").status_code == 404


def test_mail_detail_lists_deliveries_and_topics(member_client, mail):
    topic = Topic.objects.create(key="news", name="Weekly news")
    mail.topic = topic
    mail.save()
    testing.start(mail)
    r = member_client.get(f"/mails/{mail.pk}/")
    assert r.status_code == 200
    assert b"Weekly news" in r.content and b"Running" in r.content


def test_name_tracked_links(member_client, mail):
    link = mail.links.get()
    r = member_client.post(f"/mails/{mail.pk}/links/", {f"link-{link.pk}": " Sale page "})
    assert r.status_code == 302
    link.refresh_from_db()
    assert link.name == "Sale page"
    log = OperationLog.objects.get(action="mail.name_links")
    assert log.detail == {"names": {"https://shop.example/sale": "Sale page"}}
    page = member_client.get(f"/mails/{mail.pk}/").content.decode()
    assert 'value="Sale page"' in page
    assert "Filter: every customer" in page


def test_naming_links_needs_the_mails_right(outsider_client, mail):
    link = mail.links.get()
    r = outsider_client.post(f"/mails/{mail.pk}/links/", {f"link-{link.pk}": "x"})
    assert r.status_code == 403
    link.refresh_from_db()
    assert link.name == ""


@pytest.mark.parametrize("kind,marker", [("basic", "data-fb"), ("spot", 'name="cs-TOTAL_FORMS"')])
def test_new_mail_pages_show_the_targeting_of_their_kind(member_client, kind, marker):
    r = member_client.get(f"/mails/new/?kind={kind}")
    assert r.status_code == 200
    assert marker in r.content.decode()


def test_content_of_a_reserved_mail_with_history_rows_stays_editable(member_client):
    source = sent_delivery(2, domain="src.example")
    tree = {
        "match": "all",
        "conditions": [
            {"field": "email", "op": "has_value"},
            {"kind": "delivery_history", "delivery": source.pk, "event": "opened", "link": None},
        ],
    }
    mail = testing.make_mail(name="Follow-up", filter=tree)
    Delivery.objects.create(mail=mail, status="reserved", scheduled_at=timezone.now())
    page = member_client.get(f"/mails/{mail.pk}/edit/").content.decode()
    builder = json.loads(
        page.split('id="fb-input" value="')[1].split('"')[0].replace("&quot;", '"')
    )
    data = mail_data(
        name="Follow-up",
        subject="Changed {{ customer_id }}",
        filter=json.dumps(builder),
        history=[{"source": f"d:{source.pk}", "event": "opened"}],
    )
    r = member_client.post(f"/mails/{mail.pk}/edit/", data)
    assert r.status_code == 302, r.content.decode()[:2000]
    mail.refresh_from_db()
    assert mail.subject == "Changed {{ customer_id }}"
    assert mail.filter == tree


def test_content_of_a_reserved_spot_delivery_stays_editable(member_client):
    source = sent_delivery(2, domain="src.example")
    view = View.objects.create(
        name="Mailable", fields=["email", "email_error_count", "refused", "unsubscribed"]
    )
    cset = {
        "match": "any",
        "conditions": [{"kind": "delivery_history", "mail": source.mail_id, "event": "clicked"}],
    }
    mail = testing.make_mail(name="Spot", kind="spot", view=view, customer_set=cset)
    Delivery.objects.create(mail=mail, status="reserved", scheduled_at=timezone.now())
    data = mail_data(
        name="Spot",
        kind="spot",
        view=str(view.pk),
        subject="Changed {{ customer_id }}",
        customer_set_match="any",
        customer_set=[{"source": f"m:{source.mail_id}", "event": "clicked"}],
    )
    r = member_client.post(f"/mails/{mail.pk}/edit/", data)
    assert r.status_code == 302, r.content.decode()[:2000]
    mail.refresh_from_db()
    assert mail.subject == "Changed {{ customer_id }}" and mail.customer_set == cset
    data["cs-0-event"] = "opened"  # read-only while reserved: not taken
    r = member_client.post(f"/mails/{mail.pk}/edit/", data)
    assert r.status_code == 302
    mail.refresh_from_db()
    assert mail.customer_set == cset
