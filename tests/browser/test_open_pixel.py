"""The open pixel as Okuru writes it, in a real rendering engine: a sent message's HTML shown in
Chromium fetches the pixel from the tracking endpoint and the open is recorded, whether the
pixel is a table cell's background (the author's HTML has no image) or an ``<img>``."""

from __future__ import annotations

import pytest

from okuru.mailings import sending, testing
from okuru.mailings.models import Delivery, Recipient
from okuru.tracking import recording

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# A 1×1 PNG inline, so the author's image needs no network.
AUTHOR_IMAGE = (
    '<img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42'
    'mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=" width="600" height="300" alt="Spring">'
)


@pytest.mark.parametrize(
    "body, pixel",
    [
        ("<p>Hello {{ email }}</p>", "td[background*='/t/o/']"),
        (f"{AUTHOR_IMAGE}<p>Hello {{{{ email }}}}</p>", "img[src*='/t/o/']"),
    ],
    ids=["no image: background", "author image: img"],
)
def test_a_mail_program_showing_the_message_records_the_open(
    page, live_server, settings, body, pixel
):
    settings.SITE_ROOT = live_server.url  # the message's pixel points at this server
    with testing.Sink() as sink:
        testing.make_relay(sink.port)
        testing.make_customers(1, domain="reader.example")
        delivery = testing.start(testing.make_mail(html_body=f"<html><body>{body}</body></html>"))
        testing.drain(sending.Worker(), delivery)
        msg = sink.handler.parsed(0)
    html = msg.get_body(("html",)).get_content()

    opens = []
    page.on("request", lambda r: "/t/o/" in r.url and opens.append(r.url))
    page.set_content(html)
    page.wait_for_load_state("networkidle")

    assert page.locator(pixel).count() == 1
    assert len(opens) == 1
    recording.drain()  # as okuru trackingworker does
    assert Delivery.objects.get(pk=delivery.pk).open_unique == 1
    assert Recipient.objects.get(delivery=delivery).open_count == 1
