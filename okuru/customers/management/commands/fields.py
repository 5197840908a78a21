"""``okuru fields add KEY --type TYPE --label LABEL [--required] [--unique] [--choices a,b]``,
``okuru fields list``, ``okuru fields rename KEY LABEL``, ``okuru fields delete KEY --yes``:
database design from the command line (the same actions as the UI and the API)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from okuru.customers import design
from okuru.customers.fields import catalogue
from okuru.customers.management.cli import get_operator
from okuru.customers.models import Field


class Command(BaseCommand):
    help = "Add, list, rename and delete customer fields."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="add a field")
        add.add_argument("key")
        add.add_argument("--type", required=True, choices=Field.Type.values)
        add.add_argument("--label", required=True)
        add.add_argument("--required", action="store_true")
        add.add_argument("--unique", action="store_true")
        add.add_argument("--choices", default="", help="for select fields: a,b,c")
        sub.add_parser("list", help="list every field, standard ones first")
        rename = sub.add_parser("rename", help="change a field's label")
        rename.add_argument("key")
        rename.add_argument("label")
        delete = sub.add_parser("delete", help="delete a field and its data")
        delete.add_argument("key")
        delete.add_argument("--yes", action="store_true", help="confirm: the field's data goes")
        for p in (add, rename, delete):
            p.add_argument("--operator", help="operator name for the operation log")

    def handle(self, *args, **options) -> None:
        action = options["action"]
        if action == "list":
            return self.list()
        actor = get_operator(options.get("operator"))
        try:
            getattr(self, action)(options, actor)
        except design.DesignError as e:
            raise CommandError(str(e)) from None

    def list(self) -> None:
        for spec in catalogue().values():
            flags = [
                name
                for name, on in (
                    ("standard", spec.standard),
                    ("required", spec.required),
                    ("unique", spec.unique),
                )
                if on
            ]
            choices = ",".join(spec.choices)
            line = f"{spec.key}\t{spec.type}\t{spec.label}"
            self.stdout.write("\t".join([line, " ".join(flags), choices]).rstrip())

    def add(self, options: dict, actor) -> None:
        field = design.add_field(
            options["key"],
            options["label"],
            options["type"],
            choices=options["choices"].split(",") if options["choices"] else (),
            required=options["required"],
            unique=options["unique"],
            actor=actor,
        )
        self.stdout.write(_("Added the field %(key)s (%(label)s).") % _names(field))

    def rename(self, options: dict, actor) -> None:
        field = design.rename_field(options["key"], options["label"], actor=actor)
        self.stdout.write(_("Renamed the field %(key)s to %(label)s.") % _names(field))

    def delete(self, options: dict, actor) -> None:
        if not options["yes"]:
            raise CommandError(
                _("Deleting %(key)s deletes its data from every customer: add --yes to confirm.")
                % {"key": options["key"]}
            )
        design.delete_field(options["key"], actor=actor)
        self.stdout.write(_("Deleted the field %(key)s and its data.") % {"key": options["key"]})


def _names(field: Field) -> dict[str, str]:
    return {"key": field.key, "label": field.label}
