"""Operators, permission groups (Django groups holding the rights below), the operation log,
long-job records and in-app notifications."""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models, transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
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


@dataclass(frozen=True)
class LoginClaim:
    """The outcome of counting one log-in attempt (see ``Operator.claim_login_attempt``)."""

    allowed: bool
    # Attempts counted in the current run, this one included (0 when refused).
    count: int = 0
    # Refused: until when. Allowed: set when this very attempt reached the limit and locked.
    locked_until: datetime | None = None


def _claim(
    qs: QuerySet, *, limit: int, lockout: timedelta, restart: Q, stamp: str = ""
) -> LoginClaim:
    """Count an attempt on the one row of ``qs`` (fields ``failed_logins``, ``locked_until``)
    unless it is locked; lock it when the count reaches ``limit``. ``restart``: when the count
    starts again from this attempt (a lock ran out, a window passed); the field ``stamp`` then
    takes the time.

    One conditional UPDATE decides, so concurrent attempts on any number of processes each
    see the others' counts and lock: none of them reads a count and writes it back.
    """
    now = timezone.now()
    # Durable: the count must be committed before the password check that it admits.
    changes = {
        "failed_logins": Case(When(restart, then=1), default=F("failed_logins") + 1),
        "locked_until": None,
    }
    if stamp:
        changes[stamp] = Case(When(restart, then=Value(now)), default=F(stamp))
    with transaction.atomic(durable=True):
        counted = qs.filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now)).update(
            **changes
        )
        if not counted:
            locked_until = qs.values_list("locked_until", flat=True).first()
            return LoginClaim(allowed=False, locked_until=locked_until or now)
        # Our UPDATE holds the row (PostgreSQL) or the database (SQLite) until commit: what
        # we read now is our own count, with no other attempt in between.
        count = qs.values_list("failed_logins", flat=True).get()
        locked_until = None
        if count >= limit:
            locked_until = now + lockout
            qs.update(locked_until=locked_until)
    return LoginClaim(allowed=True, count=count, locked_until=locked_until)


def source_key(ip: str) -> str:
    """What the per-source throttle counts by: the IPv4 address, or the IPv6 /64 (one
    subscriber usually holds a whole /64, so counting single addresses would not bind)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:  # not an address (a Unix socket's peer): count it as it is
        return ip[:64]
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class LoginSource(models.Model):
    """Failed log-ins per source address, across user names: one address guessing many
    accounts is throttled even though no single account reaches its own limit. Kept in the
    database, so every web process and worker thread sees the same counts."""

    source = models.CharField(max_length=64, unique=True)
    # Failed attempts since ``window_start`` (attempts are counted before the check, and an
    # attempt that turns out right is taken off again).
    failed_logins = models.PositiveIntegerField(default=0)
    window_start = models.DateTimeField(default=timezone.now)
    locked_until = models.DateTimeField(null=True, blank=True)

    @classmethod
    def claim(cls, ip: str) -> LoginClaim:
        """Count an attempt from ``ip``: LOGIN_IP_MAX_FAILURES failures within
        LOGIN_IP_WINDOW_MINUTES lock the source for LOGIN_IP_LOCKOUT_MINUTES."""
        key = source_key(ip)
        cls.objects.bulk_create([cls(source=key)], ignore_conflicts=True)
        window = timedelta(minutes=settings.LOGIN_IP_WINDOW_MINUTES)
        return _claim(
            cls.objects.filter(source=key),
            limit=settings.LOGIN_IP_MAX_FAILURES,
            lockout=timedelta(minutes=settings.LOGIN_IP_LOCKOUT_MINUTES),
            restart=Q(locked_until__isnull=False) | Q(window_start__lte=timezone.now() - window),
            stamp="window_start",
        )

    @classmethod
    def release(cls, ip: str, claim: LoginClaim) -> None:
        """The attempt of ``claim`` was a successful log-in: it is no failure."""
        qs = cls.objects.filter(source=source_key(ip), failed_logins__gt=0)
        if claim.locked_until is not None:
            qs.filter(locked_until=claim.locked_until).update(locked_until=None)
        qs.update(failed_logins=F("failed_logins") - 1)

    @classmethod
    def prune(cls) -> int:
        """Forget sources whose window and lock have both run out."""
        now = timezone.now()
        window = timedelta(minutes=settings.LOGIN_IP_WINDOW_MINUTES)
        return (
            cls.objects.filter(window_start__lte=now - window)
            .filter(Q(locked_until__isnull=True) | Q(locked_until__lte=now))
            .delete()[0]
        )


class OperatorManager(UserManager):
    def create_superuser(self, username, email=None, password=None, **extra_fields):
        # Django's ``createsuperuser`` lets a weak password through (a "bypass?" prompt, or
        # DJANGO_SUPERUSER_PASSWORD unchecked): here every validator runs, without a way round.
        if password is not None:
            candidate = self.model(username=username, email=email or "", **extra_fields)
            password_validation.validate_password(password, candidate)
        return super().create_superuser(username, email, password, **extra_fields)


class Operator(AbstractUser):
    failed_logins = models.PositiveIntegerField(default=0)
    locked_until = models.DateTimeField(null=True, blank=True)
    language = models.CharField(max_length=8, blank=True, default="")

    objects = OperatorManager()

    class Meta:
        permissions = RIGHTS
        verbose_name = _("operator")

    def has_right(self, right: str) -> bool:
        return self.is_active and self.has_perm(f"accounts.{right}")

    def is_locked(self) -> bool:
        return self.locked_until is not None and self.locked_until > timezone.now()

    @classmethod
    def claim_login_attempt(cls, pk: int) -> LoginClaim:
        """Count a log-in attempt on operator ``pk`` *before* its password is checked.

        Refused while the account is locked. The attempt that reaches LOGIN_MAX_FAILURES locks
        the account for LOGIN_LOCKOUT_MINUTES; the count starts again when a lock has run out.
        So at most LOGIN_MAX_FAILURES passwords are checked per lockout period, however many
        requests race: each one has to win this conditional UPDATE first.
        """
        return _claim(
            cls.objects.filter(pk=pk),
            limit=settings.LOGIN_MAX_FAILURES,
            lockout=timedelta(minutes=settings.LOGIN_LOCKOUT_MINUTES),
            restart=Q(locked_until__isnull=False),
        )

    @classmethod
    def release_login_claim(cls, pk: int, claim: LoginClaim) -> None:
        """The password of ``claim`` was right: forget the failures before it. Only when no
        other attempt was counted since: a guesser racing the owner keeps their count."""
        cls.objects.filter(pk=pk, failed_logins=claim.count).update(
            failed_logins=0, locked_until=None
        )

    def unlock(self) -> None:
        Operator.objects.filter(pk=self.pk).update(failed_logins=0, locked_until=None)
        self.failed_logins, self.locked_until = 0, None

    def group_names(self) -> str:
        return ", ".join(sorted(g.name for g in self.groups.all()))

    def rights(self) -> set[str]:
        return {code for code, _label in RIGHTS if self.has_right(code)}


# The built-in group that ``createoperator --admin`` makes. Its stored name stays English (it is
# how the command finds it again); screens show it in the operator's language.
ADMIN_GROUP = "Administrators"


def group_label(name: str) -> str:
    """A group name as the screens show it: the built-in group's in the active language."""
    return str(_("Administrators")) if name == ADMIN_GROUP else name


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
