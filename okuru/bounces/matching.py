"""Which ledger row a received bounce is about — found, never guessed.

In order of strength:

1. The envelope recipient (the SMTP receiver's RCPT TO) or, for a message fetched from a
   mailbox or a file, the headers a delivering MTA writes it into (Delivered-To, X-Original-To,
   Envelope-To, To): a **signed** VERP address names the row (``verp.read``).
2. The Return-Path of the original message when the bounce attaches it: also a VERP address.
3. The original's Message-ID. Okuru's Message-IDs are ``<delivery.row.random@domain>``, so the
   row is read by primary key and must hold exactly that Message-ID (48 random bits: not
   guessable), which no ledger index is needed for.

A legacy VERP address (no signature) names a row only when that row's address is one of the
addresses the bounce reports as failed: without the signature anyone could make up the ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message

from okuru.bounces import verp
from okuru.bounces.parsing import Report
from okuru.mailings.models import Recipient

ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
MESSAGE_ID_RE = re.compile(r"^<?(\d{1,19})\.(\d{1,19})\.[0-9a-f]{12}@[^<>@\s]{1,253}>?$")


@dataclass
class Match:
    row: Recipient
    by: str  # verp / legacy_verp / message_id


def reported_addresses(report: Report) -> set[str]:
    found = [f.recipient for f in report.failures + report.delayed]
    if report.complaint is not None:
        found += report.complaint.recipients
    return {a.lower() for a in found if a}


def _row(delivery_id: int, recipient_id: int) -> Recipient | None:
    return (
        Recipient.objects.select_related("delivery")
        .filter(pk=recipient_id, delivery_id=delivery_id)
        .first()
    )


def _by_verp(candidates: list[str], report: Report) -> Match | None:
    legacy: list[verp.Verp] = []
    for text in candidates:
        for v in verp.find(text):
            if v.signed:
                row = _row(v.delivery_id, v.recipient_id)
                if row is not None:
                    return Match(row, "verp")
            else:
                legacy.append(v)
    addresses = reported_addresses(report)
    for v in legacy:
        row = _row(v.delivery_id, v.recipient_id)
        if row is not None and row.address.lower() in addresses:
            return Match(row, "legacy_verp")
    return None


def _by_message_id(report: Report) -> Match | None:
    original = report.original
    if original is None or not original.message_id:
        return None
    mid = original.message_id.strip()
    m = MESSAGE_ID_RE.match(mid)
    if not m:
        return None
    if not mid.startswith("<"):
        mid = f"<{mid}>"
    row = _row(int(m.group(1)), int(m.group(2)))
    if row is None or row.message_id != mid:
        return None
    return Match(row, "message_id")


def match(msg: Message | None, report: Report, envelope_to: list[str]) -> Match | None:
    candidates = list(envelope_to)
    if msg is not None:
        for name in ENVELOPE_HEADERS:
            candidates += [str(v) for v in (msg.get_all(name) or [])[:20]]
    if report.original is not None and report.original.return_path:
        candidates.append(report.original.return_path)
    return _by_verp(candidates, report) or _by_message_id(report)
