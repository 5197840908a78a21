"""Amazon SES event notifications delivered by Amazon SNS to an HTTPS endpoint (POST /bounces/sns/).

SES publishes each bounce and complaint to an SNS topic; SNS posts it here as a signed JSON
document. Authenticity comes only from that signature, checked as AWS documents it
("Verifying the signatures of Amazon SNS messages"), before anything is stored or fetched
except the certificate:

1. The document is JSON with the members its ``Type`` needs (``Notification``,
   ``SubscriptionConfirmation``, ``UnsubscribeConfirmation``); the ``x-amz-sns-message-type``
   header, when sent, names the same type.
2. Its ``TopicArn`` is one of ``settings.OKURU_SNS_TOPIC_ARNS`` (403 otherwise; the endpoint
   does not exist while the setting is empty).
3. ``SigningCertURL`` is ``https://sns.<region>.amazonaws.com[.cn]/….pem`` — no other host,
   port, scheme or user part — so no other server is ever asked for anything (no SSRF).
4. ``Timestamp`` is at most ``MAX_AGE`` old (and not from the future): a captured message
   cannot be replayed later.
5. ``SignatureVersion`` "1" (SHA1withRSA) or "2" (SHA256withRSA) over the canonical string
   (``canonical``) verifies with the certificate's RSA key; the certificate is fetched over
   verified HTTPS (short timeout, size cap, no redirects), must be within its validity period,
   and is kept in memory by URL.

Then a ``SubscriptionConfirmation`` is confirmed by a GET of its ``SubscribeURL`` (only on the
same SNS hosts) and logged (``bounce.sns_subscribe``) so an administrator sees it; an
``UnsubscribeConfirmation`` is logged (``bounce.sns_unsubscribe``) and nothing else. A
``Notification`` carrying an SES Bounce or Complaint is stored as a ``Bounce`` of channel "sns"
keyed by the SNS MessageId (a retried notification changes nothing the second time), matched
and applied by ``actions.store`` exactly as a bounce by mail is. Deliveries, opens, clicks and
the like are answered 200 and not stored; anything else SES sends, or what cannot be read,
goes to the queue for a human.

``http_get`` is the one place that reaches the network; tests replace it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http.client
import json
import logging
import re
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from okuru.accounts import audit
from okuru.bounces import actions
from okuru.bounces.models import Bounce
from okuru.bounces.parsing import MAX_BYTES, Report, ses_report, ses_type

log = logging.getLogger(__name__)

NOTIFICATION = "Notification"
SUBSCRIBE = "SubscriptionConfirmation"
UNSUBSCRIBE = "UnsubscribeConfirmation"
# The members signed, in the order of the canonical string. "Subject" only when present.
SIGNED_KEYS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIBE: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    UNSUBSCRIBE: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
OPTIONAL_KEYS = frozenset({"Subject"})
HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
# sns.us-east-1.amazonaws.com, sns.us-gov-west-1.amazonaws.com, sns.cn-north-1.amazonaws.com.cn
SNS_HOST_RE = re.compile(r"^sns\.[a-z]{2,4}(?:-[a-z]+){1,3}-\d{1,2}\.amazonaws\.com(?:\.cn)?$")

MAX_AGE = timedelta(hours=1)  # SNS stops retrying an HTTP delivery within an hour
MAX_SKEW = timedelta(minutes=5)  # a clock ahead of ours
MAX_BODY = 1024 * 1024  # SNS messages are at most 256 KB, JSON-escaped once more here
MAX_CERTIFICATE = 64 * 1024
MAX_CONFIRMATION = 64 * 1024
TIMEOUT = 5.0
CACHE_SIZE = 32
# SES events that say nothing about a failure: answered 200, not stored (one per sent message).
IGNORED = frozenset(
    {"Delivery", "Send", "Open", "Click", "DeliveryDelay", "Subscription",
     "AmazonSnsSubscriptionSucceeded"}
)  # fmt: skip


class SnsError(Exception):
    """A request refused, with the status to answer and a message saying why."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Answer:
    status: int
    text: str


# ---------------------------------------------------------------------------------------------
# The network edge


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is then an error: a redirect could lead anywhere


_opener = urllib.request.build_opener(
    _NoRedirect, urllib.request.HTTPSHandler(context=ssl.create_default_context())
)


def _shown(url: str) -> str:
    """``url`` without its query (a SubscribeURL's carries the subscription token)."""
    return url.split("?", 1)[0][:300]


def _get(url: str, *, max_bytes: int, timeout: float = TIMEOUT) -> bytes:
    """The body of a GET of ``url`` (TLS verified, redirects refused), at most ``max_bytes``;
    SnsError(502) otherwise."""
    where = _shown(url)
    try:
        with _opener.open(urllib.request.Request(url, method="GET"), timeout=timeout) as r:
            body = r.read(max_bytes + 1)
    except urllib.error.HTTPError as e:
        raise SnsError(_("%(url)s answered %(code)s.") % {"url": where, "code": e.code}, 502) from e
    except (OSError, ValueError, http.client.HTTPException) as e:
        message = _("Could not reach %(url)s: %(error)s") % {"url": where, "error": e}
        raise SnsError(message, 502) from e
    if len(body) > max_bytes:
        message = _("%(url)s sent more than %(n)s bytes.") % {"url": where, "n": max_bytes}
        raise SnsError(message, 502)
    return body


# What fetches a certificate or confirms a subscription: replaced in tests (the outer edge).
http_get: Callable[..., bytes] = _get


# ---------------------------------------------------------------------------------------------
# Verification


def sns_url(url: str, what: str) -> str:
    """The host of ``url`` when it is an https URL on an Amazon SNS host (no port, no user
    part); SnsError(403) otherwise — checked before anything is fetched."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        ok = (
            parts.scheme == "https"
            and parts.netloc.lower() == host
            and parts.port is None
            and SNS_HOST_RE.match(host) is not None
        )
    except ValueError:
        ok = False
    if not ok:
        raise SnsError(
            _("The %(what)s is not an https address on an Amazon SNS host: %(url)s")
            % {"what": what, "url": _shown(url)}
        )
    return host


def canonical(message: dict[str, Any]) -> bytes:
    """The string SNS signs: "name\\nvalue\\n" for each signed member, in order."""
    lines = []
    for key in SIGNED_KEYS[message["Type"]]:
        value = message.get(key)
        if key in OPTIONAL_KEYS and value is None:
            continue
        lines.append(f"{key}\n{value}\n")
    return "".join(lines).encode("utf-8")


_certificates: dict[str, x509.Certificate] = {}
_lock = threading.Lock()


def certificate(url: str) -> x509.Certificate:
    """The signing certificate at ``url`` (already checked by ``sns_url``), kept by URL."""
    with _lock:
        cert = _certificates.get(url)
    if cert is not None:
        return cert
    pem = http_get(url, max_bytes=MAX_CERTIFICATE, timeout=TIMEOUT)
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as e:
        raise SnsError(_("The signing certificate could not be read."), 502) from e
    with _lock:
        if len(_certificates) >= CACHE_SIZE:
            _certificates.clear()
        _certificates[url] = cert
    return cert


def _timestamp(value: str, now: datetime) -> None:
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        when = None
    if when is None or when.tzinfo is None:
        raise SnsError(_("The Timestamp is not a date and time: %(value)s") % {"value": value})
    if when < now - MAX_AGE:
        raise SnsError(
            _("The message is too old (sent %(when)s): it is not accepted again.") % {"when": value}
        )
    if when > now + MAX_SKEW:
        raise SnsError(_("The message is dated in the future (%(when)s).") % {"when": value})


def verify(message: dict[str, Any], now: datetime | None = None) -> None:
    """Check ``message`` (a decoded SNS document whose Type and members ``read`` has checked)
    is signed by Amazon SNS and recent; SnsError otherwise."""
    now = now or timezone.now()
    version = message.get("SignatureVersion")
    algorithm = HASHES.get(version) if isinstance(version, str) else None
    if algorithm is None:
        raise SnsError(
            _("Unknown SignatureVersion %(version)s: 1 or 2 is accepted.")
            % {"version": str(version)[:20]}
        )
    url = message.get("SigningCertURL")
    if not isinstance(url, str):
        raise SnsError(_("The message has no SigningCertURL."), 400)
    sns_url(url, _("signing certificate URL"))
    if not url.lower().split("?", 1)[0].endswith(".pem"):
        raise SnsError(_("The signing certificate URL does not name a .pem file."))
    _timestamp(message["Timestamp"], now)
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if not signature:
        raise SnsError(_("The message's Signature is missing or not base64."))
    cert = certificate(url)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise SnsError(_("The signing certificate is not valid now."))
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SnsError(_("The signing certificate does not hold an RSA key."))
    try:
        key.verify(signature, canonical(message), padding.PKCS1v15(), algorithm())
    except InvalidSignature as e:
        raise SnsError(
            _("The signature does not verify: the message is not from Amazon SNS.")
        ) from e


def read(body: bytes, header_type: str = "") -> dict[str, Any]:
    """The SNS document in a request body, with the members its Type needs (SnsError(400)
    otherwise)."""
    if len(body) > MAX_BODY:
        raise SnsError(_("The request is larger than an SNS message can be."), 413)
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        message = None
    if not isinstance(message, dict) or not isinstance(message.get("Type"), str):
        raise SnsError(_("The request is not an Amazon SNS message (JSON with a Type)."), 400)
    kind = message["Type"]
    if kind not in SIGNED_KEYS:
        raise SnsError(_("Unknown SNS message type %(type)s.") % {"type": kind[:50]}, 400)
    if header_type and header_type != kind:
        raise SnsError(
            _("The x-amz-sns-message-type header (%(header)s) does not match the Type (%(type)s).")
            % {"header": header_type[:50], "type": kind[:50]},
            400,
        )
    for key in SIGNED_KEYS[kind]:
        value = message.get(key)
        if key in OPTIONAL_KEYS and value is None:
            continue
        if not isinstance(value, str):
            raise SnsError(_("The SNS message lacks its %(member)s member.") % {"member": key}, 400)
    return message


# ---------------------------------------------------------------------------------------------
# Handling


def handle(body: bytes, header_type: str = "", now: datetime | None = None) -> Answer:
    """Answer one POST to the webhook."""
    try:
        message = read(body, header_type)
        topic = message["TopicArn"]
        if topic not in settings.OKURU_SNS_TOPIC_ARNS:
            raise SnsError(
                _("Topic %(topic)s is not one this endpoint accepts (OKURU_SNS_TOPIC_ARNS).")
                % {"topic": topic[:300]}
            )
        verify(message, now)
    except SnsError as e:
        log.warning("SNS message refused (%s): %s", e.status, e)
        return Answer(e.status, str(e))
    if message["Type"] == SUBSCRIBE:
        return _confirm(message)
    if message["Type"] == UNSUBSCRIBE:
        audit.log(None, "bounce.sns_unsubscribe", message["TopicArn"], {"id": message["MessageId"]})
        return Answer(200, _("Unsubscription noted."))
    return _notification(body, message)


def _confirm(message: dict[str, Any]) -> Answer:
    topic, url = message["TopicArn"], message["SubscribeURL"]
    try:
        host = sns_url(url, _("subscription URL"))
        http_get(url, max_bytes=MAX_CONFIRMATION, timeout=TIMEOUT)
    except SnsError as e:
        audit.log(None, "bounce.sns_subscribe", topic, {"reason": "failed", "error": str(e)})
        log.warning("SNS subscription to %s not confirmed: %s", topic, e)
        return Answer(e.status, str(e))
    audit.log(None, "bounce.sns_subscribe", topic, {"reason": "confirmed", "host": host})
    return Answer(200, _("Subscription confirmed."))


def digest(message_id: str) -> str:
    """A notification's ``Bounce.digest``: the SNS MessageId, which a retry keeps."""
    return hashlib.sha256(b"sns:" + message_id.encode("utf-8", "replace")).hexdigest()


def _notification(body: bytes, message: dict[str, Any]) -> Answer:
    key = digest(message["MessageId"])
    try:
        data = json.loads(message["Message"])
    except (ValueError, RecursionError):
        data = None
    data = data if isinstance(data, dict) else None
    kind = ses_type(data) if data is not None else ""
    if kind in IGNORED:
        return Answer(200, _("Ignored: %(type)s.") % {"type": kind})
    note = ""
    try:
        report = ses_report(data) if data is not None else None
    except Exception as e:  # the reader promises not to raise; if it does, keep the message
        report, note = None, _("The parser failed: %(error)s") % {"error": e}
    if data is None:
        note = _("The SNS message does not carry a JSON object.")
    mail = data.get("mail") if data is not None else None
    mail = mail if isinstance(mail, dict) else {}
    common = mail.get("commonHeaders")
    common = common if isinstance(common, dict) else {}
    original = report.original if report is not None else None
    bounce = Bounce(
        channel=Bounce.Channel.SNS,
        source=message["TopicArn"][:300],
        digest=key,
        message_id=original.message_id[:300] if original else "",
        envelope_from=str(mail.get("source") or "")[:300],
        subject=" ".join(str(common.get("subject") or message.get("Subject") or "").split())[:300],
        raw=body[:MAX_BYTES],
        size=len(body),
        note=note[:500],
    )
    bounce, new = actions.store(bounce, report or Report())
    if not new:
        return Answer(200, _("Already received: #%(id)s.") % {"id": bounce.pk})
    return Answer(200, f"#{bounce.pk} {bounce.outcome}")
