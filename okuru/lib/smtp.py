"""An SMTP client for bulk sending that knows *where* a transaction failed.

``smtplib.sendmail`` folds every failure into one exception, but the difference matters: a
connection lost before the final ``.`` of DATA means the message was not accepted and can be
retried; lost after it, the server may have queued the message, and a retry could send a second
copy. ``Connection.send`` returns a ``Reply`` for every answer the server gave and raises
``Indeterminate`` only in that second case, ``ConnectionLost`` in the first.

``RelayRejected`` is a connection failure that retrying cannot cure: the relay's TLS
certificate fails verification, the relay does not offer STARTTLS or AUTH, or it refuses the
user name and password. ``problem`` says which, so the caller can tell the operator what to change.

TLS (implicit, or STARTTLS) verifies the relay's certificate and name against the system's
trusted authorities unless ``RelaySettings.verify_tls`` is off.

A ``Reply`` is only what the server said: the code, the RFC 3463 enhanced status code when the
text carries one, the text, and the command it answered. What a failure means (its error kind,
whether the address is dead) is for the bounces app to say (``okuru.bounces.replies``).
"""

from __future__ import annotations

import re
import smtplib
import ssl
from dataclasses import dataclass


class ConnectionLost(Exception):
    """The connection failed before the server could have accepted the message."""


class ConnectFailed(ConnectionLost):
    """The relay could not be reached or refused the session (EHLO, STARTTLS, login)."""


class RelayRejected(ConnectFailed):
    """The relay was reached but this configuration cannot work with it (see ``problem``)."""

    CERTIFICATE = "certificate"
    NO_STARTTLS = "no_starttls"
    NO_AUTH = "no_auth"
    AUTH = "auth"

    def __init__(self, problem: str, detail: str):
        super().__init__(detail)
        self.problem = problem
        self.detail = detail


class Indeterminate(Exception):
    """The connection failed after the whole message was sent: it may have been accepted."""


@dataclass(frozen=True)
class Reply:
    code: int
    text: str
    command: str = ""  # what it answered: "MAIL", "RCPT" or "DATA" (the end of the message)

    @property
    def status(self) -> str:
        """The enhanced status code ("5.1.1"), or "" when the text has none (RFC 2034 puts it
        first; a server that does not is still read). Only one of the reply's class counts."""
        for m in ENHANCED_RE.finditer(self.text):
            if m.group(1) == str(self.code)[:1]:
                return m.group(0)
        return ""

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()[:1000]


@dataclass(frozen=True)
class RelaySettings:
    host: str
    port: int = 25
    security: str = "none"  # none | starttls | tls
    username: str = ""
    password: str = ""
    timeout: float = 30
    verify_tls: bool = True

    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if not self.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def _text(msg: bytes | str) -> str:
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return " ".join(msg.split())


def _close_quietly(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        try:
            smtp.close()
        except OSError:
            pass


class Connection:
    """One persistent SMTP connection; reconnects lazily after a failure."""

    def __init__(self, relay: RelaySettings, local_hostname: str | None = None):
        self.relay = relay
        self.local_hostname = local_hostname
        self.smtp: smtplib.SMTP | None = None

    def open(self) -> None:
        r = self.relay
        where = f"{r.host}:{r.port}"
        smtp: smtplib.SMTP | None = None
        try:
            if r.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    r.host, r.port, self.local_hostname, timeout=r.timeout, context=r.tls_context()
                )
            else:
                smtp = smtplib.SMTP(r.host, r.port, self.local_hostname, timeout=r.timeout)
            smtp.ehlo()
            if r.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise RelayRejected(
                        RelayRejected.NO_STARTTLS, f"{where} does not offer STARTTLS"
                    )
                smtp.starttls(context=r.tls_context())
                smtp.ehlo()
            if r.username:
                smtp.login(r.username, r.password)
        except RelayRejected:
            _close_quietly(smtp)
            raise
        except ssl.SSLCertVerificationError as e:
            _close_quietly(smtp)
            detail = f"{where}: {e.verify_message or e.reason or e}"
            raise RelayRejected(RelayRejected.CERTIFICATE, detail) from e
        except smtplib.SMTPNotSupportedError as e:  # from login(): no AUTH offered
            _close_quietly(smtp)
            raise RelayRejected(RelayRejected.NO_AUTH, f"{where}: {e}") from e
        except smtplib.SMTPAuthenticationError as e:
            _close_quietly(smtp)
            detail = f"{where}: {e.smtp_code} {_text(e.smtp_error)}"
            raise RelayRejected(RelayRejected.AUTH, detail) from e
        except (OSError, smtplib.SMTPException) as e:
            _close_quietly(smtp)
            raise ConnectFailed(f"cannot connect to {where}: {e}") from e
        self.smtp = smtp

    def close(self) -> None:
        smtp, self.smtp = self.smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()

    def abort(self) -> None:
        smtp, self.smtp = self.smtp, None
        if smtp is not None:
            smtp.close()

    def send(self, sender: str, recipient: str, data: bytes) -> Reply:
        """One transaction. ``data`` is the message with CRLF line ends, already dot-stuffed.

        With PIPELINING (RFC 2920; Postfix and most providers offer it) MAIL, RCPT and DATA go
        in one write: two round trips per message instead of four, which is most of the cost
        of a message on a fast relay."""
        if self.smtp is None:
            self.open()
        smtp = self.smtp
        assert smtp is not None
        dot_sent = False
        try:
            reply = self._envelope(smtp, sender, recipient)
            if reply is not None:
                return reply
            if not data.endswith(b"\r\n"):
                data += b"\r\n"
            smtp.send(data + b".\r\n")
            dot_sent = True
            code, msg = smtp.getreply()
            if not 200 <= code < 600:
                self.abort()
                raise Indeterminate(f"unreadable reply after the message: {_text(msg)}")
            return Reply(code, _text(msg), "DATA")
        except OSError as e:  # socket errors, timeouts and SMTPServerDisconnected
            self.abort()
            if dot_sent:
                raise Indeterminate(str(e) or type(e).__name__) from e
            raise ConnectionLost(str(e) or type(e).__name__) from e

    def _envelope(self, smtp: smtplib.SMTP, sender: str, recipient: str) -> Reply | None:
        """MAIL, RCPT, DATA: None when the server waits for the message (354), else the
        reply that refused the transaction (which is then reset)."""
        commands = [f"MAIL FROM:<{sender}>", f"RCPT TO:<{recipient}>", "DATA"]
        if smtp.has_extn("pipelining"):
            smtp.send("".join(c + "\r\n" for c in commands))
            replies = [smtp.getreply() for _ in commands]
        else:
            replies = []
            for c in commands:
                smtp.putcmd(c)
                replies.append(smtp.getreply())
                if replies[-1][0] not in (250, 251, 354):
                    break
        failed = next(
            (
                (reply, command)
                for reply, ok, command in zip(replies, OK_CODES, COMMANDS, strict=False)
                if reply[0] not in ok
            ),
            None,
        )
        if failed is None:
            return None
        if replies[-1][0] == 354 and len(replies) == 3:
            # A pipelining server that took DATA although the envelope failed: end the
            # (empty) message so the session stays in step, then reset.
            smtp.send(b".\r\n")
            smtp.getreply()
        self._reset()
        (code, msg), command = failed
        return Reply(code, _text(msg), command)

    def _reset(self) -> None:
        # After a refused command the transaction must be reset before the next one; a server
        # that fails RSET is dropped and reconnected on the next message.
        try:
            code, _msg = self.smtp.rset()  # type: ignore[union-attr]
            if code != 250:
                self.abort()
        except (OSError, smtplib.SMTPException):
            self.abort()


# ---------------------------------------------------------------------------------------------
# Reading replies

OK_CODES = ((250,), (250, 251), (354,))  # MAIL, RCPT, DATA
COMMANDS = ("MAIL", "RCPT", "DATA")
ENHANCED_RE = re.compile(r"(?<![\w.])([245])\.(\d{1,3})\.(\d{1,3})(?!\w|\.\d)")
