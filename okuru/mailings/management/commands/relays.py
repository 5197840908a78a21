"""``okuru relays list|add|default|test|delete``: the SMTP relays from the command line, through
the same named actions as the screens and the API (``okuru.mailings.relays``).

The password never goes on the command line (where ``ps`` and the shell history would keep
it): ``--password-stdin`` reads it from the first line of standard input::

    printf '%s\\n' "$RELAY_PASSWORD" | okuru relays add provider --host smtp.example.com \\
        --port 587 --security starttls --username okuru --password-stdin --default
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from okuru.mailings import relays
from okuru.mailings.management.commands.mails import operator_with
from okuru.mailings.models import Relay


def get_relay(name: str) -> Relay:
    relay = Relay.objects.filter(name=name).first()
    if relay is None:
        raise CommandError(_("No such relay: %(name)s") % {"name": name})
    return relay


def describe(relay: Relay) -> str:
    """One line per relay, tab-separated; never the password."""

    def limit(n: int) -> str:
        return f"{n}/s" if n else "-"

    return "\t".join(
        [
            relay.name + (" *" if relay.is_default else ""),
            f"{relay.host}:{relay.port}",
            relay.security
            + ("" if relay.verify_tls or relay.security == "none" else " (no check)"),
            relay.username or "-",
            limit(relay.max_per_second),
            limit(relay.per_domain_per_second),
        ]
    )


class Command(BaseCommand):
    help = "List, add, test and delete SMTP relays, and choose the default one."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="list relays (* marks the default)")
        add = sub.add_parser("add", help="add a relay")
        add.add_argument("name")
        add.add_argument("--host", required=True)
        add.add_argument("--port", type=int, default=25)
        add.add_argument("--security", choices=Relay.Security.values, default="none")
        add.add_argument("--username", default="")
        add.add_argument(
            "--password-stdin", action="store_true", help="read the password from standard input"
        )
        add.add_argument("--timeout", type=int, default=30, help="seconds")
        add.add_argument(
            "--no-verify-tls",
            action="store_true",
            help="do not check the relay's TLS certificate (a trusted network only)",
        )
        add.add_argument("--max-per-second", type=int, default=0, help="0: no limit")
        add.add_argument("--per-domain-per-second", type=int, default=0, help="0: no limit")
        add.add_argument("--default", action="store_true", help="make it the default relay")
        add.add_argument("--operator", help="operator name for the operation log")
        for name, text in (
            ("default", "make a relay the default"),
            ("test", "connect and log in, send nothing"),
            ("delete", "delete a relay nothing uses"),
        ):
            p = sub.add_parser(name, help=text)
            p.add_argument("name")
            p.add_argument("--operator", help="operator name for the operation log")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, options["action"])(options)
        except ValidationError as e:
            raise CommandError(" ".join(e.messages)) from None

    def list(self, options: dict) -> None:
        for relay in Relay.objects.order_by("name"):
            self.stdout.write(describe(relay))

    def add(self, options: dict) -> None:
        operator = operator_with(options.get("operator"), "sending")
        password = ""
        if options["password_stdin"]:
            password = self.read_password()
        relay = Relay(
            name=options["name"],
            host=options["host"],
            port=options["port"],
            security=options["security"],
            username=options["username"],
            password=password,
            timeout=options["timeout"],
            verify_tls=not options["no_verify_tls"],
            max_per_second=options["max_per_second"],
            per_domain_per_second=options["per_domain_per_second"],
        )
        relay = relays.save_relay(relay, operator, make_default=options["default"])
        default = _(" (the default relay)") if relay.is_default else ""
        self.stdout.write(
            _("relay %(name)s added%(default)s") % {"name": relay.name, "default": default}
        )

    def read_password(self) -> str:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise CommandError(_("--password-stdin: standard input held no password."))
        return password

    def default(self, options: dict) -> None:
        operator = operator_with(options.get("operator"), "sending")
        relay = get_relay(options["name"])
        relays.set_default(relay, operator)
        self.stdout.write(_("%(name)s is now the default relay") % {"name": relay.name})

    def test(self, options: dict) -> None:
        operator = operator_with(options.get("operator"), "sending")
        result = relays.test_relay(get_relay(options["name"]), operator)
        if not result.ok:
            raise CommandError(result.message)
        self.stdout.write(result.message)

    def delete(self, options: dict) -> None:
        operator = operator_with(options.get("operator"), "sending")
        relay = get_relay(options["name"])
        relays.delete_relay(relay, operator)
        self.stdout.write(_("relay %(name)s deleted") % {"name": relay.name})
