"""Reading bounce messages: RFC 3464 delivery status notifications, the non-standard notices
of common MTAs and providers, RFC 3834 auto-replies and RFC 5965 (ARF) complaints.

``parse(raw)`` returns a ``Report``: the failed recipients, the delayed ones, a complaint, whether
the message is an auto-reply, and what the attached original message says about itself (its
Message-ID, Return-Path and X- headers, which the VERP matching needs).

Hostile input is expected (anyone can mail the bounce address), so the parser works within fixed
limits: at most ``MAX_BYTES`` of the message are read, at most ``MAX_PARTS`` MIME parts at most
``MAX_DEPTH`` deep are looked at, and every text it scans is cut to ``MAX_TEXT`` characters.
Whatever it cannot make sense of yields an empty report, never an exception.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from email import message_from_bytes
from email.header import Header, decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32

from okuru.bounces import kinds

MAX_BYTES = 2 * 1024 * 1024
MAX_PARTS = 64
MAX_DEPTH = 8
MAX_TEXT = 64 * 1024
MAX_RECIPIENTS = 500


@dataclass
class Failure:
    recipient: str
    status: str
    reply_code: str
    kind: str
    hard: bool
    diagnostic: str = ""

    def as_dict(self) -> dict:
        return {
            "recipient": self.recipient,
            "status": self.status,
            "reply_code": self.reply_code,
            "kind": self.kind,
            "hard": self.hard,
        }


@dataclass
class Complaint:
    """An abuse report (ARF feedback loop, or a provider's complaint notification)."""

    recipients: list[str]
    feedback_type: str = ""
    user_agent: str = ""


@dataclass
class Original:
    """Headers of the message that bounced, as attached to the bounce."""

    message_id: str = ""
    return_path: str = ""
    sender: str = ""
    to: str = ""
    x_headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Report:
    failures: list[Failure] = field(default_factory=list)
    delayed: list[Failure] = field(default_factory=list)
    complaint: Complaint | None = None
    auto_reply: bool = False
    original: Original | None = None

    @property
    def is_bounce(self) -> bool:
        return bool(self.failures)


# ---------------------------------------------------------------------------------------------
# Addresses, codes and text

ADDRESS_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-][A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]{0,63}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
)
REPLY_RE = re.compile(r"(?<![\w.#\-/:])([45][0-5]\d)(?:[ \-]|$)", re.M)
ROBOT_RE = re.compile(
    r"^(?:mailer-daemon|postmaster|mail-daemon|maildaemon|mailerdaemon|bounces?|"
    r"mdaemon|nobody|root|daemon|administrator|system)(?:@|$)",
    re.I,
)
BOUNCE_SENDER_RE = re.compile(
    r"mailer-?daemon|post_?master|mail delivery|delivery (?:subsystem|system)|"
    r"mail administrator|system administrator|mail ?router|no-?reply@.*(?:bounce|mail)",
    re.I,
)
BOUNCE_SUBJECT_RE = re.compile(
    r"undeliver|undelivered|delivery (?:status notification|failure|failed|notification|problem|"
    r"report|has failed)|returned mail|failure notice|mail delivery failed|could not be delivered|"
    r"non[- ]?delivery|nondeliverable|returned to sender|delivery error|mail system error|"
    r"permanent error|mail failure|unzustellbar|message not delivered|bounced?|rejected|"
    r"delivery incomplete|not delivered|error sending|failed delivery|mail could not be|"
    r"undeliverable|warning: could not send|returned mail|notice of delivery|"
    r"配信|不達|エラー|error",
    re.I,
)
AUTO_REPLY_SUBJECT_RE = re.compile(
    r"^(?:auto(?:matic)?[ \-]?(?:reply|response|antwort)|out of (?:the )?office|away|vacation|"
    r"abwesenheit|autosvar|auto:|respuesta autom|r[ée]ponse automatique|不在)",
    re.I,
)
DELAY_RE = re.compile(
    r"delivery (?:is |has been )?delayed|delayed mail|not (?:yet )?been delivered yet|"
    r"will (?:continue to |keep )?(?:retry|trying)|still (?:trying|being retried)|"
    r"will be retried|warning: could not send message for past|"
    r"this is a warning message only|no action is required on your part|"
    r"has not yet been delivered|delivery (?:to the following recipients? )?(?:has been )?delayed",
    re.I,
)
# Wordings only a delay warning uses; they outweigh a permanent-sounding template line ("The
# following addresses had fatal errors") in the same notice.
STRONG_DELAY_RE = re.compile(
    r"this is a warning message only|will be retried for|no action is required on your part|"
    r"delivery status notification \(delay\)",
    re.I,
)
PERMANENT_RE = re.compile(
    r"permanent|given up|giving up|failed permanently|could not be delivered|"
    r"couldn't be delivered|not be delivered|fatal error|was not delivered|unable to deliver|"
    r"cannot send message|undeliverable",
    re.I,
)
SEPARATOR_RE = re.compile(
    # Sendmail opens its notice with "The original message was received at ...": not a separator.
    r"^[ \t]*(?:[-=_*]{2,}|\|)?[ \t]*(?!the original message was received )(?:"
    r"(?:the )?original message(?: follows| headers?| was| is)?|"
    r"below this line is a copy of the message|"
    r"this is a copy of the message|"
    r"(?:unsent|returned|undelivered|original|rejected) (?:message|mail)(?: follows| header)?|"
    r"message headers? follows?|"
    r"the header of the original message is following|"
    r"headers? of the original message|"
    r"content-type: (?:message/rfc822|text/rfc822-headers)|"
    r"forwarded message|"
    r"-+ ?original message ?-+|"
    r"the original message headers|"
    r"your original message|"
    r"the original (?:message|mail) (?:was|headers)|"
    r"以下.*(?:原文|元のメッセージ)"
    r")\b.*$",
    re.I | re.M,
)


def _clip(text: str) -> str:
    return text[:MAX_TEXT]


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _header(msg: Message, name: str) -> str:
    """A header as text: RFC 2047 decoded when it can be, never an exception."""
    try:
        value = msg.get(name)
    except Exception:  # a damaged header line can make the email package itself raise
        return ""
    if value is None:
        return ""
    if isinstance(value, Header):
        # Raw 8-bit bytes in a header (Japanese carriers send them unencoded): read them as
        # UTF-8 when they are, not as replacement characters.
        try:
            return "".join(
                data if isinstance(data, str) else _decode(data[:MAX_TEXT], _charset(charset))
                for data, charset in decode_header(value)
            )[:MAX_TEXT]
        except Exception:  # the email package's failure modes are not enumerable
            pass
    value = str(value)[:MAX_TEXT]
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # unknown charset, bad encoded-word: the raw text is still useful
        return value


JAPANESE_CHARSET_RE = re.compile(
    r"(?:iso-?2022-?jp|euc-?jp|x-euc-jp|shift[_-]?jis|x-sjis|sjis|cp932|windows-31j)", re.I
)


def _charset(name: str | None) -> str | None:
    return None if not name or name.lower() == "unknown-8bit" else name


def _decode(data: bytes, charset: str | None) -> str:
    """Bytes as text: in the declared charset when they are valid in it, else as UTF-8 when they
    are valid UTF-8 (a part labelled ISO-2022-JP that a gateway re-encoded), else in the declared
    charset with replacement characters."""
    tries = [(charset, "strict"), ("utf-8", "strict")]
    if charset and JAPANESE_CHARSET_RE.match(charset):
        # Japanese mailers label EUC-JP or Shift_JIS text as ISO-2022-JP and the reverse.
        tries += [(name, "strict") for name in ("iso-2022-jp", "euc-jp", "cp932")]
    for name, errors in (*tries, (charset, "replace")):
        if not name:
            continue
        try:
            return data.decode(name, errors)
        except (LookupError, TypeError, ValueError):
            continue
    return data.decode("latin-1")


def _address(text: str) -> str:
    m = ADDRESS_RE.search(text)
    return m.group(0).strip(".").lower() if m else ""


def _enhanced(text: str) -> list[str]:
    return [".".join(m.groups()) for m in kinds.ENHANCED_RE.finditer(text)]


def _failure_codes(text: str) -> list[str]:
    """The enhanced codes of failures (4.x.x, 5.x.x) in a text; a transcript's "250 2.1.5 Ok"
    to an earlier command is not the failure's code."""
    return [code for code in _enhanced(text) if code[0] in "45"]


def _best_status(codes: list[str]) -> str:
    """The most specific of the enhanced codes found: X.0.0 only when nothing better is there."""
    for code in codes:
        if not code.endswith(".0.0"):
            return code
    return codes[0] if codes else ""


def _reply(text: str) -> str:
    m = REPLY_RE.search(text)
    return m.group(1) if m else ""


# ---------------------------------------------------------------------------------------------
# MIME walking within limits


@dataclass
class Part:
    ctype: str
    text: str = ""
    message: Message | None = None  # for message/rfc822 and the DSN field groups
    fields: list[list[tuple[str, str]]] | None = None


def _load(raw: bytes) -> Message | None:
    try:
        return message_from_bytes(raw[:MAX_BYTES], policy=compat32)
    except (RecursionError, Exception):  # the email package's failure modes are not enumerable
        return None


def _part_text(part: Message) -> str:
    try:
        data = part.get_payload(decode=True)
    except Exception:  # a broken transfer encoding: fall back to the undecoded payload
        data = None
    if data is None:
        payload = part.get_payload()
        if isinstance(payload, str):
            return _clip(payload)
        return ""
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    text = _decode(data[: MAX_TEXT * 2], charset)
    if part.get_content_subtype() == "html":
        text = _html_text(text)
    return _clip(text)


TAG_RE = re.compile(r"<(?:br|/p|/div|/tr|/li|p|div|tr)\b[^>]{0,200}>", re.I)
ANY_TAG_RE = re.compile(r"<[^<>]{0,2000}>")


def _html_text(html: str) -> str:
    import html as html_lib

    text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", html[: MAX_TEXT * 2])
    text = TAG_RE.sub("\n", text)
    text = ANY_TAG_RE.sub(" ", text)
    return html_lib.unescape(text)


def _field_groups(part: Message) -> list[list[tuple[str, str]]]:
    """The groups of a message/delivery-status (or feedback-report) body as (name, value) lists."""
    payload = part.get_payload()
    if isinstance(payload, list):
        groups = []
        for sub in payload[:MAX_RECIPIENTS]:
            if isinstance(sub, Message):
                groups.append([(k, _collapse(_iso2022(str(v)))) for k, v in sub.items()])
        # compat32 stops a group at the first line it cannot read as a header; its body may
        # hold the next groups of a DSN written without blank lines between them.
        return groups
    return _text_field_groups(_part_text(part))


def _iso2022(value: str) -> str:
    """A header value written in raw ISO-2022-JP (Japanese MTAs put it in DSN fields unencoded)."""
    if "\x1b$" not in value:
        return value
    try:
        return value.encode("latin-1").decode("iso-2022-jp")
    except (UnicodeError, LookupError):
        return value


FIELD_RE = re.compile(r"^([A-Za-z][A-Za-z0-9\-]{0,60}):[ \t]*(.*)$")


def _text_field_groups(text: str) -> list[list[tuple[str, str]]]:
    groups: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            if current:
                groups.append(current)
                current = []
            continue
        if line[:1] in " \t" and current:
            name, value = current[-1]
            current[-1] = (name, f"{value} {line.strip()}")
            continue
        m = FIELD_RE.match(line)
        if m:
            current.append((m.group(1), m.group(2).strip()))
    if current:
        groups.append(current)
    return groups[:MAX_RECIPIENTS]


def _walk(msg: Message) -> list[Part]:
    """The leaf parts in order, within ``MAX_PARTS`` and ``MAX_DEPTH``; attached originals are
    kept whole (their inside is the original message, not the notice)."""
    parts: list[Part] = []
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack and len(parts) < MAX_PARTS:
        node, depth = stack.pop()
        try:
            ctype = node.get_content_type()
        except Exception:
            ctype = "text/plain"
        if ctype in ("message/rfc822", "message/global"):
            inner = node.get_payload()
            sub = inner[0] if isinstance(inner, list) and inner else None
            parts.append(Part(ctype, message=sub if isinstance(sub, Message) else None))
            continue
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            parts.append(Part("message/delivery-status", fields=_field_groups(node)))
            continue
        if ctype == "message/feedback-report":
            parts.append(Part(ctype, fields=_field_groups(node)))
            continue
        if node.is_multipart():
            if depth >= MAX_DEPTH:
                continue
            children = node.get_payload()
            if isinstance(children, list):
                for child in reversed(children[:MAX_PARTS]):
                    if isinstance(child, Message):
                        stack.append((child, depth + 1))
            continue
        parts.append(Part(ctype, text=_part_text(node)))
    return parts


# ---------------------------------------------------------------------------------------------
# The original message


def _original_from_headers(headers: Message) -> Original:
    x_headers = {}
    for name, value in list(headers.items())[:200]:
        if name.lower().startswith("x-"):
            x_headers.setdefault(name.lower(), _collapse(str(value))[:1000])
    return Original(
        message_id=_collapse(_header(headers, "Message-ID")),
        return_path=_address(_header(headers, "Return-Path")),
        sender=_address(_header(headers, "From")),
        to=_header(headers, "To")[:2000],
        x_headers=x_headers,
    )


def _original(parts: list[Part], notice: str, tail: str) -> Original | None:
    for part in parts:
        if part.message is not None:
            return _original_from_headers(part.message)
        if part.ctype == "text/rfc822-headers":
            return _original_from_headers(_parse_headers(part.text))
    if tail:
        return _original_from_headers(_parse_headers(tail))
    return None


def _parse_headers(text: str) -> Message:
    lines = text.lstrip("\n").splitlines()
    # Bounces that quote the original often indent it or leave a blank line before it.
    start = 0
    while start < len(lines) and start < 20 and not FIELD_RE.match(lines[start].strip()):
        start += 1
    block = "\n".join(line.strip() if line[:1] not in " \t" else line for line in lines[start:])
    try:
        return HeaderParser(policy=compat32).parsestr(block[:MAX_TEXT], headersonly=True)
    except Exception:
        return Message()


# ---------------------------------------------------------------------------------------------
# Reading the report


def parse(raw: bytes) -> Report:
    """What a received message says: failures, delays, a complaint, an auto-reply."""
    msg = _load(raw)
    if msg is None:
        return Report()
    try:
        parts = _walk(msg)
    except RecursionError:
        return Report()
    return _read(msg, parts)


def _read(msg: Message, parts: list[Part], nested: bool = False) -> Report:
    report = _read_outer(msg, parts)
    if nested or report.complaint or report.auto_reply:
        return report
    if any(p.ctype == "message/delivery-status" for p in parts):
        return report
    # A bounce forwarded whole (a gateway's notice that attaches the DSN it received): read the
    # attached report once.
    for part in parts:
        inner = part.message
        if inner is None:
            continue
        try:
            inner_parts = _walk(inner)
        except RecursionError:
            return report
        if any(p.ctype == "message/delivery-status" for p in inner_parts):
            inner_report = _read(inner, inner_parts, nested=True)
            if inner_report.failures or inner_report.delayed:
                return inner_report
        break
    return report


def _read_outer(msg: Message, parts: list[Part]) -> Report:
    report = Report()
    notice, tail = _notice(parts)
    report.original = _original(parts, notice, tail)
    subject = _header(msg, "Subject")

    complaint = _complaint(msg, parts)
    if complaint is not None:
        report.complaint = complaint
        return report

    ses = _amazon_notification(notice)
    if ses is not None:
        return ses if ses.original else _with_original(ses, report.original)

    dsn_groups = [
        g
        for part in parts
        if part.fields is not None and part.ctype == "message/delivery-status"
        for g in part.fields
    ]
    if not dsn_groups:
        dsn_groups = _embedded_dsn(notice)
    if dsn_groups:
        _read_dsn(report, dsn_groups, notice, msg)
        if report.failures or report.delayed or _dsn_reports_success(dsn_groups):
            # A DSN that reports only deliveries (a success notice, a Postfix address
            # verification) is not a bounce whatever its text part says.
            return report

    if _is_fml_notice(msg):
        _read_fml(report, subject, notice)
        if report.failures:
            return report

    looks_like_bounce = _looks_like_bounce(msg, subject, notice)
    if not looks_like_bounce:
        report.auto_reply = _is_auto_reply(msg, subject)
        return report
    _read_notice(report, msg, subject, notice, _unaddressed_class(dsn_groups))
    if not report.failures and not report.delayed:
        report.auto_reply = _is_auto_reply(msg, subject)
    return report


def _with_original(report: Report, original: Original | None) -> Report:
    report.original = original
    return report


def _notice(parts: list[Part]) -> tuple[str, str]:
    """The human-readable notice, and the quoted original after it when the notice is one text."""
    texts = []
    for part in parts:
        if part.message is not None or part.ctype == "text/rfc822-headers":
            break
        if part.fields is not None:
            continue
        # A multipart whose boundary parameter was lost (a header folded without indentation)
        # arrives as one leaf; its raw text still holds the notice.
        if (
            part.ctype.startswith(("text/", "multipart/"))
            or part.ctype == "application/octet-stream"
        ):
            if part.ctype == "text/html" and texts:
                continue
            texts.append(part.text)
    text = _clip("\n".join(texts))
    offset = 0
    for line in text.splitlines(keepends=True):
        # Line by line, so that a long run of blanks cannot make the search quadratic.
        if offset and SEPARATOR_RE.match(line[:300]):
            return text[:offset], text[offset + len(line) :]
        offset += len(line)
    return text, ""


def _looks_like_bounce(msg: Message, subject: str, notice: str) -> bool:
    sender = _header(msg, "From")
    if msg.get("X-Failed-Recipients"):
        return True
    if BOUNCE_SENDER_RE.search(sender):
        return True
    if _is_auto_reply(msg, subject) and not BOUNCE_SUBJECT_RE.search(subject):
        return False
    if BOUNCE_SUBJECT_RE.search(subject):
        return True
    return_path = _header(msg, "Return-Path").strip()
    if return_path in ("<>", "") and msg.get("Return-Path") is not None:
        return bool(PERMANENT_RE.search(notice) or DELAY_RE.search(notice))
    return False


def _is_auto_reply(msg: Message, subject: str) -> bool:
    auto = _header(msg, "Auto-Submitted").strip().lower()
    if auto and not auto.startswith("no"):
        return True
    if msg.get("X-Autoreply") or msg.get("X-Autorespond") or msg.get("X-Auto-Response-Suppress"):
        return True
    if _header(msg, "Precedence").strip().lower() == "auto_reply":
        return True
    return bool(AUTO_REPLY_SUBJECT_RE.search(subject.strip()))


# -- RFC 3464 -----------------------------------------------------------------------------


def _embedded_dsn(notice: str) -> list[list[tuple[str, str]]]:
    """DSN fields written into a text part (some MTAs do not use message/delivery-status)."""
    if not re.search(r"^\s*(?:final|original)-recipient:", notice, re.I | re.M):
        return []
    groups = _text_field_groups("\n".join(line.strip() for line in notice.splitlines()))
    return [
        g
        for g in groups
        if any(
            k.lower() in ("final-recipient", "original-recipient", "action", "status") for k, _ in g
        )
    ]


# Amazon SES's inbound rules reject with fixed template texts; "Mailbox does not exist" there is
# a receiving rule's refusal, not a directory lookup.
SES_RECEIVING_REASONS = (
    ("mailbox does not exist", "filtered"),
    ("message too large", "mesgtoobig"),
    ("mailbox full", "mailboxfull"),
    ("message content rejected", "contenterror"),
)


def _format_cause(msg: Message | None, notice: str, diagnostic: str) -> str:
    """The cause a known notice format fixes for this diagnostic, or ""."""
    if (
        msg is not None
        and msg.get("X-SES-Outgoing")
        and notice.lstrip().lower().startswith("this message could not be delivered.")
    ):
        low = diagnostic.lower()
        for phrase, cause in SES_RECEIVING_REASONS:
            if phrase in low:
                return cause
    if msg is not None and _header(msg, "X-Mailer").strip().startswith("<SMTP32 v"):
        # Ipswitch IMail writes its own verdict at the start of the recipient's line.
        for pattern, cause in IMAIL_REASONS:
            if pattern.search(diagnostic):
                return cause
    return ""


# Ipswitch IMail's own failure lines ("Unknown user: a@example.org"): its directory's verdict,
# not a relayed reply.
IMAIL_REASONS = (
    (
        re.compile(r"^\s*(?:unknown user|invalid final delivery userid)\b", re.I | re.M),
        "userunknown",
    ),
    (re.compile(r"^\s*unknown host\b", re.I | re.M), "hostunknown"),
    (re.compile(r"^\s*user mailbox exceeds allowed size", re.I | re.M), "mailboxfull"),
)


def _read_dsn(
    report: Report,
    groups: list[list[tuple[str, str]]],
    notice: str,
    msg: Message | None = None,
) -> None:
    groups = _split_run_together(groups)
    seen: set[str] = set()
    named = tuple(
        a
        for group in groups
        for name, value in group
        if name.lower() in ("final-recipient", "original-recipient")
        for a in [_address(value)]
        if a
    )
    for group in groups:
        fields: dict[str, str] = {}
        for name, value in group:
            fields.setdefault(name.lower(), value)
        recipient = (
            _address(fields.get("final-recipient", ""))
            or _address(fields.get("original-recipient", ""))
            or _address(fields.get("x-actual-recipient", ""))
        )
        if not recipient or recipient in seen:
            continue
        action = fields.get("action", "").strip().lower().split(" ")[0]
        if action in SUCCESS_ACTIONS:
            continue
        diagnostic = fields.get("diagnostic-code", "")
        diagnostic_text = re.sub(r"^\s*[\w\-]+\s*;\s*", "", diagnostic)
        block = _block_for(recipient, notice, named)
        reply_code = _reply(diagnostic_text) or _reply(block)
        status = _dsn_status(fields.get("status", ""), diagnostic_text, block, reply_code)
        if not status and not action:
            continue
        if not status:
            first = (
                reply_code[:1]
                if reply_code[:1] in ("4", "5")
                else ("4" if action == "delayed" else "5")
            )
            status = f"{first}.0.0"
        if action == "delayed" or (
            not action and status.startswith("4") and DELAY_RE.search(notice)
        ):
            report.delayed.append(
                _failure(recipient, status, reply_code, diagnostic_text or block, block)
            )
            seen.add(recipient)
            continue
        if status.startswith("2"):
            continue
        diagnostic_type = diagnostic.split(";")[0].strip().lower() if ";" in diagnostic else ""
        category = fields.get("x-powermta-bouncecategory", "").strip().lower()
        cause = (
            POWERMTA_CATEGORIES.get(category)
            or _format_cause(msg, notice, diagnostic_text)
            or kinds.fixed_reason(_intro(notice))
        )
        report.failures.append(
            _failure(
                recipient,
                status,
                reply_code,
                diagnostic_text or block,
                block,
                diagnostic_type,
                cause,
            )
        )
        seen.add(recipient)


RECIPIENT_FIELDS = ("final-recipient", "original-recipient")


def _split_run_together(groups: list[list[tuple[str, str]]]) -> list[list[tuple[str, str]]]:
    """The per-recipient groups of a DSN whose writer left out the blank line between them: a
    recipient field that the group already has opens the next group."""
    result = []
    for group in groups:
        current: list[tuple[str, str]] = []
        names: set[str] = set()
        for name, value in group:
            low = name.lower()
            if low in RECIPIENT_FIELDS and low in names:
                result.append(current)
                current, names = [], set()
            current.append((name, value))
            names.add(low)
        result.append(current)
    return result[:MAX_RECIPIENTS]


SUCCESS_ACTIONS = ("delivered", "relayed", "expanded", "deliverable")


def _dsn_reports_success(groups: list[list[tuple[str, str]]]) -> bool:
    """Whether the DSN names recipients and reports each of them delivered (an action of
    delivered, relayed or expanded, Postfix's "deliverable", or a 2.x.x status)."""
    named = 0
    for group in groups:
        fields = {name.lower(): value for name, value in reversed(group)}
        if not (fields.get("final-recipient") or fields.get("original-recipient")):
            continue
        named += 1
        action = fields.get("action", "").strip().lower().split(" ")[0]
        status = fields.get("status", "").strip()
        if action not in SUCCESS_ACTIONS and not (status.startswith("2.") and not action):
            return False
    return named > 0


# PowerMTA writes its own classification of each failure into the DSN.
POWERMTA_CATEGORIES = {
    "bad-domain": "hostunknown",
    "bad-mailbox": "userunknown",
    "inactive-mailbox": "suspend",
    "message-expired": "expired",
    "no-answer-from-host": "networkerror",
    "policy-related": "policyviolation",
    "quota-issues": "mailboxfull",
    "routing-errors": "systemerror",
    "spam-related": "spamdetected",
}


def _intro(notice: str) -> str:
    """The notice's headline: its text before the first address (the MTA's own words)."""
    m = ADDRESS_RE.search(notice[:4000])
    return notice[: m.start()] if m else notice[:4000]


def _dsn_status(status_field: str, diagnostic: str, block: str, reply_code: str = "") -> str:
    codes = _enhanced(status_field)
    status = codes[0] if codes else ""
    found = _message_status(diagnostic)
    if not found and (not status or status.endswith(".0.0")):
        found = _message_status(block)
    return _preferred_status(status, found, reply_code)


def _message_status(text: str) -> str:
    """The enhanced code an error message carries: the one written right after an SMTP reply
    code ("550-'5.7.1" inside a relaying MTA's own wording), else its first specific one
    (neither X.0.0 nor the catch-all 4.4.7), else its first code of any kind."""
    after_reply = _reply_status(text)
    if after_reply:
        return after_reply
    codes = [c for c in _enhanced(text) if c[0] in "45"] or _enhanced(text)
    for code in codes:
        if not code.endswith(".0.0") and code != "4.4.7":
            return code
    return codes[0] if codes else ""


def _preferred_status(field: str, found: str, reply_code: str = "") -> str:
    """Which of the Status field and the code in the diagnostic message a failure is reported
    with. The field is the reporting MTA's considered verdict and wins, except where it says
    less than the message: when it is vaguer (X.0.0, or a zero subject or detail against a
    fully specific code), when it is a reporting MTA's catch-all (4.4.7 "delivery time expired",
    5.3.x "mail system" trouble), when it is the generic unknown mailbox 5.1.1 or bad syntax 5.1.3
    against a specific refusal, or when the two disagree on the class and the reply code sides
    with the message."""
    if not field:
        return found
    if not found or field == found:
        return field
    if reply_code[:1] in ("4", "5") and field[0] != found[0]:
        if reply_code[0] == field[0]:
            return field
        if reply_code[0] == found[0]:
            return found
    if ".0.0" in field:
        return field if ".0.0" in found else found
    if ".0" in field and ".0" not in found:
        return found
    if ".0.0" in found:
        return field
    if field == "4.4.7" or field.startswith("5.3."):
        return found
    if field == "5.1.1":
        return field if ".0" in found else found
    if field == "5.1.3" and found.startswith("5.7."):
        return found
    return field


REPLY_STATUS_RE = re.compile(r"(?<!\d)[245]\d\d[ \-]+['\"(]?([245]\.[0-7]\.\d{1,3})(?!\.?\d)")


def _reply_status(text: str) -> str:
    """The enhanced code written right after an SMTP reply code ("550 5.7.1", "550-'5.7.1")."""
    for m in REPLY_STATUS_RE.finditer(text):
        if not m.group(1).endswith(".0.0") and m.group(1) != "4.4.7":
            return m.group(1)
    return ""


def _failure(
    recipient: str,
    status: str,
    reply_code: str,
    text: str,
    context: str = "",
    diagnostic_type: str = "",
    cause: str = "",
) -> Failure:
    text = _clip(text)
    command = kinds.command_of(text) or kinds.command_of(context)
    domain = recipient.rpartition("@")[2]
    cause = cause or kinds.reason(status, reply_code, text, command, domain)
    if diagnostic_type in ("x-unix", "x-local") and cause not in ("mailboxfull", "exceedlimit"):
        cause = "mailererror"
    kind = kinds.REASON_KINDS[cause]
    hard = kinds.is_hard(cause, status)
    return Failure(recipient, status, reply_code, kind, hard, _collapse(text)[:1000])


# -- Notices without DSN fields -----------------------------------------------------------


def _block_for(recipient: str, notice: str, others: tuple[str, ...] = ()) -> str:
    """The part of the notice about one recipient: from its first mention on, up to the line
    that names another of the report's recipients (the next entry of a list such as "a@x: 550
    ...", "b@y: 552 ...")."""
    low = notice.lower()
    at = low.find(recipient)
    if at < 0:
        return ""
    block = notice[at : at + 2000]
    first_line_end = block.find("\n")
    if first_line_end < 0:
        return block
    end = len(block)
    low_block = block.lower()
    for other in others:
        if other == recipient:
            continue
        i = low_block.find(other, first_line_end)
        if 0 <= i < end:
            end = low_block.rfind("\n", 0, i) + 1
    return block[:end]


def _unaddressed_class(groups: list[list[tuple[str, str]]]) -> str:
    """The class ("4" or "5") of the Status fields of a DSN's failed groups whose recipient is
    no address (Exim's "save to /mail/spool/...", a pipe), when they all agree; else ""."""
    classes = set()
    for group in groups:
        fields = {name.lower(): value for name, value in reversed(group)}
        if _address(fields.get("final-recipient", "")) or not fields.get("final-recipient"):
            continue
        if fields.get("action", "").strip().lower().split(" ")[0] != "failed":
            continue
        codes = _failure_codes(fields.get("status", ""))
        if codes:
            classes.add(codes[0][0])
    return classes.pop() if len(classes) == 1 else ""


def _read_notice(
    report: Report, msg: Message, subject: str, notice: str, dsn_class: str = ""
) -> None:
    recipients = _notice_recipients(msg, notice, report.original)
    if not recipients:
        fallback = _fallback_recipient(msg, report.original)
        if not fallback:
            return
        recipients = [(fallback, notice)]
    delayed = bool(STRONG_DELAY_RE.search(subject) or STRONG_DELAY_RE.search(notice)) or (
        bool(DELAY_RE.search(subject) or DELAY_RE.search(notice))
        and not PERMANENT_RE.search(notice)
    )
    for recipient, block in recipients[:MAX_RECIPIENTS]:
        codes = _failure_codes(block)
        reply_code = _reply(block)
        text = block
        if not codes and not reply_code and len(recipients) == 1:
            codes, reply_code, text = _failure_codes(notice), _reply(notice), notice
        status = _best_status(codes)
        if not status and dsn_class and not reply_code:
            # The notice gives no code, its DSN part (naming a mailbox file, not an address)
            # still says whether the failure is permanent.
            status = f"{dsn_class}.0.0"
        if not status:
            first = reply_code[:1] if reply_code[:1] in ("4", "5") else ("4" if delayed else "5")
            if (
                not reply_code
                and EXIM_NOTICE_RE.search(notice)
                and _header(msg, "From").lstrip('" ').lower().startswith("mail delivery system")
                and kinds.reason("", "", text) in ("expired", "mailboxfull")
            ):
                # Exim gives up on a retry timeout or a full mailbox without any code; both are
                # conditions of the moment (4.x.x), though Exim stops trying.
                first = "4"
            status = f"{first}.0.0"
        # A transcript entry carries its own commands; another entry's ">>> MAIL From:" above
        # it is not about this recipient.
        first_line = block.lstrip("\n").split("\n", 1)[0][:1000]
        own = bool(
            REPLY_LEADING_RE.match(first_line)
            or SESSION_LINE_RE.match(first_line)
            or TALKING_RE.match(first_line)
        )
        failure = _failure(
            recipient,
            status,
            reply_code,
            text,
            text if own else notice,
            cause=_format_cause(msg, notice, text),
        )
        if delayed:
            report.delayed.append(failure)
        else:
            report.failures.append(failure)


EXIM_NOTICE_RE = re.compile(
    r"^This message was created automatically by mail delivery software\.", re.M
)

QUOTED_ADDRESS_RE = re.compile(r"<\s*(" + ADDRESS_RE.pattern + r")\s*>")


LEADING_ADDRESS_RE = re.compile(
    r"^[ \t]*(?:[-*>]+[ \t]*)?<?("
    + ADDRESS_RE.pattern
    + r")>?[ \t]*(?:$|:|\.\.\.|,|;|\(|\[|\s+on\s|\s+-)",
    re.I,
)


# A reply line that names the recipient it refuses, as Sendmail writes its transcript
# ("550 <user@example.com>... User unknown", "554 user@example.com... Service unavailable")
# and as mailers quote a remote refusal on a line of its own ("550 5.1.1 <user@example.com>:
# Recipient address rejected").
REPLY_LEADING_RE = re.compile(
    r"^[ \t]*[45]\d\d[ \t-]+(?:[45]\.\d{1,3}\.\d{1,3}[ \t]+)?(?:<("
    + ADDRESS_RE.pattern
    + r")>[ \t]*(?:\.\.\.|:|,)|("
    + ADDRESS_RE.pattern
    + r")\.\.\.)",
    re.I,
)
# A Sendmail transcript line about another recipient or host ("550 example.org (smtp)... 550
# Host unknown"), or the start of another host's section, ends a recipient's entry.
CODED_ENTRY_RE = re.compile(r"^[ \t]*[45]\d\d [^\s.][^\s]*(?: \([^)]{0,40}\))?\.\.\. ")
TALKING_RE = re.compile(r"^[ \t]*(?:\.\.\. )?while talking to ", re.I)
SESSION_LINE_RE = re.compile(r"^[ \t]*(?:>>>|<<<) ")
ABOUT_SENDER_RE = re.compile(r"\bsender\b|\bmail from\b", re.I)


# Lines of a quoted original (or of the notice's own headers) name senders and message ids.
HEADER_LINE_RE = re.compile(
    r"^\s*(?:message-id|received|in-reply-to|references|return-path|from|to|cc|date|subject|"
    r"sender|reply-to|dkim-signature|x-[\w\-]+)\s*:",
    re.I,
)


def _notice_recipients(
    msg: Message, notice: str, original: Original | None
) -> list[tuple[str, str]]:
    """Failed recipients named in the notice, each with the text about it.

    An address that begins a line ("<user@example.com>:", "  user@example.com", "user@... on
    <date>") is how qmail, Exim, Postfix, Exchange, Gmail and most others list failed recipients;
    only when no line does are addresses within sentences taken, leaving out the sender's own."""
    lines = notice.splitlines()[:5000]
    leading: list[tuple[str, int]] = []
    replied: list[tuple[str, int]] = []
    inline: list[tuple[str, int]] = []
    seen_leading: set[str] = set()
    seen_replied: set[str] = set()
    seen_inline: set[str] = set()
    excluded = _excluded_addresses(msg, original)
    senders = _sender_addresses(msg, original)
    for i, line in enumerate(lines):
        line = line[:1000]
        m = LEADING_ADDRESS_RE.match(line)
        if m:
            address = m.group(1).strip(".").lower()
            if address not in seen_leading and not ROBOT_RE.match(address):
                seen_leading.add(address)
                leading.append((address, i))
        m = REPLY_LEADING_RE.match(line)
        if m:
            address = (m.group(1) or m.group(2)).strip(".").lower()
            if (
                address not in seen_replied
                and address not in senders
                and not ROBOT_RE.match(address)
                and not ABOUT_SENDER_RE.search(line[m.end() :])
            ):
                seen_replied.add(address)
                replied.append((address, i))
        if HEADER_LINE_RE.match(line):
            continue
        for m in ADDRESS_RE.finditer(line):
            address = m.group(0).strip(".").lower()
            if address in seen_inline or address in excluded or ROBOT_RE.match(address):
                continue
            if not _names_recipient(line, m.start(), m.end()):
                continue
            seen_inline.add(address)
            inline.append((address, i))
            # One recipient per sentence line: a second address on it describes the first
            # ("a@example.com <b@example.net>: malformed address", "to a@x (alias of b@y)").
            break
    found = leading or replied or inline
    transcript = not leading and bool(replied)
    failed = [a.strip().lower() for a in _header(msg, "X-Failed-Recipients").split(",") if "@" in a]
    if failed:
        named = {a for a, _ in found}
        found = [(a, i) for a, i in found if a in failed] + [
            (a, -1) for a in failed if a not in named
        ]
    result = []
    for n, (address, start) in enumerate(found):
        if start < 0:
            result.append((address, notice))
            continue
        ends = [i for _, i in found[n + 1 :] if i > start]
        end = ends[0] if ends else len(lines)
        if transcript:
            start, end = _transcript_entry(lines, start, end, found[n - 1][1] if n else -1)
        result.append((address, "\n".join(lines[start : max(end, start + 1)])))
    return result


def _transcript_entry(lines: list[str], start: int, end: int, previous: int) -> tuple[int, int]:
    """The lines of a Sendmail-style transcript about the recipient named at ``start``: what is
    written right above it (">>> RCPT To:<...>", "<<< 550 ...", "host ... did not like our RCPT
    TO:") back to a blank line, another entry or the "While talking to" line that opens the
    host's section, and its own line up to the next entry about another recipient or host."""
    first = start
    while first - 1 > previous:
        line = lines[first - 1][:1000]
        if not line.strip() or REPLY_LEADING_RE.match(line) or CODED_ENTRY_RE.match(line):
            break
        first -= 1
        if TALKING_RE.match(line):
            break
    last = start + 1
    while last < end:
        line = lines[last][:1000]
        if CODED_ENTRY_RE.match(line) or TALKING_RE.match(line):
            break
        last += 1
    return first, last


def _names_recipient(line: str, start: int, end: int) -> bool:
    """Whether an address at [start:end) of a line is written as the subject of the notice,
    not quoted inside an SMTP reply about something else (a sender, a postmaster contact)."""
    before = line[:start].lower()
    if re.search(
        r"(?:from|sender|mail from|envelope-from|contact|reply-to|by|postmaster)[:\s<]*$", before
    ):
        return False
    if re.search(r"mail from:?\s*<?$", before):
        return False
    return True


def _excluded_addresses(msg: Message, original: Original | None) -> set[str]:
    excluded = set()
    for name in (
        "To",
        "From",
        "Return-Path",
        "Delivered-To",
        "X-Original-To",
        "Sender",
        "Reply-To",
        "Envelope-To",
    ):
        for m in ADDRESS_RE.finditer(_header(msg, name)):
            excluded.add(m.group(0).lower())
    if original is not None:
        excluded.update(a for a in (original.sender, original.return_path) if a)
    return excluded


def _sender_addresses(msg: Message, original: Original | None) -> set[str]:
    """Our own addresses as the bounce names them: whom it is sent to, and the original's
    sender."""
    senders = {m.group(0).lower() for m in ADDRESS_RE.finditer(_header(msg, "To"))}
    if original is not None:
        senders.update(a for a in (original.sender, original.return_path) if a)
    return senders


def _fallback_recipient(msg: Message, original: Original | None) -> str:
    """With no recipient in the notice, the one recipient of the original message."""
    candidates = [
        a.strip().lower() for a in _header(msg, "X-Failed-Recipients").split(",") if "@" in a
    ]
    if not candidates and original is not None and original.to:
        addresses = {m.group(0).lower() for m in ADDRESS_RE.finditer(original.to)}
        if len(addresses) == 1:
            candidates = list(addresses)
    return candidates[0] if candidates else ""


# -- fml (mailing list manager) error notices --------------------------------------------

# fml answers a post it will not distribute with a notice from the list's "-admin" address,
# marked by its X-MLServer header, that names the list in angle brackets. Its wordings, in the
# body or else in the subject, say why.
FML_REASONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "rejected",
        re.compile(
            r"are not (?:a )?member|not member article from|reject mail|reject spammers|"
            r"spam mail from a spammer is rejected|header may cause mail loop",
            re.I,
        ),
    ),
    (
        "systemerror",
        re.compile(
            r"duplicated message-id|loop alert|loop back warning|unix from loop|"
            r"has detected a loop condition|fml system error",
            re.I,
        ),
    ),
    ("securityerror", re.compile(r"security alert", re.I)),
)


def _is_fml_notice(msg: Message) -> bool:
    server = _header(msg, "X-MLServer").lower()
    return server.startswith("fml") and "-admin@" in _header(msg, "From").lower()


def _read_fml(report: Report, subject: str, notice: str) -> None:
    cause = ""
    for text in (notice, subject):
        cause = next((c for c, pattern in FML_REASONS if pattern.search(text)), "")
        if cause:
            break
    if not cause:
        return
    seen: set[str] = set()
    for line in notice.splitlines()[:200]:
        m = QUOTED_ADDRESS_RE.search(line[:1000])
        if m is None:
            continue
        address = m.group(1).lower()
        if address in seen:
            continue
        seen.add(address)
        report.failures.append(_failure(address, "5.0.0", "", _collapse(line), notice, "", cause))


# -- Complaints ---------------------------------------------------------------------------


def _complaint(msg: Message, parts: list[Part]) -> Complaint | None:
    try:
        report_type = msg.get_param("report-type") or ""
    except Exception:
        report_type = ""
    report_type = str(report_type).lower()
    feedback = [p for p in parts if p.ctype == "message/feedback-report"]
    if not feedback and report_type != "feedback-report":
        return _hotmail_complaint(msg, parts)
    fields: dict[str, str] = {}
    for group in feedback[0].fields or [] if feedback else []:
        for name, value in group:
            fields.setdefault(name.lower(), value)
    recipients = []
    for name in ("original-rcpt-to", "removal-recipient"):
        address = _address(fields.get(name, ""))
        if address:
            recipients.append(address)
    if not recipients:
        original = _original(parts, "", "")
        if original is not None:
            recipients = [m.group(0).lower() for m in ADDRESS_RE.finditer(original.to)][:1]
    return Complaint(
        recipients=recipients,
        feedback_type=fields.get("feedback-type", "abuse").lower(),
        user_agent=fields.get("user-agent", ""),
    )


# Hotmail's feedback loop before ARF: the complained-about message attached whole under the
# subject "complaint about message from <IP>".
HOTMAIL_COMPLAINT_RE = re.compile(r"^\s*complaint about message from \S+", re.I)


def _hotmail_complaint(msg: Message, parts: list[Part]) -> Complaint | None:
    if not HOTMAIL_COMPLAINT_RE.match(_header(msg, "Subject")):
        return None
    original = next((p.message for p in parts if p.message is not None), None)
    if original is None:
        return None
    to = _header(original, "To")
    recipients = [m.group(0).lower() for m in ADDRESS_RE.finditer(to)][:1]
    return Complaint(recipients=recipients, feedback_type="abuse")


# -- Amazon SES notifications (by mail: an SNS e-mail subscription; by HTTPS: ``sns.py``) -----


SNS_ENVELOPE_RE = re.compile(r'\{\s*"Type"\s*:\s*"Notification"')


def _amazon_notification(notice: str) -> Report | None:
    data = _sns_message(notice)
    if data is None:
        start = notice.find('{"notificationType"')
        if start < 0:
            start = notice.find('{"eventType"')
        if start < 0:
            return None
        # The SNS mailer folds long lines with "!\n "; undo that before reading the JSON.
        body = re.sub(r"!?\n ", "", notice[start:])
        try:
            data, _end = json.JSONDecoder().raw_decode(body)
        except ValueError:
            return None
    if not isinstance(data, dict):
        return None
    return ses_report(data)


def ses_type(data: dict) -> str:
    """What an SES event is about: "Bounce", "Complaint", "Delivery" ... ("" when it names
    nothing)."""
    return str(data.get("notificationType") or data.get("eventType") or "")[:50]


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    return value[:MAX_RECIPIENTS] if isinstance(value, list) else []


def _ses_original(mail: dict) -> Original | None:
    """The sent message as SES describes it: its envelope sender (``mail.source``: our VERP
    return path) and the Message-ID we wrote (from ``mail.headers``, else ``commonHeaders``)."""
    message_id = ""
    for h in _list(mail.get("headers")):
        if isinstance(h, dict) and str(h.get("name", "")).lower() == "message-id":
            message_id = str(h.get("value", ""))
            break
    common = _dict(mail.get("commonHeaders"))
    message_id = message_id or str(common.get("messageId") or "")
    source = str(mail.get("source") or "")
    if not message_id and not source:
        return None
    to = ", ".join(str(a) for a in _list(mail.get("destination"))[:5])
    return Original(message_id=message_id[:1000], return_path=source[:1000], to=to[:1000])


def ses_report(data: dict) -> Report:
    """What an Amazon SES bounce or complaint notification (the JSON object) says.

    SES reports a bounce once it has stopped trying (a delay is another event, DeliveryDelay,
    which is no failure), so every bounced recipient is a failure of this message. Only a
    "Permanent" bounce can say the address itself is dead (``hard``): after a "Transient" or
    "Undetermined" one the address may work later, so it never counts as a hard kind."""
    report = Report()
    kind = ses_type(data)
    original = _ses_original(_dict(data.get("mail")))
    if original is not None:
        report.original = original
    if kind == "Complaint":
        complaint = _dict(data.get("complaint"))
        recipients = [
            str(r.get("emailAddress", "")).lower()
            for r in _list(complaint.get("complainedRecipients"))
            if isinstance(r, dict)
        ]
        report.complaint = Complaint(
            recipients, str(complaint.get("complaintFeedbackType") or "abuse")[:100]
        )
        return report
    if kind != "Bounce":
        return report
    bounce = _dict(data.get("bounce"))
    bounce_type = bounce.get("bounceType")
    permanent = bounce_type == "Permanent"
    for r in _list(bounce.get("bouncedRecipients")):
        if not isinstance(r, dict):
            continue
        recipient = _address(str(r.get("emailAddress", "")))
        diagnostic = _clip(str(r.get("diagnosticCode") or ""))
        status = _best_status(_enhanced(str(r.get("status") or "")) or _enhanced(diagnostic))
        if not status:
            status = "5.0.0" if permanent else "4.0.0"
        failure = _failure(
            recipient, status, _reply(re.sub(r"^\s*smtp;\s*", "", diagnostic)), diagnostic
        )
        if not permanent and failure.hard:
            failure.kind, failure.hard = "other", False
        report.failures.append(failure)
    return report


def _ses_event(envelope: object) -> dict | None:
    """The SES event an SNS envelope ({"Type": "Notification", "Message": "..."}) carries: its
    ``Message``, a JSON object written as a string within the envelope's JSON."""
    message = envelope.get("Message") if isinstance(envelope, dict) else None
    try:
        data = json.loads(message) if isinstance(message, str) else None
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _sns_message(notice: str) -> dict | None:
    """The SES event in an SNS envelope quoted in a mail (an SNS e-mail subscription)."""
    m = SNS_ENVELOPE_RE.search(notice)
    if m is None:
        return None
    body = re.sub(r"!?\n ", "", notice[m.start() :])  # undo the SNS mailer's folding
    try:
        envelope, _end = json.JSONDecoder().raw_decode(body)
    except (ValueError, RecursionError):
        return None
    data = _ses_event(envelope)
    return data if data and ses_type(data) else None


def sns_message(raw: bytes) -> dict | None:
    """The SES event inside an SNS notification as posted to the webhook (the whole JSON body),
    or None when it is not there or not a JSON object. Reads only: the signature is checked on
    receipt (``sns.py``)."""
    try:
        envelope = json.loads(raw[:MAX_BYTES])
    except (ValueError, RecursionError):
        return None
    return _ses_event(envelope)


def sns_report(raw: bytes) -> Report:
    """``ses_report`` of a stored SNS notification (as the webhook reads it)."""
    data = sns_message(raw)
    return Report() if data is None else ses_report(data)
