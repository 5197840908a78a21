"""Periodic bounce work (Django's Tasks API on Huey): poll the bounce mailboxes, and give the
refusal flag back to customers whose suppressed address came back by any path.

Both are idempotent: a poll stores each message once (by Message-ID), and ``enforce`` only
sets flags that are missing. The sweep looks a little further back than its interval, so a
lost run leaves no gap.
"""

from __future__ import annotations

from datetime import timedelta

from django.tasks import task
from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from okuru.bounces import mailboxes, suppression

SWEEP_MINUTES = 5


@task
def poll_mailboxes() -> None:
    mailboxes.poll_all()


@db_periodic_task(crontab(minute="*"))
def poll_mailboxes_every_minute() -> None:
    poll_mailboxes.enqueue()


@task
def sweep_suppressions() -> None:
    suppression.enforce(since=timezone.now() - timedelta(minutes=3 * SWEEP_MINUTES))


@db_periodic_task(crontab(minute=f"*/{SWEEP_MINUTES}"))
def sweep_suppressions_every_few_minutes() -> None:
    sweep_suppressions.enqueue()
