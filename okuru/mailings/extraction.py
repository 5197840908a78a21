"""Use of measurement results (効果測定結果の利用): route 4 of re-delivery.

The operator picks past deliveries (several, across mails, each started within the last 3
months), a delivery-eligible database view and a customer set over the deliveries' outcomes —
opened / did not open, clicked / did not click (any link, or one link of those deliveries),
had an error / had no error — combined with AND or OR; no condition means every recipient.
The customers are frozen into a ``FrozenList`` by a background job; when it is ready the
operator gets an in-app notice and an e-mail from ``OKURU_SUPPORT_FROM``, and "continue" opens a
new spot delivery with the list as its target (duplicate rule "ignore").

Named actions, used by the screens, the API and the CLI alike:

* ``start_extraction`` checks the choice, creates the ``Extraction`` and its job;
* ``run_extraction`` (the job) writes the list by ``INSERT … SELECT`` inside the database;
* ``discard_extraction`` drops an unused list; ``purge`` drops lists past the retention window
  (called with the purge of per-recipient ledger detail).

Semantics over several deliveries are those of the delivery history condition
(``targeting.py``): a positive condition holds when it holds for the customer's row in any of
the deliveries; a negative one means "was sent at least one of them and the positive holds for
none" (did not open = sent and opened none). Customers deleted from the master database are not
in the list; the exclusions (refusal, unsubscribe, list cleaning, error count) apply when the
spot delivery is sent, not here, so a change after the extraction still counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.db.models import Prefetch, QuerySet
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from okuru.accounts import audit, jobs
from okuru.accounts.models import Job, Notification
from okuru.customers import filters
from okuru.customers.fields import FieldSpec, catalogue
from okuru.customers.models import View
from okuru.mailings import targeting
from okuru.mailings.models import (
    Delivery,
    Extraction,
    FrozenList,
    FrozenListMember,
    Mail,
    TrackedLink,
)

log = logging.getLogger(__name__)
Actor = Any  # HttpRequest | Operator | None, as okuru.accounts.audit.log takes it
S = Extraction.Status
JOB_KIND = "extraction"
CONDITIONS = ("opened", "not_opened", "clicked", "not_clicked", "errored", "not_errored")
CONDITION_LABELS = {
    "opened": pgettext_lazy("customer set", "Opened"),
    "not_opened": pgettext_lazy("customer set", "Did not open"),
    "clicked": pgettext_lazy("customer set", "Clicked"),
    "not_clicked": pgettext_lazy("customer set", "Did not click"),
    "errored": pgettext_lazy("customer set", "Had an error"),
    "not_errored": pgettext_lazy("customer set", "Had no error"),
}
MAX_DELIVERIES = 50
# Customer ids per INSERT … SELECT: each chunk is one short write transaction, so the job's
# progress is visible between chunks and other writers (the tracking drain, senders) get turns.
CHUNK = 250_000


def _condition_label(code: str) -> str:
    return str(CONDITION_LABELS[code])


# ---------------------------------------------------------------------------------------------
# The operator's choice, checked


class Choice:
    """What an extraction is made of, checked: the sources, the view, the customer set."""

    def __init__(
        self,
        deliveries: list[Delivery],
        view: View,
        conditions: list[str],
        match: str,
        link: TrackedLink | None,
    ) -> None:
        self.deliveries, self.view, self.conditions = deliveries, view, conditions
        self.match, self.link = match, link

    @property
    def delivery_ids(self) -> list[int]:
        return [d.pk for d in self.deliveries]


def _ids(values: Iterable[Any], what: str) -> list[int]:
    out = []
    for v in values:
        try:
            out.append(int(v))
        except (TypeError, ValueError):
            raise ValidationError(
                _("Not a %(what)s number: %(value)s") % {"what": what, "value": v}
            ) from None
    return list(dict.fromkeys(out))


def check_sources(delivery_ids: Iterable[Any]) -> list[Delivery]:
    """The source deliveries, each sent within the last 3 months (the reason when not)."""
    ids = _ids(delivery_ids, _("delivery"))
    if not ids:
        raise ValidationError({"deliveries": _("Choose at least one past delivery.")})
    if len(ids) > MAX_DELIVERIES:
        raise ValidationError(
            {"deliveries": _("Choose at most %(n)s deliveries.") % {"n": MAX_DELIVERIES}}
        )
    found = {d.pk: d for d in Delivery.objects.select_related("mail").filter(pk__in=ids)}
    cutoff = targeting.source_cutoff()
    problems = []
    for i in ids:
        d = found.get(i)
        if d is None:
            problems.append(_("No such delivery: %(id)s") % {"id": i})
        elif d.started_at is None:
            problems.append(_("Delivery #%(id)s has not been sent.") % {"id": i})
        elif d.started_at < cutoff:
            problems.append(
                _(
                    "Delivery #%(id)s was sent more than 3 months ago and cannot be used "
                    "as a source."
                )
                % {"id": i}
            )
    if problems:
        raise ValidationError({"deliveries": problems})
    return [found[i] for i in ids]


def check_view(view: Any) -> View:
    """A delivery-eligible database view, by object, id or name."""
    if isinstance(view, View):
        found: View | None = view
    elif view in (None, ""):
        raise ValidationError({"view": _("Choose a database view.")})
    else:
        text = str(view).strip()
        found = View.objects.filter(name=text).first()
        if found is None and text.isdigit():
            found = View.objects.filter(pk=int(text)).first()
        if found is None:
            raise ValidationError({"view": _("No such database view: %(name)s") % {"name": text}})
    if not found.is_delivery_eligible:
        raise ValidationError(
            {
                "view": _(
                    "The view %(name)s cannot be used for delivery: it lacks an address, its "
                    "error count, the refusal flag or the unsubscribe flags."
                )
                % {"name": found.name}
            }
        )
    return found


def check_conditions(conditions: Iterable[str], match: str) -> list[str]:
    out: list[str] = []
    for c in conditions:
        c = str(c).strip()
        if c not in CONDITIONS:
            raise ValidationError(
                {
                    "conditions": _("Unknown condition %(cond)s: use %(choices)s.")
                    % {"cond": c, "choices": ", ".join(CONDITIONS)}
                }
            )
        if c not in out:
            out.append(c)
    if match not in Extraction.Match.values:
        raise ValidationError(
            {"match": _("Unknown match %(match)s: use all or any.") % {"match": match}}
        )
    return out


def check_link(link: Any, deliveries: list[Delivery], conditions: list[str]) -> TrackedLink | None:
    if link in (None, ""):
        return None
    (link_id,) = _ids([link], _("link"))
    found = TrackedLink.objects.filter(
        pk=link_id, mail_id__in=[d.mail_id for d in deliveries]
    ).first()
    if found is None:
        raise ValidationError(
            {"link": _("Link %(id)s is not in the mails of these deliveries.") % {"id": link_id}}
        )
    if not {"clicked", "not_clicked"} & set(conditions):
        raise ValidationError(
            {"link": _("A link can only be chosen with clicked or did not click.")}
        )
    return found


def check(
    delivery_ids: Iterable[Any],
    view: Any,
    conditions: Iterable[str] = (),
    match: str = "all",
    link: Any = None,
) -> Choice:
    """Check an operator's choice; raises ValidationError keyed by what is wrong."""
    deliveries = check_sources(delivery_ids)
    found_view = check_view(view)
    conds = check_conditions(conditions, match or "all")
    return Choice(
        deliveries, found_view, conds, match or "all", check_link(link, deliveries, conds)
    )


# ---------------------------------------------------------------------------------------------
# The SQL


def _flag(expr: str) -> str:
    return f"MAX(CASE WHEN {expr} THEN 1 ELSE 0 END)"


LINK_CLICKED = (
    "r.status = 'sent' AND EXISTS (SELECT 1 FROM mailings_event e WHERE "
    "e.recipient_id = r.id AND e.kind = 'click' AND e.link_id = %s)"
)


def _positive(base: str, choice: Choice) -> tuple[str, list[Any]]:
    if base == "clicked" and choice.link is not None:
        return LINK_CLICKED, [choice.link.pk]
    return targeting.POSITIVE[base], []


def customer_set_sql(
    choice: Choice, specs: dict[str, FieldSpec], id_range: tuple[int, int] | None = None
) -> tuple[str, list[Any]]:
    """SELECT cid: the customers of ``choice`` (optionally only ids in [lo, hi)).

    Several deliveries: one GROUP BY over their ledger rows, instead of one ``IN (SELECT …)``
    per condition (as the delivery history filter does), because every condition is then
    answered from the same rows, read once in (delivery, customer) index order, and a negative
    condition is "sent in some, positive in none" over the aggregate, which per-row subqueries
    cannot say without a second pass. The flags are MAX(CASE …), not bool_or/MAX(boolean), so
    the text is the same on SQLite and PostgreSQL.

    One delivery (the common case): a customer has at most one ledger row there (the unique
    (delivery, customer) index), so the conditions are plain row predicates and the GROUP BY
    is skipped: at 1,000,000 rows the grouping cost SQLite more than the insert itself.

    Either way the join to the customers table drops customers deleted since (the list holds
    only customers who still exist) and applies the view's filter."""
    ids = choice.delivery_ids
    where = f"r.delivery_id IN ({', '.join(['%s'] * len(ids))})"
    where_params: list[Any] = list(ids)
    if id_range is not None:
        where += " AND r.customer_id >= %s AND r.customer_id < %s"
        where_params += list(id_range)
    tree = {"match": "all", "conditions": [filters.parse_tree(choice.view.filter)]}
    view_where, view_params = filters.compile_filter(tree, specs)
    table = targeting.CUSTOMERS
    joiner = " AND " if choice.match == "all" else " OR "
    tests: list[str] = []
    test_params: list[Any] = []
    if len(ids) == 1:
        for cond in choice.conditions:
            positive, p = _positive(targeting.NEGATED.get(cond, cond), choice)
            if cond in targeting.NEGATED:
                tests.append(f"({targeting.POSITIVE['sent']} AND NOT ({positive}))")
            else:
                tests.append(f"({positive})")
            test_params += p
        outcome = "(" + joiner.join(tests) + ")" if tests else "1=1"
        sql = (
            f"SELECT r.customer_id AS cid FROM {targeting.LEDGER} r "
            f'JOIN {table} ON "{table}"."id" = r.customer_id '
            f"WHERE {where} AND {outcome} AND ({view_where})"
        )
        return sql, where_params + test_params + view_params
    flags: dict[str, tuple[str, list[Any]]] = {"sent": (targeting.POSITIVE["sent"], [])}
    for cond in choice.conditions:
        base = targeting.NEGATED.get(cond, cond)
        flags[base] = _positive(base, choice)
    columns, flag_params = [], []
    for name, (expr, p) in flags.items():
        columns.append(f"{_flag(expr)} AS f_{name}")
        flag_params += p
    for cond in choice.conditions:
        if cond in targeting.NEGATED:
            tests.append(f"(s.f_sent = 1 AND s.f_{targeting.NEGATED[cond]} = 0)")
        else:
            tests.append(f"s.f_{cond} = 1")
    outcome = "(" + joiner.join(tests) + ")" if tests else "1=1"
    sql = (
        f"SELECT s.cid AS cid FROM (SELECT r.customer_id AS cid, {', '.join(columns)} "
        f"FROM {targeting.LEDGER} r WHERE {where} GROUP BY r.customer_id) s "
        f'JOIN {table} ON "{table}"."id" = s.cid '
        f"WHERE {outcome} AND ({view_where})"
    )
    return sql, flag_params + where_params + view_params


def _id_bounds(delivery_ids: list[int]) -> tuple[int, int] | None:
    marks = ", ".join(["%s"] * len(delivery_ids))
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT MIN(customer_id), MAX(customer_id) FROM {targeting.LEDGER} "
            f"WHERE delivery_id IN ({marks})",
            delivery_ids,
        )
        lo, hi = cur.fetchone()
    return None if lo is None else (lo, hi + 1)


def expected(choice: Choice) -> dict[str, Any]:
    """The confirmation page's figures: how many customers the list will hold, and how many of
    them an exclusion would stop if the mail were sent now (default threshold, no topic: the
    mail decides those, and they apply again when it is sent)."""
    specs = catalogue()
    inner, params = customer_set_sql(choice, specs)
    reason, rparams = targeting.reason_sql({"address_field": "email", "error_threshold": 5})
    table = targeting.CUSTOMERS
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT {reason} AS reason, COUNT(*) FROM ({inner}) x "
            f'JOIN {table} ON "{table}"."id" = x.cid GROUP BY 1',
            rparams + params,
        )
        by_reason = dict(cur.fetchall())
    count = sum(by_reason.values())
    eligible = by_reason.pop(None, 0)
    return {"count": count, "excluded_now": by_reason, "deliverable_now": eligible}


def fill_list(list_id: int, choice: Choice, progress: Callable[..., None] | None = None) -> int:
    """Write the members of ``list_id``: INSERT … SELECT in chunks of Customer IDs (nothing
    passes through Python). Returns how many."""
    specs = catalogue()
    bounds = _id_bounds(choice.delivery_ids)
    if bounds is None:
        return 0
    lo, hi = bounds
    total = 0
    for start in range(lo, hi, CHUNK):
        select, params = customer_set_sql(choice, specs, (start, min(start + CHUNK, hi)))
        with transaction.atomic():
            with connection.cursor() as cur:
                cur.execute(
                    "INSERT INTO mailings_frozenlistmember (list_id, customer_id) "
                    f"SELECT %s, m.cid FROM ({select}) m",
                    [list_id, *params],
                )
                total += cur.rowcount
        if progress is not None:
            progress(min(start + CHUNK, hi) - lo)
    return total


# ---------------------------------------------------------------------------------------------
# Actions


def _operator(actor: Actor) -> Any:
    user = getattr(actor, "user", actor)
    return user if getattr(user, "is_authenticated", False) else None


def start_extraction(choice: Choice, actor: Actor, *, enqueue: bool = True) -> Extraction:
    """Record the extraction and its job (queued on commit; ``enqueue=False``: the caller runs
    it in the foreground with ``jobs.run``)."""
    operator = _operator(actor)
    with transaction.atomic(durable=True):
        job = jobs.start(
            JOB_KIND,
            operator,
            {},
            source_ip=audit.client_ip(actor if hasattr(actor, "META") else None),
            enqueue=enqueue,
        )
        extraction = Extraction.objects.create(
            operator=operator,
            view=choice.view,
            view_name=choice.view.name,
            conditions=choice.conditions,
            match=choice.match,
            link=choice.link,
            job=job,
        )
        extraction.deliveries.set(choice.deliveries)
        job.params = {"extraction": extraction.pk}
        job.save(update_fields=["params"])
        audit.log(
            actor,
            "extraction.start",
            f"extraction:{extraction.pk}",
            {
                "deliveries": choice.delivery_ids,
                "view": choice.view.pk,
                "conditions": choice.conditions,
                "match": choice.match,
                "link": choice.link.pk if choice.link else None,
            },
        )
    return extraction


def choice_of(extraction: Extraction) -> Choice:
    """The extraction's choice, checked again (a source may have left the 3-month window or the
    view may have changed since it was started)."""
    if extraction.view is None:
        raise ValidationError(_("The database view of this extraction was deleted."))
    deliveries = check_sources(extraction.deliveries.values_list("id", flat=True))
    return Choice(
        deliveries,
        check_view(extraction.view),
        list(extraction.conditions),
        extraction.match,
        extraction.link,
    )


@jobs.runner(JOB_KIND, lambda: str(gettext_lazy("Extraction")), notify=lambda job: notify(job))
def extraction_job(job: Job, progress: jobs.Progress) -> dict[str, Any]:
    extraction = Extraction.objects.select_related("view", "link").get(pk=job.params["extraction"])
    return run_extraction(extraction, progress)


def run_extraction(extraction: Extraction, progress: jobs.Progress) -> dict[str, Any]:
    """Write the extraction's list; ready on success, failed (members removed) otherwise."""
    if extraction.status != S.EXTRACTING:
        raise jobs.JobError(
            _("Extraction #%(id)s is %(status)s.")
            % {"id": extraction.pk, "status": extraction.get_status_display()}
        )
    frozen = None
    try:
        try:
            choice = choice_of(extraction)
        except ValidationError as e:
            raise jobs.JobError(" ".join(e.messages)) from None
        bounds = _id_bounds(choice.delivery_ids)
        progress.total(bounds[1] - bounds[0] if bounds else 0)
        frozen = FrozenList.objects.create(
            name=_("Extraction #%(id)s") % {"id": extraction.pk},
            source={"extraction": extraction.pk},
            created_by=extraction.operator,
        )
        n = fill_list(frozen.pk, choice, progress)
        with transaction.atomic(durable=True):
            FrozenList.objects.filter(pk=frozen.pk).update(size=n)
            done = Extraction.objects.filter(pk=extraction.pk, status=S.EXTRACTING).update(
                status=S.READY, count=n, recipient_list=frozen, finished=timezone.now()
            )
            if done != 1:
                raise jobs.JobError(_("Extraction #%(id)s was discarded.") % {"id": extraction.pk})
            audit.log(
                extraction.operator,
                "extraction.ready",
                f"extraction:{extraction.pk}",
                {"count": n, "recipient_list": frozen.pk},
            )
    except Exception as e:
        error = str(e) if isinstance(e, jobs.JobError) else repr(e)
        if frozen is not None:
            _drop_list(frozen.pk)
        Extraction.objects.filter(pk=extraction.pk, status=S.EXTRACTING).update(
            status=S.FAILED, error=error[:2000], finished=timezone.now()
        )
        raise
    extraction.refresh_from_db()
    return {"extraction": extraction.pk, "count": n, "recipient_list": frozen.pk}


def _drop_list(list_id: int) -> None:
    FrozenListMember.objects.filter(list_id=list_id).delete()
    FrozenList.objects.filter(pk=list_id, mail__isnull=True).delete()


def mails_fed(extraction: Extraction) -> list[Mail]:
    if extraction.recipient_list_id is None:
        return []
    return list(Mail.objects.filter(recipient_list_id=extraction.recipient_list_id))


def discard_extraction(extraction: Extraction, actor: Actor) -> Extraction:
    """Drop the list of an extraction that no mail uses; the record stays, "discarded"."""
    with transaction.atomic(durable=True):
        row = Extraction.objects.select_for_update().get(pk=extraction.pk)
        if row.status not in (S.READY, S.FAILED):
            raise ValidationError(
                _("Extraction #%(id)s is %(status)s; only a ready or failed one can be discarded.")
                % {"id": row.pk, "status": row.get_status_display()}
            )
        if (
            row.recipient_list_id
            and Mail.objects.filter(recipient_list_id=row.recipient_list_id).exists()
        ):
            raise ValidationError(
                _(
                    "Extraction #%(id)s is used by a mail and cannot be discarded. Delete or "
                    "change the mail first."
                )
                % {"id": row.pk}
            )
        list_id = row.recipient_list_id
        Extraction.objects.filter(pk=row.pk).update(status=S.DISCARDED, recipient_list=None)
        if list_id:
            _drop_list(list_id)
        audit.log(actor, "extraction.discard", f"extraction:{row.pk}", {"recipient_list": list_id})
    extraction.refresh_from_db()
    return extraction


def purgeable(now: datetime | None = None) -> QuerySet[Extraction]:
    """Ready extractions older than the retention window whose list no delivery still has to
    freeze (a reserved delivery reads the list when it starts)."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.MAILINGS_RETENTION_DAYS)
    waiting = Delivery.objects.filter(status=Delivery.Status.RESERVED).values(
        "mail__recipient_list"
    )
    return Extraction.objects.filter(status=S.READY, created__lt=cutoff).exclude(
        recipient_list__in=waiting
    )


def purge(now: datetime | None = None) -> int:
    """Drop the members of lists past the retention window (with the ledger detail). A list a
    mail points at stays, empty, so that mail's page still says where its recipients came
    from. Returns how many extractions were purged."""
    n = 0
    for extraction in purgeable(now).only("id", "recipient_list_id"):
        with transaction.atomic(durable=True):
            done = Extraction.objects.filter(pk=extraction.pk, status=S.READY).update(
                status=S.PURGED
            )
            if done and extraction.recipient_list_id:
                FrozenListMember.objects.filter(list_id=extraction.recipient_list_id).delete()
                FrozenList.objects.filter(pk=extraction.recipient_list_id).update(size=0)
            if done:
                audit.log(None, "extraction.purge", f"extraction:{extraction.pk}")
                n += done
    return n


def check_recipient_list(mail: Mail) -> None:
    """A mail may target only the list of a ready extraction (or a list not made by one)."""
    if not mail.recipient_list_id:
        return
    extraction = Extraction.objects.filter(recipient_list_id=mail.recipient_list_id).first()
    if extraction is None:
        if not FrozenList.objects.filter(pk=mail.recipient_list_id).exists():
            raise ValidationError(
                {
                    "recipient_list": _("No recipient list with id %(id)s.")
                    % {"id": mail.recipient_list_id}
                }
            )
        return
    if extraction.status != S.READY:
        raise ValidationError(
            {
                "recipient_list": _(
                    "The recipient list of extraction #%(id)s is %(status)s and cannot be used."
                )
                % {"id": extraction.pk, "status": extraction.get_status_display()}
            }
        )


def mail_defaults(mail: Mail, given: Iterable[str]) -> Mail:
    """A new mail targeting an extraction's list gets the extraction's defaults for what the
    caller did not set: a spot delivery, one message per record (重複を無視して配信)."""
    if not mail.recipient_list_id:
        return mail
    given = set(given)
    if "kind" not in given:
        mail.kind = Mail.Kind.SPOT
    if "duplicate_rule" not in given:
        mail.duplicate_rule = Mail.DuplicateRule.IGNORE
    return mail


def new_mail_for(extraction: Extraction, owner: Any) -> Mail:
    """The unsaved spot delivery that "continue" opens: the list as target, the defaults set."""
    if extraction.status != S.READY or extraction.recipient_list_id is None:
        raise ValidationError(
            _("Extraction #%(id)s is %(status)s; only a ready one can be continued.")
            % {"id": extraction.pk, "status": extraction.get_status_display()}
        )
    mail = Mail(
        kind=Mail.Kind.SPOT,
        recipient_list_id=extraction.recipient_list_id,
        duplicate_rule=Mail.DuplicateRule.IGNORE,
        owner=owner,
        name=_("Use of measurement results #%(id)s") % {"id": extraction.pk},
    )
    return mail


# ---------------------------------------------------------------------------------------------
# Listing and showing


def extractions() -> QuerySet[Extraction]:
    """Every extraction, newest first, with what the list page shows (no query per row)."""
    return Extraction.objects.select_related("operator", "view", "link", "job").prefetch_related(
        Prefetch("deliveries", queryset=Delivery.objects.select_related("mail").order_by("id")),
        Prefetch("recipient_list__mail_set", queryset=Mail.objects.order_by("id")),
    )


def fed(extraction: Extraction) -> list[Mail]:
    """The mails the extraction fed, from the prefetch of ``extractions()``."""
    if extraction.recipient_list is None:
        return []
    return list(extraction.recipient_list.mail_set.all())


def describe_conditions(extraction: Extraction | Choice) -> str:
    """The customer set in words: "Opened, Did not click (link: …) — all of them"."""
    conds = list(extraction.conditions)
    if not conds:
        return _("Every recipient (no condition)")
    labels = []
    for c in conds:
        label = _condition_label(c)
        if c in ("clicked", "not_clicked") and extraction.link is not None:
            link = extraction.link
            label = _("%(cond)s (link: %(link)s)") % {"cond": label, "link": link.name or link.url}
        labels.append(label)
    if len(labels) == 1:
        return labels[0]
    if extraction.match == "any":
        return _("Any of: %(list)s") % {"list": ", ".join(labels)}
    return _("All of: %(list)s") % {"list": ", ".join(labels)}


def as_json(extraction: Extraction) -> dict[str, Any]:
    """An extraction as the API and the CLI show it."""
    job = extraction.job
    return {
        "id": extraction.pk,
        "status": extraction.status,
        "count": extraction.count,
        "recipient_list_id": extraction.recipient_list_id,
        "deliveries": [
            {
                "id": d.pk,
                "mail": d.mail_id,
                "mail_name": d.mail.name,
                "started_at": d.started_at,
            }
            for d in extraction.deliveries.all()
        ],
        "view_id": extraction.view_id,
        "view": extraction.view_name,
        "conditions": list(extraction.conditions),
        "match": extraction.match,
        "link_id": extraction.link_id,
        "description": describe_conditions(extraction),
        "operator": extraction.operator.get_username() if extraction.operator else None,
        "created": extraction.created,
        "finished": extraction.finished,
        "error": extraction.error,
        "job_id": extraction.job_id,
        "progress_done": job.progress_done if job else None,
        "progress_total": job.progress_total if job else None,
        "mails": [m.pk for m in fed(extraction)],
    }


def get(extraction_id: int) -> Extraction | None:
    return extractions().filter(pk=extraction_id).first()


# ---------------------------------------------------------------------------------------------
# Notice and e-mail


def detail_path(extraction: Extraction) -> str:
    return reverse("mailings:extraction", args=[extraction.pk])


def notify(job: Job) -> None:
    """On success: an in-app notice and the "ready" e-mail in the operator's language (the job
    runs under it). On failure: the plain job notice, with the reason."""
    extraction = Extraction.objects.filter(pk=job.params.get("extraction")).first()
    if extraction is None or extraction.status != S.READY:
        jobs.notify_finished(job)
        return
    operator = job.operator
    text = _("Extraction #%(id)s is ready: %(count)s customers.") % {
        "id": extraction.pk,
        "count": number_format(extraction.count, force_grouping=True),
    }
    Notification.objects.create(operator=operator, text=text[:500], link=detail_path(extraction))
    if settings.NOTIFY_BY_EMAIL and operator.email:
        try:
            ready_email(get(extraction.pk)).send()
        except OSError:
            log.warning("could not e-mail the ready notice of extraction %s", extraction.pk)


def ready_email(extraction: Extraction) -> EmailMessage:
    """The "ready" e-mail, from the support sender, in the active language."""
    operator = extraction.operator
    ctx = {
        "extraction": extraction,
        "operator_name": operator.get_full_name() or operator.get_username(),
        "username": operator.get_username(),
        "created": timezone.localtime(extraction.created),
        "deliveries": [
            {
                "name": d.mail.name,
                "id": d.pk,
                "started": timezone.localtime(d.started_at) if d.started_at else None,
            }
            for d in extraction.deliveries.all()
        ],
        "view": extraction.view_name,
        "conditions": describe_conditions(extraction),
        "count": number_format(extraction.count, force_grouping=True),
        "link": settings.SITE_ROOT.rstrip("/") + detail_path(extraction),
    }
    subject = _("[Mail delivery using delivery results] Ready to use")
    body = render_to_string("mailings/emails/extraction_ready.txt", ctx).rstrip("\n") + "\n"
    return EmailMessage(subject, body, settings.OKURU_SUPPORT_FROM, [operator.email])
