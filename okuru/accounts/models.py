"""Operators, permission groups (Django groups holding the rights below), the operation log,
long-job records and in-app notifications."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

# Rights per feature. A permission group (django.contrib.auth Group) holds any of them.
RIGHTS = [
    ("customers_read", _("Customers: read")),
    ("customers_write", _("Customers: write")),
    ("database_design", _("Database design")),
    ("import_data", _("Import")),
    ("export_data", _("Export")),
    ("mails", _("Mails")),
    ("sending", _("Sending")),
    ("reports", _("Reports")),
    ("operators_admin", _("Operators admin")),
]


class Operator(AbstractUser):
    failed_logins = models.PositiveIntegerField(default=0)
    locked_until = models.DateTimeField(null=True, blank=True)
    language = models.CharField(max_length=8, blank=True, default="")

    class Meta:
        permissions = RIGHTS
        verbose_name = _("operator")

    def has_right(self, right: str) -> bool:
        return self.is_active and self.has_perm(f"accounts.{right}")

    def is_locked(self) -> bool:
        return self.locked_until is not None and self.locked_until > timezone.now()

    def record_failed_login(self) -> bool:
        """Count a failed log-in; at the limit, lock the account. True when this one locked it."""
        # Row lock: two concurrent wrong guesses must both count.
        with transaction.atomic():
            row = Operator.objects.select_for_update().only("failed_logins").get(pk=self.pk)
            self.failed_logins = row.failed_logins + 1
            locked = self.failed_logins >= settings.LOGIN_MAX_FAILURES
            if locked:
                self.locked_until = timezone.now() + timedelta(
                    minutes=settings.LOGIN_LOCKOUT_MINUTES
                )
                self.failed_logins = 0
            self.save(update_fields=["failed_logins", "locked_until"])
        return locked

    def record_successful_login(self) -> None:
        if self.failed_logins or self.locked_until:
            self.failed_logins = 0
            self.locked_until = None
            self.save(update_fields=["failed_logins", "locked_until"])

    def group_names(self) -> str:
        return ", ".join(sorted(g.name for g in self.groups.all()))

    def rights(self) -> set[str]:
        return {code for code, _label in RIGHTS if self.has_right(code)}


class OperationLog(models.Model):
    created = models.DateTimeField(default=timezone.now, db_index=True)
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    operator_name = models.CharField(max_length=150, blank=True)
    group_names = models.CharField(max_length=500, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    target = models.CharField(max_length=300, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]


class Job(models.Model):
    """A long job (import, export, later extraction and sending): what the UI shows progress of."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    kind = models.CharField(max_length=32)
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="jobs"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    params = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(default=timezone.now)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    progress_done = models.BigIntegerField(default=0)
    progress_total = models.BigIntegerField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    input_file = models.CharField(max_length=500, blank=True)
    output_file = models.CharField(max_length=500, blank=True)
    # Where the job was asked for: the operation log entries the job writes carry it.
    source_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]

    @property
    def percent(self) -> int | None:
        if not self.progress_total:
            return 100 if self.status == self.Status.SUCCEEDED else None
        return min(100, int(self.progress_done * 100 / self.progress_total))

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)


class Notification(models.Model):
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.CASCADE, related_name="notifications"
    )
    created = models.DateTimeField(default=timezone.now)
    text = models.CharField(max_length=500)
    link = models.CharField(max_length=500, blank=True)
    read = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created", "-id"]


class ApiTokenQuerySet(models.QuerySet):
    def active(self) -> ApiTokenQuerySet:
        return self.filter(revoked__isnull=True, operator__is_active=True)


class ApiToken(models.Model):
    """A bearer token for integrators. Only a SHA-256 of the key is stored: the key itself is
    shown once, when it is created."""

    PREFIX = "okuru_"

    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(_("name"), max_length=100)
    # The first characters of the key, kept so that the operator can tell tokens apart.
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(default=timezone.now)
    last_used = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def hash_key(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    @classmethod
    def issue(cls, operator: Operator, name: str) -> tuple[ApiToken, str]:
        """Create a token; returns it and the key (the only time the key is known)."""
        key = cls.PREFIX + secrets.token_urlsafe(40)
        token = cls.objects.create(
            operator=operator,
            name=name,
            prefix=key[: len(cls.PREFIX) + 6],
            key_hash=cls.hash_key(key),
        )
        return token, key

    @classmethod
    def find(cls, key: str) -> ApiToken | None:
        """The live token for ``key``, or None (unknown, revoked, or its operator inactive)."""
        if not key.startswith(cls.PREFIX) or len(key) > 200:
            return None
        return (
            cls.objects.active()
            .select_related("operator")
            .filter(key_hash=cls.hash_key(key))
            .first()
        )

    def touch(self) -> None:
        # One write a minute at most: a busy integrator must not turn every read into a write.
        now = timezone.now()
        if self.last_used is None or now - self.last_used > timedelta(minutes=1):
            self.last_used = now
            ApiToken.objects.filter(pk=self.pk).update(last_used=now)

    def revoke(self) -> None:
        if self.revoked is None:
            self.revoked = timezone.now()
            self.save(update_fields=["revoked"])
