"""The inbound side of ``okuru bounces``: storing bounces and managing the bounce mailboxes.

    okuru bounces import FILE|MBOX|DIR...   # store, match and apply; a DIR: each file in it
    okuru bounces mailbox list
    okuru bounces mailbox add NAME --protocol imap|pop3 --host H [--port P] --username U
                              [--security tls|starttls] [--folder F] [--no-verify-tls]
                              --password-stdin
    okuru bounces mailbox test NAME          # log in, count the waiting messages
    okuru bounces mailbox poll NAME          # fetch, store and delete now
    okuru bounces mailbox delete NAME

The password is read from standard input only (never an argument: it would show in the process
list and the shell history) and never printed. Kept apart from the ``parse`` command's module so
the two sides of the command change independently.
"""

from __future__ import annotations

import mailbox as mailboxlib
import sys
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.utils.translation import gettext as _

from okuru.accounts import audit
from okuru.bounces import actions, mailboxes
from okuru.bounces.models import Bounce, Mailbox
from okuru.bounces.parsing import MAX_BYTES
from okuru.customers.management.cli import get_operator

ACTIONS = ("import", "mailbox")
DEFAULT_PORTS = {("imap", "tls"): 993, ("imap", "starttls"): 143, ("pop3", "tls"): 995}
DEFAULT_PORTS[("pop3", "starttls")] = 110


def add_arguments(sub: Any) -> None:
    p = sub.add_parser("import", help="store, match and apply bounce messages from files")
    p.add_argument("paths", nargs="+", metavar="FILE|MBOX|DIR")
    p.add_argument("--operator", help="operator name for the operation log")
    mb = sub.add_parser("mailbox", help="IMAP/POP3 mailboxes the bounces are fetched from")
    msub = mb.add_subparsers(dest="mailbox_action", required=True)
    msub.add_parser("list", help="list the mailboxes (never their passwords)")
    add = msub.add_parser("add", help="add a mailbox")
    add.add_argument("name")
    add.add_argument("--protocol", choices=Mailbox.Protocol.values, required=True)
    add.add_argument("--host", required=True)
    add.add_argument("--port", type=int, help="default: 993 IMAP, 995 POP3 (TLS)")
    add.add_argument("--security", choices=Mailbox.Security.values, default="tls")
    add.add_argument("--username", required=True)
    add.add_argument("--folder", default="INBOX", help="IMAP folder")
    add.add_argument("--no-verify-tls", action="store_true")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--operator", help="operator name for the operation log")
    for name, text in (
        ("test", "log in and count the waiting messages"),
        ("poll", "fetch, store and delete the waiting messages now"),
        ("delete", "delete the mailbox settings"),
    ):
        p = msub.add_parser(name, help=text)
        p.add_argument("name")
        p.add_argument("--operator", help="operator name for the operation log")


def run(command: Any, options: dict) -> None:
    try:
        if options["action"] == "import":
            import_paths(command, options)
        else:
            getattr(sys.modules[__name__], f"mailbox_{options['mailbox_action']}")(command, options)
    except ValidationError as e:
        raise CommandError(" ".join(e.messages)) from None
    except mailboxes.MailboxError as e:
        raise CommandError(str(e)) from None


def _operator(options: dict) -> Any:
    """The ``--operator`` for the operation log, who must hold the sending right (None: the
    CLI itself)."""
    operator = get_operator(options.get("operator"))
    if operator is not None and not operator.has_right("sending"):
        raise CommandError(f"{operator.username} does not have the sending right.")
    return operator


def messages_in(path: Path) -> Any:
    """(name, bytes) of each message in a file, an mbox or a directory (its files, sorted)."""
    if path.is_dir():
        for child in sorted(p for p in path.iterdir() if p.is_file()):
            yield from messages_in(child)
        return
    if not path.is_file():
        raise CommandError(_("No such file: %(path)s") % {"path": path})
    with open(path, "rb") as f:
        head = f.read(5)
    if head == b"From ":
        box = mailboxlib.mbox(path, create=False)
        try:
            for i, key in enumerate(box.iterkeys()):
                with box.get_file(key) as f:
                    yield f"{path}#{i + 1}", f.read(MAX_BYTES)
        finally:
            box.close()
        return
    with open(path, "rb") as f:
        yield str(path), f.read(MAX_BYTES)


def import_paths(command: Any, options: dict) -> None:
    operator = _operator(options)
    paths = [Path(p) for p in options["paths"]]
    for p in paths:  # every path checked before anything is stored
        if not p.exists():
            raise CommandError(_("No such file: %(path)s") % {"path": p})
    counts: dict[str, int] = {}
    new = 0
    for path in paths:
        for name, raw in messages_in(path):
            bounce, created = actions.receive(raw, Bounce.Channel.FILE, source=name[-300:])
            new += created
            outcome = bounce.outcome if created else "duplicate"
            counts[outcome] = counts.get(outcome, 0) + 1
            command.stdout.write(f"{name}\t{outcome}")
    total = sum(counts.values())
    audit.log(operator, "bounce.import", "", {"count": total, "inserted": new})
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    command.stdout.write(
        _("%(total)s messages, %(new)s new (%(summary)s)")
        % {"total": total, "new": new, "summary": summary or "-"}
    )


def _get(name: str) -> Mailbox:
    mailbox = Mailbox.objects.filter(name=name).first()
    if mailbox is None:
        raise CommandError(_("No such mailbox: %(name)s") % {"name": name})
    return mailbox


def mailbox_list(command: Any, options: dict) -> None:
    for m in Mailbox.objects.all():
        state = _("enabled") if m.enabled else _("disabled")
        last = m.last_error or (m.last_polled_at.isoformat() if m.last_polled_at else "-")
        command.stdout.write(
            f"{m.name}\t{m.protocol}\t{m.username}@{m.host}:{m.port}\t{m.security}\t{state}\t{last}"
        )


def mailbox_add(command: Any, options: dict) -> None:
    operator = _operator(options)
    password = ""
    if options["password_stdin"]:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError(_("Give the password on standard input with --password-stdin."))
    port = options["port"] or DEFAULT_PORTS[(options["protocol"], options["security"])]
    mailbox = Mailbox(
        name=options["name"],
        protocol=options["protocol"],
        host=options["host"],
        port=port,
        security=options["security"],
        username=options["username"],
        folder=options["folder"],
        verify_tls=not options["no_verify_tls"],
    )
    actions.save_mailbox(operator, mailbox, password)
    command.stdout.write(_("mailbox %(name)s added") % {"name": mailbox.name})


def mailbox_test(command: Any, options: dict) -> None:
    operator = _operator(options)
    mailbox = _get(options["name"])
    waiting = mailboxes.test(mailbox)
    audit.log(operator, "mailbox.test", mailbox.name)
    command.stdout.write(
        _("%(name)s: logged in, %(n)s messages waiting") % {"name": mailbox.name, "n": waiting}
    )


def mailbox_poll(command: Any, options: dict) -> None:
    _operator(options)
    mailbox = _get(options["name"])
    r = mailboxes.poll(mailbox)
    command.stdout.write(
        _("%(name)s: %(fetched)s fetched, %(new)s new")
        % {"name": mailbox.name, "fetched": r.fetched, "new": r.new}
    )


def mailbox_delete(command: Any, options: dict) -> None:
    operator = _operator(options)
    mailbox = _get(options["name"])
    actions.delete_mailbox(operator, mailbox)
    command.stdout.write(_("mailbox %(name)s deleted") % {"name": mailbox.name})
