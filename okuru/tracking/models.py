"""Tracking keeps its events and counters on the mailings tables (``Event``, the ledger and the
delivery's counters, see ``okuru.tracking.recording``). Its one table of its own is the archive
of a delivery's report, written when per-recipient detail is purged."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


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
