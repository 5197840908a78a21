"""The unsubscribe page of a message really sent: a browser opens the link from its
List-Unsubscribe header, submits the form and sees the confirmation.

It guards a bug a Django test client cannot see: with a "no-referrer" policy the browser sends
"Origin: null" with the form, and Django's CSRF check refuses it."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from okuru.customers.models import Customer, Topic
from okuru.mailings import sending, testing

pytestmark = pytest.mark.browser


@pytest.fixture
def sent_message():
    """Send a real message to one customer; return its List-Unsubscribe path."""
    topic = Topic.objects.create(key="news", name="Weekly news")
    with testing.Sink() as sink:
        testing.make_relay(sink.port)
        testing.make_customers(1, domain="unsub.example")
        delivery = testing.start(testing.make_mail(topic=topic))
        testing.drain(sending.Worker(), delivery)
        message = sink.handler.parsed(0)
    return urlsplit(message["List-Unsubscribe"].strip("<>")).path


def test_a_recipient_unsubscribes_in_a_browser(transactional_db, live_server, page, sent_message):
    page.goto(live_server.url + sent_message)
    expect(page.locator("h1")).to_have_text("Unsubscribe")
    expect(page.locator("input[name=topics][value=news]")).to_be_checked()

    with page.expect_request(lambda r: r.method == "POST") as posted:
        with page.expect_navigation():
            page.click("form button[type=submit]")
    assert posted.value.all_headers().get("origin") == live_server.url

    expect(page.locator("h1")).to_have_text("Unsubscribed")
    expect(page.locator("main li")).to_have_text(["Weekly news"])
    customer = Customer.objects.get(email="user0@unsub.example")
    assert customer.unsubscribed == ["news"]
    assert customer.refused is False
