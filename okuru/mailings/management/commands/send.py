"""``okuru send MAIL_ID``: preview the counts of a mail, send it now or reserve it."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from okuru.accounts.models import Operator
from okuru.mailings import actions, targeting
from okuru.mailings.models import Mail


class Command(BaseCommand):
    help = "Preview the counts of a mail (--preview), send it now, or reserve it (--at)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("mail_id", type=int)
        parser.add_argument("--preview", action="store_true", help="print counts, send nothing")
        parser.add_argument("--at", help="reserve for this time (ISO 8601, with offset)")
        parser.add_argument("--operator", help="user name recorded in the operation log")

    def handle(self, *args: Any, **opts: Any) -> None:
        mail = Mail.objects.filter(pk=opts["mail_id"]).first()
        if mail is None:
            raise CommandError(f"No such mail: {opts['mail_id']}")
        operator = None
        if opts["operator"]:
            operator = Operator.objects.filter(username=opts["operator"]).first()
            if operator is None:
                raise CommandError(f"No such operator: {opts['operator']}")
            if not operator.has_right("sending"):
                raise CommandError(f"{operator.username} does not have the sending right.")
        try:
            if opts["preview"]:
                self.stdout.write(json.dumps(targeting.preview(mail), indent=2))
                return
            when = None
            if opts["at"]:
                when = parse_datetime(opts["at"])
                if when is None or when.tzinfo is None:
                    raise CommandError("--at needs an ISO 8601 time with an offset.")
            actions.check_reservation_time(when)
            delivery = actions.reserve(actions.create_delivery(mail, operator), operator, when)
        except ValidationError as e:
            raise CommandError("; ".join(e.messages)) from None
        self.stdout.write(f"delivery {delivery.pk} {delivery.status}")
