"""What the extraction tests share: a source delivery whose recipients opened, clicked and
failed in known ways, and a helper that runs an extraction in the foreground."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from okuru.accounts import jobs
from okuru.customers.models import Customer, View
from okuru.mailings import extraction
from okuru.mailings.models import Delivery, Event, Extraction, FrozenListMember, Recipient
from okuru.mailings.testing import make_mail, make_relay

ELIGIBLE = ["email", "email_error_count", "refused", "unsubscribed"]
HTML = (
    '<p>Hi</p><a href="https://shop.example/sale">Sale</a>'
    '<a href="https://shop.example/new">New</a>'
)


def ledger(delivery: Delivery, customer: Customer, **values) -> Recipient:
    return Recipient.objects.create(
        delivery=delivery, customer_id=customer.pk, address=customer.email, **values
    )


def click(row: Recipient, link) -> None:
    Event.objects.create(
        delivery_id=row.delivery_id, recipient=row, customer_id=row.customer_id, kind="click",
        link=link,
    )  # fmt: skip


def make_source() -> dict:
    """A delivery sent yesterday. a opened and clicked link 1; b opened; c was sent only;
    d failed; e opened and clicked link 2; f was accepted then bounced; g got nothing."""
    make_relay(2525)
    people = {k: Customer.objects.create(email=f"{k}@example.com") for k in "abcdefg"}
    m = make_mail(name="Spring sale", html_body=HTML)
    sale, new = m.links.order_by("position")
    delivery = Delivery.objects.create(
        mail=m, status="completed", started_at=timezone.now() - timedelta(days=1)
    )
    now = timezone.now()
    rows = {
        "a": dict(status="sent", first_open_at=now, open_count=1, click_count=1),
        "b": dict(status="sent", first_open_at=now, open_count=1),
        "c": dict(status="sent"),
        "d": dict(status="failed", error_kind="unknown_user"),
        "e": dict(status="sent", first_open_at=now, open_count=1, click_count=1),
        "f": dict(status="sent", error_kind="mailbox_full"),
    }
    made = {k: ledger(delivery, people[k], **v) for k, v in rows.items()}
    click(made["a"], sale)
    click(made["e"], new)
    return {"delivery": delivery, "people": people, "sale": sale, "new": new}


def extract(
    deliveries, view: View, conditions=(), match="all", link=None, operator=None
) -> Extraction:
    choice = extraction.check([d.pk for d in deliveries], view.pk, conditions, match, link)
    started = extraction.start_extraction(choice, operator, enqueue=False)
    jobs.run(started.job_id)
    started.refresh_from_db()
    return started


def members(e: Extraction) -> list[str]:
    ids = FrozenListMember.objects.filter(list_id=e.recipient_list_id).values("customer_id")
    emails = Customer.objects.filter(pk__in=ids).values_list("email", flat=True)
    return sorted(c.split("@")[0] for c in emails)
