"""Re-delivery audiences: which recipients of a past delivery a re-delivery goes to.

An audience is a set of the source delivery's ledger rows (its recipients), chosen by what
happened to them::

    all           every recipient of the source
    opened        opened any message of the chain
    not_opened    sent, and opened no message of the chain
    clicked       clicked any tracked link (or the chosen one) in any message of the chain
    not_clicked   sent, and clicked none (or not the chosen one) in the chain
    errored       an error at send time or a later bounce (the source's own row)
    not_errored   sent, and no error (the source's own row)
    not_reached   failed, unknown (may not have gone out), or bounced later

The *chain* is the source delivery and the deliveries it re-delivered, back to the origin: a
re-delivery of the non-openers of a re-delivery of the non-openers. Someone who opened the first
message and not the second has opened, so they are not sent a third one. Only chain deliveries
started in the 3-month window count (older ones are not a source anywhere). A chosen link is
matched by its URL in every message of the chain, since each mail has its own link rows.

This module only writes SQL over the ledger and the events; ``targeting.py`` joins it with the
customers table (customers deleted since are gone; exclusions apply as for any delivery) and
``redelivery.py`` holds the actions. It imports neither, so both can import it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils.translation import gettext_lazy as _

from okuru.mailings.models import Delivery, Mail, TrackedLink

LEDGER = "mailings_recipient"
AUDIENCES = {
    "all": _("All recipients"),
    "opened": _("Opened"),
    "not_opened": _("Not opened"),
    "clicked": _("Clicked"),
    "not_clicked": _("Not clicked"),
    "errored": _("Errored"),
    "not_errored": _("Not errored"),
    "not_reached": _("Not reached (failed or unknown)"),
}
WITH_LINK = ("clicked", "not_clicked")
CHAIN_LIMIT = 50  # a chain longer than this is a loop or a mistake; stop walking


def key(audience: str, link: int | None) -> str:
    """The audience as ``Mail.resend_audience`` records it: ``not_opened``, ``clicked:12``."""
    return f"{audience}:{link}" if link else audience


def label(audience: str, link_name: str = "") -> str:
    text = str(AUDIENCES.get(audience, audience))
    return f"{text}: {link_name}" if link_name else text


def chain(delivery_id: int, cutoff: datetime) -> list[int]:
    """The source delivery and the deliveries it re-delivered, newest first, that started at
    or after ``cutoff``. One query per step; chains are a few links long."""
    ids: list[int] = []
    current: int | None = delivery_id
    while current is not None and current not in ids and len(ids) < CHAIN_LIMIT:
        d = (
            Delivery.objects.filter(pk=current)
            .values("id", "started_at", "mail__resend_of_delivery", "mail__audience")
            .first()
        )
        if d is None:
            break
        recent = d["started_at"] is not None and d["started_at"] >= cutoff
        if recent or not ids:  # the source itself is checked by the caller, with a reason
            ids.append(d["id"])
        # Only a re-delivery continues the chain: a resend is a fresh send to its own target.
        current = d["mail__resend_of_delivery"] if d["mail__audience"] else None
    return ids


def origin(delivery: Delivery) -> Delivery:
    """The first delivery of ``delivery``'s chain (itself when it is not a re-delivery)."""
    seen = {delivery.pk}
    while delivery.mail.audience and delivery.mail.resend_of_delivery_id not in (None, *seen):
        parent = (
            Delivery.objects.select_related("mail")
            .filter(pk=delivery.mail.resend_of_delivery_id)
            .first()
        )
        if parent is None:
            break
        seen.add(parent.pk)
        delivery = parent
    return delivery


def link_url(delivery_id: int, link_id: int) -> str | None:
    """The URL of a tracked link of the delivery's mail, None when the mail has no such link."""
    mail_id = Delivery.objects.filter(pk=delivery_id).values("mail_id")
    return (
        TrackedLink.objects.filter(pk=link_id, mail_id__in=mail_id)
        .values_list("url", flat=True)
        .first()
    )


def ledger_sql(spec: dict[str, Any], cutoff: datetime) -> tuple[str, list[Any]]:
    """SELECT customer_id of the source's ledger rows in the audience ``spec``
    (``{"delivery": ID, "audience": NAME, "link": ID or None}``).

    Why it reads this way: the outer scan is the source's ledger by its (delivery_id,
    customer_id) unique index, one range; the per-row test is on the row itself when the chain
    is the source alone (the common case, so 1,000,000 rows cost one pass and no join), and an
    EXISTS probe on the same index for each other delivery of the chain otherwise. The caller
    puts it in ``customers.id IN (…)``, which both databases run as a semi-join."""
    source = int(spec["delivery"])
    audience = spec["audience"]
    link = spec.get("link")
    ids = chain(source, cutoff)
    others = [i for i in ids if i != source]
    params: list[Any] = [source]
    where = _row_condition(audience, link, others, params)
    return f"SELECT r.customer_id FROM {LEDGER} r WHERE r.delivery_id = %s AND {where}", params


def _row_condition(audience: str, link: Any, others: list[int], params: list[Any]) -> str:
    """The test on a source ledger row ``r``; appends its parameters to ``params``."""
    sent = "r.status = 'sent'"
    if audience == "all":
        return "1 = 1"
    if audience == "errored":
        return "(r.status = 'failed' OR r.error_kind <> '')"
    if audience == "not_errored":
        return f"({sent} AND r.error_kind = '')"
    if audience == "not_reached":
        return "(r.status IN ('failed', 'unknown') OR r.error_kind <> '')"
    if audience in ("opened", "not_opened"):
        did, p = _over_chain("r.first_open_at IS NOT NULL", "c.first_open_at IS NOT NULL", others)
    elif link:
        did, p = _clicked_link(int(link), others)
    else:
        did, p = _over_chain("r.click_count > 0", "c.click_count > 0", others)
    params.extend(p)
    return did if audience in ("opened", "clicked") else f"({sent} AND NOT {did})"


def _over_chain(own: str, other: str, others: list[int]) -> tuple[str, list[Any]]:
    if not others:
        return f"({own})", []
    marks = ", ".join(["%s"] * len(others))
    return (
        f"({own} OR EXISTS (SELECT 1 FROM {LEDGER} c WHERE c.delivery_id IN ({marks}) "
        f"AND c.customer_id = r.customer_id AND {other}))",
        list(others),
    )


def _clicked_link(link: int, others: list[int]) -> tuple[str, list[Any]]:
    """Clicked the link with this URL, in the source's message or another of the chain."""
    url_of = "(SELECT l.url FROM mailings_trackedlink l WHERE l.id = %s)"
    own = (
        "EXISTS (SELECT 1 FROM mailings_event e JOIN mailings_trackedlink l ON l.id = e.link_id "
        f"WHERE e.recipient_id = r.id AND e.kind = 'click' AND l.url = {url_of})"
    )
    if not others:
        return own, [link]
    marks = ", ".join(["%s"] * len(others))
    return (
        f"({own} OR EXISTS (SELECT 1 FROM {LEDGER} c JOIN mailings_event e ON e.recipient_id "
        "= c.id JOIN mailings_trackedlink l ON l.id = e.link_id WHERE "
        f"c.delivery_id IN ({marks}) AND c.customer_id = r.customer_id AND e.kind = 'click' "
        f"AND l.url = {url_of}))",
        [link, *others, link],
    )


def mail_label(mail: Mail) -> str:
    """A re-delivery mail's audience in words, for its page and report."""
    spec = mail.audience or {}
    link_name = ""
    if spec.get("link"):
        link = TrackedLink.objects.filter(pk=spec["link"]).first()
        link_name = (link.name or link.url) if link else str(spec["link"])
    return label(spec.get("audience", ""), link_name)
