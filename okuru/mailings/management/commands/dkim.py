"""``okuru dkim add|list|dns|activate|delete``: the DKIM keys of the sender domains, through the
same named actions as the screens (``okuru.mailings.dkim_keys``). No command prints a private
key; ``dns`` prints the TXT record to publish, as a zone-file line::

    okuru dkim add shop.example --algorithm rsa
    okuru dkim dns shop.example
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from okuru.mailings import dkim_keys
from okuru.mailings.management.commands.mails import operator_with
from okuru.mailings.models import DkimKey


def get_key(domain: str, selector: str) -> DkimKey:
    try:
        domain = dkim_keys.normalise_domain(domain)
    except ValidationError as e:
        raise CommandError(" ".join(e.messages)) from None
    key = DkimKey.objects.filter(domain=domain, selector=selector.strip().lower()).first()
    if key is None:
        raise CommandError(
            _("No DKIM key %(selector)s for %(domain)s") % {"selector": selector, "domain": domain}
        )
    return key


def describe(key: DkimKey) -> str:
    """One line per key, tab-separated; never the private key."""
    state = _("active") if key.active else _("inactive")
    return "\t".join([key.domain, key.selector, key.algorithm, state, dkim_keys.dns_name(key)])


class Command(BaseCommand):
    help = "Add DKIM keys for sender domains, list them and print their DNS records."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="list the keys of every domain")
        add = sub.add_parser("add", help="generate a key for a sender domain")
        add.add_argument("domain")
        add.add_argument("--algorithm", choices=DkimKey.Algorithm.values, default="rsa")
        add.add_argument("--selector", default="", help="default: okuru-ALGORITHM-YYYYMM")
        add.add_argument("--operator", help="operator name for the operation log")
        dns = sub.add_parser("dns", help="print the DNS TXT records of a domain's keys")
        dns.add_argument("domain")
        for name, text in (
            ("activate", "sign with this key from now on, replacing the active one"),
            ("delete", "delete a key"),
        ):
            p = sub.add_parser(name, help=text)
            p.add_argument("domain")
            p.add_argument("selector")
            p.add_argument("--operator", help="operator name for the operation log")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            getattr(self, options["action"])(options)
        except ValidationError as e:
            raise CommandError(" ".join(e.messages)) from None

    def list(self, options: dict) -> None:
        for key in DkimKey.objects.order_by("domain", "selector"):
            self.stdout.write(describe(key))

    def add(self, options: dict) -> None:
        operator = operator_with(options.get("operator"), "sending")
        key = dkim_keys.add_key(
            options["domain"], options["algorithm"], operator, selector=options["selector"]
        )
        state = _("active") if key.active else _("inactive until activated")
        self.stdout.write(
            _("DKIM key %(name)s added (%(state)s). Publish this DNS record:")
            % {"name": dkim_keys.dns_name(key), "state": state}
        )
        self.stdout.write(dkim_keys.dns_zone_line(key))

    def dns(self, options: dict) -> None:
        try:
            domain = dkim_keys.normalise_domain(options["domain"])
        except ValidationError as e:
            raise CommandError(" ".join(e.messages)) from None
        keys = list(DkimKey.objects.filter(domain=domain).order_by("selector"))
        if not keys:
            raise CommandError(_("%(domain)s has no DKIM key.") % {"domain": domain})
        for key in keys:
            self.stdout.write(dkim_keys.dns_zone_line(key))

    def activate(self, options: dict) -> None:
        operator = operator_with(options.get("operator"), "sending")
        key = get_key(options["domain"], options["selector"])
        dkim_keys.activate_key(key, operator)
        self.stdout.write(_("%(name)s is now active") % {"name": dkim_keys.dns_name(key)})

    def delete(self, options: dict) -> None:
        operator = operator_with(options.get("operator"), "sending")
        key = get_key(options["domain"], options["selector"])
        dkim_keys.delete_key(key, operator)
        self.stdout.write(_("%(name)s deleted") % {"name": dkim_keys.dns_name(key)})
