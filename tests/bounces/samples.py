"""Hand-made bounce messages for the parser and CLI tests."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("OKURU_BOUNCE_CORPUS") or ROOT.parent / "shared" / "bounce-corpus")


def dsn(
    *recipients: tuple[str, str, str, str], subject: str = "Delivery Status Notification"
) -> bytes:
    """A multipart/report DSN; each recipient is (address, action, status, diagnostic)."""
    groups = "\n".join(
        f"Final-Recipient: rfc822; {address}\nAction: {action}\nStatus: {status}\n"
        + (f"Diagnostic-Code: smtp; {diagnostic}\n" if diagnostic else "")
        for address, action, status, diagnostic in recipients
    )
    return f"""From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: bounce+42@okuru.example.com
Subject: {subject}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"

--BOUNDARY
Content-Type: text/plain

This is the mail system at host mx.example.net.

--BOUNDARY
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

{groups}
--BOUNDARY
Content-Type: text/rfc822-headers

Return-Path: <bounce+42@okuru.example.com>
Message-ID: <42.7@okuru.example.com>
From: Shop <news@okuru.example.com>
To: {recipients[0][0]}
X-Okuru-Delivery: 42

--BOUNDARY--
""".encode()


AUTO_REPLY = b"""From: Alice <alice@example.org>
To: news@okuru.example.com
Subject: Out of office
Auto-Submitted: auto-replied
Return-Path: <>

I am away until Monday and will not read mail. User unknown jokes aside, see you soon.
"""

ARF = b"""From: feedback@isp.example
To: abuse@okuru.example.com
Subject: Abuse report
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
Original-Rcpt-To: <carol@isp.example>

--B
Content-Type: message/rfc822

From: news@okuru.example.com
To: carol@isp.example
Message-ID: <99.1@okuru.example.com>
Subject: Sale

Buy now.
--B--
"""

PLAIN = b"""From: Bob <bob@example.org>
To: news@okuru.example.com
Subject: Re: your newsletter

Thanks, the user unknown to me liked it. Write to dave@example.org too.
"""

QMAIL = b"""From: MAILER-DAEMON@mx.example.jp
To: bounce+7@okuru.example.com
Subject: failure notice

Hi. This is the qmail-send program at mx.example.jp.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<gone@example.jp>:
192.0.2.1 does not like recipient.
Remote host said: 550 5.1.1 <gone@example.jp>... User unknown
Giving up on 192.0.2.1.

<full@example.jp>:
Remote host said: 552 5.2.2 Mailbox full
Giving up on 192.0.2.2.

--- Below this line is a copy of the message.

Return-Path: <bounce+7@okuru.example.com>
Message-ID: <7.1@okuru.example.com>
To: gone@example.jp, full@example.jp
"""
