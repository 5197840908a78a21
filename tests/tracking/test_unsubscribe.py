"""The unsubscribe page, its CSRF-protected form, and RFC 8058 one-click POST."""

from __future__ import annotations

import pytest
from django.test import Client

from okuru.customers.models import Customer, Topic
from okuru.lib import signing
from okuru.mailings.models import Event, Recipient
from okuru.tracking.testing import sent_delivery, urls_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english(settings):
    settings.LANGUAGE_CODE = "en"  # the pages answer in the visitor's language, else this


@pytest.fixture
def topics():
    return [
        Topic.objects.create(key="news", name="Weekly news"),
        Topic.objects.create(key="sale", name="Sale alerts"),
    ]


@pytest.fixture
def row(topics):
    d = sent_delivery(2, topic=topics[0])
    return Recipient.objects.filter(delivery=d).order_by("id").first()


@pytest.fixture
def url(row):
    return urls_for(row)["unsubscribe"]


def customer(row):
    return Customer.objects.get(pk=row.customer_id)


def one_click(url, client=None, **extra):
    client = client or Client(enforce_csrf_checks=True)
    return client.post(
        url,
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
        **extra,
    )


def test_get_shows_the_choice_and_changes_nothing(row, url):
    client = Client(enforce_csrf_checks=True)
    for _i in range(3):
        r = client.get(url)
        assert r.status_code == 200
    c = customer(row)
    assert c.unsubscribed == [] and c.refused is False
    assert not Event.objects.filter(kind="unsubscribe").exists()
    body = r.content.decode()
    assert "Weekly news" in body and "Sale alerts" in body
    assert 'name="refuse"' in body
    assert 'name="csrfmiddlewaretoken"' in body
    # The mail's own topic is preselected; the address is shown only in part.
    assert 'value="news" checked' in body
    assert row.address not in body and row.address[:2] + "***@example.com" in body


def test_get_with_one_click_like_query_changes_nothing(row, url):
    r = Client().get(url + "?List-Unsubscribe=One-Click")
    assert r.status_code == 200
    assert customer(row).unsubscribed == []


def test_one_click_post_unsubscribes_from_the_mails_topic_without_csrf_or_login(row, url):
    r = one_click(url)
    assert r.status_code == 200
    c = customer(row)
    assert c.unsubscribed == ["news"]
    assert c.refused is False
    event = Event.objects.get(kind="unsubscribe")
    assert event.detail == {"topics": ["news"], "one_click": True}
    assert event.customer_id == row.customer_id
    # Again: nothing more to do, still 200.
    assert one_click(url).status_code == 200
    assert customer(row).unsubscribed == ["news"]


def test_one_click_post_as_multipart_works_too(row, url):
    r = Client(enforce_csrf_checks=True).post(url, {"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    assert customer(row).unsubscribed == ["news"]


def test_one_click_without_a_topic_refuses_all_mail(topics):
    d = sent_delivery(1, domain="notopic.example")
    row = Recipient.objects.get(delivery=d)
    r = one_click(urls_for(row)["unsubscribe"])
    assert r.status_code == 200
    c = customer(row)
    assert c.refused is True
    assert c.unsubscribed == []


def test_one_click_refuses_forged_tokens(row):
    good = signing.make_token("unsubscribe", row.pk)
    value, sig = good.split(".")
    for token in (
        f"{value}.{sig[:-1]}{'A' if sig[-1] != 'A' else 'B'}",
        signing.make_token("open", row.pk),
        value,
    ):
        r = one_click(f"/t/u/{token}")
        assert r.status_code == 404
    c = customer(row)
    assert c.unsubscribed == [] and c.refused is False


def test_form_post_without_csrf_token_is_refused(row, url):
    client = Client(enforce_csrf_checks=True)
    client.get(url)
    r = client.post(url, {"topics": ["news", "sale"]})
    assert r.status_code == 403
    assert customer(row).unsubscribed == []


def test_form_post_with_csrf_unsubscribes_from_chosen_topics(row, url):
    client = Client(enforce_csrf_checks=True)
    client.get(url)
    token = client.cookies["csrftoken"].value
    r = client.post(url, {"topics": ["news", "sale", "nonsense"], "csrfmiddlewaretoken": token})
    assert r.status_code == 200
    assert b"Weekly news" in r.content and b"Sale alerts" in r.content
    c = customer(row)
    assert c.unsubscribed == ["news", "sale"]
    assert c.refused is False


def test_form_post_refuse_all_sets_the_refusal_flag(row, url):
    client = Client(enforce_csrf_checks=True)
    client.get(url)
    token = client.cookies["csrftoken"].value
    r = client.post(url, {"refuse": "1", "csrfmiddlewaretoken": token})
    assert r.status_code == 200
    assert b"You will receive no more mail from us." in r.content
    assert customer(row).refused is True
    assert Event.objects.get(kind="unsubscribe").detail == {"refused": True, "one_click": False}


def test_form_post_with_nothing_chosen_says_so(row, url):
    client = Client(enforce_csrf_checks=True)
    client.get(url)
    token = client.cookies["csrftoken"].value
    r = client.post(url, {"csrfmiddlewaretoken": token})
    assert r.status_code == 400
    assert b"Choose at least one newsletter to stop, or refuse all mail." in r.content
    c = customer(row)
    assert c.unsubscribed == [] and c.refused is False


def test_page_for_a_deleted_customer_says_the_address_is_gone(row, url):
    Customer.objects.filter(pk=row.customer_id).delete()
    r = Client().get(url)
    assert r.status_code == 200
    assert b"This address is no longer on our list" in r.content
    assert one_click(url).status_code == 200


def test_unsubscribed_customers_are_excluded_from_the_next_delivery(row, url):
    from okuru.mailings import targeting

    one_click(url)
    counts = targeting.preview(row.delivery.mail)
    assert counts["excluded"]["unsubscribed"] == 1
    assert counts["after_duplicates"] == 1
