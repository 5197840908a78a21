"""Open pixel, click redirect and view-in-browser: tokens, redirects, counters (the endpoints
note hits in the inbox; ``recording.drain`` applies them, as ``okuru trackingworker`` does)."""

from __future__ import annotations

import pytest
from django.test import Client

from okuru.lib import signing
from okuru.mailings.models import Delivery, Event, Recipient, TrackedLink
from okuru.tracking import recording, views
from okuru.tracking.models import Hit
from okuru.tracking.testing import sent_delivery, urls_for
from okuru.tracking.views import GIF

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english(settings):
    settings.LANGUAGE_CODE = "en"  # the pages answer in the visitor's language, else this


SALE = "https://shop.example/sale"


@pytest.fixture
def delivery():
    return sent_delivery(3)


@pytest.fixture
def rows(delivery):
    return list(Recipient.objects.filter(delivery=delivery).order_by("id"))


def counters(delivery):
    recording.drain()
    delivery.refresh_from_db()
    return (delivery.open_unique, delivery.open_total, delivery.click_unique, delivery.click_total)


def assert_nothing_recorded(delivery):
    assert not Hit.objects.exists()
    assert counters(delivery) == (0, 0, 0, 0)
    assert not Event.objects.exists()
    assert not Recipient.objects.filter(open_count__gt=0).exists()
    assert not Recipient.objects.filter(click_count__gt=0).exists()


# ---------------------------------------------------------------------------------------------
# Open pixel


def test_pixel_counts_unique_and_total_opens(client, delivery, rows):
    a, b = urls_for(rows[0])["open"], urls_for(rows[1])["open"]
    for path in (a, a, a, b):
        r = client.get(path)
        assert r.status_code == 200
        assert r["Content-Type"] == "image/gif"
        assert r.content == GIF
        assert "no-store" in r["Cache-Control"]
    assert counters(delivery) == (2, 4, 0, 0)
    rows[0].refresh_from_db()
    rows[2].refresh_from_db()
    assert rows[0].open_count == 3 and rows[0].first_open_at is not None
    assert rows[2].open_count == 0 and rows[2].first_open_at is None
    assert Event.objects.filter(kind="open", recipient=rows[0]).count() == 3


def test_first_open_time_is_kept_on_later_opens(client, delivery, rows):
    path = urls_for(rows[0])["open"]
    client.get(path)
    recording.drain()
    rows[0].refresh_from_db()
    first = rows[0].first_open_at
    client.get(path)
    recording.drain()
    rows[0].refresh_from_db()
    assert rows[0].first_open_at == first
    assert rows[0].open_count == 2


def forged_tokens(rows):
    good = signing.make_token("open", rows[0].pk)
    value, sig = good.split(".")
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    other_id = signing._b36(rows[1].pk)
    return [
        f"{value}.{flipped}",  # mutated signature
        f"{other_id}.{sig}",  # another recipient's id under this signature
        value,  # no signature
        signing.make_token("view", rows[0].pk),  # a token of another kind
        signing.make_token("unsubscribe", rows[0].pk),
        "x" * 300,
        "..",
        good + "0",
    ]


def test_pixel_answers_with_the_gif_to_forged_tokens_and_records_nothing(client, delivery, rows):
    for token in forged_tokens(rows):
        r = client.get(f"/t/o/{token}.gif")
        assert r.status_code == 200, token
        assert r.content == GIF
    assert_nothing_recorded(delivery)


def test_pixel_answers_when_the_ledger_row_is_gone(client, delivery, rows):
    path = urls_for(rows[0])["open"]
    Event.objects.all().delete()
    rows[0].delete()
    r = client.get(path)
    assert r.status_code == 200 and r.content == GIF
    assert counters(delivery) == (0, 0, 0, 0)
    assert not Hit.objects.exists()  # dropped by the drain, not kept for ever
    assert not Event.objects.exists()


def test_pixel_answers_when_recording_fails(client, delivery, rows, monkeypatch):
    def broken(recipient_id):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(views.recording, "note_open", broken)
    r = client.get(urls_for(rows[0])["open"])
    assert r.status_code == 200 and r.content == GIF
    assert r["Content-Type"] == "image/gif"


# ---------------------------------------------------------------------------------------------
# Click redirect


def test_click_redirects_to_the_mails_own_link_and_counts(client, delivery, rows):
    path = urls_for(rows[0])[f"click:{SALE}"]
    r = client.get(path)
    assert r.status_code == 302
    assert r["Location"] == SALE
    assert r["Referrer-Policy"] == "same-origin"
    client.get(path)
    client.get(urls_for(rows[1])[f"click:{SALE}"])
    recording.drain()
    rows[0].refresh_from_db()
    assert rows[0].click_count == 2 and rows[0].first_click_at is not None
    link = TrackedLink.objects.get(mail=delivery.mail, url=SALE)
    assert Event.objects.filter(kind="click", link=link).count() == 3
    # Two recipients clicked (3 clicks); each first click implied an open.
    assert counters(delivery) == (2, 2, 2, 3)


def test_a_click_implies_an_open_only_when_none_was_recorded(client, delivery, rows):
    urls = urls_for(rows[0])
    client.get(urls["open"])
    client.get(urls[f"click:{SALE}"])
    assert counters(delivery) == (1, 1, 1, 1)
    rows[0].refresh_from_db()
    assert rows[0].open_count == 1
    assert not Event.objects.filter(recipient=rows[0], detail__has_key="implied").exists()
    urls = urls_for(rows[1])
    client.get(urls[f"click:{SALE}"])
    recording.drain()
    rows[1].refresh_from_db()
    assert rows[1].first_open_at == rows[1].first_click_at
    implied = Event.objects.get(kind="open", recipient=rows[1])
    assert implied.detail == {"implied": True}
    assert counters(delivery) == (2, 2, 2, 2)


def test_click_ignores_redirect_targets_in_the_query_string(client, delivery, rows):
    path = urls_for(rows[0])[f"click:{SALE}"]
    for query in (
        "?url=//evil.example",
        "?next=https://evil.example/",
        "?u=javascript:alert(1)",
        "?redirect=%2F%5Cevil.example",
    ):
        r = client.get(path + query)
        assert r.status_code == 302
        assert r["Location"] == SALE


@pytest.mark.parametrize(
    "url",
    [
        "//evil.example/",
        "/\\evil.example/",
        "javascript:alert(document.cookie)",
        "JavaScript:alert(1)",
        "https://shop.example/\r\nSet-Cookie: owned=1",
        "https://shop.example/%0d%0a",  # encoded CR/LF is harmless text: allowed below
        "https://user:pass@evil.example/",
        "https://shop.example@evil.example/",
        "https:\\\\evil.example",
        "data:text/html,<script>alert(1)</script>",
        "https:///evil.example",
        " https://evil.example/",
    ],
)
def test_click_refuses_unsafe_targets_even_from_the_mails_own_links(client, delivery, rows, url):
    link = TrackedLink.objects.create(mail=delivery.mail, url=url, position=9)
    path = signing.path_for("click", signing.make_token("click", rows[0].pk, link.pk))
    r = client.get(path)
    if url == "https://shop.example/%0d%0a":
        assert r.status_code == 302 and r["Location"] == url
        return
    assert r.status_code == 404
    assert "Location" not in r
    assert b"This link is not valid" in r.content
    assert not Hit.objects.exists()


@pytest.mark.parametrize(
    "payload", ["//evil.example", "/%5Cevil.example", "javascript:alert(1)", "%0d%0aSet-Cookie:x=1"]
)
def test_click_refuses_payloads_in_place_of_the_token(client, delivery, payload):
    r = client.get(f"/t/c/{payload}")
    assert r.status_code == 404
    assert "Location" not in r


def test_click_refuses_a_link_of_another_mail(client, delivery, rows):
    other = sent_delivery(
        1, domain="other.example", html_body='<a href="https://evil.example/">x</a>'
    )
    foreign = TrackedLink.objects.get(mail=other.mail, url="https://evil.example/")
    path = signing.path_for("click", signing.make_token("click", rows[0].pk, foreign.pk))
    r = client.get(path)
    assert r.status_code == 404
    assert "Location" not in r
    assert_nothing_recorded(delivery)


def test_click_refuses_forged_and_mutated_tokens(client, delivery, rows):
    link = TrackedLink.objects.get(mail=delivery.mail, url=SALE)
    good = signing.make_token("click", rows[0].pk, link.pk)
    value, sig = good.split(".")
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    bad = [
        f"{value}.{flipped}",
        f"{signing._b36(rows[1].pk)}-{signing._b36(link.pk)}.{sig}",
        signing.make_token("open", rows[0].pk),
        value,
    ]
    for token in bad:
        r = client.get(f"/t/c/{token}")
        assert r.status_code == 404, token
        assert "Location" not in r
    assert_nothing_recorded(delivery)


def test_click_head_redirects_without_recording(client, delivery, rows):
    r = client.head(urls_for(rows[0])[f"click:{SALE}"])
    assert r.status_code == 302
    assert counters(delivery) == (0, 0, 0, 0)


def test_click_redirects_when_recording_fails(client, delivery, rows, monkeypatch):
    def broken(recipient_id, link_id):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(views.recording, "note_click", broken)
    r = client.get(urls_for(rows[0])[f"click:{SALE}"])
    assert r.status_code == 302 and r["Location"] == SALE


def test_an_inactive_link_still_redirects_for_mail_already_sent(client, delivery, rows):
    TrackedLink.objects.filter(mail=delivery.mail).update(active=False)
    r = client.get(urls_for(rows[0])[f"click:{SALE}"])
    assert r.status_code == 302 and r["Location"] == SALE


def test_unique_counts_never_exceed_recipients(delivery, rows):
    for _i in range(5):
        recording.note_open(rows[0].pk)
    recording.note_open(10**9)  # no such ledger row
    assert recording.drain() == 6
    recording.record_open(rows[0].pk)
    assert counters(delivery)[:2] == (1, 6)
    assert Delivery.objects.get(pk=delivery.pk).open_unique <= delivery.recipient_count
    assert not Hit.objects.exists()


# ---------------------------------------------------------------------------------------------
# View in browser


def test_view_in_browser_renders_for_the_recipient_in_a_sandbox(client, delivery, rows):
    r = client.get(urls_for(rows[0])["view"])
    assert r.status_code == 200
    assert f"Hi {rows[0].address}".encode() in r.content
    csp = r["Content-Security-Policy"]
    assert csp.startswith("sandbox ") and "allow-scripts" not in csp
    assert "allow-same-origin" not in csp
    # Links in the page still go through click tracking.
    assert b"/t/c/" in r.content


def test_view_in_browser_refuses_bad_tokens(client, delivery, rows):
    token = signing.make_token("open", rows[0].pk)
    assert client.get(f"/t/v/{token}").status_code == 404
    assert client.get("/t/v/abc.def").status_code == 404


def test_view_in_browser_of_a_text_mail_escapes_it(client):
    d = sent_delivery(
        1, domain="text.example", html_body="", text_body="<script>x</script> {{ email }}"
    )
    row = Recipient.objects.get(delivery=d)
    r = client.get(urls_for(row)["view"])
    assert r.status_code == 200
    assert b"<script>x" not in r.content
    assert b"&lt;script&gt;x&lt;/script&gt;" in r.content


def test_tracking_endpoints_do_not_need_a_login_or_a_session(delivery, rows):
    client = Client(enforce_csrf_checks=True)
    urls = urls_for(rows[0])
    assert client.get(urls["open"]).status_code == 200
    r = client.get(urls[f"click:{SALE}"])
    assert r.status_code == 302
    assert "sessionid" not in r.cookies


def test_each_link_redirects_to_its_own_url(client):
    html = '<a href="https://a.example/1">1</a> <a href="https://b.example/2">2</a>'
    d = sent_delivery(1, domain="two.example", html_body=html)
    row = Recipient.objects.get(delivery=d)
    urls = urls_for(row)
    for url in ("https://a.example/1", "https://b.example/2", SALE):
        r = client.get(urls[f"click:{url}"])
        assert r.status_code == 302 and r["Location"] == url


def test_the_hot_paths_take_one_write_and_no_update(client, delivery, rows):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    urls = urls_for(rows[0])
    with CaptureQueriesContext(connection) as opened:
        assert client.get(urls["open"]).status_code == 200
    with CaptureQueriesContext(connection) as clicked:
        assert client.get(urls[f"click:{SALE}"]).status_code == 302
    # The open: one INSERT into the inbox. The click: the link check, one INSERT.
    assert [q["sql"].split()[0] for q in opened.captured_queries] == ["INSERT"]
    assert [q["sql"].split()[0] for q in clicked.captured_queries] == ["SELECT", "INSERT"]
    assert list(Hit.objects.order_by("id").values_list("kind", "recipient_id", "link_id")) == [
        ("o", rows[0].pk, None),
        ("c", rows[0].pk, TrackedLink.objects.get(mail=delivery.mail, url=SALE).pk),
    ]
