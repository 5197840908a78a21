"""Tracking keeps its events and counters on the mailings tables (``Event``, the ledger and the
delivery's counters, see ``okuru.tracking.recording``). Its own tables are the inbox of hits not
yet applied to them, and the archive of a delivery's report, written when per-recipient detail
is purged."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Hit(models.Model):
    """An open or a click as the endpoint received it, waiting to be applied to the events and
    counters (``recording.drain`` applies a batch and deletes it in one transaction).

    The request path only ever inserts here. No foreign keys (each would cost a lookup, and a
    row lock on PostgreSQL, per request; the drain joins and drops hits whose ledger row is
    gone) and no index but the primary key, whose order is arrival order."""

    class Kind(models.TextChoices):
        OPEN = "o", "open"
        CLICK = "c", "click"

    kind = models.CharField(max_length=1, choices=Kind.choices)
    recipient_id = models.BigIntegerField()
    link_id = models.BigIntegerField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)


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
