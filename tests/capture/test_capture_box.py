"""The capture SMTP server and the capture box UI (real SMTP through aiosmtpd)."""

from __future__ import annotations

import smtplib
import socket
from email.message import EmailMessage

import pytest
from django.core.management import CommandError, call_command

from okuru.accounts import jobs
from okuru.accounts.models import Job
from okuru.capture import models as capture_models
from okuru.capture import smtp as capture_smtp
from okuru.capture.models import CapturedMessage


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def capture_server():
    port = free_port()
    controller = capture_smtp.make_controller("127.0.0.1", port)
    controller.start()
    yield port
    controller.stop()


def make_mail(subject: str = "Hello", html: str = "", text: str = "Plain body") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "sender@example.com"
    msg["To"] = "a@example.com, b@example.com"
    msg["Subject"] = subject
    msg.set_content(text)
    if html:
        msg.add_alternative(html, subtype="html")
    return msg


def capture(subject: str = "Hello", html: str = "", text: str = "Plain body") -> CapturedMessage:
    raw = make_mail(subject, html, text).as_bytes()
    return CapturedMessage.capture("sender@example.com", ["a@example.com"], raw)


@pytest.mark.django_db(transaction=True)
def test_it_stores_a_message_received_over_smtp(capture_server):
    msg = make_mail("Grüße 送る")
    with smtplib.SMTP("127.0.0.1", capture_server, timeout=10) as client:
        client.send_message(msg, to_addrs=["a@example.com", "b@example.com"])

    stored = CapturedMessage.objects.get()
    assert stored.mail_from == "sender@example.com"
    assert stored.recipients == ["a@example.com", "b@example.com"]
    assert stored.subject == "Grüße 送る"
    assert bytes(stored.raw).replace(b"\r\n", b"\n") == msg.as_bytes().replace(b"\r\n", b"\n")
    assert stored.size == len(bytes(stored.raw))
    assert stored.received is not None


@pytest.mark.django_db(transaction=True)
def test_it_refuses_a_message_over_the_size_cap(monkeypatch):
    monkeypatch.setattr(capture_smtp, "MAX_MESSAGE_BYTES", 2000)
    port = free_port()
    controller = capture_smtp.make_controller("127.0.0.1", port)
    controller.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.send_message(make_mail(text="x" * 5000))
    finally:
        controller.stop()
    assert refused.value.smtp_code == 552
    assert CapturedMessage.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_job_notice_email_lands_in_the_capture_box(capture_server, settings, owner):
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": capture_server, "timeout": 10},
        }
    }
    settings.NOTIFY_BY_EMAIL = True
    job = Job.objects.create(kind="export", operator=owner, status=Job.Status.SUCCEEDED)
    jobs.notify(job)

    stored = CapturedMessage.objects.get()
    assert stored.recipients == ["owner@example.com"]
    assert stored.subject.startswith("[Okuru] ")
    assert f"#{job.pk}" in stored.subject


@pytest.mark.django_db
def test_it_keeps_only_the_newest_messages(monkeypatch):
    monkeypatch.setattr(capture_models, "KEEP", 3)
    monkeypatch.setattr(capture_models, "PRUNE_EVERY", 1)
    for i in range(5):
        capture(f"m{i}")
    assert sorted(CapturedMessage.objects.values_list("subject", flat=True)) == ["m2", "m3", "m4"]


@pytest.mark.django_db
def test_it_keeps_a_message_whose_headers_do_not_parse():
    stored = CapturedMessage.capture("x@example.com", ["y@example.com"], b"\xff\xfe\x00garbage")
    stored.refresh_from_db()
    assert bytes(stored.raw) == b"\xff\xfe\x00garbage"
    assert stored.size == 10


def test_it_lists_messages_newest_first_with_paging(owner_client, monkeypatch):
    monkeypatch.setattr("okuru.capture.views.PAGE_SIZE", 2)
    for i in range(3):
        capture(f"subject {i}")
    r = owner_client.get("/capture/")
    assert r.status_code == 200
    body = r.content.decode()
    assert body.index("subject 2") < body.index("subject 1")
    assert "subject 0" not in body
    r = owner_client.get("/capture/?page=2")
    assert "subject 0" in r.content.decode()


def test_the_list_says_when_nothing_was_captured(owner_client):
    r = owner_client.get("/capture/")
    assert "No mail has been captured yet." in r.content.decode()


def test_it_renders_the_html_part_in_a_sandboxed_frame(owner_client):
    html = '<p>Hi <b>there</b></p><script>alert("x")</script>'
    message = capture("Sandbox", html=html, text="Text version")
    r = owner_client.get(f"/capture/{message.pk}/")
    assert r.status_code == 200
    body = r.content.decode()
    assert f'sandbox="" referrerpolicy="no-referrer" src="/capture/{message.pk}/html/"' in body
    assert '<script>alert("x")</script>' not in body
    assert "Text version" in body
    assert "sender@example.com" in body

    # The frame's document: the mail's own HTML, under a policy that runs no script.
    frame = owner_client.get(f"/capture/{message.pk}/html/")
    assert frame.status_code == 200
    assert frame.content.decode().strip() == html
    policy = frame.headers["Content-Security-Policy"]
    assert policy.startswith("sandbox; default-src 'none';")
    assert "script-src" not in policy
    assert "frame-ancestors 'self'" in policy
    assert frame.headers["X-Frame-Options"] == "SAMEORIGIN"


def test_the_html_frame_needs_the_mails_right_and_an_html_part(owner_client, outsider_client):
    message = capture("Frame", html="<p>Hi</p>")
    assert outsider_client.get(f"/capture/{message.pk}/html/").status_code == 403
    text_only = capture("Text only")
    assert owner_client.get(f"/capture/{text_only.pk}/html/").status_code == 404


def test_it_downloads_the_raw_message(owner_client):
    message = capture("Raw")
    r = owner_client.get(f"/capture/{message.pk}/raw/")
    assert r.status_code == 200
    assert r["Content-Type"] == "message/rfc822"
    assert f'filename="captured-{message.pk}.eml"' in r["Content-Disposition"]
    assert r.content == bytes(message.raw)


def test_it_answers_404_for_an_unknown_message(owner_client):
    assert owner_client.get("/capture/999999/").status_code == 404


def test_a_member_with_the_mails_right_can_read_the_box(member_client):
    message = capture("For members")
    assert member_client.get(f"/capture/{message.pk}/").status_code == 200


def test_it_rejects_an_operator_without_the_mails_right(outsider_client):
    message = capture("Secret")
    assert outsider_client.get("/capture/").status_code == 403
    assert outsider_client.get(f"/capture/{message.pk}/").status_code == 403
    assert outsider_client.get(f"/capture/{message.pk}/raw/").status_code == 403


@pytest.mark.django_db
def test_it_sends_anonymous_visitors_to_the_login_page(client):
    r = client.get("/capture/")
    assert r.status_code == 302
    assert r["Location"].startswith("/accounts/login/")


def test_capture_smtp_command_refuses_a_port_in_use():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CommandError) as e:
            call_command("capture-smtp", "--port", str(port))
    assert str(e.value) == (
        f"Cannot use 127.0.0.1:{port} for the capture SMTP server: Address already in use. "
        "Stop what uses it or choose another port."
    )
