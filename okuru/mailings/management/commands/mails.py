"""``okuru mails list|show|create|preview|send``: mails from the command line, through the same
named actions as the UI and the API (``okuru send`` does preview and send too; this command
adds listing and creating, and shares its rights check).

``create`` reads a JSON file with the API's mail fields (``POST /api/mails``)::

    {"name": "Spring sale", "kind": "basic", "from_address": "news@shop.example",
     "subject": "Hello {{ customer_id }}", "text_body": "...", "html_body": "...",
     "filter": {"match": "all", "conditions": [...]}, "topic": "news"}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder
from django.utils.dateparse import parse_datetime
from pydantic import ValidationError as SchemaError

from okuru.api.errors import ApiError
from okuru.customers.filters import FilterError
from okuru.customers.management.cli import get_operator
from okuru.mailings import actions, rendering, targeting
from okuru.mailings.api import MailIn, mail_json, new_mail
from okuru.mailings.models import Mail


def dumps(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2)


def operator_with(username: str | None, right: str) -> Any:
    """The ``--operator`` for the operation log, who must hold ``right`` (None: the CLI)."""
    operator = get_operator(username)
    if operator is not None and not operator.has_right(right):
        raise CommandError(f"{operator.username} does not have the {right} right.")
    return operator


def get_mail(mail_id: int) -> Mail:
    mail = Mail.objects.select_related("topic").filter(pk=mail_id).first()
    if mail is None:
        raise CommandError(f"No such mail: {mail_id}")
    return mail


class Command(BaseCommand):
    help = "List, show, create, preview and send mails."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="list mails, newest first")
        show = sub.add_parser("show", help="print a mail as JSON")
        show.add_argument("mail_id", type=int)
        create = sub.add_parser("create", help="create a mail from a JSON file")
        create.add_argument("file", help="JSON with the API's mail fields, or - for stdin")
        preview = sub.add_parser("preview", help="print the mail's counts, send nothing")
        preview.add_argument("mail_id", type=int)
        send = sub.add_parser("send", help="send now, or reserve with --at")
        send.add_argument("mail_id", type=int)
        send.add_argument("--at", help="reserve for this time (ISO 8601 with offset)")
        for p in (create, send):
            p.add_argument("--operator", help="operator name for the operation log")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, options["action"])(options)
        except ValidationError as e:
            raise CommandError(" ".join(e.messages)) from None
        except (ApiError, FilterError) as e:
            raise CommandError(str(getattr(e, "detail", e))) from None

    def list(self, options: dict) -> None:
        for m in Mail.objects.order_by("-id"):
            self.stdout.write(f"{m.pk}\t{m.kind}\t{m.name}\t{m.subject}")

    def show(self, options: dict) -> None:
        self.stdout.write(dumps(mail_json(get_mail(options["mail_id"]))))

    def create(self, options: dict) -> None:
        operator = operator_with(options.get("operator"), "mails")
        path = options["file"]
        try:
            raw = self.stdin_text() if path == "-" else Path(path).read_text(encoding="utf-8")
            payload = MailIn.model_validate(json.loads(raw))
        except OSError as e:
            raise CommandError(f"Cannot read {path}: {e}") from None
        except json.JSONDecodeError as e:
            raise CommandError(f"{path} is not valid JSON: {e}") from None
        except SchemaError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
            )
            raise CommandError(f"Invalid mail: {problems}") from None
        mail = actions.save_mail(new_mail(payload, operator), operator)
        self.stdout.write(f"mail {mail.pk} created")

    def stdin_text(self) -> str:
        import sys

        return sys.stdin.read()

    def preview(self, options: dict) -> None:
        mail = get_mail(options["mail_id"])
        if not actions.has_target(mail):
            raise CommandError("A spot delivery needs a view or a recipient list.")
        self.stdout.write(dumps(targeting.preview(mail)))

    def send(self, options: dict) -> None:
        operator = operator_with(options.get("operator"), "sending")
        mail = get_mail(options["mail_id"])
        when = None
        if options.get("at"):
            when = parse_datetime(options["at"])
            if when is None or when.tzinfo is None:
                raise CommandError("--at needs an ISO 8601 time with an offset.")
        actions.check_reservation_time(when)
        rendering.validate_templates(mail)
        actions.validate_targeting(mail)
        delivery = actions.reserve(actions.create_delivery(mail, operator), operator, when)
        self.stdout.write(f"delivery {delivery.pk} {delivery.status}")
