"""Fetching bounces from IMAP and POP3 mailboxes, over TLS (implicit, or STARTTLS).

Each poll stores every message through ``actions.receive`` — idempotent by Message-ID, so a
message seen twice (a poll that died before deleting, a copy in two mailboxes) is applied once —
and only then deletes it from the mailbox (IMAP: ``\\Deleted`` and EXPUNGE; POP3: DELE, done at
QUIT). A message that cannot be stored stays in the mailbox for the next poll. At most
``MAX_MESSAGES`` per poll, so one huge mailbox cannot hold the task for long.

Errors are told in words that never carry the password (``MailboxError``), and recorded on the
mailbox (``last_error``) for the settings screen.
"""

from __future__ import annotations

import imaplib
import logging
import poplib
import socket
import ssl
from dataclasses import dataclass

from django.utils.translation import gettext as _

from okuru.bounces import actions
from okuru.bounces.models import Mailbox
from okuru.bounces.parsing import MAX_BYTES

log = logging.getLogger(__name__)
MAX_MESSAGES = 500
TIMEOUT = 30


class MailboxError(Exception):
    pass


@dataclass
class PollResult:
    fetched: int = 0
    new: int = 0
    deleted: int = 0


def _context(mailbox: Mailbox) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if not mailbox.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _explain(mailbox: Mailbox, e: Exception) -> MailboxError:
    where = f"{mailbox.host}:{mailbox.port}"
    if isinstance(e, ssl.SSLCertVerificationError):
        text = _(
            "The TLS certificate of %(where)s could not be verified (%(detail)s). Use a "
            "certificate from a trusted authority, or turn off certificate verification."
        ) % {"where": where, "detail": e.verify_message or e.reason}
    elif isinstance(
        e, ssl.SSLError | ConnectionError | socket.timeout | OSError
    ) and not isinstance(e, imaplib.IMAP4.error | poplib.error_proto):
        text = _("Cannot connect to %(where)s: %(error)s") % {"where": where, "error": e}
    else:
        # The server's own words (IMAP NO/BAD, POP3 -ERR): never the password, which no
        # server repeats and which we never put into a message.
        detail = str(e).replace(mailbox.password, "***") if mailbox.password else str(e)
        text = _("The mailbox server at %(where)s said: %(error)s") % {
            "where": where,
            "error": detail[:300],
        }
    return MailboxError(text)


def poll(mailbox: Mailbox, *, keep: bool = False) -> PollResult:
    """Fetch, store and delete the mailbox's messages; ``keep`` leaves them (``test``)."""
    try:
        if mailbox.protocol == Mailbox.Protocol.IMAP:
            result = _poll_imap(mailbox, keep)
        else:
            result = _poll_pop3(mailbox, keep)
    except MailboxError as e:
        actions.record_poll(mailbox, str(e))
        raise
    except Exception as e:
        error = _explain(mailbox, e)
        actions.record_poll(mailbox, str(error))
        raise error from None
    actions.record_poll(mailbox)
    return result


def test(mailbox: Mailbox) -> int:
    """Log in and count the waiting messages, changing nothing."""
    try:
        if mailbox.protocol == Mailbox.Protocol.IMAP:
            with _imap(mailbox) as conn:
                typ, data = conn.select(_folder(mailbox), readonly=True)
                if typ != "OK":
                    raise MailboxError(_("No such folder: %(folder)s") % {"folder": mailbox.folder})
                return int(data[0] or 0)
        conn = _pop3(mailbox)
        try:
            return conn.stat()[0]
        finally:
            conn.quit()
    except MailboxError:
        raise
    except Exception as e:
        raise _explain(mailbox, e) from None


def _folder(mailbox: Mailbox) -> str:
    folder = mailbox.folder or "INBOX"
    return f'"{folder}"' if " " in folder else folder


def _imap(mailbox: Mailbox) -> imaplib.IMAP4:
    ctx = _context(mailbox)
    if mailbox.security == Mailbox.Security.TLS:
        conn = imaplib.IMAP4_SSL(mailbox.host, mailbox.port, ssl_context=ctx, timeout=TIMEOUT)
    else:
        conn = imaplib.IMAP4(mailbox.host, mailbox.port, timeout=TIMEOUT)
        conn.starttls(ssl_context=ctx)
    try:
        conn.login(mailbox.username, mailbox.password)
    except imaplib.IMAP4.error as e:
        conn.shutdown()
        raise MailboxError(
            _("The IMAP server refused the user name or password (%(error)s).")
            % {"error": str(e)[:200]}
        ) from None
    return conn


def _poll_imap(mailbox: Mailbox, keep: bool) -> PollResult:
    result = PollResult()
    with _imap(mailbox) as conn:
        typ, _data = conn.select(_folder(mailbox))
        if typ != "OK":
            raise MailboxError(_("No such folder: %(folder)s") % {"folder": mailbox.folder})
        typ, data = conn.uid("SEARCH", None, "NOT DELETED")
        uids = (data[0] or b"").split()[:MAX_MESSAGES]
        for uid in uids:
            # A partial fetch: never more than the parser reads, whatever the message's size.
            typ, parts = conn.uid("FETCH", uid, f"(BODY.PEEK[]<0.{MAX_BYTES}>)")
            raw = next((p[1] for p in parts if isinstance(p, tuple)), None)
            if typ != "OK" or raw is None:
                continue
            result.fetched += 1
            if _store(mailbox, raw):
                result.new += 1
            if not keep:
                conn.uid("STORE", uid, "+FLAGS", r"(\Deleted)")
                result.deleted += 1
        if result.deleted:
            conn.expunge()
    return result


def _pop3(mailbox: Mailbox) -> poplib.POP3:
    ctx = _context(mailbox)
    if mailbox.security == Mailbox.Security.TLS:
        conn = poplib.POP3_SSL(mailbox.host, mailbox.port, context=ctx, timeout=TIMEOUT)
    else:
        conn = poplib.POP3(mailbox.host, mailbox.port, timeout=TIMEOUT)
        conn.stls(context=ctx)
    try:
        conn.user(mailbox.username)
        conn.pass_(mailbox.password)
    except poplib.error_proto as e:
        conn.close()
        raise MailboxError(
            _("The POP3 server refused the user name or password (%(error)s).")
            % {"error": str(e)[:200]}
        ) from None
    return conn


def _poll_pop3(mailbox: Mailbox, keep: bool) -> PollResult:
    result = PollResult()
    conn = _pop3(mailbox)
    try:
        count = conn.stat()[0]
        for i in range(1, min(count, MAX_MESSAGES) + 1):
            _resp, lines, _octets = conn.retr(i)
            raw = b"\r\n".join(lines)[:MAX_BYTES]
            result.fetched += 1
            if _store(mailbox, raw):
                result.new += 1
            if not keep:
                conn.dele(i)
                result.deleted += 1
    except BaseException:
        # Without QUIT the server deletes nothing (RFC 1939): what was stored is simply seen
        # again next time, and the Message-ID makes that harmless.
        conn.close()
        raise
    conn.quit()
    return result


def _store(mailbox: Mailbox, raw: bytes) -> bool:
    _bounce, new = actions.receive(raw, mailbox.protocol, source=mailbox.name)
    return new


def poll_all() -> dict[str, str]:
    """Poll every enabled mailbox; one failing does not stop the others."""
    out = {}
    for mailbox in Mailbox.objects.filter(enabled=True):
        try:
            r = poll(mailbox)
            out[mailbox.name] = f"{r.fetched} fetched, {r.new} new"
        except MailboxError as e:
            log.warning("bounce mailbox %s: %s", mailbox.name, e)
            out[mailbox.name] = str(e)
    return out
