"""What the operator of a delivery is told when it has finished: an in-app notice and, with
``NOTIFY_BY_EMAIL``, an e-mail, both in the operator's language, with the counts (sent, errors,
unknown) that the report shows."""

from __future__ import annotations

import logging
from functools import partial

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.formats import number_format
from django.utils.translation import gettext as _

from okuru.accounts.models import Notification
from okuru.mailings.models import Delivery

log = logging.getLogger(__name__)


def delivery_finished(delivery_id: int) -> None:
    """Tell the delivery's operator (who reserved it, else the mail's owner) that it finished,
    once the completion is committed: a rolled-back completion tells nobody."""
    transaction.on_commit(partial(_notify, delivery_id))


def finished_text(delivery: Delivery) -> str:
    def n(value: int) -> str:
        return number_format(value, force_grouping=True)

    return _(
        "Delivery #%(id)s “%(name)s” finished at %(time)s: sent %(sent)s, errors %(errors)s,"
        " unknown %(unknown)s."
    ) % {
        "id": delivery.pk,
        "name": delivery.mail.name,
        "time": timezone.localtime(delivery.finished_at or timezone.now()).strftime(
            "%Y-%m-%d %H:%M"
        ),
        "sent": n(delivery.sent_count),
        "errors": n(delivery.failed_count),
        "unknown": n(delivery.unknown_count),
    }


def _notify(delivery_id: int) -> None:
    d = (
        Delivery.objects.select_related("mail", "created_by", "mail__owner")
        .filter(pk=delivery_id)
        .first()
    )
    operator = d and (d.created_by or d.mail.owner)
    if operator is None or not operator.is_active:
        return
    with translation.override(operator.language or settings.LANGUAGE_CODE):
        text = finished_text(d)
        link = reverse("mailings:report", args=[d.pk])
        Notification.objects.create(operator=operator, text=text[:500], link=link)
        if not (settings.NOTIFY_BY_EMAIL and operator.email):
            return
        try:
            send_mail(
                f"[Okuru] {text}"[:200],
                f"{text}\n\n{settings.SITE_ROOT.rstrip('/')}{link}\n",
                None,
                [operator.email],
            )
        except OSError:
            # The notice is in the app already; a mail server that is down must not fail the
            # worker that completed the delivery.
            log.warning("could not e-mail the finished notice of delivery %s", d.pk, exc_info=True)
