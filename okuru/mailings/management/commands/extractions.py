"""``okuru extractions …``: use of measurement results (効果測定結果の利用) from the command line.

    okuru extractions create --deliveries ID[,ID…] --view NAME_OR_ID --set COND[,COND…]
                             [--match all|any] [--link ID] [--operator NAME]
    okuru extractions list
    okuru extractions show N          # JSON
    okuru extractions discard N [--operator NAME]

COND is one of opened, not_opened, clicked, not_clicked, errored, not_errored; ``--set ""`` (or
no ``--set``) takes every recipient. ``create`` runs the extraction in the foreground with
progress on stderr (as ``okuru import`` does), sends the operator the same notice and e-mail as
the screens, and prints ``extraction N ready (COUNT customers)``.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from okuru.accounts import jobs
from okuru.customers.management.cli import ProgressLine
from okuru.mailings import extraction
from okuru.mailings.management.commands.mails import dumps, operator_with
from okuru.mailings.models import Extraction


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def get_extraction(extraction_id: int) -> Extraction:
    found = extraction.get(extraction_id)
    if found is None:
        raise CommandError(f"No such extraction: {extraction_id}")
    return found


class Command(BaseCommand):
    help = "Extract delivery lists from delivery results, list, show and discard them."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="extract a delivery list (runs in the foreground)")
        create.add_argument("--deliveries", required=True, help="source delivery ids: 1,2")
        create.add_argument("--view", required=True, help="database view name or id")
        create.add_argument(
            "--set",
            default="",
            help="conditions: " + ", ".join(extraction.CONDITIONS) + " (none: every recipient)",
        )
        create.add_argument("--match", default="all", choices=["all", "any"])
        create.add_argument("--link", help="tracked link id for clicked / not_clicked")
        sub.add_parser("list", help="extractions, newest first")
        show = sub.add_parser("show", help="an extraction as JSON")
        show.add_argument("extraction_id", type=int)
        discard = sub.add_parser("discard", help="discard an unused extraction's list")
        discard.add_argument("extraction_id", type=int)
        for p in (create, discard):
            p.add_argument("--operator", help="operator name (gets the notice and e-mail)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, options["action"])(options)
        except ValidationError as e:
            raise CommandError(" ".join(e.messages)) from None

    def create(self, options: dict) -> None:
        operator = operator_with(options.get("operator"), "sending")
        if operator is not None and not operator.has_right("reports"):
            raise CommandError(f"{operator.username} does not have the reports right.")
        choice = extraction.check(
            _split(options["deliveries"]),
            options["view"],
            _split(options["set"]),
            options["match"],
            options.get("link"),
        )
        started = extraction.start_extraction(choice, operator, enqueue=False)
        progress = ProgressLine(self.stderr, _("… %(count)s customer IDs scanned"))
        jobs.run(started.job_id, echo=progress)
        progress(progress.done, force=True)  # the last figure, however fast the run was
        done = get_extraction(started.pk)
        if done.status != Extraction.Status.READY:
            raise CommandError(
                f"extraction {done.pk} {done.status}: {done.error or (done.job and done.job.error)}"
            )
        self.stdout.write(f"extraction {done.pk} ready ({done.count} customers)")

    def list(self, options: dict) -> None:
        for e in extraction.extractions().order_by("-id"):
            operator = e.operator.get_username() if e.operator else "-"
            deliveries = ",".join(str(d.pk) for d in e.deliveries.all())
            mails = ",".join(str(m.pk) for m in extraction.fed(e)) or "-"
            self.stdout.write(
                f"{e.pk}\t{e.status}\t{e.created.isoformat()}\t{operator}\tcount={e.count}"
                f"\tdeliveries={deliveries}\tmails={mails}"
            )

    def show(self, options: dict) -> None:
        self.stdout.write(dumps(extraction.as_json(get_extraction(options["extraction_id"]))))

    def discard(self, options: dict) -> None:
        operator = operator_with(options.get("operator"), "sending")
        found = extraction.discard_extraction(get_extraction(options["extraction_id"]), operator)
        self.stdout.write(f"extraction {found.pk} {found.status}")
