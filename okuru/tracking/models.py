"""Tracking keeps its events and counters on the mailings tables (``Event``, the ledger and the
delivery's counters, see ``okuru.tracking.recording``). Its own table is the inbox of hits not
yet applied to them."""

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
