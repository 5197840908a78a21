"""Mails, deliveries and the per-recipient ledger.

``Relay``
    An SMTP relay (host, port, none/STARTTLS/TLS, auth) with rate limits: messages per second
    for the whole relay and per recipient domain (0 = unlimited). One relay is the default.
    ``verify_tls`` (default on) checks the relay's certificate and name; a relay that fails
    the check, offers no STARTTLS or AUTH, or refuses the password pauses the delivery with
    the reason (``relays.relay_problem``). ``smtp_settings()`` is what the SMTP client takes.

``Mail``
    What the operator composes: kind (basic and spot now; retargeting, step, auto, planning
    later, same table), sender settings (差出人設定), subject and bodies with merge fields,
    tracking switches, duplicate rule, error threshold, newsletter topic, and the targeting:

    * basic: ``filter`` — a customers filter tree (``okuru.customers.filters``) that may hold
      ``{"kind": "delivery_history", ...}`` conditions (see ``targeting.py``);
    * spot: ``view`` (delivery-eligible) + optional ``customer_set`` (outcomes of past
      deliveries), or ``recipient_list`` (a ``FrozenList`` made by an extraction).

    ``address_field`` says which address is used (PC or mobile e-mail; each has its own error
    count). ``resend_of`` / ``resend_of_delivery`` / ``resend_audience`` keep re-delivery
    lineage: a resend (再送信) names the delivery it was cloned from with an empty audience; a
    re-delivery names its source delivery and the audience (``not_opened``, ``clicked:<link>``
    …). ``audience`` is a re-delivery's targeting (``audiences.py``): the recipients of a
    source delivery, narrowed by what they did, AND the mail's own filter. Content is
    user-authored Jinja in a sandbox (``rendering.py``), validated on save.

``TrackedLink``
    The links found in a mail's bodies at save time, with an optional click feedback name.
    A click redirects only to a ``TrackedLink`` of the recipient's mail. Rows are never
    deleted while a delivery may point at them: a link that left the body is ``active=False``.

``Delivery`` (配信)
    One execution of a mail. ``content`` and ``targeting`` are snapshots taken when the
    delivery is reserved or started, so editing the mail never changes a reserved or running
    delivery. Status: draft → reserved → running ⇄ paused → completed, or stopped / cancelled.
    Counters are summaries kept on the row (sent / failed / unknown / stopped and the send-time
    exclusions by reason by the worker, opens/clicks by tracking) so reports survive the purge
    of per-recipient detail. They add up::

        matched = sum(excluded.values()) + recipient_count        # at freeze (``targeting``)
        recipient_count = sent_count + failed_count + unknown_count
                          + sum(excluded_at_send.values()) + stopped_count
                          + rows still queued or sending            # none once finished

``Recipient`` — the ledger
    One row per (delivery, customer), frozen at send start by one INSERT … SELECT. The
    customer is a plain integer, not a foreign key: customers may be deleted, the record of
    what was sent stays. Status::

        queued ──▶ sending ──▶ sent | failed | unknown      (a retry goes back to queued)
        queued ──▶ excluded     an exclusion applied at send time; ``exclusion`` says which
        queued ──▶ stopped      the operator stopped the delivery before this row was sent

    "sending" is committed before the SMTP call, a small group at a time, so a crash leaves at
    most that group "unknown" (``sending.py``). ``claim``/``claimed_at`` identify the worker's
    batch and lease: a leased row stays "queued" with ``next_attempt_at`` at the end of the
    lease, so a dead worker's leased rows simply become due again. Rows left "sending" past
    the lease become "unknown" and are never resent without an operator saying so. Unexpected
    errors also park a row as "unknown", with ``note`` saying why — the operator resolves
    unknown rows (send again or not). A row sent again keeps ``maybe_duplicate``: the
    recipient may hold two copies.

    *Why "excluded" and "stopped" are statuses of their own* rather than "failed" with an empty
    error kind: "failed" is a delivery error (配信エラー). It counts in the report's errors, in
    the "errored" delivery-history condition and customer set, in the re-delivery audiences,
    and against the address's error count. A customer who unsubscribed after the freeze, or a
    row an operator stopped, is none of those: no message was attempted and nothing is wrong
    with the address. Both are terminal, carry a ``note`` for the operator, and keep the
    counts adding up. "excluded" uses the reason codes of the freeze-time exclusions
    (``Exclusion``): the same customer is excluded for the same reason whether the change came
    before or after the freeze.

``Event``
    Opens, clicks, unsubscribes, asynchronous bounces and complaints, with time (filled by
    tracking and bounces).

``PlannedRedelivery``
    "Re-deliver to those who have not opened (or not clicked) N days after the send", planned
    ahead. A plan of a mail (``mail`` set) is copied to each delivery of the mail when it is
    reserved; a plan of a delivery (``source`` set) runs ``days`` days after the source started
    (``redelivery.run_due_planned``, every minute from the scheduler)::

        planned ──▶ done        the re-delivery was created (``result``)
        planned ──▶ skipped     it could not run; ``note`` says why (source too old, a repeat)
        planned ──▶ cancelled   an operator cancelled it before it ran

``FrozenList`` / ``FrozenListMember``
    A frozen list of customer ids (an ``Extraction`` writes one; spot mails target it).

``Extraction`` (効果測定結果の利用)
    Route 4: the customers of past deliveries (a customer set over their outcomes, within a
    delivery-eligible view) frozen into a ``FrozenList`` by a background job
    (``extraction.py``). States::

        extracting ──▶ ready ──▶ discarded    (by an operator, while no mail uses the list)
             │           └─────▶ purged       (its members, past the retention window)
             └────────▶ failed

    ``count`` is the size of the list when it was written. The mails it fed are the mails whose
    ``recipient_list`` is its list.

``ListCleaning``
    Addresses permanently excluded (配信リストクリーニング), lower-cased: every address that had
    a bad-format or unknown-user error, at send time or by a later bounce. Filled and managed by
    ``okuru.bounces.actions``; sending reads it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from okuru.bounces.kinds import ErrorKind
from okuru.lib import smtp


class Exclusion(models.TextChoices):
    """Why a customer gets no message: when the ledger is frozen (``Delivery.excluded``) and
    again just before sending (``Recipient.exclusion``). Same codes, same order of precedence."""

    DELETED = "deleted", _("Customer deleted")
    NO_ADDRESS = "no_address", _("No address")
    REFUSED = "refused", _("Refusal flag")
    UNSUBSCRIBED = "unsubscribed", _("Unsubscribed from the topic")
    LIST_CLEANING = "list_cleaning", _("List cleaning")
    ERROR_COUNT = "error_count", _("Error count at or above the threshold")


class Relay(models.Model):
    class Security(models.TextChoices):
        NONE = "none", _("None")
        STARTTLS = "starttls", _("STARTTLS")
        TLS = "tls", _("TLS")

    name = models.CharField(_("name"), max_length=100, unique=True)
    host = models.CharField(_("host"), max_length=255)
    port = models.PositiveIntegerField(_("port"), default=25)
    security = models.CharField(
        _("security"), max_length=8, choices=Security.choices, default=Security.NONE
    )
    username = models.CharField(_("user name"), max_length=255, blank=True)
    password = models.CharField(_("password"), max_length=255, blank=True)
    timeout = models.PositiveIntegerField(_("timeout (seconds)"), default=30)
    max_per_second = models.PositiveIntegerField(_("messages per second"), default=0)
    per_domain_per_second = models.PositiveIntegerField(
        _("messages per second per recipient domain"), default=0
    )
    # Off only for a relay on a trusted network with a self-signed certificate: without the
    # check, anyone on the path can read the mail and the relay password.
    verify_tls = models.BooleanField(_("verify the TLS certificate"), default=True)
    is_default = models.BooleanField(_("default"), default=False)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="one_default_relay"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def smtp_settings(self) -> smtp.RelaySettings:
        """What ``okuru.lib.smtp.Connection`` needs to reach this relay."""
        return smtp.RelaySettings(
            host=self.host,
            port=self.port,
            security=self.security,
            username=self.username,
            password=self.password,
            timeout=self.timeout,
            verify_tls=self.verify_tls,
        )


class DkimKey(models.Model):
    """A DKIM signing key of a sender domain (``okuru.mailings.dkim_keys``).

    Every message whose From domain (or a parent of it) has active keys is signed with each of
    them, at most one per algorithm: RSA for every receiver, Ed25519 beside it for those that
    check it. A new key is active at once when its domain has no active key of its algorithm;
    otherwise it waits, so the operator can publish its DNS record before it replaces the old
    one. The private key is kept in the database, like the relay password: the worker needs
    it, and it never leaves again (no screen, API, CLI output or log entry shows it).
    """

    class Algorithm(models.TextChoices):
        RSA = "rsa", _("RSA-2048")
        ED25519 = "ed25519", _("Ed25519")

    domain = models.CharField(_("domain"), max_length=253)
    selector = models.CharField(_("selector"), max_length=63)
    algorithm = models.CharField(_("algorithm"), max_length=8, choices=Algorithm.choices)
    private_key = models.TextField()
    public_key = models.TextField()
    active = models.BooleanField(_("active"), default=False)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["domain", "selector"]
        constraints = [
            models.UniqueConstraint(fields=["domain", "selector"], name="dkim_key_selector"),
            models.UniqueConstraint(
                fields=["domain", "algorithm"],
                condition=Q(active=True),
                name="dkim_one_active_key_per_algorithm",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"


class FrozenList(models.Model):
    """A frozen list of customer ids (extraction output, a spot mail's target)."""

    name = models.CharField(_("name"), max_length=200)
    source = models.JSONField(default=dict, blank=True)  # how it was made (for the UI)
    size = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return self.name


class FrozenListMember(models.Model):
    list = models.ForeignKey(FrozenList, models.CASCADE, related_name="members")
    customer_id = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["list", "customer_id"], name="frozen_list_member")
        ]


class Extraction(models.Model):
    class Status(models.TextChoices):
        EXTRACTING = "extracting", _("Extracting")
        READY = "ready", _("Ready")
        FAILED = "failed", _("Failed")
        DISCARDED = "discarded", _("Discarded")
        PURGED = "purged", _("Purged")

    class Match(models.TextChoices):
        ALL = "all", _("All of the conditions (AND)")
        ANY = "any", _("Any of the conditions (OR)")

    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.EXTRACTING
    )
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    deliveries = models.ManyToManyField(
        "Delivery", related_name="extractions", verbose_name=_("source deliveries")
    )
    view = models.ForeignKey(
        "customers.View", models.SET_NULL, null=True, blank=True, verbose_name=_("view")
    )
    view_name = models.CharField(max_length=200, blank=True)  # kept if the view is deleted
    conditions = models.JSONField(_("conditions"), default=list, blank=True)
    match = models.CharField(max_length=3, choices=Match.choices, default=Match.ALL)
    link = models.ForeignKey(
        "TrackedLink", models.SET_NULL, null=True, blank=True, related_name="+"
    )
    count = models.BigIntegerField(default=0)
    recipient_list = models.OneToOneField(
        FrozenList, models.SET_NULL, null=True, blank=True, related_name="extraction"
    )
    job = models.ForeignKey(
        "accounts.Job", models.SET_NULL, null=True, blank=True, related_name="+"
    )
    error = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"#{self.pk}"


class Mail(models.Model):
    class Kind(models.TextChoices):
        BASIC = "basic", _("Basic mail")
        SPOT = "spot", _("Spot delivery")
        RETARGETING = "retargeting", _("Retargeting mail")
        STEP = "step", _("Step mail")
        AUTO = "auto", _("Auto mail")
        PLANNING = "planning", _("Planning mail")

    class DuplicateRule(models.TextChoices):
        IGNORE = "ignore", _("One message per record")
        NEWEST = "newest", _("One message per address (most recently updated record)")

    class AddressField(models.TextChoices):
        EMAIL = "email", _("PC e-mail")
        MOBILE = "mobile_email", _("mobile e-mail")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices, default=Kind.BASIC)
    name = models.CharField(_("name"), max_length=200)
    relay = models.ForeignKey(
        Relay, models.SET_NULL, null=True, blank=True, verbose_name=_("relay")
    )
    # Sender settings (差出人設定)
    from_address = models.CharField(_("from address"), max_length=254)
    from_name = models.CharField(_("from name"), max_length=200, blank=True)
    reply_to = models.CharField(_("reply-to"), max_length=254, blank=True)
    return_path_domain = models.CharField(_("return-path domain"), max_length=253, blank=True)
    error_threshold = models.PositiveIntegerField(_("error count threshold"), default=5)
    duplicate_rule = models.CharField(
        _("duplicate rule"),
        max_length=8,
        choices=DuplicateRule.choices,
        default=DuplicateRule.IGNORE,
    )
    address_field = models.CharField(
        _("address"), max_length=16, choices=AddressField.choices, default=AddressField.EMAIL
    )
    open_tracking = models.BooleanField(_("open tracking"), default=True)
    click_tracking = models.BooleanField(_("click tracking"), default=True)
    topic = models.ForeignKey(
        "customers.Topic",
        models.SET_NULL,
        null=True,
        blank=True,
        verbose_name=_("newsletter topic"),
    )
    # Content
    subject = models.CharField(_("subject"), max_length=500)
    text_body = models.TextField(_("text body"), blank=True)
    html_body = models.TextField(_("HTML body"), blank=True)
    # Targeting
    filter = models.JSONField(_("filter"), default=dict, blank=True)
    view = models.ForeignKey(
        "customers.View", models.PROTECT, null=True, blank=True, verbose_name=_("view")
    )
    customer_set = models.JSONField(_("customer set"), default=dict, blank=True)
    recipient_list = models.ForeignKey(
        FrozenList, models.PROTECT, null=True, blank=True, verbose_name=_("recipient list")
    )
    # Lineage (再送信 / re-deliver)
    resend_of = models.ForeignKey(
        "self", models.SET_NULL, null=True, blank=True, related_name="resends"
    )
    resend_of_delivery = models.ForeignKey(
        "Delivery", models.SET_NULL, null=True, blank=True, related_name="redeliveries"
    )
    resend_audience = models.CharField(max_length=32, blank=True)
    audience = models.JSONField(default=dict, blank=True)

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return self.name


class TrackedLink(models.Model):
    mail = models.ForeignKey(Mail, models.CASCADE, related_name="links")
    url = models.CharField(_("URL"), max_length=2000)
    name = models.CharField(_("click feedback name"), max_length=200, blank=True)
    position = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["mail", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["mail", "url"], name="tracked_link_url")]

    def __str__(self) -> str:
        return self.name or self.url


class Delivery(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        RESERVED = "reserved", _("Reserved")
        RUNNING = "running", _("Running")
        PAUSED = "paused", _("Paused")
        STOPPED = "stopped", _("Stopped")
        COMPLETED = "completed", _("Completed")
        CANCELLED = "cancelled", _("Cancelled")

    mail = models.ForeignKey(Mail, models.PROTECT, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    relay = models.ForeignKey(Relay, models.SET_NULL, null=True, blank=True)
    scheduled_at = models.DateTimeField(_("scheduled for"), null=True, blank=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True, db_index=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    # Snapshots: what this delivery sends and to whom, fixed at reservation / start.
    content = models.JSONField(default=dict, blank=True)
    targeting = models.JSONField(default=dict, blank=True)
    # Summary counts (kept after per-recipient detail is purged).
    matched_count = models.BigIntegerField(default=0)
    excluded = models.JSONField(default=dict, blank=True)  # reason -> count
    recipient_count = models.BigIntegerField(default=0)
    sent_count = models.BigIntegerField(default=0)
    failed_count = models.BigIntegerField(default=0)
    unknown_count = models.BigIntegerField(default=0)
    # Ledger rows not sent because an exclusion applied at send time (reason -> count), and
    # rows never sent because an operator stopped the delivery.
    excluded_at_send = models.JSONField(default=dict, blank=True)
    stopped_count = models.BigIntegerField(default=0)
    open_unique = models.BigIntegerField(default=0)
    open_total = models.BigIntegerField(default=0)
    click_unique = models.BigIntegerField(default=0)
    click_total = models.BigIntegerField(default=0)
    # Worker bookkeeping: the reconciler looks for running deliveries gone quiet.
    last_activity_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["status", "scheduled_at"], name="delivery_status_sched")]

    def __str__(self) -> str:
        return f"{self.mail} #{self.pk}"


class Recipient(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENDING = "sending", pgettext_lazy("recipient status", "Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        UNKNOWN = "unknown", _("Unknown")
        EXCLUDED = "excluded", _("Excluded at send time")
        STOPPED = "stopped", _("Not sent: delivery stopped")

    # No index of its own: the (delivery, customer_id) unique index leads with it, and every
    # index on the ledger costs a write per row per status change.
    delivery = models.ForeignKey(
        Delivery, models.CASCADE, related_name="recipients", db_index=False
    )
    customer_id = models.BigIntegerField()
    address = models.CharField(max_length=254)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claim = models.CharField(max_length=32, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    smtp_reply = models.CharField(max_length=1000, blank=True)
    error_kind = models.CharField(max_length=16, choices=ErrorKind.choices, blank=True)
    exclusion = models.CharField(max_length=16, choices=Exclusion.choices, blank=True)
    note = models.CharField(max_length=500, blank=True)
    message_id = models.CharField(max_length=255, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    first_open_at = models.DateTimeField(null=True, blank=True)
    open_count = models.PositiveIntegerField(default=0)
    first_click_at = models.DateTimeField(null=True, blank=True)
    click_count = models.PositiveIntegerField(default=0)
    # Sent again after being "unknown" (an operator's decision): the recipient may hold two
    # copies. Kept whatever happens to the row next, for the drill-down, the API and exports.
    maybe_duplicate = models.BooleanField(
        _("may have received two copies"), default=False, db_default=False
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["delivery", "customer_id"], name="ledger_one_per_customer"
            )
        ]
        indexes = [
            # Claiming: "queued rows of this delivery that are due".
            models.Index(fields=["delivery", "status", "next_attempt_at"], name="ledger_claim"),
            # The reaper: "sending rows whose lease ran out". Partial, so a row is in it only
            # while it is being sent instead of costing an index write on every status change.
            models.Index(
                fields=["claimed_at"], name="ledger_sending", condition=Q(status="sending")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.address} ({self.status})"


class Event(models.Model):
    class Kind(models.TextChoices):
        OPEN = "open", _("Open")
        CLICK = "click", _("Click")
        UNSUBSCRIBE = "unsubscribe", _("Unsubscribe")
        BOUNCE = "bounce", _("Bounce")
        COMPLAINT = "complaint", _("Complaint")

    delivery = models.ForeignKey(Delivery, models.CASCADE, related_name="events")
    recipient = models.ForeignKey(
        Recipient, models.SET_NULL, null=True, blank=True, related_name="events"
    )
    customer_id = models.BigIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    link = models.ForeignKey(TrackedLink, models.SET_NULL, null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["delivery", "kind", "created"], name="event_report")]


class ListCleaning(models.Model):
    address = models.CharField(max_length=254, unique=True)  # lower-cased
    reason = models.CharField(max_length=16, choices=ErrorKind.choices)
    created = models.DateTimeField(default=timezone.now)

    def save(self, *args, **kwargs) -> None:
        self.address = self.address.strip().lower()
        super().save(*args, **kwargs)


class PlannedRedelivery(models.Model):
    class Status(models.TextChoices):
        PLANNED = "planned", _("Planned")
        DONE = "done", _("Done")
        SKIPPED = "skipped", _("Skipped")
        CANCELLED = "cancelled", _("Cancelled")

    class Audience(models.TextChoices):
        NOT_OPENED = "not_opened", _("those who have not opened")
        NOT_CLICKED = "not_clicked", _("those who have not clicked")

    mail = models.ForeignKey(
        Mail, models.CASCADE, null=True, blank=True, related_name="planned_redeliveries"
    )
    source = models.ForeignKey(
        Delivery, models.CASCADE, null=True, blank=True, related_name="planned_redeliveries"
    )
    audience = models.CharField(_("audience"), max_length=16, choices=Audience.choices)
    days = models.PositiveIntegerField(_("days after the send"))
    subject = models.CharField(_("new subject"), max_length=500, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PLANNED)
    result = models.ForeignKey(
        Delivery, models.SET_NULL, null=True, blank=True, related_name="planned_from"
    )
    note = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created", "id"]
        indexes = [models.Index(fields=["status", "source"], name="planned_redelivery_due")]

    def __str__(self) -> str:
        return f"{self.get_audience_display()} +{self.days}d"

    @classmethod
    def copy_mail_plans(cls, delivery: Delivery) -> int:
        """Give ``delivery`` the planned re-deliveries of its mail (called when it is reserved)."""
        plans = cls.objects.filter(mail_id=delivery.mail_id, status=cls.Status.PLANNED)
        copies = [
            cls(
                source=delivery,
                audience=p.audience,
                days=p.days,
                subject=p.subject,
                created_by_id=p.created_by_id,
            )
            for p in plans
        ]
        return len(cls.objects.bulk_create(copies))


class ReportArchive(models.Model):
    """The parts of a delivery's report that are computed from per-recipient detail (ledger
    rows, events), frozen just before that detail is purged: errors by kind, clicks per link,
    the opens-and-clicks chart. The other counts stay on the ``Delivery`` row itself."""

    delivery = models.OneToOneField(
        "mailings.Delivery", models.CASCADE, related_name="report_archive"
    )
    errors = models.JSONField(default=dict, blank=True)  # error kind -> count
    links = models.JSONField(default=list, blank=True)  # [{link, url, name, unique, total}]
    series = models.JSONField(default=dict, blank=True)  # {unit, points: [[iso, opens, clicks]]}
    purged_rows = models.BigIntegerField(default=0)
    purged_at = models.DateTimeField(default=timezone.now)
