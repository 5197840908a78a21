"""After "send again" on unknown rows, the ledger keeps saying which recipients may hold two
copies: in the drill-down, the API and the events export, whatever the row's next outcome."""

from __future__ import annotations

import pytest

from okuru.accounts.models import ApiToken
from okuru.mailings import actions, sending
from okuru.mailings.models import Recipient
from okuru.mailings.testing import Sink, drain, make_customers, make_mail, make_relay, start

pytestmark = pytest.mark.django_db


def test_rows_sent_again_stay_marked_as_maybe_duplicate(member, member_client):
    make_customers(3)
    with Sink() as sink:
        make_relay(sink.port)
        # The relay takes the message, then drops the connection without replying: unknown.
        sink.handler.rules["user1@example.com"] = ["drop-after-data"]
        delivery = start(make_mail())
        worker = sending.Worker(sending.Config(idle_sleep=0.01, retry_base=0.01))
        drain(worker, delivery)
        row = Recipient.objects.get(delivery=delivery, address="user1@example.com")
        assert (row.status, row.maybe_duplicate) == ("unknown", False)

        assert actions.resolve_unknown(delivery, None, resend=True) == 1
        drain(worker, delivery)
    row.refresh_from_db()
    assert (row.status, row.maybe_duplicate) == ("sent", True)
    assert sink.handler.received["user1@example.com"] == 2
    others = Recipient.objects.filter(delivery=delivery).exclude(pk=row.pk)
    assert not others.filter(maybe_duplicate=True).exists()

    page = member_client.get(f"/mails/deliveries/{delivery.pk}/recipients/all/")
    assert page.status_code == 200
    assert page.content.decode().count("may have received two copies") == 1

    _token, key = ApiToken.issue(member, "tests")
    api = member_client.__class__(headers={"authorization": f"Bearer {key}"})
    items = api.get(f"/api/deliveries/{delivery.pk}/recipients/all").json()["items"]
    assert {i["address"]: i["maybe_duplicate"] for i in items} == {
        "user0@example.com": False,
        "user1@example.com": True,
        "user2@example.com": False,
    }
    export = b"".join(api.get(f"/api/deliveries/{delivery.pk}/events/export").streaming_content)
    lines = export.decode("utf-8-sig").splitlines()
    assert [line.split(",")[:2] for line in lines if "maybe_duplicate" in line] == [
        [str(row.customer_id), "maybe_duplicate"]
    ]


def test_rows_left_unsent_are_not_marked():
    make_customers(1)
    with Sink() as sink:
        make_relay(sink.port)
        sink.handler.rules["user0@example.com"] = ["drop-after-data"]
        delivery = start(make_mail())
        drain(sending.Worker(sending.Config(idle_sleep=0.01)), delivery)
    actions.resolve_unknown(delivery, None, resend=False)
    assert not Recipient.objects.filter(delivery=delivery, maybe_duplicate=True).exists()
