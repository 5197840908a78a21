"""Named actions on mails and deliveries: views, the API, commands and tasks call these; nothing
else changes a delivery's status or a mail's targeting.

Each state change is one conditional UPDATE on the expected current status (so two operators,
or an operator and a worker, cannot both win) inside one transaction, with an audit record;
task enqueues run on commit.

Delivery life cycle::

    draft ──reserve──▶ reserved ──(due: start_delivery)──▶ running ⇄ paused
      │                   │                                  │  │
      └──cancel──▶ cancelled ◀──cancel┘                 stop │  └─(no row queued/sending)─▶ completed
                                                             ▼
                                                          stopped

``start_delivery`` freezes the recipients into the ledger in the same transaction that marks
the delivery running. ``stop`` is final: in the same transaction every row still queued becomes
"stopped" (not sent, with a note saying an operator stopped the delivery), so the report of a
stopped delivery adds up — sent + failed + unknown + excluded + stopped = recipients — and
nothing in it looks as if it might still go out. Rows a worker is sending at that moment (at
most a group per worker) finish and are recorded as they end; a worker then sends no more.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from okuru.accounts import audit
from okuru.customers.fields import catalogue
from okuru.customers.filters import FilterError
from okuru.mailings import extraction, rendering, targeting
from okuru.mailings.models import Delivery, Mail, PlannedRedelivery, Recipient, TrackedLink

Actor = Any  # HttpRequest | Operator | None, as okuru.accounts.audit.log takes it
S = Delivery.Status
LOCKING = (S.RESERVED, S.RUNNING, S.PAUSED)
TARGET_FIELDS = (
    "kind",
    "filter",
    "view_id",
    "customer_set",
    "recipient_list_id",
    "duplicate_rule",
    "error_threshold",
    "address_field",
    "topic_id",
)


# ---------------------------------------------------------------------------------------------
# Mails


def validate_targeting(mail: Mail, specs: dict | None = None) -> None:
    """Compile the mail's targeting without running it (catches unknown fields, stale
    sources, ineligible views)."""
    try:
        targeting.final_sql(targeting.snapshot(mail), specs if specs is not None else catalogue())
    except FilterError as e:
        raise ValidationError({"filter": str(e)}) from None


def has_target(mail: Mail) -> bool:
    return mail.kind != Mail.Kind.SPOT or bool(mail.view_id or mail.recipient_list_id)


def is_locked(mail: Mail) -> bool:
    return mail.pk is not None and mail.deliveries.filter(status__in=LOCKING).exists()


def save_mail(mail: Mail, actor: Actor) -> Mail:
    """Validate and save a mail (new or edited), and sync its tracked links.

    Raises ValidationError for a template problem, a targeting problem, or a targeting change
    while a delivery of this mail is reserved or running."""
    specs = catalogue()
    validate_fields(mail)
    validate_sender(mail)
    rendering.validate_templates(mail, specs)
    with transaction.atomic():
        if mail.pk is not None:
            old = Mail.objects.select_for_update().get(pk=mail.pk)
            changed = [f for f in TARGET_FIELDS if getattr(old, f) != getattr(mail, f)]
            if changed and is_locked(mail):
                raise ValidationError(
                    _(
                        "This mail has a reserved or running delivery, so its target conditions "
                        "cannot be changed. Cancel the reservation or create a new mail."
                    )
                )
        if changed_list(mail):
            extraction.check_recipient_list(mail)
        if has_target(mail):  # a spot draft may be saved before its view is chosen
            validate_targeting(mail, specs)
        mail.updated = timezone.now()
        created = mail.pk is None
        mail.save()
        sync_links(mail)
        audit.log(actor, "mail.create" if created else "mail.update", f"mail:{mail.pk}")
    return mail


def changed_list(mail: Mail) -> bool:
    """A new target list (an extraction's list that was discarded or purged is refused then;
    a mail already on it keeps it, so its page still says where its recipients came from)."""
    if not mail.recipient_list_id:
        return False
    if mail.pk is None:
        return True
    old = Mail.objects.filter(pk=mail.pk).values_list("recipient_list_id", flat=True).first()
    return old != mail.recipient_list_id


DOMAIN_RE = re.compile(
    r"^(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+\Z"
)
# NUL and unpaired surrogates: PostgreSQL refuses them in text and JSON, SQLite cannot encode
# the surrogates; either way the save would fail as a server error instead of naming the field.
UNSTORABLE_RE = re.compile("[\x00\ud800-\udfff]")
ONE_LINE_FIELDS = ("name", "from_name", "subject")  # header values (and the mail's name)
REFERENCES = ("relay", "view", "recipient_list", "topic")


def _strings(value: Any) -> Any:
    """Every string in ``value`` (a JSON tree), keys included."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)


def validate_fields(mail: Mail) -> None:
    """Every value the mail's columns can hold, checked before the database sees it: lengths,
    choices, number ranges, characters the database cannot store, line breaks in one-line
    fields, references to rows that exist. Raises ValidationError keyed by field."""
    errors: dict[str, list[str]] = {}
    for f in mail._meta.concrete_fields:
        value = getattr(mail, f.attname)
        if value is None and not f.null and not f.primary_key:
            # clean_fields skips an empty value of a field that may be blank, None included
            errors[f.name] = [f"{f.verbose_name}: {f.error_messages['null']}"]
        elif any(UNSTORABLE_RE.search(s) for s in _strings(value)):
            errors[f.name] = [
                _(
                    "The %(field)s contains a character that cannot be stored (NUL or an unpaired surrogate)."
                )
                % {"field": f.verbose_name}
            ]
        elif f.name in ONE_LINE_FIELDS and isinstance(value, str) and re.search("[\r\n]", value):
            errors[f.name] = [
                _("The %(field)s must be one line: it cannot contain a line break.")
                % {"field": f.verbose_name}
            ]
    lineage = ["owner", "resend_of", "resend_of_delivery", "resend_audience", "created", "updated"]
    try:
        mail.clean_fields(exclude=[*errors, *lineage, *REFERENCES])
    except ValidationError as e:
        for key, messages in e.message_dict.items():
            label = mail._meta.get_field(key).verbose_name
            errors[key] = [f"{label}: {m}" for m in messages]
    for name in REFERENCES:
        field = mail._meta.get_field(name)
        pk = getattr(mail, field.attname)
        if pk is None or name in errors:
            continue
        if (
            not isinstance(pk, int)
            or not 0 < pk < 2**63
            or not field.related_model.objects.filter(pk=pk).exists()
        ):
            errors[name] = [
                _("No %(what)s with id %(id)s.") % {"what": field.verbose_name, "id": pk}
            ]
    if errors:
        raise ValidationError(errors)


def validate_sender(mail: Mail) -> None:
    """Addresses that go into headers and the SMTP envelope must be plain addresses."""
    from okuru.mailings.messages import BadAddress, check_address

    for field in ("from_address", "reply_to"):
        value = getattr(mail, field)
        if not value and field == "reply_to":
            continue
        try:
            if check_address(value or "") != value:  # stored as given: no space or line break
                raise BadAddress(value)
        except BadAddress:
            raise ValidationError(
                {field: _("Not a valid e-mail address: %(address)s") % {"address": value}}
            ) from None
    if mail.return_path_domain and not DOMAIN_RE.match(mail.return_path_domain):
        raise ValidationError(
            {
                "return_path_domain": _("Not a valid domain: %(domain)s")
                % {"domain": mail.return_path_domain}
            }
        )


def sync_links(mail: Mail) -> None:
    """TrackedLinks follow the bodies. Links that left the bodies stay (inactive), because
    clicks in messages already sent still point at them."""
    urls = rendering.find_links(mail.html_body, mail.text_body)
    existing = {link.url: link for link in mail.links.all()}
    for position, url in enumerate(urls):
        link = existing.pop(url, None)
        if link is None:
            TrackedLink.objects.create(mail=mail, url=url, position=position)
        elif link.position != position or not link.active:
            link.position, link.active = position, True
            link.save(update_fields=["position", "active"])
    TrackedLink.objects.filter(pk__in=[link.pk for link in existing.values()]).update(active=False)


def content_snapshot(mail: Mail) -> dict[str, Any]:
    """What a delivery sends, fixed when it starts."""
    links = mail.links.filter(active=True).order_by("position") if mail.pk else []
    return {
        "subject": mail.subject,
        "text_body": mail.text_body,
        "html_body": mail.html_body,
        "from_address": mail.from_address,
        "from_name": mail.from_name,
        "reply_to": mail.reply_to,
        "return_path_domain": mail.return_path_domain,
        "open_tracking": mail.open_tracking,
        "click_tracking": mail.click_tracking,
        "topic_key": mail.topic.key if mail.topic_id else "",
        "links": [[link.pk, link.url] for link in links],
    }


# ---------------------------------------------------------------------------------------------
# Deliveries


def _change(delivery: Delivery, allowed: tuple, message: str, **values: Any) -> None:
    n = Delivery.objects.filter(pk=delivery.pk, status__in=allowed).update(**values)
    if n != 1:
        delivery.refresh_from_db(fields=["status"])
        raise ValidationError(message % {"status": delivery.get_status_display()})
    for k, v in values.items():
        setattr(delivery, k, v)


def create_delivery(mail: Mail, actor: Actor) -> Delivery:
    with transaction.atomic():
        delivery = Delivery.objects.create(mail=mail, created_by=_operator(actor))
        audit.log(actor, "delivery.create", f"delivery:{delivery.pk}", {"mail": mail.pk})
    return delivery


def check_reservation_time(when: datetime | None) -> None:
    """A reservation is for a time to come (None: send now). The screens, the API and the CLI
    check before they create a draft; ``reserve`` checks again."""
    if when is not None and when <= timezone.now():
        raise ValidationError(_("Choose a time in the future for a reservation."))


def reserve(delivery: Delivery, actor: Actor, when: datetime | None = None) -> Delivery:
    """Fix the targeting and schedule the delivery (``when`` None: send now)."""
    check_reservation_time(when)
    mail = Mail.objects.select_related("topic").get(pk=delivery.mail_id)
    if mail.kind not in (Mail.Kind.BASIC, Mail.Kind.SPOT):
        raise ValidationError(_("Only basic mails and spot deliveries can be sent this way."))
    rendering.validate_templates(mail)
    validate_targeting(mail)
    from okuru.mailings.sending import default_relay

    relay = mail.relay or default_relay()
    now = timezone.now()
    with transaction.atomic(durable=True):
        _change(
            delivery,
            (S.DRAFT,),
            _("This delivery is %(status)s; only a draft can be reserved."),
            status=S.RESERVED,
            scheduled_at=when or now,
            targeting=targeting.snapshot(mail),
            relay=relay,
        )
        PlannedRedelivery.copy_mail_plans(delivery)
        audit.log(
            actor,
            "delivery.reserve",
            f"delivery:{delivery.pk}",
            {"scheduled_at": (when or now).isoformat()},
        )
        if (when or now) <= now:
            transaction.on_commit(lambda: _kick(delivery.pk))
    return delivery


def send_now(mail: Mail, actor: Actor) -> Delivery:
    return reserve(create_delivery(mail, actor), actor, None)


def start_delivery(delivery_id: int) -> bool:
    """Freeze the ledger and mark the delivery running — one transaction, so a crash leaves
    either a reserved delivery with no ledger or a running one with all of it. False when the
    delivery is not a due reservation (someone else started it)."""
    try:
        with transaction.atomic(durable=True):
            n = Delivery.objects.filter(
                pk=delivery_id, status=S.RESERVED, scheduled_at__lte=timezone.now()
            ).update(status=S.RUNNING, started_at=timezone.now())
            if n != 1:
                return False
            delivery = Delivery.objects.select_related("mail", "mail__topic").get(pk=delivery_id)
            specs = catalogue()
            summary = targeting.counts(delivery.targeting, specs)
            inserted = targeting.fill_ledger(delivery_id, delivery.targeting, specs)
            Delivery.objects.filter(pk=delivery_id).update(
                content=content_snapshot(delivery.mail),
                matched_count=summary["matched"],
                excluded=summary["excluded"],
                recipient_count=inserted,
                last_activity_at=timezone.now(),
            )
            audit.log(None, "delivery.start", f"delivery:{delivery_id}", {"recipients": inserted})
    except FilterError as e:
        # The targeting went bad since the reservation (say a source delivery left the 3-month
        # window): stop with the reason rather than send to the wrong people.
        Delivery.objects.filter(pk=delivery_id, status=S.RESERVED).update(
            status=S.STOPPED, finished_at=timezone.now(), note=str(e)
        )
        return False
    return True


def start_due_deliveries() -> list[int]:
    """Start due reservations (at most 100 per call); returns the ids started."""
    due = Delivery.objects.filter(status=S.RESERVED, scheduled_at__lte=timezone.now())
    return [i for i in list(due.values_list("id", flat=True)[:100]) if start_delivery(i)]


def cancel(delivery: Delivery, actor: Actor) -> None:
    with transaction.atomic(durable=True):
        _change(
            delivery,
            (S.DRAFT, S.RESERVED),
            _("This delivery is %(status)s; only a draft or a reservation can be cancelled."),
            status=S.CANCELLED,
            finished_at=timezone.now(),
        )
        audit.log(actor, "delivery.cancel", f"delivery:{delivery.pk}")


def pause(delivery: Delivery, actor: Actor) -> None:
    with transaction.atomic(durable=True):
        _change(
            delivery,
            (S.RUNNING,),
            _("This delivery is %(status)s; only a running delivery can be paused."),
            status=S.PAUSED,
        )
        audit.log(actor, "delivery.pause", f"delivery:{delivery.pk}")


def pause_for_error(delivery_id: int, error: str) -> None:
    Delivery.objects.filter(pk=delivery_id, status=S.RUNNING).update(
        status=S.PAUSED, note=_("Paused by the worker: %(error)s") % {"error": error}
    )


def resume(delivery: Delivery, actor: Actor) -> None:
    with transaction.atomic(durable=True):
        _change(
            delivery,
            (S.PAUSED,),
            _("This delivery is %(status)s; only a paused delivery can be resumed."),
            status=S.RUNNING,
            note="",
        )
        audit.log(actor, "delivery.resume", f"delivery:{delivery.pk}")
        transaction.on_commit(lambda: _kick(delivery.pk))


def stop(delivery: Delivery, actor: Actor) -> None:
    with transaction.atomic(durable=True):
        _change(
            delivery,
            (S.RUNNING, S.PAUSED),
            _("This delivery is %(status)s; only a running or paused delivery can be stopped."),
            status=S.STOPPED,
            finished_at=timezone.now(),
        )
        from okuru.mailings.sending import refresh_counts, stopped_note

        # Leased rows are "queued" too: a worker's next flush finds them stopped and lets go.
        n = Recipient.objects.filter(
            delivery_id=delivery.pk, status=Recipient.Status.QUEUED
        ).update(status=Recipient.Status.STOPPED, next_attempt_at=None, note=stopped_note())
        refresh_counts(delivery.pk)
        audit.log(actor, "delivery.stop", f"delivery:{delivery.pk}", {"not_sent": n})


def resolve_unknown(
    delivery: Delivery, actor: Actor, resend: bool, recipient_ids: list[int] | None = None
) -> int:
    """The operator's decision on "unknown" rows: send them again (they may get a second
    copy), or leave them unsent for good. Returns how many rows were resolved."""
    with transaction.atomic(durable=True):
        d = Delivery.objects.select_for_update().get(pk=delivery.pk)
        if resend and d.status not in (S.RUNNING, S.PAUSED, S.COMPLETED):
            raise ValidationError(
                _("This delivery is %(status)s; its unknown rows cannot be sent again.")
                % {"status": d.get_status_display()}
            )
        rows = Recipient.objects.filter(delivery=d, status=Recipient.Status.UNKNOWN)
        if recipient_ids is not None:
            rows = rows.filter(pk__in=recipient_ids)
        if resend:
            # Clearing the claim makes a late outcome from the old worker miss this row.
            n = rows.update(
                status=Recipient.Status.QUEUED,
                claim="",
                next_attempt_at=None,
                maybe_duplicate=True,
                note=_("Sent again by an operator."),
            )
            if n and d.status == S.COMPLETED:
                Delivery.objects.filter(pk=d.pk).update(status=S.RUNNING, finished_at=None)
        else:
            n = rows.update(claim="", note=_("Not sent again: an operator decided so."))
        from okuru.mailings.sending import refresh_counts

        refresh_counts(d.pk)
        audit.log(
            actor,
            "delivery.resolve_unknown",
            f"delivery:{d.pk}",
            {"resend": resend, "rows": n},
        )
        if resend and n:
            transaction.on_commit(lambda: _kick(d.pk))
    delivery.refresh_from_db()
    return n


def _kick(delivery_id: int) -> None:
    from okuru.mailings.tasks import kick_delivery

    kick_delivery.enqueue(delivery_id)


def _operator(actor: Actor) -> Any:
    user = getattr(actor, "user", actor)
    return user if getattr(user, "is_authenticated", False) else None


# ---------------------------------------------------------------------------------------------
# Preview and test sends (no ledger)


def preview_message(mail: Mail, customer: Any | None = None) -> rendering.Rendered:
    """The mail as ``customer`` (a Customer, or None for an empty sample) would get it.

    Tracking URLs carry recipient id 0, which no ledger row has: clicking them in a preview
    records nothing. The HTML is the message as sent; show it in a sandboxed frame."""
    from okuru.customers.models import Customer

    row = {"id": 0, "data": {}}
    if customer is not None:
        row = Customer.objects.filter(pk=customer.pk).values().get()
    compiled = rendering.CompiledMail(content_snapshot(mail), catalogue())
    return compiled.render(0, row)


def send_test_message(
    mail: Mail, addresses: list[str], actor: Actor, customer: Any | None = None
) -> int:
    """Send the mail as ``customer`` to a few addresses now, through the mail's relay.

    Raises ValidationError naming a bad address or the relay's refusal."""
    from okuru.lib import smtp
    from okuru.mailings.messages import BadAddress, MessageBuilder, check_address
    from okuru.mailings.sending import default_relay

    if not addresses or len(addresses) > 10:
        raise ValidationError(_("Give between 1 and 10 addresses for a test send."))
    for a in addresses:
        try:
            check_address(a)
        except BadAddress:
            raise ValidationError(
                _("Not a valid e-mail address: %(address)s") % {"address": a}
            ) from None
    rendering.validate_templates(mail)
    try:
        rendered = preview_message(mail, customer)
    except rendering.RenderError as e:
        raise ValidationError(e.message) from None
    builder = MessageBuilder(0, content_snapshot(mail))
    from okuru.lib import signing
    from okuru.mailings.sending import relay_problem

    relay = mail.relay or default_relay()
    conn = smtp.Connection(relay.smtp_settings())

    try:
        for a in addresses:
            envelope = builder.build(0, a, rendered, signing.url_for("unsubscribe", 0))
            reply = conn.send(builder.from_address, a, envelope.data)
            if not reply.accepted:
                raise ValidationError(
                    _("The relay refused the test message to %(address)s: %(reply)s")
                    % {"address": a, "reply": str(reply)}
                )
    except smtp.RelayRejected as e:
        raise ValidationError(relay_problem(e)) from None
    except (smtp.ConnectionLost, smtp.Indeterminate) as e:
        raise ValidationError(
            _("The test message could not be sent: %(error)s") % {"error": e}
        ) from None
    finally:
        conn.close()
    audit.log(actor, "mail.test_send", f"mail:{mail.pk}", {"addresses": addresses})
    return len(addresses)
