"""DKIM signatures on what the sending path really sends, checked by an independent verifier
(dkimpy's), with the DNS answered from the keys' own records (no network)."""

from __future__ import annotations

import re
from email import message_from_bytes, policy

import dkim as dkimpy
import pytest
from django.utils import translation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okuru.customers.models import Customer, Field
from okuru.lib import dkim
from okuru.mailings import dkim_keys, sending
from okuru.mailings.messages import MessageBuilder
from okuru.mailings.models import DkimKey
from okuru.mailings.rendering import Rendered
from okuru.mailings.testing import Sink, drain, make_mail, make_relay, start

REQUIRED = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
}


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):
        yield


def dns_for(keys) -> dict[bytes, bytes]:
    return {f"{dkim_keys.dns_name(k)}.".encode(): dkim_keys.dns_text(k).encode() for k in keys}


def verify_all(data: bytes, records: dict[bytes, bytes]) -> list[bool]:
    """dkimpy's verdict on each DKIM-Signature of the message, top to bottom."""
    count = len(re.findall(rb"(?m)^DKIM-Signature:", data.split(b"\r\n\r\n", 1)[0]))
    checker = dkimpy.DKIM(data)
    return [
        checker.verify(idx=i, dnsfunc=lambda name, timeout=5: records.get(name))
        for i in range(count)
    ]


def signed_headers(data: bytes) -> list[set[str]]:
    msg = message_from_bytes(data, policy=policy.compat32)
    out = []
    for sig in msg.get_all("DKIM-Signature"):
        tags = dict(t.strip().split("=", 1) for t in re.sub(r"\s+", "", sig).split(";") if "=" in t)
        out.append(set(tags["h"].split(":")))
    return out


@pytest.mark.django_db
@pytest.mark.parametrize("signing_process", [True, False], ids=["child-process", "in-worker"])
def test_every_message_the_worker_sends_verifies_with_both_keys(signing_process):
    Field.objects.create(key="name", label="Name", type="text")
    for i, name in enumerate(["山田 太郎", 'O\'Brien, "Pat"', "Zoë  Tab\there"]):
        Customer.objects.create(email=f"user{i}@example.org", data={"name": name})
    rsa_key = dkim_keys.add_key("shop.example", "rsa", None)
    ed_key = dkim_keys.add_key("shop.example", "ed25519", None)
    with Sink() as sink:
        make_relay(sink.port)
        mail = make_mail(
            from_name="ショップ",
            subject="{{ name }}様へ 春のセール",
            text_body="{{ name }}様\n  indented line with trailing space   \n\n\n",
            html_body='<p>{{ name }}様</p><a href="https://shop.example/sale">セール</a>',
            open_tracking=True,
        )
        delivery = start(mail)
        config = sending.Config(batch_size=10, idle_sleep=0.01, signing_process=signing_process)
        worker = sending.Worker(config)
        drain(worker, delivery)
        child = worker._signing.proc if worker._signing else None
        assert (child is not None) == signing_process
        worker.close()
    if child is not None:
        assert child.poll() is not None  # the worker's close ended its signing process
    assert len(sink.handler.messages) == 3
    records = dns_for([rsa_key, ed_key])
    for _sender, _rcpt, data in sink.handler.messages:
        assert verify_all(data, records) == [True, True]
        for names in signed_headers(data):
            assert REQUIRED <= names
        tampered = data.replace(b"\r\nSubject: ", b"\r\nSubject: Re: ", 1)
        assert verify_all(tampered, records) == [False, False]


@pytest.mark.django_db
def test_a_subdomain_sender_is_signed_with_its_parent_domains_key():
    key = dkim_keys.add_key("shop.example", "rsa", None)
    signer = dkim_keys.signer_for("news@mail.shop.example")
    assert signer is not None and [k.domain for k in signer.keys] == ["shop.example"]
    builder = MessageBuilder(1, {"from_address": "news@mail.shop.example"}, signer)
    env = builder.build(2, "a@example.org", Rendered("Hi", "Body", None), "https://x/u/1")
    assert verify_all(env.data, dns_for([key])) == [True]


@pytest.mark.django_db
def test_a_domain_without_an_active_key_is_not_signed():
    dkim_keys.add_key("other.example", "rsa", None)
    assert dkim_keys.signer_for("news@shop.example") is None
    assert dkim_keys.signer_for("news@example") is None
    builder = MessageBuilder(1, {"from_address": "news@shop.example"}, None)
    env = builder.build(2, "a@example.org", Rendered("Hi", "Body", None), "https://x/u/1")
    assert b"DKIM-Signature" not in env.data


# One key of each kind for the generated messages: RSA generation is too slow per example.
RSA_PAIR = dkim.generate("rsa")
ED_PAIR = dkim.generate("ed25519")
RECORDS = {
    b"r1._domainkey.shop.example.": dkim.dns_record("rsa", RSA_PAIR.public_b64).encode(),
    b"e1._domainkey.shop.example.": dkim.dns_record("ed25519", ED_PAIR.public_b64).encode(),
}
SIGNER = dkim.Signer(
    [
        dkim.SigningKey("shop.example", "r1", "rsa", RSA_PAIR.private_pem),
        dkim.SigningKey("shop.example", "e1", "ed25519", ED_PAIR.private_pem),
    ]
)
texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=300)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    subject=texts,
    from_name=texts,
    topic_name=texts,
    text=st.one_of(st.none(), texts),
    html=st.one_of(st.none(), texts.map(lambda t: f"<p>{t}</p>")),
)
def test_generated_messages_verify(subject, from_name, topic_name, text, html):
    if text is None and html is None:
        text = ""
    content = {
        "from_address": "news@shop.example",
        "from_name": from_name,
        "topic_key": "spring",
        "topic_name": topic_name,
    }
    builder = MessageBuilder(5, content, SIGNER)
    env = builder.build(9, "a@example.org", Rendered(subject, text, html), "https://x/u/9")
    # What goes over SMTP is dot-stuffed; the receiver's copy is not.
    data = env.data.replace(b"\n..", b"\n.")
    assert verify_all(data, RECORDS) == [True, True]


def test_the_dns_record_is_split_into_strings_of_at_most_255_bytes():
    text = dkim.dns_record("rsa", RSA_PAIR.public_b64)
    strings = dkim.dns_strings(text)
    assert len(text) > 255 and len(strings) == 2
    assert all(len(s.encode()) <= 255 for s in strings) and "".join(strings) == text
    line = dkim.dns_zone_line("r1", "shop.example", text)
    assert line.startswith('r1._domainkey.shop.example. IN TXT ( "v=DKIM1; k=rsa; p=')
    assert dkim.dns_strings(dkim.dns_record("ed25519", ED_PAIR.public_b64)) == [
        f"v=DKIM1; k=ed25519; p={ED_PAIR.public_b64}"
    ]


def test_relaxed_body_canonicalisation_follows_rfc_6376():
    # RFC 6376 3.4.6's example: " C \r\nD \t E\r\n\r\n\r\n" becomes " C\r\nD E\r\n".
    assert dkim.relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n") == b" C\r\nD E\r\n"
    assert dkim.relaxed_body(b"") == b""
    assert dkim.relaxed_body(b"\r\n\r\n") == b""
    assert dkim.relaxed_header(b"SubJect", b" AbC\r\n\t de  f \r\n") == b"subject:AbC de f\r\n"


@pytest.mark.django_db
def test_keys_in_db_are_used_by_a_new_delivery_only_when_active():
    first = dkim_keys.add_key("Shop.Example.", "rsa", None)
    second = dkim_keys.add_key("shop.example", "rsa", None, selector="next")
    assert (first.domain, first.active, second.active) == ("shop.example", True, False)
    assert [k.selector for k in dkim_keys.signer_for("a@shop.example").keys] == [first.selector]
    dkim_keys.activate_key(second, None)
    assert [k.selector for k in dkim_keys.signer_for("a@shop.example").keys] == ["next"]
    assert DkimKey.objects.get(pk=first.pk).active is False


@pytest.mark.django_db
def test_a_signature_that_cannot_be_made_sends_nothing_and_says_why(monkeypatch):
    # OpenSSL refusing to sign (a broken key, say) is the outer edge here: the row must not go
    # out unsigned, the batch must go on, and the operator must read why.
    Customer.objects.create(email="user@example.org")
    dkim_keys.add_key("shop.example", "rsa", None)

    def refuse(self, data):
        raise ValueError("the key refuses to sign")

    monkeypatch.setattr(dkim.SigningKey, "sign", refuse)
    with Sink() as sink:
        make_relay(sink.port)
        delivery = start(make_mail(subject="Hi", text_body="Body"))
        worker = sending.Worker(sending.Config(batch_size=10, signing_process=False))
        drain(worker, delivery)
        worker.close()
    assert sink.handler.messages == []
    row = delivery.recipients.get()
    assert (row.status, row.error_kind) == ("failed", "other")  # not sent: no doubt to resolve
    assert Customer.objects.get().email_error_count == 0  # not the address's fault
    assert row.note == "Not sent: unexpected error while signing: the key refuses to sign"
