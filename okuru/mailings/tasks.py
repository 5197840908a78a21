"""Background tasks for sending (Django's Tasks API on Huey).

``kick_delivery`` sends a delivery for a while inside a Huey worker and re-enqueues itself while
work remains; it is safe to run twice (claims decide who sends what). Huey is at-most-once, so
``reconcile`` runs every minute and kicks whatever has stalled: due reservations, running
deliveries with due rows and no recent activity, leases of dead workers. Planned re-deliveries
that are due run every minute too (``redelivery.run_due_planned``). A long-running
``okuru sendworker`` does the same work without Huey when deliveries are large.
"""

from __future__ import annotations

import time

from django.tasks import task
from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from okuru.mailings import redelivery, sending

KICK_SECONDS = 300.0


@task
def kick_delivery(delivery_id: int) -> None:
    from okuru.mailings import actions

    actions.start_delivery(delivery_id)  # a due reservation starts here; otherwise a no-op
    worker = sending.Worker()
    found = False
    try:
        until = time.monotonic() + KICK_SECONDS
        while time.monotonic() < until:
            found = worker.send_batch(delivery_id)
            if not found:
                break
    finally:
        worker.close()
    if found:  # time is up but rows remain: continue in a fresh task
        kick_delivery.enqueue(delivery_id)


@task
def reconcile_deliveries() -> None:
    for delivery_id in sending.reconcile():
        kick_delivery.enqueue(delivery_id)


@db_periodic_task(crontab(minute="*"))
def reconcile_every_minute() -> None:
    reconcile_deliveries.enqueue()


@task
def run_planned_redeliveries() -> None:
    redelivery.run_due_planned()


@db_periodic_task(crontab(minute="*"))
def planned_redeliveries_every_minute() -> None:
    run_planned_redeliveries.enqueue()
