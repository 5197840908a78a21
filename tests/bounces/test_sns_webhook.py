"""The Amazon SES → SNS webhook (POST /bounces/sns/): a real delivery through the SMTP sink, SES
notifications about what the sink received, signed here exactly as SNS signs them (a test CA
and certificate made with ``cryptography``), and the real verification refusing every forgery.

Only the network is replaced: ``sns.http_get`` is routed to a local HTTP server that serves the
certificate and answers the subscription GET, and records every URL asked for."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from django.test import Client

from okuru.accounts.models import OperationLog
from okuru.bounces import actions, sns
from okuru.bounces.models import Bounce, Suppression
from okuru.customers.models import Customer
from okuru.mailings.models import Delivery, Event, ListCleaning, Recipient
from okuru.mailings.testing import Sink
from tests.bounces.inbound import return_path, row_of

URL = "/bounces/sns/"
TOPIC = "arn:aws:sns:ap-northeast-1:123456789012:okuru-ses"
CERT_URL = "https://sns.ap-northeast-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
SUBSCRIBE_URL = (
    "https://sns.ap-northeast-1.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC}&Token=2336412f37fb687f5d51e6e2425c464de"
)


# --- a signing certificate, as Amazon's: issued by a CA, RSA ---------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(subject: str, key: Any, issuer: str, issuer_key: Any, days: int = 2) -> Any:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .sign(issuer_key, hashes.SHA256())
    )


class Signer:
    def __init__(self) -> None:
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = _certificate("sns.amazonaws.com", self.key, "Test CA", ca_key)
        self.pem = cert.public_bytes(serialization.Encoding.PEM)

    def sign(self, doc: dict[str, Any], key: Any = None) -> dict[str, Any]:
        """``doc`` with its Signature, as AWS documents it: the listed members in order,
        "name\\nvalue\\n" each (Subject only when present), RSA PKCS#1 v1.5 with SHA1 (version
        1) or SHA256 (version 2)."""
        if doc["Type"] == "Notification":
            names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        else:
            names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn"]
            names.append("Type")
        text = "".join(f"{n}\n{doc[n]}\n" for n in names if n in doc)
        algorithm = hashes.SHA1() if doc["SignatureVersion"] == "1" else hashes.SHA256()
        signature = (key or self.key).sign(text.encode(), padding.PKCS1v15(), algorithm)
        return {**doc, "Signature": base64.b64encode(signature).decode()}


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer()


# --- the network: a local HTTP server behind sns.http_get ------------------------------------


class Web:
    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self.asked: list[str] = []  # every URL sns.http_get was asked for
        self.paths: list[str] = []  # every request the server answered
        web = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                web.paths.append(self.path)
                if self.path.endswith(".pem"):
                    body = web.signer.pem
                elif self.path.startswith("/?Action=ConfirmSubscription"):
                    body = b"<ConfirmSubscriptionResponse/>"
                elif self.path == "/big":
                    body = b"x" * (sns.MAX_CERTIFICATE + 1)
                elif self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "http://127.0.0.1:1/")
                    self.end_headers()
                    return
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def get(self, url: str, **kw: Any) -> bytes:
        """sns.http_get: the URL as asked, fetched from the local server (same path, query)."""
        self.asked.append(url)
        parts = urlsplit(url)
        local = self.base + parts.path + (f"?{parts.query}" if parts.query else "")
        return sns._get(local, **kw)


@pytest.fixture
def web(signer, monkeypatch, settings):
    settings.OKURU_SNS_TOPIC_ARNS = [TOPIC]
    w = Web(signer)
    monkeypatch.setattr(sns, "http_get", w.get)
    monkeypatch.setattr(sns, "_certificates", {})
    yield w
    w.server.shutdown()
    w.server.server_close()


# --- a delivery, and SES notifications about what the sink received --------------------------


def ses_mail(sink: Sink, address: str) -> dict[str, Any]:
    """SES's ``mail`` object for the message the sink received for ``address``: the envelope
    sender as ``source``, the message's own headers."""
    mail_from, _rcpt, raw = next(m for m in sink.handler.messages if m[1] == address)
    msg = message_from_bytes(raw)
    headers = [{"name": k, "value": str(v)} for k, v in msg.items()]
    return {
        "timestamp": "2026-12-02T09:00:00.000Z",
        "source": mail_from,
        "sourceArn": "arn:aws:ses:ap-northeast-1:123456789012:identity/shop.example",
        "messageId": "0106019a-ses-own-id-000000",
        "destination": [address],
        "headersTruncated": False,
        "headers": headers,
        "commonHeaders": {"messageId": msg["Message-ID"], "subject": msg["Subject"]},
    }


def bounce_event(
    mail: dict[str, Any],
    bounce_type: str = "Permanent",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <{a}>: Recipient address rejected: User unknown",
    type_key: str = "notificationType",
) -> dict[str, Any]:
    address = mail["destination"][0]
    recipient = {"emailAddress": address, "action": "failed", "status": status}
    recipient["diagnosticCode"] = diagnostic.format(a=address)
    bounce = {
        "bounceType": bounce_type,
        "bounceSubType": "General",
        "bouncedRecipients": [recipient],
        "timestamp": "2026-12-02T09:00:05.000Z",
        "feedbackId": "0106019a-feedback",
        "reportingMTA": "dsn; e226-55.smtp-out.ap-northeast-1.amazonses.com",
    }
    return {type_key: "Bounce", "bounce": bounce, "mail": mail}


def complaint_event(mail: dict[str, Any]) -> dict[str, Any]:
    complaint = {
        "complainedRecipients": [{"emailAddress": mail["destination"][0]}],
        "complaintFeedbackType": "abuse",
        "timestamp": "2026-12-02T10:00:00.000Z",
        "feedbackId": "0106019a-complaint",
    }
    return {"notificationType": "Complaint", "complaint": complaint, "mail": mail}


def _now(delta: timedelta = timedelta()) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def notification(
    signer: Signer, event: Any, *, message_id: str = "", version: str = "2", **over: Any
) -> dict[str, Any]:
    doc = {
        "Type": "Notification",
        "MessageId": message_id or str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Message": event if isinstance(event, str) else json.dumps(event),
        "Timestamp": _now(),
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.ap-northeast-1.amazonaws.com/?Action=Unsubscribe&x=1",
        **over,
    }
    return signer.sign(doc)


def confirmation(signer: Signer, kind: str = "SubscriptionConfirmation", **over: Any) -> dict:
    doc = {
        "Type": kind,
        "MessageId": str(uuid.uuid4()),
        "Token": "2336412f37fb687f5d51e6e2425c464de",
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
        "SubscribeURL": SUBSCRIBE_URL,
        "Timestamp": _now(),
        "SignatureVersion": "2",
        "SigningCertURL": CERT_URL,
        **over,
    }
    return signer.sign(doc)


def post(doc: dict[str, Any] | bytes, header: str | None = None) -> Any:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    if header is None and isinstance(doc, dict):
        header = doc.get("Type", "")
    extra = {"HTTP_X_AMZ_SNS_MESSAGE_TYPE": header} if header else {}
    # SNS posts JSON as text/plain; no cookie, no CSRF token.
    return Client(enforce_csrf_checks=True).post(URL, body, content_type="text/plain", **extra)


def untouched(delivery: Delivery) -> None:
    """Nothing stored, nothing changed."""
    assert not Bounce.objects.exists()
    assert not Recipient.objects.filter(delivery=delivery).exclude(status="sent").exists()
    assert not Customer.objects.filter(email_error_count__gt=0).exists()
    assert not Customer.objects.filter(refused=True).exists()


# --- applying ---------------------------------------------------------------------------------


@pytest.mark.parametrize("type_key", ["notificationType", "eventType"])
def test_a_permanent_bounce_fails_the_row_with_its_kind_and_counts_99(
    sent, sink, signer, web, type_key
):
    row = row_of(sent, "gone@example.com")
    mail = ses_mail(sink, "gone@example.com")
    r = post(notification(signer, bounce_event(mail, type_key=type_key)))
    assert r.status_code == 200, r.content
    bounce = Bounce.objects.get()
    assert (bounce.channel, bounce.outcome, bounce.kind, bounce.status) == (
        "sns", "failed", "unknown_user", "5.1.1",
    )  # fmt: skip
    assert (bounce.recipient_id, bounce.matched_by, bounce.source) == (row.pk, "verp", TOPIC)
    assert bounce.message_id == row.message_id
    assert bounce.subject == mail["commonHeaders"]["subject"] and bounce.subject.startswith("Hello")
    assert bounce.envelope_from == mail["source"] == return_path(row)
    row.refresh_from_db()
    assert (row.status, row.error_kind) == ("failed", "unknown_user")
    assert Customer.objects.get(pk=row.customer_id).email_error_count == 99
    sent.refresh_from_db()
    assert (sent.sent_count, sent.failed_count) == (2, 1)
    assert ListCleaning.objects.filter(address="gone@example.com", reason="unknown_user").exists()
    assert Event.objects.get(kind="bounce").recipient_id == row.pk
    assert OperationLog.objects.filter(action="bounce.apply").count() == 1
    # The other rows are untouched.
    assert Recipient.objects.filter(delivery=sent, status="sent").count() == 2
    assert web.asked == [CERT_URL]


def test_a_permanent_soft_bounce_counts_one(sent, sink, signer, web):
    row = row_of(sent, "full@example.com")
    mail = ses_mail(sink, "full@example.com")
    event = bounce_event(mail, status="5.2.2", diagnostic="smtp; 552 5.2.2 Mailbox full")
    assert post(notification(signer, event)).status_code == 200
    assert Bounce.objects.get().kind == "mailbox_full"
    assert Customer.objects.get(pk=row.customer_id).email_error_count == 1
    assert not ListCleaning.objects.exists()


def test_the_same_notification_retried_counts_once(sent, sink, signer, web):
    row = row_of(sent, "gone@example.com")
    doc = notification(signer, bounce_event(ses_mail(sink, "gone@example.com")))
    first, again = post(doc), post(doc)
    assert first.status_code == again.status_code == 200
    assert again.content.decode().startswith("Already received")
    assert Bounce.objects.count() == 1
    # Another notification (another MessageId) about the same message changes nothing either.
    other = notification(signer, bounce_event(ses_mail(sink, "gone@example.com")))
    assert post(other).status_code == 200
    assert list(Bounce.objects.order_by("id").values_list("outcome", flat=True)) == [
        "failed",
        "already",
    ]
    assert Customer.objects.get(pk=row.customer_id).email_error_count == 99
    sent.refresh_from_db()
    assert (sent.sent_count, sent.failed_count) == (2, 1)
    assert Event.objects.filter(kind="bounce").count() == 1
    assert web.asked == [CERT_URL]  # the certificate is fetched once, then kept


def test_a_complaint_sets_the_refusal_flag_and_records_an_event(sent, sink, signer, web):
    row = row_of(sent, "fine@example.com")
    r = post(notification(signer, complaint_event(ses_mail(sink, "fine@example.com"))))
    assert r.status_code == 200, r.content
    bounce = Bounce.objects.get()
    assert (bounce.outcome, bounce.customer_id) == ("complaint", row.customer_id)
    assert Customer.objects.get(pk=row.customer_id).refused is True
    event = Event.objects.get(kind="complaint")
    assert (event.recipient_id, event.detail["feedback_type"]) == (row.pk, "abuse")
    assert Suppression.objects.filter(reason="complaint").count() == 1
    assert Recipient.objects.get(pk=row.pk).status == "sent"


def test_a_transient_bounce_fails_the_message_softly(sent, sink, signer, web):
    # SES sends a bounce only once it has stopped trying (a delay is a DeliveryDelay event):
    # the message did not arrive, but after a "Transient" one the address may work later.
    row = row_of(sent, "full@example.com")
    mail = ses_mail(sink, "full@example.com")
    event = bounce_event(mail, "Transient", "5.2.2", "smtp; 552 5.2.2 Mailbox full")
    assert post(notification(signer, event)).status_code == 200
    bounce = Bounce.objects.get()
    assert (bounce.outcome, bounce.recipient_id, bounce.status) == ("failed", row.pk, "5.2.2")
    row = Recipient.objects.get(pk=row.pk)
    assert (row.status, row.error_kind) == ("failed", "mailbox_full")
    assert Customer.objects.get(pk=row.customer_id).email_error_count == 1
    assert not ListCleaning.objects.exists()


def test_a_transient_bounce_never_counts_as_a_dead_address(sent, sink, signer, web):
    row = row_of(sent, "gone@example.com")
    mail = ses_mail(sink, "gone@example.com")
    event = bounce_event(mail, "Transient", "5.1.1", "smtp; 550 5.1.1 user unknown")
    assert post(notification(signer, event)).status_code == 200
    row = Recipient.objects.get(pk=row.pk)
    assert (row.status, row.error_kind) == ("failed", "other")
    assert Customer.objects.get(pk=row.customer_id).email_error_count == 1
    assert not ListCleaning.objects.exists()


def test_a_delivery_notification_is_answered_and_not_stored(sent, sink, signer, web):
    event = {"notificationType": "Delivery", "mail": ses_mail(sink, "fine@example.com")}
    r = post(notification(signer, event))
    assert r.status_code == 200 and r.content == b"Ignored: Delivery."
    untouched(sent)


def test_an_unmatched_or_unreadable_notification_is_kept_for_a_human(sent, sink, signer, web):
    mail = ses_mail(sink, "gone@example.com")
    mail["source"] = "news@shop.example"  # not a VERP address
    mail["headers"] = []
    mail["commonHeaders"] = {"messageId": "<0106019a@email.amazonses.com>"}
    for event in (bounce_event(mail), "not json", {"notificationType": "Reject", "mail": mail}):
        assert post(notification(signer, event)).status_code == 200
    outcomes = list(Bounce.objects.order_by("id").values_list("outcome", flat=True))
    assert outcomes == ["unmatched", "unparsed", "unparsed"]
    assert all(b.in_queue for b in Bounce.objects.all())
    assert Recipient.objects.filter(delivery=sent, status="sent").count() == 3
    # Parsed again from the queue, a stored notification is read as one (not as an e-mail).
    first = Bounce.objects.order_by("id").first()
    again = actions.reparse(None, first.pk)
    assert again.outcome == "unmatched" and again.report["failures"][0]["kind"] == "unknown_user"


def test_signature_version_1_sha1_verifies_too(sent, sink, signer, web):
    event = bounce_event(ses_mail(sink, "gone@example.com"))
    assert post(notification(signer, event, version="1")).status_code == 200
    assert Bounce.objects.get().outcome == "failed"


def test_a_subject_when_present_is_signed_too(sent, sink, signer, web):
    event = bounce_event(ses_mail(sink, "gone@example.com"))
    doc = notification(signer, event, Subject="Amazon SES Email Event Notification")
    _refused(post({**doc, "Subject": "Changed"}), 403, "does not verify")
    assert post(doc).status_code == 200


# --- refusing ----------------------------------------------------------------------------------


def _refused(r: Any, status: int, words: str) -> None:
    assert r.status_code == status, r.content
    assert words in r.content.decode(), r.content


def test_a_forged_or_mutated_signature_is_refused_and_nothing_is_stored(sent, sink, signer, web):
    event = bounce_event(ses_mail(sink, "gone@example.com"))
    doc = notification(signer, event)
    mutated = {**doc, "Message": doc["Message"].replace("5.1.1", "5.1.2")}
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    foreign = signer.sign({k: v for k, v in doc.items() if k != "Signature"}, other_key)
    flipped = bytearray(base64.b64decode(doc["Signature"]))
    flipped[10] ^= 1
    as_v1 = {**doc, "SignatureVersion": "1"}  # signed with SHA256, claims SHA1
    for forged in (
        mutated,
        foreign,
        {**doc, "Signature": base64.b64encode(bytes(flipped)).decode()},
        as_v1,
        {**doc, "MessageId": "another"},
    ):
        _refused(post(forged), 403, "does not verify")
    _refused(post({**doc, "Signature": "%%%"}), 403, "not base64")
    _refused(post({**doc, "SignatureVersion": "3"}), 403, "Unknown SignatureVersion 3")
    untouched(sent)


@pytest.mark.parametrize(
    "cert_url",
    [
        "https://sns.ap-northeast-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.ap-northeast-1.amazonaws.com/cert.pem",
        "http://sns.ap-northeast-1.amazonaws.com/cert.pem",
        "https://sns.ap-northeast-1.amazonaws.com:8443/cert.pem",
        "https://user@sns.ap-northeast-1.amazonaws.com/cert.pem",
        "https://sqs.ap-northeast-1.amazonaws.com/cert.pem",
        "https://127.0.0.1/cert.pem",
        "file:///etc/passwd",
    ],
)
def test_a_certificate_url_off_the_sns_hosts_is_refused_before_any_fetch(
    sent, sink, signer, web, cert_url
):
    event = bounce_event(ses_mail(sink, "gone@example.com"))
    _refused(post(notification(signer, event, SigningCertURL=cert_url)), 403, "Amazon SNS host")
    assert web.asked == [] and web.paths == []
    untouched(sent)


def test_the_sns_host_pattern():
    for host in ("us-east-1", "us-gov-west-1", "cn-north-1", "ap-southeast-2", "il-central-1"):
        assert sns.sns_url(f"https://sns.{host}.amazonaws.com/x.pem", "u")
    assert sns.sns_url("https://sns.cn-north-1.amazonaws.com.cn/x.pem", "u")
    for bad in ("https://sns.amazonaws.com/x.pem", "https://sns.x.amazonaws.com/x.pem"):
        with pytest.raises(sns.SnsError):
            sns.sns_url(bad, "u")


def test_a_certificate_url_that_is_no_pem_file_is_refused(sent, sink, signer, web):
    event = bounce_event(ses_mail(sink, "gone@example.com"))
    url = "https://sns.ap-northeast-1.amazonaws.com/?Action=Something"
    _refused(post(notification(signer, event, SigningCertURL=url)), 403, ".pem")
    assert web.asked == []


@pytest.mark.parametrize("delta", [timedelta(hours=-1, minutes=-1), timedelta(minutes=10)])
def test_a_stale_or_future_timestamp_is_refused(sent, sink, signer, web, delta):
    event = bounce_event(ses_mail(sink, "gone@example.com"))
    r = post(notification(signer, event, Timestamp=_now(delta)))
    _refused(r, 403, "too old" if delta < timedelta() else "in the future")
    untouched(sent)


def test_a_recent_retry_is_accepted(sent, sink, signer, web):
    event = bounce_event(ses_mail(sink, "gone@example.com"))
    r = post(notification(signer, event, Timestamp=_now(timedelta(minutes=-50))))
    assert r.status_code == 200


def test_another_topic_is_refused_before_any_fetch(sent, sink, signer, web):
    event = bounce_event(ses_mail(sink, "gone@example.com"))
    other = "arn:aws:sns:ap-northeast-1:999999999999:someone-else"
    _refused(post(notification(signer, event, TopicArn=other)), 403, f"Topic {other} is not")
    assert web.asked == []
    untouched(sent)


def test_malformed_requests_are_400(sent, signer, web):
    _refused(post(b"not json", "Notification"), 400, "not an Amazon SNS message")
    _refused(post(b'{"Type": "Other"}', "Other"), 400, "Unknown SNS message type Other")
    doc = notification(signer, "{}")
    _refused(post(doc, "SubscriptionConfirmation"), 400, "does not match the Type")
    del doc["MessageId"]
    _refused(post(doc), 400, "lacks its MessageId member")
    assert web.asked == []


def test_the_endpoint_does_not_exist_until_configured(db, settings, signer):
    settings.OKURU_SNS_TOPIC_ARNS = []
    assert post(notification(signer, "{}")).status_code == 404
    settings.OKURU_SNS_TOPIC_ARNS = [TOPIC]
    assert Client().get(URL).status_code == 405


# --- subscribing -------------------------------------------------------------------------------


def test_a_subscription_is_confirmed_by_a_get_of_the_sns_url_and_logged(db, signer, web):
    r = post(confirmation(signer))
    assert r.status_code == 200 and r.content == b"Subscription confirmed."
    assert web.asked == [CERT_URL, SUBSCRIBE_URL]
    assert web.paths[-1] == SUBSCRIBE_URL.removeprefix("https://sns.ap-northeast-1.amazonaws.com")
    entry = OperationLog.objects.get(action="bounce.sns_subscribe")
    assert entry.target == TOPIC
    assert entry.detail == {"reason": "confirmed", "host": "sns.ap-northeast-1.amazonaws.com"}


@pytest.mark.parametrize(
    "subscribe_url",
    [
        "https://evil.example/?Action=ConfirmSubscription&Token=x",
        "http://sns.ap-northeast-1.amazonaws.com/?Action=ConfirmSubscription&Token=x",
        "https://sns.ap-northeast-1.amazonaws.com.evil.example/?Action=ConfirmSubscription",
    ],
)
def test_a_subscribe_url_off_the_sns_hosts_is_not_fetched(db, signer, web, subscribe_url):
    r = post(confirmation(signer, SubscribeURL=subscribe_url))
    _refused(r, 403, "subscription URL is not an https address on an Amazon SNS host")
    assert web.asked == [CERT_URL]  # the (genuine) signature was checked; nothing else fetched
    entry = OperationLog.objects.get(action="bounce.sns_subscribe")
    assert entry.detail["reason"] == "failed" and "Token" not in entry.detail["error"]


def test_a_forged_subscription_confirmation_fetches_nothing_but_the_certificate(db, signer, web):
    doc = confirmation(signer)
    doc["SubscribeURL"] += "&x=1"
    _refused(post(doc), 403, "does not verify")
    assert web.asked == [CERT_URL]
    assert not OperationLog.objects.filter(action="bounce.sns_subscribe").exists()


def test_an_unsubscription_is_logged_and_nothing_else(db, signer, web):
    r = post(confirmation(signer, "UnsubscribeConfirmation"))
    assert r.status_code == 200
    assert web.asked == [CERT_URL]
    assert OperationLog.objects.get(action="bounce.sns_unsubscribe").target == TOPIC


# --- the network edge itself ---------------------------------------------------------------


def test_the_fetch_refuses_redirects_and_oversized_answers(web):
    assert sns._get(web.base + "/x.pem", max_bytes=sns.MAX_CERTIFICATE) == web.signer.pem
    with pytest.raises(sns.SnsError, match="answered 302"):
        sns._get(web.base + "/moved", max_bytes=1000)
    with pytest.raises(sns.SnsError, match="sent more than"):
        sns._get(web.base + "/big", max_bytes=sns.MAX_CERTIFICATE)
    assert web.paths == ["/x.pem", "/moved", "/big"]  # the redirect was not followed
