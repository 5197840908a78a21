from __future__ import annotations

import json
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okuru.bounces import kinds
from okuru.bounces.parsing import MAX_BYTES, MAX_DEPTH, parse
from tests.bounces.samples import ARF, AUTO_REPLY, CORPUS, PLAIN, QMAIL, dsn

needs_corpus = pytest.mark.skipif(
    not (CORPUS / "emails").is_dir(),
    reason=f"bounce corpus not found at {CORPUS} (set OKURU_BOUNCE_CORPUS)",
)


def test_it_reads_a_failed_dsn():
    report = parse(dsn(("gone@example.com", "failed", "5.1.1", "550 5.1.1 User unknown")))
    assert [f.as_dict() for f in report.failures] == [
        {
            "recipient": "gone@example.com",
            "status": "5.1.1",
            "reply_code": "550",
            "kind": "unknown_user",
            "hard": True,
        }
    ]
    assert report.delayed == []


def test_it_does_not_count_a_delayed_dsn_as_a_failure():
    report = parse(
        dsn(
            ("slow@example.com", "delayed", "4.4.7", "421 4.4.7 Try again later"), subject="Delayed"
        )
    )
    assert report.failures == []
    assert [f.recipient for f in report.delayed] == ["slow@example.com"]


def test_it_reads_each_recipient_of_a_dsn():
    report = parse(
        dsn(
            ("gone@example.com", "failed", "5.1.1", "550 5.1.1 No such user"),
            ("slow@example.com", "delayed", "4.2.2", "452 4.2.2 Over quota"),
            ("full@example.com", "failed", "5.2.2", "552 5.2.2 Mailbox full"),
            ("spam@example.com", "failed", "5.7.1", "554 5.7.1 Message rejected as spam"),
            ("ok@example.com", "delivered", "2.0.0", ""),
        )
    )
    got = [(f.recipient, f.status, f.kind, f.hard) for f in report.failures]
    assert got == [
        ("gone@example.com", "5.1.1", "unknown_user", True),
        ("full@example.com", "5.2.2", "mailbox_full", False),
        ("spam@example.com", "5.7.1", "spam", False),
    ]
    assert [f.recipient for f in report.delayed] == ["slow@example.com"]


def test_it_keeps_the_original_message_headers_for_verp_matching():
    report = parse(dsn(("gone@example.com", "failed", "5.1.1", "")))
    assert report.original is not None
    assert report.original.message_id == "<42.7@okuru.example.com>"
    assert report.original.return_path == "bounce+42@okuru.example.com"
    assert report.original.x_headers == {"x-okuru-delivery": "42"}


def test_it_reads_a_notice_without_dsn_fields():
    report = parse(QMAIL)
    got = [(f.recipient, f.status, f.reply_code, f.kind, f.hard) for f in report.failures]
    assert got == [
        ("gone@example.jp", "5.1.1", "550", "unknown_user", True),
        ("full@example.jp", "5.2.2", "552", "mailbox_full", False),
    ]
    assert report.original is not None and report.original.message_id == "<7.1@okuru.example.com>"


def test_it_tells_an_auto_reply_from_a_bounce():
    report = parse(AUTO_REPLY)
    assert report.failures == [] and report.auto_reply


def test_it_returns_a_complaint_apart_from_failures():
    report = parse(ARF)
    assert report.failures == []
    assert report.complaint is not None
    assert report.complaint.recipients == ["carol@isp.example"]
    assert report.complaint.feedback_type == "abuse"
    assert report.original is not None and report.original.message_id == "<99.1@okuru.example.com>"


def test_it_finds_nothing_in_an_ordinary_message():
    report = parse(PLAIN)
    assert report.failures == [] and report.complaint is None and not report.auto_reply


@pytest.mark.parametrize(
    "status, reply, text, expected",
    [
        ("5.1.1", "550", "User unknown", ("unknown_user", True)),
        (
            "5.7.1",
            "553",
            "sorry, user unknown (in reply to RCPT TO command)",
            ("unknown_user", True),
        ),
        ("5.1.2", "550", "Host not found", ("no_domain", True)),
        ("5.1.10", "556", "Recipient address has null MX", ("refused", True)),
        ("5.1.6", "551", "User has moved", ("unknown_user", True)),
        ("5.7.1", "550", "Message rejected as spam by Content Filtering", ("spam", False)),
        (
            "5.7.1",
            "554",
            "Service unavailable; Client host blocked using Spamhaus",
            ("spam", False),
        ),
        ("5.7.26", "550", "Unauthenticated email is not accepted due to DMARC", ("refused", False)),
        ("5.2.2", "552", "Mailbox full", ("mailbox_full", False)),
        ("5.0.0", "554", "This account has been disabled or discontinued", ("refused", False)),
        ("4.4.7", "", "Delivery time expired", ("other", False)),
        ("5.1.3", "553", "Bad recipient address syntax", ("bad_format", True)),
    ],
)
def test_it_classifies_failures(status, reply, text, expected):
    assert kinds.classify(status, reply, text) == expected


@pytest.mark.parametrize(
    "status, text, command, expected",
    [
        # Believed: the code names the mailbox, or the reply answered RCPT TO.
        ("5.1.1", "550 5.1.1 User unknown", "", ("unknown_user", True)),
        ("5.0.0", "550 User unknown", "RCPT", ("unknown_user", True)),
        ("5.2.1", "550 5.2.1 <a@example.jp>... User Unknown", "RCPT", ("unknown_user", True)),
        # Not believed: after DATA, or nobody says when; a filter refused this message.
        ("5.0.0", "550 User unknown", "", ("refused", False)),
        ("5.0.0", "550 User unknown", "DATA", ("refused", False)),
        ("5.2.1", "550 5.2.1 <a@example.jp>... User Unknown", "", ("refused", False)),
        (
            "5.3.0",
            "Other mail system problem 550 'Unknown user a@example.jp'",
            "",
            ("refused", False),
        ),
        # To MAIL FROM it is about the sender.
        ("5.1.0", "553 5.1.0 neko.example.com does not exist", "MAIL", ("refused", False)),
        # X.1.6: the mailbox moved, whatever words come with it.
        ("5.1.6", "551 not our customer", "DATA", ("unknown_user", True)),
    ],
)
def test_it_believes_an_unknown_user_only_at_rcpt_or_with_a_mailbox_code(
    status, text, command, expected
):
    assert kinds.classify(status, "", text, command) == expected


@pytest.mark.parametrize(
    "text, domain, expected",
    [
        (
            "User some.name (a@example.jp) not listed in Domino Directory",
            "",
            ("unknown_user", True),
        ),
        (
            "ユーザー Neko (a@example.jp) は Domino ディレクトリには見つかりません。",
            "",
            ("unknown_user", True),
        ),
        (
            "MSEXCH:IMS:EX CAT:EXAMPLE:EXCHANGE 0 (000C05A6) Unknown Recipient",
            "",
            ("unknown_user", True),
        ),
        (
            "MSEXCH:IMS:EX CAT:EXAMPLE:EXCHANGE 0 (000C0595) Ambiguous Recipient",
            "",
            ("refused", False),
        ),
        (
            "550 5.5.0 Adresse destinataire invalide. Invalid recipient. LPN007_416",
            "",
            ("unknown_user", True),
        ),
        ("550 mwinf5c04 ME Adresse IP source bloquee OFR006_102", "", ("refused", False)),
        ("550 : User unknown", "ezweb.ne.jp", ("refused", False)),
        ("550 <a@ezweb.ne.jp>: User unknown", "ezweb.ne.jp", ("unknown_user", True)),
        (
            "550 - Requested action not taken: no such user here",
            "vtext.com",
            ("unknown_user", True),
        ),
        ("550 - Requested action not taken: no such user here", "example.com", ("refused", False)),
    ],
)
def test_it_takes_the_cause_a_known_mta_or_provider_wording_fixes(text, domain, expected):
    assert kinds.classify("5.0.0", "550", text, "", domain) == expected


JAMES = b"""From: post_master@sms.example.com
To: news@okuru.example.com
Subject: Re:Test message
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="OUTER"

--OUTER
Content-Type: multipart/alternative;
boundary="INNER"

--INNER
Content-Type: text/plain; charset=us-ascii

Error: Invalid user address

Error message below:
550 - Requested action not taken: no such user here

Message details:
  Subject: Test message
  MAIL FROM: news@okuru.example.com
  RCPT TO: 0000000000@sms.example.com
  Size (in bytes): 222

--INNER--
--OUTER--
"""


def test_it_reads_a_james_notice_whose_multipart_lost_its_boundary():
    report = parse(JAMES)
    assert [f.as_dict() for f in report.failures] == [
        {
            "recipient": "0000000000@sms.example.com",
            "status": "5.0.0",
            "reply_code": "550",
            "kind": "refused",
            "hard": False,
        }
    ]


SENDMAIL_WITHOUT_MIME_HEADER = b"""From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.jp>
To: news@okuru.example.com
Subject: Returned mail: see transcript for details

This is a MIME-encapsulated message

--B.123/mx.example.jp

The original message was received at Sun, 3 Jun 2018 14:22:02 +0900 (JST)
from news@localhost

   ----- The following addresses had permanent fatal errors -----
kijitora
    (expanded from: kijitora)

   ----- Transcript of session follows -----
kijitora... Deferred: Connection refused by [127.0.0.1]
Message could not be delivered for 5 days
Message will be deleted from queue

--B.123/mx.example.jp
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.jp

Final-Recipient: RFC822; kijitora@mx.example.jp
Action: failed
Status: 4.4.7

--B.123/mx.example.jp--
"""


def test_it_reads_a_sendmail_notice_that_opens_with_the_original_message_line():
    report = parse(SENDMAIL_WITHOUT_MIME_HEADER)
    assert [(f.recipient, f.status, f.kind) for f in report.failures] == [
        ("kijitora@mx.example.jp", "4.4.7", "other")
    ]


EXIM_RETRY_TIMEOUT = b"""From: Mail Delivery System <Mailer-Daemon@mail.example.net>
To: news@okuru.example.com
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: gone@example.com

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  gone@example.com
    retry timeout exceeded
"""


def test_it_gives_exims_code_less_retry_timeout_a_temporary_status():
    report = parse(EXIM_RETRY_TIMEOUT)
    assert [(f.recipient, f.status, f.kind, f.hard) for f in report.failures] == [
        ("gone@example.com", "4.0.0", "other", False)
    ]


def test_it_reads_a_dsn_forwarded_inside_a_gateways_notice():
    inner = dsn(("gone@example.org", "failed", "5.1.1", "550 5.1.1 User unknown"))
    outer = (
        b"From: MAILER-DAEMON@gw.example.co.jp\nTo: news@okuru.example.com\n"
        b"Subject: Returned mail: User unknown\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="GW"\n\n--GW\nContent-Type: text/plain\n\n'
        b"The original message was received at Thu Oct 13 15:22:22 2015\n"
        b"----- The following addresses had permanent delivery errors -----\n\n"
        b"--GW\nContent-Type: message/rfc822\n\n" + inner + b"\n--GW--\n"
    )
    report = parse(outer)
    assert [(f.recipient, f.status, f.hard) for f in report.failures] == [
        ("gone@example.org", "5.1.1", True)
    ]


ZOHO_STYLE_DELAY = b"""From: mailer-daemon@mail.example.com
To: news@okuru.example.com
Subject: Mail Delivery Status Notification (Delay)

This message was created automatically by mail delivery system.

THIS IS A WARNING MESSAGE ONLY.

YOU DO NOT NEED TO RESEND YOUR MESSAGE.

----- The following addresses had fatal errors -----
[Status: Error, Address: <slow@example.co.jp>, ResponseCode 421, , Host not reachable.]

Message will be retried for 4 more day(s)
"""


def test_it_counts_a_warning_only_notice_as_a_delay_despite_fatal_wording():
    report = parse(ZOHO_STYLE_DELAY)
    assert report.failures == []
    assert [f.recipient for f in report.delayed] == ["slow@example.co.jp"]


def test_every_kind_is_an_error_kind_code():
    assert set(kinds.REASON_KINDS.values()) <= set(kinds.KINDS)
    assert len(kinds.KINDS) == 8


# -- The corpus ------------------------------------------------------------------------------


@needs_corpus
def test_every_corpus_message_parses_quickly():
    # CPU time, best of three: the bound is the parser's own cost, and wall time on a
    # machine shared with other test runs measures the neighbours too.
    slow = []
    for path in sorted((CORPUS / "emails").glob("*.eml")):
        raw = path.read_bytes()
        best = float("inf")
        for _ in range(3):
            t0 = time.process_time()
            report = parse(raw)
            best = min(best, time.process_time() - t0)
            if best <= 0.05:
                break
        assert all(f.kind in kinds.KINDS for f in report.failures), path.name
        if best > 0.05:
            slow.append((path.name, best))
    assert slow == []


@needs_corpus
def test_it_agrees_with_the_labelled_corpus():
    from bench.bench_bounces import agrees

    labels = json.loads((CORPUS / "labels-dev.json").read_text())
    agreeing = sum(
        agrees(rows, [f.as_dict() for f in parse((CORPUS / "emails" / name).read_bytes()).failures])
        for name, rows in labels.items()
    )
    assert agreeing / len(labels) >= 0.95, f"{agreeing}/{len(labels)}"


# -- Hostile input ---------------------------------------------------------------------------

CHARSETS = sorted(
    {
        *__import__("encodings.aliases", fromlist=["aliases"]).aliases.keys(),
        *__import__("encodings.aliases", fromlist=["aliases"]).aliases.values(),
        "x-unknown",
        "utf-7",
        "zlib",
        "base64",
        "rot13",
        "",
    }
)


def nested(depth: int, inner: bytes) -> bytes:
    body = inner
    for n in range(depth):
        body = (
            f'Content-Type: multipart/mixed; boundary="b{n}"\n\n--b{n}\n'.encode()
            + body
            + f"\n--b{n}--\n".encode()
        )
    return b"From: MAILER-DAEMON@x.example\nSubject: Undelivered\n" + body


def bounded(raw: bytes) -> None:
    """Parses without an exception, within 2 s (untraced: tracing slows the parser several
    times) and within a memory peak that does not grow past the byte limit."""
    t0 = time.perf_counter()
    report = parse(raw)
    elapsed = time.perf_counter() - t0
    assert all(f.kind in kinds.KINDS for f in report.failures)
    assert elapsed < 2.0, elapsed
    tracemalloc.start()
    try:
        parse(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024 + 20 * len(raw[:MAX_BYTES]), peak


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_it_survives_random_bytes(raw):
    bounded(raw)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(CHARSETS),
    st.binary(max_size=300),
    st.sampled_from(["base64", "quoted-printable", "7bit", "x-bad"]),
)
def test_it_survives_every_charset(charset, payload, encoding):
    raw = (
        (
            f"From: MAILER-DAEMON@x.example\nSubject: =?{charset}?B?5pyq6YWN?= failure\n"
            f'Content-Type: text/plain; charset="{charset}"\nContent-Transfer-Encoding: {encoding}\n\n'
        ).encode("utf-8", "surrogateescape")
        + payload
        + b"\n<user@example.com>: 550 5.1.1 unknown\n"
    )
    bounded(raw)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(min_value=0, max_value=400),
    st.sampled_from([b"", dsn(("a@b.example", "failed", "5.1.1", ""))]),
)
def test_it_survives_deep_nesting(depth, inner):
    bounded(nested(depth, inner))


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "Content-Type",
                    "Subject",
                    "X-Failed-Recipients",
                    "From",
                    "Final-Recipient",
                    "Status",
                ]
            ),
            st.text(max_size=200),
        ),
        max_size=30,
    ),
    st.text(max_size=2000),
)
def test_it_survives_malformed_mime(headers, body):
    head = "".join(f"{name}: {value}\n" for name, value in headers)
    raw = (head + "\n" + body).encode("utf-8", "surrogatepass")
    bounded(raw)
    bounded(raw.replace(b"\n", b"\r\n") + b"\n--\n--BOUNDARY\n" * 50)


def test_it_survives_huge_headers_and_bodies():
    header = b"Subject: " + b"x" * 3_000_000 + b"\n"
    bounded(b"From: MAILER-DAEMON@x.example\n" + header + b"\nbody\n")
    folded = b"X-Long: a\n" + b" b\n" * 200_000
    bounded(b"From: MAILER-DAEMON@x.example\n" + folded + b"\nbody\n")
    spaces = (
        b"From: MAILER-DAEMON@x.example\nSubject: failure\n\n" + b" " * 1_000_000 + b"\n" * 100_000
    )
    bounded(spaces)
    addresses = (
        b"From: MAILER-DAEMON@x.example\nSubject: failure\n\n" + b"<u@example.com>:\n" * 200_000
    )
    bounded(addresses)


def test_it_reads_at_most_the_byte_limit():
    tail = b"\n<late@example.com>: 550 5.1.1 user unknown\n"
    raw = b"From: MAILER-DAEMON@x.example\nSubject: failure\n\n" + b"a" * MAX_BYTES + tail
    assert parse(raw).failures == []


def test_it_stops_at_the_depth_limit():
    report = parse(nested(MAX_DEPTH + 5, dsn(("deep@example.com", "failed", "5.1.1", ""))))
    assert report.failures == []
