"""Periodic work for measurement: the purge of per-recipient detail after the retention window
(``MAILINGS_RETENTION_DAYS``; ``okuru deliveries purge`` does the same by hand), and a drain of
the opens and clicks inbox every minute."""

from __future__ import annotations

from django.tasks import task
from huey import crontab
from huey.contrib.djhuey import db_periodic_task


@task
def purge_expired_detail() -> dict[str, int]:
    from okuru.mailings import reports

    return reports.purge_expired()


@db_periodic_task(crontab(hour="3", minute="17"))
def purge_every_night() -> None:
    purge_expired_detail.enqueue()


@db_periodic_task(crontab(minute="*"))
def drain_every_minute() -> None:
    """A safety net: ``okuru trackingworker`` drains continuously, but a deployment that runs
    none still gets its counts within a minute rather than never."""
    from okuru.tracking import recording

    recording.drain()
