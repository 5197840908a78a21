"""A mail and a delivery as JSON-ready dicts: the shapes the REST API returns and the CLI
prints (``okuru mails show``), kept in one place so the two never drift apart."""

from __future__ import annotations

from typing import Any

from okuru.mailings import actions, reports
from okuru.mailings.models import Delivery, Mail

MAIL_FIELDS = (
    "name",
    "from_address",
    "from_name",
    "reply_to",
    "return_path_domain",
    "error_threshold",
    "duplicate_rule",
    "address_field",
    "open_tracking",
    "click_tracking",
    "subject",
    "text_body",
    "html_body",
    "filter",
    "customer_set",
    "view_id",
    "recipient_list_id",
    "relay_id",
)


def mail_json(mail: Mail) -> dict[str, Any]:
    out: dict[str, Any] = {"id": mail.pk, "kind": mail.kind}
    out.update({f: getattr(mail, f) for f in MAIL_FIELDS})
    out["topic"] = mail.topic.key if mail.topic_id else None
    out["links"] = [
        {"id": link.pk, "url": link.url, "name": link.name}
        for link in mail.links.filter(active=True)
    ]
    out["locked"] = actions.is_locked(mail)
    out["created"] = mail.created
    out["updated"] = mail.updated
    return out


def delivery_json(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.pk,
        "mail": d.mail_id,
        "mail_name": d.mail.name,
        "status": d.status,
        "scheduled_at": d.scheduled_at,
        "started_at": d.started_at,
        "finished_at": d.finished_at,
        "selectable_as_source": reports.is_selectable_source(d),
        "recipients": d.recipient_count,
        "sent": d.sent_count,
        "failed": d.failed_count,
        "unknown": d.unknown_count,
        "open_unique": d.open_unique,
        "open_total": d.open_total,
        "click_unique": d.click_unique,
        "click_total": d.click_total,
        "note": d.note,
    }
