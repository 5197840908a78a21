"""``okuru export FILE --fields customer_id,email,... [--filter JSON] [--view NAME]
[--encoding utf-8|cp932]``: export customers to a CSV file ("-" writes to standard output)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from okuru.accounts import audit
from okuru.customers import exporter, filters
from okuru.customers.management.cli import ProgressLine, get_operator, get_view


class Command(BaseCommand):
    help = "Export customers to a CSV file (UTF-8 with BOM, or CP932)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help='the file to write, or "-" for standard output')
        parser.add_argument("--fields", default="", help="field keys, comma-separated, in order")
        parser.add_argument("--filter", default="", help="a filter tree as JSON")
        parser.add_argument("--view", help="a database view's name: its filter and fields")
        parser.add_argument("--encoding", default="utf-8", choices=["utf-8", "cp932"])
        parser.add_argument("--operator", help="operator name for the operation log")

    def handle(self, *args, **options) -> None:
        operator = get_operator(options["operator"])
        view = get_view(options["view"])
        fields = [f.strip() for f in options["fields"].split(",") if f.strip()]
        target = options["file"]
        progress = ProgressLine(self.stderr, _("… %(count)s rows written"))
        try:
            chunks = exporter.iter_export_chunks(
                fields, options["filter"] or None, options["encoding"], view=view, progress=progress
            )
            rows = self.write(target, chunks, progress)
        except (exporter.ExportError, filters.FilterError) as e:
            raise CommandError(str(e)) from None
        audit.log(
            operator,
            "export",
            target,
            {
                "rows": rows,
                "fields": fields or (view.fields if view else []),
                "filter": options["filter"],
                "view": view.name if view else "",
                "encoding": options["encoding"],
            },
        )
        if target != "-":
            self.stdout.write(
                ngettext(
                    "Exported %(count)s customer to %(file)s.",
                    "Exported %(count)s customers to %(file)s.",
                    rows,
                )
                % {"count": rows, "file": target}
            )

    def write(self, target: str, chunks, progress: ProgressLine) -> int:
        if target == "-":
            for chunk in chunks:
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return progress.done
        path = Path(target)
        partial = path.with_name(path.name + ".part")
        try:
            with partial.open("wb") as out:
                for chunk in chunks:
                    out.write(chunk)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return progress.done
