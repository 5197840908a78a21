"""Helpers for the inbound-bounce tests: a real delivery to bounce, and bounces addressed to it."""

from __future__ import annotations

from okuru.bounces import verp
from okuru.mailings import sending
from okuru.mailings.models import Delivery, Recipient
from okuru.mailings.testing import drain, make_mail, start

DOMAIN = "bounce.shop.example"
FAST = dict(batch_size=50, retry_base=0.01, retry_max=0.05, idle_sleep=0.01)


def deliver(**mail: object) -> Delivery:
    """Send a mail to every customer through the relay, to completion."""
    delivery = start(make_mail(**mail))
    worker = sending.Worker(sending.Config(**FAST))
    drain(worker, delivery)
    worker.close()
    delivery.refresh_from_db()
    return delivery


def row_of(delivery: Delivery, address: str) -> Recipient:
    return Recipient.objects.get(delivery=delivery, address=address)


def return_path(row: Recipient) -> str:
    return verp.address(row.delivery_id, row.pk, DOMAIN)


def dsn(
    row: Recipient | None,
    status: str = "5.1.1",
    action: str = "failed",
    diagnostic: str = "550 5.1.1 <{address}>: Recipient address rejected: User unknown",
    *,
    to: str | None = None,
    address: str | None = None,
    message_id: str | None = None,
    unique: str = "1",
) -> bytes:
    """An RFC 3464 DSN about ``row``, mailed to its VERP return path (or ``to``), attaching the
    original's headers with its Message-ID (or ``message_id``)."""
    address = address or (row.address if row else "someone@example.net")
    to = to if to is not None else (return_path(row) if row else f"bounce@{DOMAIN}")
    mid = message_id if message_id is not None else (row.message_id if row else "<x@y>")
    diagnostic = diagnostic.format(address=address)
    return f"""Return-Path: <>
From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: {to}
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-{unique}-{status}-{action}@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"

--BOUNDARY
Content-Type: text/plain

This is the mail system at host mx.example.net.
I'm sorry to have to inform you that your message could not be delivered.

--BOUNDARY
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {address}
Original-Recipient: rfc822; {address}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {diagnostic}

--BOUNDARY
Content-Type: text/rfc822-headers

From: Shop <news@shop.example>
To: {address}
Message-ID: {mid}
Subject: Spring sale

--BOUNDARY--
""".replace("\n", "\r\n").encode()


def arf(row: Recipient, unique: str = "1") -> bytes:
    """An RFC 5965 abuse report about the message sent to ``row``."""
    return f"""From: feedback@isp.example
To: fbl@shop.example
Subject: Abuse report
Message-ID: <arf-{unique}@isp.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="B"

--B
Content-Type: text/plain

This is an email abuse report.

--B
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ISP-FBL/1.0
Version: 1
Original-Rcpt-To: <{row.address}>

--B
Content-Type: message/rfc822

Return-Path: <{return_path(row)}>
From: news@shop.example
To: {row.address}
Message-ID: {row.message_id}
Subject: Spring sale

Buy now.
--B--
""".replace("\n", "\r\n").encode()


UNRECOGNISED = b"""From: someone@example.org
To: bounce@bounce.shop.example
Subject: hello there
Message-ID: <hello-1@example.org>

Just a note, nothing about any delivery.
"""
