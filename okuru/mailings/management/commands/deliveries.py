"""``okuru deliveries …``: delivery results (配信実績) and operations from the command line.

    okuru deliveries list [--mail ID] [--status S] [--limit N]
    okuru deliveries show ID                       # the report as JSON
    okuru deliveries export ID COUNT [--fields email,name] [--encoding cp932] [-o FILE]
    okuru deliveries events ID [-o FILE]           # one row per event
    okuru deliveries cancel|pause|resume|stop ID
    okuru deliveries unknown ID --resend | --no-resend
    okuru deliveries purge                         # per-recipient detail past retention

COUNT is one of all, sent, errors, error:<kind>, unknown, opened, not_opened, clicked,
not_clicked, clicked:<link id>. Exports write CSV (Customer ID first) to stdout or ``-o``.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from okuru.accounts import audit
from okuru.mailings import actions, reports
from okuru.mailings.management.commands.mails import dumps, operator_with
from okuru.mailings.models import Delivery

STATE_ACTIONS = {
    "cancel": actions.cancel,
    "pause": actions.pause,
    "resume": actions.resume,
    "stop": actions.stop,
}


def get_delivery(delivery_id: int) -> Delivery:
    delivery = Delivery.objects.select_related("mail").filter(pk=delivery_id).first()
    if delivery is None:
        raise CommandError(f"No such delivery: {delivery_id}")
    return delivery


class Command(BaseCommand):
    help = "List deliveries, show reports, export recipients and events, change states."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        ls = sub.add_parser("list", help="deliveries, newest first")
        ls.add_argument("--mail", type=int)
        ls.add_argument("--status", choices=Delivery.Status.values)
        ls.add_argument("--limit", type=int, default=50)
        show = sub.add_parser("show", help="a delivery's report as JSON")
        show.add_argument("delivery_id", type=int)
        export = sub.add_parser("export", help="the customers of a count as CSV")
        export.add_argument("delivery_id", type=int)
        export.add_argument("count")
        export.add_argument("--fields", default="", help="field keys after the Customer ID: a,b")
        events = sub.add_parser("events", help="one CSV row per event")
        events.add_argument("delivery_id", type=int)
        for p in (export, events):
            p.add_argument("--encoding", default="utf-8-sig", help="utf-8-sig or cp932")
            p.add_argument("-o", "--output", help="file to write (default: stdout)")
        changes = []
        for name in STATE_ACTIONS:
            p = sub.add_parser(name, help=f"{name} a delivery")
            p.add_argument("delivery_id", type=int)
            changes.append(p)
        unknown = sub.add_parser("unknown", help="decide on the unknown rows")
        unknown.add_argument("delivery_id", type=int)
        choice = unknown.add_mutually_exclusive_group(required=True)
        choice.add_argument("--resend", dest="resend", action="store_true")
        choice.add_argument("--no-resend", dest="resend", action="store_false")
        sub.add_parser("purge", help="purge per-recipient detail past the retention window")
        for p in (*changes, unknown, export, events):
            p.add_argument("--operator", help="operator name for the operation log")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            if action in STATE_ACTIONS:
                return self.change(options)
            getattr(self, action)(options)
        except ValidationError as e:
            raise CommandError(" ".join(e.messages)) from None
        except reports.ReportError as e:
            raise CommandError(str(e)) from None

    def list(self, options: dict) -> None:
        qs = reports.deliveries().order_by("-id")
        if options.get("mail"):
            qs = qs.filter(mail_id=options["mail"])
        if options.get("status"):
            qs = qs.filter(status=options["status"])
        for d in qs[: options["limit"]]:
            started = d.started_at.isoformat() if d.started_at else "-"
            source = "source" if reports.is_selectable_source(d) else "summary-only"
            self.stdout.write(
                f"{d.pk}\t{d.status}\t{started}\t{d.mail.name}\tsent={d.sent_count}"
                f"\tfailed={d.failed_count}\tunknown={d.unknown_count}"
                f"\topened={d.open_unique}\tclicked={d.click_unique}\t{source}"
            )

    def show(self, options: dict) -> None:
        delivery = get_delivery(options["delivery_id"])
        report = reports.summary_json(delivery)
        report["series"] = reports.series(delivery)
        self.stdout.write(dumps(report))

    def _write(self, chunks: Any, output: str | None) -> None:
        if output:
            with open(output, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
        else:
            out = sys.stdout.buffer
            for chunk in chunks:
                out.write(chunk)
            out.flush()

    def export(self, options: dict) -> None:
        operator = operator_with(options.get("operator"), "export_data")
        delivery = get_delivery(options["delivery_id"])
        count = options["count"]
        fields = [f.strip() for f in options["fields"].split(",") if f.strip()]
        chunks = reports.iter_recipient_export(delivery, count, fields, options["encoding"])
        audit.log(
            operator,
            "delivery.export_recipients",
            f"delivery:{delivery.pk}",
            {"count": count, "fields": fields, "encoding": options["encoding"], "cli": True},
        )
        self._write(chunks, options.get("output"))

    def events(self, options: dict) -> None:
        operator = operator_with(options.get("operator"), "export_data")
        delivery = get_delivery(options["delivery_id"])
        chunks = reports.iter_event_export(delivery, options["encoding"])
        audit.log(
            operator,
            "delivery.export_events",
            f"delivery:{delivery.pk}",
            {"encoding": options["encoding"], "cli": True},
        )
        self._write(chunks, options.get("output"))

    def change(self, options: dict) -> None:
        operator = operator_with(options.get("operator"), "sending")
        delivery = get_delivery(options["delivery_id"])
        STATE_ACTIONS[options["action"]](delivery, operator)
        self.stdout.write(f"delivery {delivery.pk} {delivery.status}")

    def unknown(self, options: dict) -> None:
        operator = operator_with(options.get("operator"), "sending")
        delivery = get_delivery(options["delivery_id"])
        n = actions.resolve_unknown(delivery, operator, resend=options["resend"])
        verb = "queued again" if options["resend"] else "left unsent"
        self.stdout.write(f"{n} unknown rows {verb}")

    def purge(self, options: dict) -> None:
        done = reports.purge_expired()
        self.stdout.write(f"purged {done['rows']} rows of {done['deliveries']} deliveries")
