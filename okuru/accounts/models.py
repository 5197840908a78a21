"""Operators, permission groups (Django groups holding the rights below), the operation log,
long-job records and in-app notifications."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
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

    def record_failed_login(self) -> None:
        self.failed_logins += 1
        if self.failed_logins >= settings.LOGIN_MAX_FAILURES:
            self.locked_until = timezone.now() + timedelta(minutes=settings.LOGIN_LOCKOUT_MINUTES)
            self.failed_logins = 0
        self.save(update_fields=["failed_logins", "locked_until"])

    def record_successful_login(self) -> None:
        if self.failed_logins or self.locked_until:
            self.failed_logins = 0
            self.locked_until = None
            self.save(update_fields=["failed_logins", "locked_until"])

    def group_names(self) -> str:
        return ", ".join(sorted(g.name for g in self.groups.all()))


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
