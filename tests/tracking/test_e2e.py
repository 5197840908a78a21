"""End to end: send a real message over SMTP, then follow its own tracking URLs."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from django.test import Client

from okuru.customers.models import Customer, Topic
from okuru.mailings import sending, testing
from okuru.mailings.models import Delivery, Recipient
from okuru.tracking import recording

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_urls_in_a_sent_message_record_opens_clicks_and_unsubscribe():
    topic = Topic.objects.create(key="news", name="News")
    with testing.Sink() as sink:
        testing.make_relay(sink.port)
        testing.make_customers(2, domain="e2e.example")
        mail = testing.make_mail(topic=topic)
        delivery = testing.start(mail)
        testing.drain(sending.Worker(), delivery)
        assert len(sink.handler.messages) == 2
        msg = sink.handler.parsed(0)
    html = msg.get_body(("html",)).get_content()
    pixel = re.search(r'="([^"]+/t/o/[^"]+)"', html).group(1)  # <img src> or <td background>
    click = re.search(r'<a href="([^"]+/t/c/[^"]+)"', html).group(1)
    unsubscribe = msg["List-Unsubscribe"].strip("<>")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    client = Client(enforce_csrf_checks=True)
    assert client.get(urlsplit(pixel).path).status_code == 200
    r = client.get(urlsplit(click).path)
    assert r.status_code == 302 and r["Location"] == "https://shop.example/sale"
    r = client.post(
        urlsplit(unsubscribe).path,
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert r.status_code == 200

    recording.drain()  # as okuru trackingworker does every second
    delivery = Delivery.objects.get(pk=delivery.pk)
    assert (delivery.open_unique, delivery.click_unique, delivery.sent_count) == (1, 1, 2)
    row = Recipient.objects.get(delivery=delivery, address=msg["To"])
    assert row.open_count == 1 and row.click_count == 1
    assert Customer.objects.get(pk=row.customer_id).unsubscribed == ["news"]
