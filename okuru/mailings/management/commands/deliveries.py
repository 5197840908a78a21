"""``okuru deliveries …``: delivery results (配信実績) and operations from the command line.

    okuru deliveries list [--mail ID] [--status S] [--limit N]
    okuru deliveries show ID                       # the report as JSON
    okuru deliveries export ID COUNT [--fields email,name] [--encoding cp932] [-o FILE]
    okuru deliveries events ID [-o FILE]           # one row per event
    okuru deliveries cancel|pause|resume|stop ID
    okuru deliveries unknown ID --resend | --no-resend
    okuru deliveries purge                         # per-recipient detail past retention
    okuru deliveries resend ID                     # a new draft cloned from the delivery
    okuru deliveries redeliver ID --audience A [--link ID] [--subject TEXT] [--at TIME]
                                  [--preview] [--yes]
    okuru deliveries plan ID --audience not_opened|not_clicked --days N [--subject TEXT]
    okuru deliveries plans ID                      # a delivery's planned re-deliveries
    okuru deliveries unplan PLAN_ID                # cancel a planned re-delivery

COUNT is one of all, sent, errors, error:<kind>, unknown, opened, not_opened, clicked,
not_clicked, clicked:<link id>. Exports write CSV (Customer ID first) to stdout or ``-o``.
AUDIENCE (re-deliver) is one of all, opened, not_opened, clicked, not_clicked, errored,
not_errored, not_reached; ``--preview`` prints the counts as JSON and sends nothing; a repeat of
the same audience of the same delivery needs ``--yes``.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from okuru.accounts import audit
from okuru.mailings import actions, audiences, redelivery, reports
from okuru.mailings.management.commands.mails import dumps, operator_with
from okuru.mailings.models import Delivery, PlannedRedelivery

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
        resend = sub.add_parser("resend", help="a new draft mail cloned from the delivery")
        resend.add_argument("delivery_id", type=int)
        again = sub.add_parser("redeliver", help="send to an audience of the delivery's recipients")
        again.add_argument("delivery_id", type=int)
        again.add_argument("--audience", required=True, choices=list(audiences.AUDIENCES))
        again.add_argument("--link", type=int, help="a tracked link (clicked / not_clicked)")
        again.add_argument("--subject", default="", help="a new subject")
        again.add_argument("--at", help="reserve for this time (ISO 8601 with offset)")
        again.add_argument("--preview", action="store_true", help="print the counts only")
        again.add_argument("--yes", action="store_true", help="confirm a repeat")
        plan = sub.add_parser("plan", help="plan a re-delivery N days after the send")
        plan.add_argument("delivery_id", type=int)
        plan.add_argument("--audience", required=True, choices=PlannedRedelivery.Audience.values)
        plan.add_argument("--days", type=int, required=True)
        plan.add_argument("--subject", default="")
        plans = sub.add_parser("plans", help="a delivery's planned re-deliveries as JSON")
        plans.add_argument("delivery_id", type=int)
        unplan = sub.add_parser("unplan", help="cancel a planned re-delivery")
        unplan.add_argument("plan_id", type=int)
        for p in (*changes, unknown, export, events, resend, again, plan, unplan):
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

    def resend(self, options: dict) -> None:
        operator = operator_with(options.get("operator"), "sending")
        if operator is not None and not operator.has_right("mails"):
            raise CommandError(f"{operator.username} does not have the mails right.")
        mail = redelivery.resend(get_delivery(options["delivery_id"]), operator)
        self.stdout.write(f"mail {mail.pk} created")

    def redeliver(self, options: dict) -> None:
        delivery = get_delivery(options["delivery_id"])
        if options["preview"]:
            counts = redelivery.redeliver_preview(delivery, options["audience"], options["link"])
            self.stdout.write(dumps(counts))
            return
        operator = operator_with(options.get("operator"), "sending")
        when = None
        if options.get("at"):
            when = parse_datetime(options["at"])
            if when is None or when.tzinfo is None:
                raise CommandError("--at needs an ISO 8601 time with an offset.")
        try:
            new = redelivery.redeliver(
                delivery,
                operator,
                options["audience"],
                link=options["link"],
                subject=options["subject"],
                when=when,
                confirm=options["yes"],
            )
        except redelivery.RepeatError as e:
            raise CommandError(" ".join(e.messages) + " (use --yes)") from None
        self.stdout.write(f"delivery {new.pk} {new.status}")

    def plan(self, options: dict) -> None:
        operator = operator_with(options.get("operator"), "sending")
        plan = redelivery.plan_redelivery(
            operator,
            options["audience"],
            options["days"],
            options["subject"],
            source=get_delivery(options["delivery_id"]),
        )
        self.stdout.write(f"plan {plan.pk} {plan.status}")

    def plans(self, options: dict) -> None:
        delivery = get_delivery(options["delivery_id"])
        self.stdout.write(
            dumps([redelivery.plan_json(p) for p in delivery.planned_redeliveries.all()])
        )

    def unplan(self, options: dict) -> None:
        operator = operator_with(options.get("operator"), "sending")
        plan = PlannedRedelivery.objects.filter(pk=options["plan_id"]).first()
        if plan is None:
            raise CommandError(f"No such planned re-delivery: {options['plan_id']}")
        redelivery.cancel_planned(plan, operator)
        self.stdout.write(f"plan {plan.pk} {plan.status}")
