"""Who a delivery goes to: matching, exclusions, the duplicate rule, and freezing the ledger.

Three stages, each counted for the preview and for the delivery's summary:

1. **matched** — basic mail: the master database through the mail's filter tree; spot: the
   view's filter (the view must be delivery-eligible) AND the customer set, or the members of a
   frozen list that still exist (members whose customer was deleted count as ``deleted``).
2. **exclusions** — one reason per customer, first match wins so the counts add up: no address,
   refusal flag, unsubscribed from the mail's topic, list cleaning, error count ≥ threshold.
3. **duplicate rule** — ``ignore``: one message per record; ``newest``: one per address
   (case-insensitive), the most recently updated record (then the highest Customer ID).

The SQL is written by hand because each stage must stream: the ledger is filled by one
``INSERT … SELECT`` inside the database, never through a Python list of ids, so freezing a
million recipients costs one statement and no memory in the worker. Every function here works
on SQLite and PostgreSQL (window functions exist on both).

Behaviour-history conditions plug into the customers filter engine as kind
``delivery_history``::

    {"kind": "delivery_history", "delivery": ID | "mail": ID,
     "event": "sent" | "opened" | "not_opened" | "clicked" | "not_clicked"
              | "errored" | "not_errored",
     "link": TRACKED_LINK_ID}   # optional, with clicked / not_clicked

Only deliveries started within the last 3 months are accepted as a source. Negative events
mean "was sent and did not …": not opened = sent and never opened.

A re-delivery's mail has an ``audience`` (``audiences.py``): stage 1 is then its filter AND
"is in the audience of the source delivery"; audience members whose customer was deleted count
as ``deleted``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _

from okuru.customers import filters, sql
from okuru.customers.fields import FieldSpec, catalogue
from okuru.customers.filters import FilterError
from okuru.customers.models import View
from okuru.mailings import audiences
from okuru.mailings.models import Delivery

CUSTOMERS = sql.TABLE
LEDGER = "mailings_recipient"
EVENTS = ("sent", "opened", "not_opened", "clicked", "not_clicked", "errored", "not_errored")
SOURCE_MONTHS = 3
EXCLUSION_REASONS = (
    "deleted",
    "no_address",
    "refused",
    "unsubscribed",
    "list_cleaning",
    "error_count",
    "duplicate",
)


def source_cutoff(now: datetime | None = None) -> datetime:
    """The start of the 3-month window of deliveries that may be a source."""
    now = timezone.localtime(now or timezone.now())
    month = now.month - SOURCE_MONTHS
    year = now.year
    if month < 1:
        month += 12
        year -= 1
    day = now.day
    while True:  # 31 May - 3 months = 28/29 Feb
        try:
            return now.replace(year=year, month=month, day=day)
        except ValueError:
            day -= 1


# ---------------------------------------------------------------------------------------------
# The delivery_history condition


def source_deliveries(cond: dict[str, Any]) -> list[int]:
    """The delivery ids a condition refers to, each checked against the 3-month window."""
    cutoff = source_cutoff()
    if cond.get("delivery") not in (None, ""):
        try:
            delivery_id = int(cond["delivery"])
        except (TypeError, ValueError):
            raise FilterError(
                _("Not a delivery: %(value)s") % {"value": cond["delivery"]}
            ) from None
        d = Delivery.objects.filter(pk=delivery_id).only("id", "started_at").first()
        if d is None:
            raise FilterError(_("No such delivery: %(id)s") % {"id": delivery_id})
        if d.started_at is None:
            raise FilterError(_("Delivery #%(id)s has not been sent.") % {"id": delivery_id})
        if d.started_at < cutoff:
            raise FilterError(
                _(
                    "Delivery #%(id)s was sent more than 3 months ago and cannot be used "
                    "as a source."
                )
                % {"id": delivery_id}
            )
        return [d.id]
    if cond.get("mail") not in (None, ""):
        try:
            mail_id = int(cond["mail"])
        except (TypeError, ValueError):
            raise FilterError(_("Not a mail: %(value)s") % {"value": cond["mail"]}) from None
        ids = list(
            Delivery.objects.filter(mail_id=mail_id, started_at__gte=cutoff).values_list(
                "id", flat=True
            )
        )
        if not ids:
            raise FilterError(
                _("Mail #%(id)s has no delivery in the last 3 months.") % {"id": mail_id}
            )
        return ids
    raise FilterError(_("A delivery history condition needs a delivery or a mail."))


# Why IN (SELECT customer_id …): the (delivery_id, customer_id) unique index answers the
# subquery from the index alone, and the planner turns it into a semi-join on both databases.
POSITIVE = {
    "sent": "r.status = 'sent'",
    "opened": "r.status = 'sent' AND r.first_open_at IS NOT NULL",
    "clicked": "r.status = 'sent' AND r.click_count > 0",
    # An asynchronous bounce may mark a row that was accepted at SMTP time: error_kind says so.
    "errored": "(r.status = 'failed' OR r.error_kind <> '')",
}
NEGATED = {"not_opened": "opened", "not_clicked": "clicked", "not_errored": "errored"}


def compile_delivery_history(cond: dict[str, Any]) -> tuple[str, list[Any]]:
    event = cond.get("event", "sent")
    if event not in EVENTS:
        raise FilterError(_("Unknown delivery history event: %(event)s") % {"event": event})
    ids = source_deliveries(cond)
    marks = ", ".join(["%s"] * len(ids))
    base = event if event not in NEGATED else NEGATED[event]
    link = cond.get("link")
    if link not in (None, "") and base != "clicked":
        raise FilterError(_("A link can only be chosen with clicked or not clicked."))
    params: list[Any] = list(ids)
    if link not in (None, ""):
        positive = (
            "r.status = 'sent' AND EXISTS (SELECT 1 FROM mailings_event e WHERE "
            "e.recipient_id = r.id AND e.kind = 'click' AND e.link_id = %s)"
        )
        try:
            params.append(int(link))
        except (TypeError, ValueError):
            raise FilterError(_("Not a link: %(value)s") % {"value": link}) from None
    else:
        positive = POSITIVE[base]
    subquery = f"SELECT r.customer_id FROM {LEDGER} r WHERE r.delivery_id IN ({marks}) AND "
    part = f'"{CUSTOMERS}"."id" IN ({subquery}{positive})'
    if event not in NEGATED:
        return f"({part})", params
    sent = f'"{CUSTOMERS}"."id" IN ({subquery}r.status = \'sent\')'
    return f"({sent} AND NOT {part})", list(ids) + params


filters.register_kind("delivery_history", compile_delivery_history)


# ---------------------------------------------------------------------------------------------
# Targeting snapshot -> SQL


def snapshot(mail: Any) -> dict[str, Any]:
    """The targeting of ``mail`` as a delivery freezes it at reservation or start."""
    return {
        "kind": mail.kind,
        "filter": mail.filter or {},
        "view_id": mail.view_id,
        "customer_set": mail.customer_set or {},
        "recipient_list_id": mail.recipient_list_id,
        "duplicate_rule": mail.duplicate_rule,
        "error_threshold": mail.error_threshold,
        "address_field": mail.address_field,
        "topic_key": mail.topic.key if mail.topic_id else "",
        "audience": getattr(mail, "audience", None) or {},
    }


def matched_where(targeting: dict[str, Any], specs: dict[str, FieldSpec]) -> tuple[str, list]:
    """WHERE clause over the customers table for stage 1."""
    if targeting.get("recipient_list_id"):
        return (
            f'"{CUSTOMERS}"."id" IN (SELECT m.customer_id FROM mailings_frozenlistmember m '
            f"WHERE m.list_id = %s)",
            [targeting["recipient_list_id"]],
        )
    if targeting.get("kind") == "spot":
        view = View.objects.filter(pk=targeting.get("view_id")).first()
        if view is None:
            raise FilterError(_("A spot delivery needs a view or a recipient list."))
        if not view.is_delivery_eligible:
            raise FilterError(
                _(
                    "The view %(name)s cannot be used for delivery: it lacks an address, its "
                    "error count, the refusal flag or the unsubscribe flags."
                )
                % {"name": view.name}
            )
        tree: dict[str, Any] = {"match": "all", "conditions": [filters.parse_tree(view.filter)]}
        if targeting.get("customer_set"):
            tree["conditions"].append(_customer_set_tree(targeting["customer_set"]))
        return filters.compile_filter(tree, specs)
    return filters.compile_filter(targeting.get("filter"), specs)


def _customer_set_tree(customer_set: dict[str, Any]) -> dict[str, Any]:
    """A customer set is a tree of delivery_history conditions only."""
    tree = filters.parse_tree(customer_set)

    def check(node: dict[str, Any]) -> None:
        for cond in node.get("conditions", []):
            if isinstance(cond, dict) and "conditions" in cond:
                check(cond)
            elif not isinstance(cond, dict) or cond.get("kind") != "delivery_history":
                raise FilterError(_("A customer set may only hold delivery history conditions."))

    check(tree)
    return tree


def _address_columns(targeting: dict[str, Any]) -> tuple[str, str]:
    if targeting.get("address_field") == "mobile_email":
        return f'"{CUSTOMERS}"."mobile_email"', f'"{CUSTOMERS}"."mobile_error_count"'
    return f'"{CUSTOMERS}"."email"', f'"{CUSTOMERS}"."email_error_count"'


def reason_sql(targeting: dict[str, Any], list_cleaning: bool = True) -> tuple[str, list[Any]]:
    """A CASE naming the first exclusion reason of a customer row, NULL when it may receive.

    The order is the order operators read the counts in; one reason per row so the counts add
    up to matched - eligible. ``list_cleaning=False`` leaves out the list-cleaning probe (an
    index probe a row, about a third of a preview's time): for a preview when the list is
    empty, where it cannot match anybody."""
    addr, errors = _address_columns(targeting)
    params: list[Any] = []
    cases = [f"WHEN COALESCE({addr}, '') = '' THEN 'no_address'"]
    cases.append(f'WHEN "{CUSTOMERS}"."refused" = %s THEN \'refused\'')
    params.append(True)
    if targeting.get("topic_key"):
        contains = sql.json_array_contains_any(f'"{CUSTOMERS}"."unsubscribed"', 1)
        cases.append(f"WHEN {contains} THEN 'unsubscribed'")
        params.append(targeting["topic_key"])
    if list_cleaning:
        # An address in list cleaning is NOT excluded here: it enters the ledger and the
        # send-time screen records it as a list-cleaning delivery error (+99), which is how the
        # delivery's report shows it. Before the error-count case, so a reset count cannot hide
        # it either.
        cases.append(
            f"WHEN EXISTS (SELECT 1 FROM mailings_listcleaning l WHERE l.address = LOWER({addr})) "
            "THEN NULL"
        )
    cases.append(f"WHEN {errors} >= %s THEN 'error_count'")
    params.append(int(targeting.get("error_threshold") or 5))
    return "CASE " + " ".join(cases) + " ELSE NULL END", params


def eligible_sql(
    targeting: dict[str, Any], specs: dict[str, FieldSpec], list_cleaning: bool = True
) -> tuple[str, list]:
    """SELECT id, address, reason of every matched customer (stage 1 + 2)."""
    where, wparams = matched_where(targeting, specs)
    reason, rparams = reason_sql(targeting, list_cleaning)
    addr, _errors = _address_columns(targeting)
    if targeting.get("audience"):
        return _audience_eligible_sql(targeting, where, wparams, reason, rparams, addr)
    return (
        f'SELECT "{CUSTOMERS}"."id" AS id, {addr} AS address, '
        f'"{CUSTOMERS}"."updated_at" AS updated_at, {reason} AS reason '
        f"FROM {CUSTOMERS} WHERE {where}",
        rparams + wparams,
    )


def _audience_eligible_sql(
    targeting: dict[str, Any], where: str, wparams: list, reason: str, rparams: list, addr: str
) -> tuple[str, list]:
    """Stage 1 + 2 of a re-delivery: driven from the source's ledger rows in the audience,
    each joined to its customer by primary key. Why from the ledger: one pass over the
    source's rows (a single index range) gives both the customers and the audience members
    deleted since (no customer row: reason ``deleted``), where a semi-join from the customers
    side would need a second pass over the ledger to count the deleted."""
    source_deliveries({"delivery": targeting["audience"].get("delivery")})  # the 3-month rule
    audience, aparams = audiences.ledger_sql(targeting["audience"], source_cutoff())
    return (
        f'SELECT "{CUSTOMERS}"."id" AS id, {addr} AS address, '
        f'"{CUSTOMERS}"."updated_at" AS updated_at, CASE WHEN "{CUSTOMERS}"."id" IS NULL '
        f"THEN 'deleted' ELSE {reason} END AS reason FROM ({audience}) a LEFT JOIN {CUSTOMERS} "
        f'ON "{CUSTOMERS}"."id" = a.customer_id WHERE "{CUSTOMERS}"."id" IS NULL OR ({where})',
        rparams + aparams + wparams,
    )


def final_sql(targeting: dict[str, Any], specs: dict[str, FieldSpec]) -> tuple[str, list]:
    """SELECT id, address of the customers who get a message (stage 1 + 2 + 3)."""
    eligible, params = eligible_sql(targeting, specs)
    if targeting.get("duplicate_rule") == "newest":
        # ROW_NUMBER over LOWER(address): the newest record per address wins; Customer ID
        # breaks ties so the choice is the same on every run and database.
        return (
            "SELECT id, address FROM (SELECT id, address, ROW_NUMBER() OVER "
            "(PARTITION BY LOWER(address) ORDER BY updated_at DESC, id DESC) AS rn "
            f"FROM ({eligible}) el WHERE reason IS NULL) ranked WHERE rn = 1",
            params,
        )
    return f"SELECT id, address FROM ({eligible}) el WHERE reason IS NULL", params


def _list_deleted(targeting: dict[str, Any]) -> int:
    if not targeting.get("recipient_list_id"):
        return 0
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT COUNT(*) FROM mailings_frozenlistmember m WHERE m.list_id = %s AND NOT "
            f"EXISTS (SELECT 1 FROM {CUSTOMERS} c WHERE c.id = m.customer_id)",
            [targeting["recipient_list_id"]],
        )
        return cur.fetchone()[0]


def counts(targeting: dict[str, Any], specs: dict[str, FieldSpec] | None = None) -> dict:
    """Preview counts: matched, excluded by reason, after exclusions, after the duplicate rule.

    Two aggregate queries; nothing is materialised in Python."""
    specs = specs if specs is not None else catalogue()
    eligible, params = eligible_sql(targeting, specs, _list_cleaning_in_use())
    excluded = {r: 0 for r in EXCLUSION_REASONS}
    excluded["deleted"] = _list_deleted(targeting)
    with connection.cursor() as cur:
        by_reason = _count_by_reason(cur, eligible, params)
        final_count = None
        # With "one message per record" the final set is the eligible rows themselves: a
        # second pass over them would only double the time of the preview.
        if targeting.get("duplicate_rule") == "newest":
            final, fparams = final_sql(targeting, specs)
            cur.execute(f"SELECT COUNT(*) FROM ({final}) f", fparams)
            final_count = cur.fetchone()[0]
    after_exclusions = by_reason.pop(None, 0)
    if final_count is None:
        final_count = after_exclusions
    matched = after_exclusions + sum(by_reason.values()) + excluded["deleted"]
    excluded.update(by_reason)
    excluded["duplicate"] = after_exclusions - final_count
    return {
        "matched": matched,
        "excluded": excluded,
        "after_exclusions": after_exclusions,
        "after_duplicates": final_count,
    }


def _list_cleaning_in_use() -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT 1 FROM mailings_listcleaning LIMIT 1")
        return cur.fetchone() is not None


def _count_by_reason(cur: Any, eligible: str, params: list[Any]) -> dict[str | None, int]:
    """How many eligible rows have each reason (None: no reason, they receive).

    Why two forms: PostgreSQL groups with a hash aggregate, one pass. SQLite has no hash
    aggregate: GROUP BY sorts the million rows into a temporary B-tree on the reason, and its
    plan evaluates the reason's CASE (with its list-cleaning probe) twice a row. On SQLite one
    pass of conditional sums needs no sort; ``LIMIT -1`` keeps the subquery from being
    flattened into the sums, which would evaluate the CASE once per sum instead of once."""
    if connection.vendor != "sqlite":
        cur.execute(f"SELECT reason, COUNT(*) FROM ({eligible}) el GROUP BY reason", params)
        return dict(cur.fetchall())
    reasons = [r for r in EXCLUSION_REASONS if r != "duplicate"]
    sums = ", ".join(f"SUM(CASE WHEN reason = '{r}' THEN 1 ELSE 0 END)" for r in reasons)
    cur.execute(
        f"SELECT SUM(CASE WHEN reason IS NULL THEN 1 ELSE 0 END), {sums} "
        f"FROM ({eligible} LIMIT -1) el",
        params,
    )
    row = cur.fetchone()
    counted = dict(zip([None, *reasons], (n or 0 for n in row), strict=True))
    return {k: v for k, v in counted.items() if v}


def fill_ledger(delivery_id: int, targeting: dict[str, Any], specs: dict[str, FieldSpec]) -> int:
    """INSERT the ledger rows of a delivery in one statement; returns how many."""
    final, params = final_sql(targeting, specs)
    with connection.cursor() as cur:
        cur.execute(
            f"INSERT INTO {LEDGER} (delivery_id, customer_id, address, status, attempts, claim, "
            "smtp_reply, error_kind, exclusion, note, message_id, open_count, click_count) "
            f"SELECT %s, f.id, f.address, 'queued', 0, '', '', '', '', '', '', 0, 0 "
            f"FROM ({final}) f "
            "ORDER BY f.id",
            [delivery_id, *params],
        )
        return cur.rowcount


def preview(mail: Any) -> dict[str, Any]:
    return counts(snapshot(mail))
