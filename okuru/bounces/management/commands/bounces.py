"""``okuru bounces …``: bounce messages from the command line.

    okuru bounces parse FILE... [--json]   # what each message reports, without storing anything
    okuru bounces import FILE|MBOX|DIR...  # store, match and apply (okuru.bounces.cli)
    okuru bounces mailbox add|list|test|poll|delete

With ``--json`` the output is one JSON object mapping each file path as given to its list of
failures, each ``{"recipient", "status", "reply_code", "kind", "hard"}``; an empty list when the
message is not a bounce or reports only delays.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.translation import gettext as _

from okuru.bounces import cli as inbound
from okuru.bounces.parsing import MAX_BYTES, Report, parse


def read_message(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_BYTES)
    except FileNotFoundError:
        raise CommandError(_("No such file: %(path)s") % {"path": path}) from None
    except IsADirectoryError:
        raise CommandError(_("Not a file: %(path)s") % {"path": path}) from None
    except OSError as e:
        raise CommandError(
            _("Cannot read %(path)s: %(reason)s") % {"path": path, "reason": e.strerror}
        ) from None


class Command(BaseCommand):
    help = "Parse bounce messages (DSNs, MTA notices, complaints, auto-replies)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        p = sub.add_parser("parse", help="the failures each message reports")
        p.add_argument("files", nargs="+", metavar="FILE")
        p.add_argument("--json", action="store_true", help="one JSON object: path -> failures")
        inbound.add_arguments(sub)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] in inbound.ACTIONS:
            return inbound.run(self, options)
        getattr(self, options["action"])(options)

    def parse(self, options: dict) -> None:
        # Every file is parsed before anything is printed, so that a missing one fails the command
        # with no partial JSON on stdout; only the small reports are kept, not the messages.
        reports = {path: parse(read_message(path)) for path in options["files"]}
        if options["json"]:
            out = {path: [f.as_dict() for f in r.failures] for path, r in reports.items()}
            self.stdout.write(json.dumps(out, ensure_ascii=False, indent=1))
            return
        for path, report in reports.items():
            self.stdout.write(f"{path}\t{describe(report)}")
            for f in report.failures:
                hard = "hard" if f.hard else "soft"
                self.stdout.write(
                    f"\t{f.recipient}\t{f.status}\t{f.reply_code or '-'}\t{f.kind}\t{hard}"
                )


def describe(report: Report) -> str:
    if report.failures:
        return "bounce"
    if report.complaint is not None:
        return "complaint"
    if report.delayed:
        return "delayed"
    if report.auto_reply:
        return "auto-reply"
    return "not a bounce"
