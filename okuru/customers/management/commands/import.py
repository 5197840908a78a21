"""``okuru import FILE --mode insert|update|upsert [--key customer_id|FIELD] [--encoding ...]
[--dry-run]``: import customers from a CSV file, with progress on stderr and a summary.

Exits non-zero when the file cannot be imported or when rows were rejected (the other rows are
imported: fix the listed rows and import them again).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from okuru.customers import importer
from okuru.customers.management.cli import ProgressLine, get_operator

SHOW_ERRORS = 20


class Command(BaseCommand):
    help = "Import customers from a CSV file (UTF-8 or CP932)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file")
        parser.add_argument("--mode", required=True, choices=importer.MODES)
        parser.add_argument(
            "--key",
            default="customer_id",
            help="customer_id (the default) or the key of a unique field; an insert from a file"
            " without the key column adds every row",
        )
        parser.add_argument("--encoding", default="auto", choices=["auto", "utf-8", "cp932"])
        parser.add_argument(
            "--dry-run", action="store_true", help="check and count, change nothing"
        )
        parser.add_argument("--operator", help="operator name for the operation log")

    def handle(self, *args, **options) -> None:
        operator = get_operator(options["operator"])
        progress = ProgressLine(self.stderr, _("… %(count)s rows read"))
        try:
            result = importer.run_import(
                options["file"],
                mode=options["mode"],
                key=options["key"],
                encoding=options["encoding"],
                dry_run=options["dry_run"],
                operator=operator,
                progress=progress,
            )
        except importer.ImportFailed as e:
            for error in e.errors[1:]:
                self.stderr.write(str(error))
            raise CommandError(str(e)) from None
        self.summary(result)
        if result.rejected:
            raise CommandError(
                ngettext(
                    "%(count)s row was rejected.", "%(count)s rows were rejected.", result.rejected
                )
                % {"count": result.rejected}
            )

    def summary(self, result: importer.ImportResult) -> None:
        w = self.stdout.write
        if result.dry_run:
            w(_("Dry run: nothing was changed."))
        w(_("Encoding: %(encoding)s") % {"encoding": result.encoding})
        w(_("Rows: %(count)s") % {"count": result.rows})
        w(_("Inserted: %(count)s") % {"count": result.inserted})
        w(_("Updated: %(count)s") % {"count": result.updated})
        w(_("Skipped: %(count)s") % {"count": result.skipped})
        w(_("Rejected: %(count)s") % {"count": result.rejected})
        if result.ignored_columns:
            w(
                _("Ignored columns (Okuru sets them): %(names)s")
                % {"names": ", ".join(result.ignored_columns)}
            )
        if result.errors:
            w(
                _("Errors (the first %(shown)s of %(total)s):")
                % {"shown": min(SHOW_ERRORS, len(result.errors)), "total": result.error_count}
            )
            for error in result.errors[:SHOW_ERRORS]:
                w(f"  {error}")
