"""``okuru customers count [--filter JSON] [--view NAME]``: how many customers match."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from okuru.customers import exporter, filters
from okuru.customers.management.cli import get_view


class Command(BaseCommand):
    help = "Customer commands: count."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        count = sub.add_parser("count", help="count the customers matching a filter")
        count.add_argument("--filter", default="", help="a filter tree as JSON")
        count.add_argument("--view", help="a database view's name (its filter)")

    def handle(self, *args, **options) -> None:
        view = get_view(options["view"])
        try:
            tree = exporter.combined_filter(options["filter"] or None, view)
            self.stdout.write(str(filters.count(tree)))
        except filters.FilterError as e:
            raise CommandError(str(e)) from None
