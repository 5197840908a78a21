"""Looking at a captured message is not the customer opening it: the capture box shows a real
sent message in Chromium and no open, click or other tracking request reaches the server."""

from __future__ import annotations

import pytest

from okuru.capture import smtp as capture_smtp
from okuru.capture.models import CapturedMessage
from okuru.mailings import sending, testing
from okuru.mailings.models import Delivery
from okuru.tracking import recording
from okuru.tracking.models import Hit
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_viewing_a_captured_message_records_no_open_or_click(page, live_server, owner, settings):
    settings.SITE_ROOT = live_server.url  # the message's pixel and links point at this server
    port = testing.free_port()
    controller = capture_smtp.make_controller("127.0.0.1", port)
    controller.start()
    try:
        testing.make_relay(port)
        testing.make_customers(1, domain="viewer.example")
        delivery = testing.start(testing.make_mail())
        testing.drain(sending.Worker(), delivery)
    finally:
        controller.stop()
    message = CapturedMessage.objects.get()

    tracking_requests = []
    page.on("request", lambda r: "/t/" in r.url and tracking_requests.append(r.url))
    log_in(page, live_server, owner)
    page.goto(f"{live_server.url}/capture/{message.pk}/")
    frame = page.frame_locator("iframe.mail-html")
    link = frame.locator("a", has_text="Sale")
    assert link.get_attribute("href") == "https://shop.example/sale"
    page.wait_for_load_state("networkidle")

    assert tracking_requests == []
    assert not Hit.objects.exists()
    recording.drain()
    delivery = Delivery.objects.get(pk=delivery.pk)
    assert (delivery.open_unique, delivery.click_unique) == (0, 0)
