"""Test helpers for tracking and reports: a delivery that has been "sent", and its URLs."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from okuru.lib import signing


def sent_delivery(n: int = 3, domain: str = "example.com", **mail_kwargs: Any) -> Any:
    """``n`` customers, a mail, a started delivery whose ledger rows are all marked sent (no
    SMTP: tests of measurement do not need the messages themselves)."""
    from okuru.mailings import testing
    from okuru.mailings.models import Recipient, Relay

    if not Relay.objects.exists():
        testing.make_relay(testing.free_port())  # never used: nothing is sent
    testing.make_customers(n, domain=domain)
    mail_kwargs.setdefault("name", f"Mail for {domain}")
    mail_kwargs.setdefault(
        "filter",
        {
            "match": "all",
            "conditions": [{"field": "email", "op": "contains", "value": "@" + domain}],
        },
    )
    mail = testing.make_mail(**mail_kwargs)
    delivery = testing.start(mail)
    Recipient.objects.filter(delivery=delivery).update(status="sent", sent_at=timezone.now())
    from okuru.mailings.ledger import refresh_counts

    refresh_counts(delivery.pk)
    delivery.refresh_from_db()
    return delivery


def urls_for(recipient: Any) -> dict[str, str]:
    """Paths (no host) of the recipient's pixel, unsubscribe and view links, and one click path
    per tracked link of the mail: ``click:<url>``."""
    out = {
        kind: signing.path_for(kind, signing.make_token(kind, recipient.pk))
        for kind in ("open", "unsubscribe", "view")
    }
    for link in recipient.delivery.mail.links.all():
        out[f"click:{link.url}"] = signing.path_for(
            "click", signing.make_token("click", recipient.pk, link.pk)
        )
    return out
