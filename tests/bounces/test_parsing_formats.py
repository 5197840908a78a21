"""Bounce formats and wordings the parser recognises beyond plain RFC 3464: each test is a small
hand-written message in the shape of one MTA family's notice."""

from __future__ import annotations

import json

import pytest

from okuru.bounces import kinds
from okuru.bounces.parsing import parse
from tests.bounces.samples import dsn


def failures(raw: bytes) -> list[tuple[str, str, str, str, bool]]:
    return [(f.recipient, f.status, f.reply_code, f.kind, f.hard) for f in parse(raw).failures]


# -- Sendmail transcripts: one entry per recipient -------------------------------------------

SENDMAIL_V5_TRANSCRIPT = b"""From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>
To: news@okuru.example.com
Subject: Returned mail: User unknown

   ----- Transcript of session follows -----
While talking to mx.example.org:
>>> MAIL From:<news@okuru.example.com>
<<< 501 <news@okuru.example.com>... no access from mail server which is an open relay
554 <first@example.org>... Remote protocol error
550 example.net (smtp)... 550 Host unknown
554 <second@example.net>... 550 Host unknown (Authoritative answer from name server)
While talking to mx.example.com:
>>> RCPT To:<third@example.com>
<<< 550 Requested mailbox not found. No such user here.
550 <third@example.com>... User unknown

   ----- Unsent message follows -----
From: news@okuru.example.com
To: first@example.org
Subject: Hello

Hello
"""


def test_it_reads_each_entry_of_a_sendmail_transcript_on_its_own():
    # The host line under the first entry is about the second recipient's domain, and the
    # MAIL From refusal in the first host's section is not about the third recipient.
    assert failures(SENDMAIL_V5_TRANSCRIPT) == [
        ("first@example.org", "5.0.0", "501", "refused", False),
        ("second@example.net", "5.0.0", "554", "no_domain", True),
        ("third@example.com", "5.0.0", "550", "unknown_user", True),
    ]


def test_a_transcript_entry_about_our_sender_is_not_a_recipient():
    raw = b"""From: MAILER-DAEMON@mx.example.net
To: news@okuru.example.com
Subject: Returned mail: see transcript for details

553 5.1.8 <news@okuru.example.com>... Domain of sender address does not exist
550 5.1.1 <gone@example.org>... User unknown
"""
    assert [f.recipient for f in parse(raw).failures] == ["gone@example.org"]


DRAGONFLY_STYLE = b"""Received: from MAILER-DAEMON
\tid e0001
\tby mx.example.jp (DragonFly Mail Agent v0.13);
X-Original-To: <gone@example.org>
From: MAILER-DAEMON <>
To: news@okuru.example.com
Subject: Mail delivery failed

This is the DragonFly Mail Agent v0.13 at mx.example.jp.

There was an error delivering your mail to <gone@example.org>.

mx.example.org [192.0.2.25] did not like our RCPT TO:
550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown

Original message follows.

From: <news@okuru.example.com>
To: friends
"""


def test_it_takes_the_recipient_a_quoted_refusal_names_even_in_the_bounces_own_headers():
    # The original went to a local alias, so only the quoted refusal names the address; that the
    # bounce's own X-Original-To repeats it does not make it ours.
    assert failures(DRAGONFLY_STYLE) == [("gone@example.org", "5.1.1", "550", "unknown_user", True)]


# -- Charsets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "euc-jp", "shift_jis"])
def test_it_reads_japanese_text_under_a_wrong_charset_label(encoding):
    body = (
        "送信先のメールボックスが一杯のため、送信できませんでした。\n\n"
        "Could not be delivered to: <full@example.ne.jp>\n"
        "As their mailbox is full.\n"
    ).encode(encoding)
    raw = (
        b"From: no-reply@mail.example.ne.jp\nTo: news@okuru.example.com\n"
        + "Subject: メールエラー通知\n".encode()
        + b'MIME-Version: 1.0\nContent-Type: text/plain; charset="ISO-2022-JP"\n'
        + b"Content-Transfer-Encoding: 7bit\n\n"
        + body
    )
    report = parse(raw)
    assert [(f.recipient, f.kind) for f in report.failures] == [
        ("full@example.ne.jp", "mailbox_full")
    ]
    assert "送信先" in report.failures[0].diagnostic


# -- Amazon SES through an SNS e-mail subscription ----------------------------------------------


def test_it_reads_an_ses_bounce_inside_an_sns_envelope():
    notification = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bouncedRecipients": [
                {
                    "emailAddress": "gone@example.org",
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
        },
        "mail": {"source": "news@okuru.example.com"},
    }
    envelope = json.dumps(
        {"Type": "Notification", "MessageId": "x", "Message": json.dumps(notification)},
        indent=2,
    )
    raw = (
        b"From: SES <no-reply@sns.amazonaws.com>\nTo: ops@okuru.example.com\n"
        b"Subject: AWS Notification Message\nContent-Type: text/plain; charset=UTF-8\n\n"
        + envelope.encode()
        + b"\n"
    )
    assert failures(raw) == [("gone@example.org", "5.1.1", "550", "unknown_user", True)]


def test_an_sns_envelope_of_a_delivery_is_no_failure():
    envelope = json.dumps(
        {"Type": "Notification", "Message": json.dumps({"notificationType": "Delivery"})}
    )
    raw = (
        b"From: no-reply@sns.amazonaws.com\nTo: ops@okuru.example.com\n"
        b"Subject: AWS Notification Message\n\n" + envelope.encode()
    )
    assert parse(raw).failures == []


# -- fml mailing list notices ----------------------------------------------------------------


def fml(subject: str, body: str) -> bytes:
    return (
        "From: club-admin@lists.example.jp\nTo: news@okuru.example.com\n"
        f"Subject: {subject}\n"
        "Message-ID: <200001010000.FML00001.club@lists.example.jp>\n"
        "X-MLServer: fml [fml 4.0.3 release (20011202/4.0.3)]\n\n"
        f"{body}\n\nOriginal mail as follows:\n\n"
        "   From: news@okuru.example.com\n   To: club@lists.example.jp\n"
    ).encode()


@pytest.mark.parametrize(
    "subject, body, kind",
    [
        (
            "You news@okuru.example.com are not member (club ML)",
            "You are not a member of this mailing list <club@lists.example.jp>.",
            "refused",
        ),
        (
            "Loop Alert: Duplicated Message-ID (club ML)",
            "Duplicated Message-ID in <club@lists.example.jp>.",
            "other",
        ),
    ],
)
def test_it_reads_an_fml_notice_as_the_lists_refusal(subject, body, kind):
    assert failures(fml(subject, body)) == [("club@lists.example.jp", "5.0.0", "", kind, False)]


def test_an_ordinary_list_message_is_no_fml_notice():
    raw = fml("Weekly news", "Hello <club@lists.example.jp> members, here is the news.")
    assert parse(raw).failures == []


# -- Successes are not failures -----------------------------------------------------------------


def test_a_dsn_that_reports_a_deliverable_address_is_no_bounce():
    # Postfix answers an address verification (sendmail -bv) with Action: deliverable.
    raw = dsn(("ok@example.org", "deliverable", "2.1.5", "250 2.1.5 Ok"))
    raw = raw.replace(
        b"This is the mail system at host mx.example.net.",
        b"<ok@example.org>: delivery via mx.example.org[192.0.2.2]:25: 250 2.1.5 Ok",
    )
    report = parse(raw)
    assert report.failures == [] and report.delayed == []


def test_a_transcripts_success_codes_are_not_the_failures_status():
    raw = b"""From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: postmaster@mx.example.net (Postmaster)
Subject: Postfix SMTP server: errors from localhost[127.0.0.1]

Transcript of session follows.

 In:  RCPT TO:<someone@example.org>
 Out: 250 2.1.5 Ok
 In:  DATA
 Out: 354 End data with <CR><LF>.<CR><LF>
 Out: 451 4.3.0 Error: queue file write error
"""
    assert [(f.status, f.reply_code) for f in parse(raw).failures] == [("4.3.0", "451")]


# -- Wordings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, reply, text, expected",
    [
        # A refused sender under X.1.0 is no unknown recipient.
        (
            "5.1.0",
            "550",
            "550 5.1.0 <bounce-1@mailer.example.com> sender rejected. See the error codes",
            ("refused", False),
        ),
        # Gmail's disabled account is suspended, not gone.
        (
            "5.2.1",
            "550",
            "550 5.2.1 The email account that you tried to reach is disabled.",
            ("refused", False),
        ),
        # A rate limit on the recipient's side says nothing against the address.
        (
            "5.2.1",
            "550",
            "550-5.2.1 The user you are trying to contact is receiving mail at a rate that "
            "prevents additional messages from being delivered.",
            ("refused", False),
        ),
        ("5.0.0", "", "User mailbox exceeds allowed size: a@example.jp", ("mailbox_full", False)),
        (
            "5.0.0",
            "",
            "Your message wasn't delivered to a@example.it because the address couldn't be "
            "found. Check for typos or unnecessary spaces and try again.",
            ("unknown_user", True),
        ),
        (
            "5.0.0",
            "501",
            "501 <a@example.jp>... no access from mail server which is an open relay",
            ("refused", False),
        ),
    ],
)
def test_it_classifies_these_wordings(status, reply, text, expected):
    # As replies to RCPT TO, where an unknown-user wording would be believed.
    assert kinds.classify(status, reply, text, "RCPT") == expected


def test_a_second_address_on_a_notices_line_describes_the_first():
    raw = b"""From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: news@okuru.example.com
Subject: Mail failure - malformed recipient address

A message that you sent contained one or more recipient addresses that were
incorrectly constructed:

  first@example.com <second@example.net>: malformed address: <second@example.net> may not follow first@example.com

This address has been ignored.
"""
    assert [f.recipient for f in parse(raw).failures] == ["first@example.com"]


def test_it_reads_hotmails_pre_arf_complaint():
    raw = b"""From: staff@hotmail.com
To: abuse@okuru.example.com
Subject: complaint about message from 192.0.2.22
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="B"

--B
Content-Type: message/rfc822
Content-Disposition: inline

To: reader@example.com
From: Shop <news@okuru.example.com>
Subject: Sale
Message-ID: <42.7@okuru.example.com>

Hello
--B--
"""
    report = parse(raw)
    assert report.failures == []
    assert report.complaint is not None
    assert report.complaint.recipients == ["reader@example.com"]


# -- Which status: the Status field or the code in the diagnostic --------------------------------


@pytest.mark.parametrize(
    "field, diagnostic, expected",
    [
        # The field is vaguer than the server's own code: the code.
        ("5.0.0", "550 5.1.1 <a@example.org>... User unknown", "5.1.1"),
        ("5.1.0", "550 5.1.1 No such user", "5.1.1"),
        # Both specific and different: the reporting MTA's considered field.
        ("5.2.1", "550 5.7.1 Delivery not authorized", "5.2.1"),
        ("5.7.1", "550 5.1.1 Mailbox unavailable", "5.7.1"),
        # ...except a generic unknown mailbox against a specific refusal.
        ("5.1.1", "550 5.7.1 Relaying denied", "5.7.1"),
        # 4.4.7 "delivery time expired" is the reporting MTA's catch-all; the code the server
        # gave (not its own 4.4.7 again) says what went wrong.
        ("4.4.7", "554 4.4.7 Message expired: <421 4.4.2 Connection timed out>", "4.4.2"),
        # The classes differ: the reply code decides which one is right.
        ("4.5.0", "550 5.5.0 Service refused, please try later", "5.5.0"),
        ("5.0.0", "450 4.2.2 Mailbox full", "4.2.2"),
        ("5.7.1", "554 4.7.1 Client host rejected", "5.7.1"),
    ],
)
def test_it_prefers_the_status_field_unless_the_diagnostic_says_more(field, diagnostic, expected):
    raw = dsn(("a@example.org", "failed", field, diagnostic))
    assert [f.status for f in parse(raw).failures] == [expected]


def test_a_relaying_mtas_code_before_the_servers_reply_is_not_the_status():
    # "5.1.0 - Unknown address error 550-'5.7.1 ...": the server's own reply is quoted after
    # the relay's generic code.
    raw = dsn(
        (
            "a@example.org",
            "failed",
            "5.0.0 (permanent failure)",
            "5.1.0 - Unknown address error 550-'5.2.2 <a@example.org>... Mailbox Full'",
        )
    )
    assert failures(raw) == [("a@example.org", "5.2.2", "550", "mailbox_full", False)]


# -- A DSN without diagnostics: each recipient's own line of the notice ------------------------


def test_each_recipient_of_a_dsn_is_read_from_its_own_line_of_the_notice():
    raw = dsn(
        ("gone@example.org", "failed", "5.0.0", ""), ("full@example.org", "failed", "5.0.0", "")
    )
    raw = raw.replace(
        b"This is the mail system at host mx.example.net.",
        b"An error has occurred while delivering to these recipients:\n\n"
        b"gone@example.org: 550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown\n"
        b"full@example.org: 552 5.2.2 <full@example.org>: Recipient address rejected: Mailbox full\n",
    )
    assert failures(raw) == [
        ("gone@example.org", "5.1.1", "550", "unknown_user", True),
        ("full@example.org", "5.2.2", "552", "mailbox_full", False),
    ]


# -- qmail: the step of the session its wording names -----------------------------------------


def qmail(entries: str) -> bytes:
    return (
        b"From: MAILER-DAEMON@mx.example.net\n"
        b"To: news@okuru.example.com\n"
        b"Subject: failure notice\n\n"
        b"Hi. This is the qmail-send program at mx.example.net.\n"
        b"I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        b"This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        + entries.encode()
        + b"\n--- Below this line is a copy of the message.\n\nFrom: news@okuru.example.com\n"
    )


@pytest.mark.parametrize(
    "entry, expected",
    [
        # Refused at RCPT TO: an unknown-user wording is believed whatever the code.
        (
            "<a@example.org>:\n192.0.2.1 does not like recipient.\n"
            "Remote host said: 550 5.2.1 <a@example.org>... User Unknown\nGiving up on 192.0.2.1.\n",
            ("5.2.1", "unknown_user", True),
        ),
        (
            "<a@example.org>:\nSorry, no SMTP connection got far enough; most progress was RCPT TO "
            "response; remote host 192.0.2.1 said: 550 Unknown user a@example.org\n. (#5.5.0)\n",
            ("5.5.0", "unknown_user", True),
        ),
        # The same words after the message was sent are a filter's answer.
        (
            "<a@example.org>:\n192.0.2.1 failed after I sent the message.\n"
            "Remote host said: 550 Unknown user a@example.org\n",
            ("5.0.0", "refused", False),
        ),
        # And to MAIL FROM they are about the sender.
        (
            "<a@example.org>:\nConnected to 192.0.2.1 but sender was rejected.\n"
            "Remote host said: 550 5.2.1 User unknown\n",
            ("5.2.1", "refused", False),
        ),
    ],
)
def test_it_reads_the_session_step_from_qmails_wording(entry, expected):
    assert [(f.status, f.kind, f.hard) for f in parse(qmail(entry)).failures] == [expected]


def test_it_separates_dsn_groups_written_without_a_blank_line_between_them():
    raw = dsn(
        ("full@example.org", "failed", "5.2.2", "550 5.2.2 <full@example.org>... Mailbox Full")
    )
    raw = raw.replace(
        b"Diagnostic-Code: smtp; 550 5.2.2 <full@example.org>... Mailbox Full\n",
        b"Diagnostic-Code: smtp; 550 5.2.2 <full@example.org>... Mailbox Full\n"
        b"Final-Recipient: rfc822; gone@example.org\n"
        b"Action: failed\nStatus: 5.1.1\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 <gone@example.org>... User Unknown\n",
    )
    assert failures(raw) == [
        ("full@example.org", "5.2.2", "550", "mailbox_full", False),
        ("gone@example.org", "5.1.1", "550", "unknown_user", True),
    ]


# -- Providers' own wordings that fix the cause -------------------------------------------------


@pytest.mark.parametrize(
    "status, reply, text, expected",
    [
        # Exchange Online's directory-based edge blocking: no such recipient in the tenant.
        (
            "5.4.1",
            "550",
            "550 5.4.1 <a@example.org>: Recipient address rejected: Access denied "
            "[AB1CD23.prod.protection.outlook.com]",
            ("unknown_user", True),
        ),
        # Outlook.com's mailbox lookup, with its diagnostic numbers.
        (
            "5.5.0",
            "550",
            "550 Requested action not taken: mailbox unavailable (-1234567:321:-2147467259)",
            ("unknown_user", True),
        ),
        # Lotus Notes in Japanese: "not in the directory's list".
        ("5.0.0", "", "ディレクトリのリストにありません a@example.jp", ("unknown_user", True)),
        # The recipient's own preferences refuse the sender, whatever the code says.
        (
            "5.1.1",
            "550",
            "550 5.1.1 RCP-P2 http://postmaster.example.com/codes Refused due to recipient "
            "preferences",
            ("refused", False),
        ),
    ],
)
def test_a_providers_own_wording_fixes_the_cause(status, reply, text, expected):
    assert kinds.classify(status, reply, text, "") == expected
    assert kinds.classify(status, reply, text, "RCPT") == expected


def imail(line: str) -> bytes:
    return (
        "From: Postmaster <postmaster@mx.example.net>\n"
        "To: news@okuru.example.com\n"
        "Subject: Undeliverable Mail\n"
        "X-Mailer: <SMTP32 v8.22>\n\n"
        f"{line}\n\nOriginal message follows.\n\nFrom: news@okuru.example.com\n"
    ).encode()


@pytest.mark.parametrize(
    "line, kind, hard",
    [
        ("Unknown user: a@example.org", "unknown_user", True),
        ("Invalid final delivery userid: a@example.org", "unknown_user", True),
        ("User mailbox exceeds allowed size: a@example.org", "mailbox_full", False),
    ],
)
def test_imails_own_verdict_on_the_recipients_line_fixes_the_cause(line, kind, hard):
    assert [(f.recipient, f.kind, f.hard) for f in parse(imail(line)).failures] == [
        ("a@example.org", kind, hard)
    ]


def test_the_same_words_from_another_mailer_without_the_command_are_a_filters_answer():
    raw = imail("Unknown user: a@example.org").replace(b"X-Mailer: <SMTP32 v8.22>\n", b"")
    assert [(f.kind, f.hard) for f in parse(raw).failures] == [("refused", False)]


EXIM_MAILBOX_FILE = """From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: news@okuru.example.com
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: a@example.org
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  save to /var/spool/mail/a
    generated by a@example.org
    mailbox is full: retry timeout exceeded
{dsn}
--B--
"""


def test_a_dsn_naming_a_mailbox_file_still_gives_the_class_of_the_failure():
    dsn_part = (
        "\n--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
        "Action: failed\nFinal-Recipient: rfc822;/var/spool/mail/a\nStatus: 5.0.0\n"
    )
    with_dsn = parse(EXIM_MAILBOX_FILE.format(dsn=dsn_part).encode()).failures
    without = parse(EXIM_MAILBOX_FILE.format(dsn="").encode()).failures
    assert [(f.recipient, f.status, f.kind) for f in with_dsn] == [
        ("a@example.org", "5.0.0", "mailbox_full")
    ]
    # Exim's own notice alone: a full mailbox is a condition of the moment.
    assert [f.status for f in without] == ["4.0.0"]


@pytest.mark.parametrize(
    "status, reply, expected",
    [
        # X.3.2: the host of the mailbox is not accepting messages; for good when permanent.
        ("5.3.2", "550", ("refused", True)),
        ("4.3.2", "450", ("refused", False)),
        # X.7.17 / X.7.18: the mailbox's or domain's owner has changed (RFC 7293).
        ("5.7.17", "554", ("unknown_user", True)),
        ("5.7.18", "554", ("unknown_user", True)),
    ],
)
def test_these_status_codes_name_the_address_state(status, reply, expected):
    text = f"{reply} {status} Requested action not taken"
    assert kinds.classify(status, reply, text, "RCPT") == expected
