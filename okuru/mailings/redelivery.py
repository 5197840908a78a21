"""Resend (再送信, route 5) and Re-deliver (route 6), as named actions for the screens, the API
and the CLI.

**Resend** clones a past delivery into a new draft mail: the content it sent (its content
snapshot, not the mail as edited since), its sender settings, tracking, topic, duplicate rule,
error threshold and targeting. The targeting is copied as conditions, not as a list: it is
evaluated when the new mail is sent, and the operator may narrow it first. Nothing reads the
ledger, so a source of a million recipients clones as fast as one of ten.

**Re-deliver** sends to an audience of a past delivery's recipients (``audiences.py``: all,
opened, not opened, clicked …) in one step: a new mail (the source's content, optionally with a
new subject or bodies) whose ``audience`` names the source, and its delivery, sent now or
reserved. The audience is evaluated when the delivery starts, like any targeting, so only
customers still in the master database receive it and the exclusions of that moment apply
(again at send time, by the worker). ``redeliver_preview`` gives the counts before anything is
sent: matched, each exclusion reason, after the duplicate rule.

Both need a source started within the last 3 months. Re-delivering the same audience of the same
source again is refused unless confirmed (``RepeatError``): a second message to the same people
is rarely meant.

**Planned re-delivery** ("re-deliver to those who have not opened N days after the send"):
``PlannedRedelivery`` rows on a mail (copied to each of its deliveries when reserved) or on a
delivery; ``run_due_planned`` runs the due ones (the scheduler calls it every minute). A plan
that cannot run — source too old, the same audience already re-delivered — is "skipped" with
the reason, never retried behind the operator's back.

Lineage: the new mail records ``resend_of`` (the source's mail), ``resend_of_delivery`` and
``resend_audience`` (empty for a resend); ``lineage`` gives a report both directions.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from okuru.accounts import audit
from okuru.customers.models import Topic
from okuru.mailings import actions, audiences, targeting
from okuru.mailings.models import Delivery, Mail, PlannedRedelivery, TrackedLink

Actor = actions.Actor
S = Delivery.Status
P = PlannedRedelivery.Status
MAX_PLAN_DAYS = 60  # a plan must run while its source is still inside the 3-month window
NAME_MAX = 200


class RepeatError(ValidationError):
    """The same audience of the same source was re-delivered before; confirm to go on."""


# ---------------------------------------------------------------------------------------------
# Sources


def source_problem(delivery: Delivery) -> str | None:
    """Why ``delivery`` cannot be resent or re-delivered, or None when it can."""
    if delivery.started_at is None:
        return _(
            "Delivery #%(id)s has not been sent yet, so it cannot be resent or re-delivered."
        ) % {"id": delivery.pk}
    if delivery.started_at < targeting.source_cutoff():
        return _(
            "Delivery #%(id)s was sent more than 3 months ago and cannot be used as a source."
        ) % {"id": delivery.pk}
    return None


def check_source(delivery: Delivery) -> None:
    problem = source_problem(delivery)
    if problem:
        raise ValidationError(problem, code="source")


def _operator(actor: Actor) -> Any:
    return actions._operator(actor)


def _topic(content: dict[str, Any]) -> Topic | None:
    key = content.get("topic_key")
    return Topic.objects.filter(key=key).first() if key else None


def _name(template: str, name: str, **extra: Any) -> str:
    """``template`` around the source mail's name, cut so the result fits the name field."""
    room = NAME_MAX - len(template % {"name": "", **extra})
    return template % {"name": name[: max(room, 1)], **extra}


def _copy_link_names(source_mail_id: int, mail: Mail) -> None:
    names = dict(
        TrackedLink.objects.filter(mail_id=source_mail_id)
        .exclude(name="")
        .values_list("url", "name")
    )
    for link in mail.links.all():
        if link.url in names and not link.name:
            TrackedLink.objects.filter(pk=link.pk).update(name=names[link.url])


def _clone(delivery: Delivery, actor: Actor) -> Mail:
    """An unsaved mail with the content and settings ``delivery`` sent (its snapshots)."""
    content, aim = delivery.content or {}, delivery.targeting or {}
    return Mail(
        kind=aim.get("kind") or delivery.mail.kind,
        relay_id=delivery.mail.relay_id,
        from_address=content.get("from_address", delivery.mail.from_address),
        from_name=content.get("from_name", ""),
        reply_to=content.get("reply_to", ""),
        return_path_domain=content.get("return_path_domain", ""),
        open_tracking=content.get("open_tracking", True),
        click_tracking=content.get("click_tracking", True),
        topic=_topic(content),
        subject=content.get("subject", delivery.mail.subject),
        text_body=content.get("text_body", ""),
        html_body=content.get("html_body", ""),
        duplicate_rule=aim.get("duplicate_rule") or Mail.DuplicateRule.IGNORE,
        error_threshold=aim.get("error_threshold") or 5,
        address_field=aim.get("address_field") or Mail.AddressField.EMAIL,
        resend_of_id=delivery.mail_id,
        resend_of_delivery=delivery,
        owner=_operator(actor),
    )


# ---------------------------------------------------------------------------------------------
# Resend (再送信)


def resend(delivery: Delivery, actor: Actor) -> Mail:
    """A new draft mail cloned from what ``delivery`` sent, with its targeting as conditions.

    Raises ValidationError for a source that is not sent or older than 3 months, or whose
    targeting no longer compiles (say a history condition's own source left the window)."""
    check_source(delivery)
    aim = delivery.targeting or {}
    mail = _clone(delivery, actor)
    mail.name = _name(_("%(name)s (resend)"), delivery.mail.name)
    mail.filter = aim.get("filter") or {}
    mail.view_id = aim.get("view_id")
    mail.customer_set = aim.get("customer_set") or {}
    mail.recipient_list_id = aim.get("recipient_list_id")
    mail.audience = aim.get("audience") or {}  # a resend of a re-delivery keeps its audience
    with transaction.atomic(durable=True):
        actions.save_mail(mail, actor)
        _copy_link_names(delivery.mail_id, mail)
        audit.log(actor, "delivery.resend", f"delivery:{delivery.pk}", {"mail": mail.pk})
    return mail


# ---------------------------------------------------------------------------------------------
# Re-deliver


def audience_spec(delivery: Delivery, audience: str, link: int | str | None = None) -> dict:
    """The audience as a re-delivery mail stores it, after checking the name and the link."""
    if audience not in audiences.AUDIENCES:
        raise ValidationError(
            _("Unknown audience: %(audience)s. Choose one of: %(choices)s.")
            % {"audience": audience, "choices": ", ".join(audiences.AUDIENCES)},
            code="audience",
        )
    link_id = None
    if link not in (None, ""):
        if audience not in audiences.WITH_LINK:
            raise ValidationError(
                _("A link can only be chosen with clicked or not clicked."), code="link"
            )
        try:
            link_id = int(link)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            link_id = None
        if link_id is None or audiences.link_url(delivery.pk, link_id) is None:
            raise ValidationError(
                _("This delivery's mail has no link %(link)s.") % {"link": link}, code="link"
            )
    return {"delivery": delivery.pk, "audience": audience, "link": link_id}


def previous(delivery: Delivery, spec: dict) -> list[int]:
    """Deliveries that already re-delivered this audience of ``delivery`` (not cancelled)."""
    return list(
        Delivery.objects.filter(
            mail__resend_of_delivery=delivery,
            mail__resend_audience=audiences.key(spec["audience"], spec["link"]),
        )
        .exclude(status=S.CANCELLED)
        .order_by("id")
        .values_list("id", flat=True)
    )


def _redelivery_mail(
    delivery: Delivery,
    spec: dict,
    actor: Actor,
    subject: str = "",
    text_body: str | None = None,
    html_body: str | None = None,
) -> Mail:
    mail = _clone(delivery, actor)
    audience_name = audiences.label(spec["audience"])
    mail.kind = Mail.Kind.BASIC  # the audience is the target; no view or list to re-check
    mail.name = _name(
        _("%(name)s (re-delivery: %(audience)s)"), delivery.mail.name, audience=audience_name
    )
    mail.audience = spec
    mail.resend_audience = audiences.key(spec["audience"], spec["link"])
    if subject:
        mail.subject = subject
    if text_body is not None:
        mail.text_body = text_body
    if html_body is not None:
        mail.html_body = html_body
    return mail


def redeliver_preview(delivery: Delivery, audience: str, link: int | str | None = None) -> dict:
    """The counts of a re-delivery before anything is sent: matched (the audience's
    recipients), excluded by reason (deleted customers included), after exclusions, after the
    duplicate rule; plus the chain and earlier re-deliveries of the same audience."""
    check_source(delivery)
    spec = audience_spec(delivery, audience, link)
    mail = _redelivery_mail(delivery, spec, None)
    try:
        counts = targeting.counts(targeting.snapshot(mail))
    except targeting.FilterError as e:
        raise ValidationError(str(e)) from None
    cutoff = targeting.source_cutoff()
    return {
        "source": delivery.pk,
        "origin": audiences.origin(delivery).pk,
        "chain": audiences.chain(delivery.pk, cutoff),
        "audience": spec["audience"],
        "link": spec["link"],
        "previous": previous(delivery, spec),
        **counts,
    }


def redeliver(
    delivery: Delivery,
    actor: Actor,
    audience: str,
    link: int | str | None = None,
    subject: str = "",
    text_body: str | None = None,
    html_body: str | None = None,
    when: datetime | None = None,
    confirm: bool = False,
) -> Delivery:
    """Create the re-delivery mail and its delivery, and send it now (``when`` None) or
    reserve it. Raises ``RepeatError`` for a repeat without ``confirm``, ValidationError for
    a source that cannot be used or content that does not validate."""
    return _redeliver(
        delivery,
        actor,
        audience_spec_checked(delivery, audience, link),
        subject,
        text_body,
        html_body,
        when,
        confirm,
    )


def audience_spec_checked(delivery: Delivery, audience: str, link: Any) -> dict:
    check_source(delivery)
    return audience_spec(delivery, audience, link)


def _check_repeat(delivery: Delivery, spec: dict) -> None:
    done = previous(delivery, spec)
    if done:
        raise RepeatError(
            _(
                "The audience “%(audience)s” of delivery #%(id)s was already re-delivered "
                "(delivery #%(previous)s). Confirm to re-deliver it again."
            )
            % {
                "audience": audiences.label(spec["audience"]),
                "id": delivery.pk,
                "previous": ", #".join(str(i) for i in done),
            },
            code="repeat",
        )


def _redeliver(
    delivery: Delivery,
    actor: Actor,
    spec: dict,
    subject: str,
    text_body: str | None,
    html_body: str | None,
    when: datetime | None,
    confirm: bool,
    plan: PlannedRedelivery | None = None,
) -> Delivery:
    if when is not None and when <= timezone.now():
        raise ValidationError(_("Choose a time in the future for a reservation."), code="when")
    if not confirm:
        _check_repeat(delivery, spec)
    mail = _redelivery_mail(delivery, spec, actor, subject, text_body, html_body)
    with transaction.atomic(durable=True):
        # The source row's lock makes two re-deliveries of one source take turns, so the
        # second sees the first and the repeat guard holds under concurrent requests.
        Delivery.objects.select_for_update().filter(pk=delivery.pk).first()
        if not confirm:
            _check_repeat(delivery, spec)
        actions.save_mail(mail, actor)
        _copy_link_names(delivery.mail_id, mail)
        new = actions.create_delivery(mail, actor)
        if plan is not None:
            n = PlannedRedelivery.objects.filter(pk=plan.pk, status=P.PLANNED).update(
                status=P.DONE, result=new, finished_at=timezone.now()
            )
            if n != 1:  # cancelled or run by someone else meanwhile: create nothing
                raise ValidationError(_("This planned re-delivery is no longer planned."))
        audit.log(
            actor,
            "delivery.redeliver",
            f"delivery:{delivery.pk}",
            {
                "delivery": new.pk,
                "mail": mail.pk,
                "audience": mail.resend_audience,
                "confirmed": confirm,
                "planned": plan.pk if plan else None,
            },
        )
    try:
        return actions.reserve(new, actor, when)
    except ValidationError:
        actions.cancel(new, actor)
        raise


# ---------------------------------------------------------------------------------------------
# Planned re-delivery


def _check_plan(audience: str, days: Any) -> int:
    if audience not in PlannedRedelivery.Audience.values:
        raise ValidationError(
            _("A planned re-delivery goes to those who have not opened or not clicked."),
            code="audience",
        )
    try:
        n = int(days)
    except (TypeError, ValueError):
        n = 0
    if not 1 <= n <= MAX_PLAN_DAYS:
        raise ValidationError(
            _("The number of days must be between 1 and %(max)s.") % {"max": MAX_PLAN_DAYS},
            code="days",
        )
    return n


def plan_redelivery(
    actor: Actor,
    audience: str,
    days: Any,
    subject: str = "",
    mail: Mail | None = None,
    source: Delivery | None = None,
) -> PlannedRedelivery:
    """Plan a re-delivery on a delivery (``source``) or on every delivery of ``mail``."""
    n = _check_plan(audience, days)
    if source is not None:
        if source.status in (S.CANCELLED, S.STOPPED) or (
            source.started_at is not None and source_problem(source)
        ):
            raise ValidationError(
                _("Delivery #%(id)s cannot have a planned re-delivery: it is %(status)s.")
                % {"id": source.pk, "status": source.get_status_display()},
                code="source",
            )
    with transaction.atomic(durable=True):
        plan = PlannedRedelivery.objects.create(
            mail=mail if source is None else None,
            source=source,
            audience=audience,
            days=n,
            subject=subject.strip()[:500],
            created_by=_operator(actor),
        )
        target = f"delivery:{source.pk}" if source is not None else f"mail:{mail.pk}"
        audit.log(
            actor,
            "redelivery.plan",
            target,
            {"plan": plan.pk, "audience": audience, "days": n, "subject": plan.subject},
        )
    return plan


def cancel_planned(plan: PlannedRedelivery, actor: Actor) -> None:
    with transaction.atomic(durable=True):
        n = PlannedRedelivery.objects.filter(pk=plan.pk, status=P.PLANNED).update(
            status=P.CANCELLED, finished_at=timezone.now()
        )
        if n != 1:
            plan.refresh_from_db(fields=["status"])
            raise ValidationError(
                _("This planned re-delivery is %(status)s; only a planned one can be cancelled.")
                % {"status": plan.get_status_display()}
            )
        plan.status = P.CANCELLED
        audit.log(actor, "redelivery.cancel_plan", f"plan:{plan.pk}")


def mail_plan(mail: Mail) -> PlannedRedelivery | None:
    """The mail's own planned re-delivery (the compose screen shows and edits one)."""
    if mail.pk is None:
        return None
    return mail.planned_redeliveries.filter(status=P.PLANNED).order_by("-id").first()


def set_mail_plan(
    mail: Mail, actor: Actor, audience: str, days: Any, subject: str = ""
) -> PlannedRedelivery | None:
    """The compose screen's choice: replace the mail's plan (``audience`` "" removes it).
    Deliveries already reserved keep the plan they were given."""
    current = mail_plan(mail)
    if (
        current is not None
        and audience
        and (
            current.audience,
            current.days,
            current.subject,
        )
        == (audience, _check_plan(audience, days), subject.strip()[:500])
    ):
        return current
    if audience:
        _check_plan(audience, days)
    if current is not None:
        cancel_planned(current, actor)
    if not audience:
        return None
    return plan_redelivery(actor, audience, days, subject, mail=mail)


def due_plans(now: datetime | None = None) -> list[PlannedRedelivery]:
    """Plans whose source started at least ``days`` days ago (few rows: read them all)."""
    now = now or timezone.now()
    plans = PlannedRedelivery.objects.filter(
        status=P.PLANNED, source__isnull=False, source__started_at__isnull=False
    ).select_related("source", "source__mail", "created_by")
    return [p for p in plans if p.source.started_at + timedelta(days=p.days) <= now]


def run_planned(plan: PlannedRedelivery) -> Delivery | None:
    """Run one plan now: the re-delivery, or "skipped" with the reason."""
    source = plan.source
    try:
        spec = audience_spec_checked(source, plan.audience, None)
        return _redeliver(
            source, plan.created_by, spec, plan.subject, None, None, None, False, plan
        )
    except ValidationError as e:
        note = " ".join(e.messages)[:500]
        n = PlannedRedelivery.objects.filter(pk=plan.pk, status=P.PLANNED).update(
            status=P.SKIPPED, note=note, finished_at=timezone.now()
        )
        if n:
            audit.log(None, "redelivery.skip_plan", f"plan:{plan.pk}", {"reason": note})
        return None


def run_due_planned(now: datetime | None = None) -> list[int]:
    """Run every due plan; returns the re-deliveries created."""
    created = []
    for plan in due_plans(now):
        if plan.source.status == S.CANCELLED:
            continue
        delivery = run_planned(plan)
        if delivery is not None:
            created.append(delivery.pk)
    return created


# ---------------------------------------------------------------------------------------------
# Lineage, for the reports


def lineage(delivery: Delivery) -> dict[str, Any]:
    """Where ``delivery`` came from and what came of it: its mail's source (resend or
    re-delivery, with the audience and the chain's origin), the resends and re-deliveries made
    from it, and its planned re-deliveries."""
    mail = delivery.mail
    out: dict[str, Any] = {"source": None, "origin": None, "audience": "", "children": []}
    if mail.resend_of_delivery_id:
        out["source"] = (
            Delivery.objects.select_related("mail").filter(pk=mail.resend_of_delivery_id).first()
        )
        if mail.audience:
            out["audience"] = audiences.mail_label(mail)
            first = audiences.origin(delivery)
            out["origin"] = first if first.pk != out["source"].pk else None
    children = (
        Mail.objects.filter(resend_of_delivery=delivery)
        .prefetch_related("deliveries")
        .order_by("id")
    )
    for child in children:
        out["children"].append(
            {
                "mail": child,
                "audience": audiences.mail_label(child) if child.audience else "",
                "deliveries": list(child.deliveries.all()),
            }
        )
    out["plans"] = list(delivery.planned_redeliveries.select_related("result").order_by("id"))
    out["planned_from"] = delivery.planned_from.select_related("source").first()
    return out


def plan_json(plan: PlannedRedelivery) -> dict[str, Any]:
    """A plan as the API and the CLI show it."""
    return {
        "id": plan.pk,
        "source": plan.source_id,
        "mail": plan.mail_id,
        "audience": plan.audience,
        "days": plan.days,
        "subject": plan.subject,
        "status": plan.status,
        "result": plan.result_id,
        "note": plan.note,
        "created": plan.created,
    }
