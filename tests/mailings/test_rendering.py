"""Templates, merge fields, the sandbox, MIME and tokens."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from html.parser import HTMLParser

import pytest
from django.core.exceptions import ValidationError
from django.utils import translation

from okuru.bounces import verp
from okuru.customers.fields import catalogue
from okuru.customers.models import Customer, Field
from okuru.lib import signing
from okuru.mailings import actions, ledger
from okuru.mailings.messages import MessageBuilder, encode_header
from okuru.mailings.models import Mail, TrackedLink
from okuru.mailings.rendering import CompiledMail, find_links, validate_templates
from okuru.mailings.testing import make_mail

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def english():
    # Messages are asserted in English; the default language is Japanese.
    with translation.override("en"):
        yield


def mail_with(**kw) -> Mail:
    values = dict(name="m", from_address="news@shop.example", subject="Hi", text_body="Body")
    values.update(kw)
    return Mail(**values)


def content(mail: Mail) -> dict:
    return ledger.content_snapshot(mail)


def render(mail: Mail, customer: Customer, recipient_id: int = 7):
    compiled = CompiledMail(content(mail), catalogue())
    row = Customer.objects.filter(pk=customer.pk).values().get()
    return compiled.render(recipient_id, row)


def build(mail: Mail, customer: Customer, recipient_id: int = 7):
    rendered = render(mail, customer, recipient_id)
    builder = MessageBuilder(99, content(mail))
    env = builder.build(
        recipient_id, customer.email, rendered, signing.url_for("unsubscribe", recipient_id)
    )
    return env, message_from_bytes(env.data, policy=policy.default)


def test_it_rejects_an_unknown_merge_field_at_save():
    with pytest.raises(ValidationError) as e:
        actions.save_mail(mail_with(text_body="Dear {{ nmae }}"), None)
    assert e.value.message_dict == {"text_body": ["Unknown merge field in text body: nmae"]}
    assert not Mail.objects.exists()


def test_it_accepts_user_fields_and_the_extra_merge_fields():
    Field.objects.create(key="name", label="Name", type="text")
    mail = actions.save_mail(
        mail_with(
            subject="{{ name }} san",
            text_body="{{ customer_id }} {{ unsubscribe_url }} {{ view_in_browser_url }}",
        ),
        None,
    )
    mail.refresh_from_db()
    assert mail.subject == "{{ name }} san"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ email.__class__.__mro__ }}",
        "{{ settings.SECRET_KEY }}",
        "{{ email['x'] }}",
        "{{ email.upper() }}",
        "{% include '/etc/passwd' %}",
        "{{ lipsum() }}",
        "{{ range(10) }}",
    ],
)
def test_it_rejects_sandbox_escapes_at_save(source):
    with pytest.raises(ValidationError):
        validate_templates(mail_with(text_body=source))


def test_sandbox_escapes_fail_at_render_too():
    # Even if a template got past validation, the sandbox itself refuses.
    customer = Customer.objects.create(email="a@example.com")
    mail = mail_with(text_body="{{ ''.__class__.__mro__ }}")
    with pytest.raises(Exception) as e:
        render(mail, customer)
    assert "unsafe" in str(e.value) or "undefined" in str(e.value).lower()
    mail = mail_with(text_body="{{ email * 100000 }}")
    with pytest.raises(Exception, match="into more than 10,000 characters or items"):
        render(mail, customer)


def test_it_reports_syntax_errors_with_the_part_and_line():
    with pytest.raises(ValidationError) as e:
        validate_templates(mail_with(html_body="<p>\n{{ email </p>"))
    assert e.value.message_dict["html_body"][0].startswith("Template error in HTML body at line 2")


def test_html_autoescapes_merge_fields_but_text_does_not():
    customer = Customer.objects.create(email="a@example.com")
    Field.objects.create(key="name", label="Name", type="text")
    customer.data = {"name": "<script>x</script>"}
    customer.save()
    r = render(mail_with(text_body="{{ name }}", html_body="<b>{{ name }}</b>"), customer)
    assert r.text == "<script>x</script>"
    assert "&lt;script&gt;" in r.html and "<script>" not in r.html


def test_missing_values_render_empty():
    Field.objects.create(key="name", label="Name", type="text")
    customer = Customer.objects.create(email="a@example.com")
    r = render(mail_with(text_body="[{{ name }}]"), customer)
    assert r.text == "[]"


def test_crlf_in_a_merge_field_cannot_add_headers():
    Field.objects.create(key="name", label="Name", type="text")
    customer = Customer.objects.create(
        email="a@example.com", data={"name": "x\r\nBcc: victim@evil.example\r\n\r\nbody"}
    )
    mail = mail_with(subject="Hello {{ name }}", from_name="Shop\r\nX-Evil: 1")
    env, msg = build(mail, customer)
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert msg["Subject"] == "Hello x Bcc: victim@evil.example body"
    assert b"\r\nBcc:" not in env.data


def test_a_japanese_subject_round_trips():
    customer = Customer.objects.create(email="a@example.com")
    subject = (
        "【春のセール】最大50%オフ！お見逃しなく、今すぐチェックしてください。限定クーポン付き"
    )
    mail = mail_with(subject=subject, from_name="送る商店", text_body="本文です。\n")
    env, msg = build(mail, customer)
    assert env.data.isascii()
    assert msg["Subject"] == subject
    assert str(msg["From"]) == "送る商店 <news@shop.example>"
    assert all(len(line) <= 998 for line in env.data.split(b"\r\n"))
    head = env.data.split(b"\r\n\r\n")[0].split(b"\r\n")
    subject_lines = [line for line in head if line.startswith((b"Subject:", b" =?"))]
    assert len(subject_lines) > 2 and all(len(line) <= 78 for line in subject_lines)
    assert msg.get_body(("plain",)).get_content() == "本文です。\n"


def test_encoded_words_never_split_a_character():
    text = "あ" * 100
    encoded = encode_header(text)
    for word in encoded.split("\r\n "):
        assert len(word) <= 75
    assert (
        str(
            message_from_bytes(f"Subject: {encoded}\r\n\r\n".encode(), policy=policy.default)[
                "Subject"
            ]
        )
        == text
    )


def test_every_message_has_the_required_headers():
    customer = Customer.objects.create(email="a@example.com")
    mail = make_mail(reply_to="help@shop.example")
    env, msg = build(mail, customer, recipient_id=1234)
    assert msg["Message-ID"] == env.message_id and env.message_id.endswith("@shop.example>")
    assert msg["Date"] is not None
    assert msg["Reply-To"] == "help@shop.example"
    assert msg["To"] == "a@example.com"
    assert msg["List-Unsubscribe"].startswith("<http://localhost:8000/t/u/")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert env.sender == verp.address(99, 1234, "bounce.shop.example")
    assert env.sender.startswith("bounce+2r-ya-")


def test_links_are_tracked_and_rewritten():
    customer = Customer.objects.create(email="a@example.com")
    mail = make_mail(
        html_body=(
            '<html><body><a href="https://shop.example/a?x=1&amp;y=2">A</a>'
            '<a href="https://shop.example/p?id={{ customer_id }}">P</a>'
            '<a href="mailto:x@example.com">M</a></body></html>'
        ),
        text_body="See https://shop.example/b.\nAnd https://shop.example/a?x=1&y=2\n",
    )
    links = list(TrackedLink.objects.filter(mail=mail).values_list("url", flat=True))
    assert links == ["https://shop.example/a?x=1&y=2", "https://shop.example/b"]
    r = render(mail, customer, recipient_id=5)
    a = TrackedLink.objects.get(mail=mail, url="https://shop.example/a?x=1&y=2")
    click = signing.url_for("click", 5, a.pk)
    assert f'href="{click}"' in r.html
    assert f"https://shop.example/p?id={customer.pk}" in r.html  # merge-field URL left as is
    assert "mailto:x@example.com" in r.html
    assert r.text.startswith(
        "See " + signing.url_for("click", 5, mail.links.get(url="https://shop.example/b").pk) + "."
    )
    assert r.html.index(signing.url_for("open", 5)) < r.html.index("</body>")


def test_tracking_can_be_switched_off():
    customer = Customer.objects.create(email="a@example.com")
    mail = make_mail(open_tracking=False, click_tracking=False)
    r = render(mail, customer)
    assert 'href="https://shop.example/sale"' in r.html
    assert "/t/o/" not in r.html and "/t/c/" not in r.html


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> list[tuple[str, dict]]:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser.tags


@pytest.mark.parametrize(
    "body, where",
    [
        ("<p>Hi {{ email }}</p>", ("td", "background")),
        ("<p>An <imgur> is not an image</p>", ("td", "background")),
        ('<p>Hi</p><IMG SRC="https://shop.example/a.png" alt="A">', ("img", "src")),
        ('<p>Hi</p><img\nsrc="https://shop.example/a.png" alt="A">', ("img", "src")),
    ],
)
def test_the_open_pixel_is_an_img_only_beside_the_authors_own_images(body, where):
    """A 1×1 pixel is not content: in HTML without images it is a table cell's background,
    so the message has no image the author did not put there (spam filters score short HTML
    with any <img> as an image mail); beside the author's images it is an <img>."""
    customer = Customer.objects.create(email="a@example.com")
    mail = make_mail(html_body=f"<html><body>{body}</body></html>")
    html = render(mail, customer, recipient_id=5).html
    pixel = signing.url_for("open", 5)
    found = [(tag, name) for tag, attrs in tags(html) for name, v in attrs.items() if v == pixel]
    assert found == [where]
    images = [attrs.get("src") for tag, attrs in tags(html) if tag == "img"]
    authors = [attrs.get("src") for tag, attrs in tags(body) if tag == "img"]
    assert images == authors + ([pixel] if authors else [])
    assert html.index(pixel) < html.index("</body>")


def test_the_background_pixel_is_an_img_for_classic_outlook_inside_its_conditional_comment():
    # Classic Outlook for Windows draws no attribute backgrounds: the cell carries the pixel as
    # an <img> in an [if mso] comment, which every other program (and SpamAssassin, and
    # tags() here) reads as a comment.
    customer = Customer.objects.create(email="a@example.com")
    html = render(make_mail(html_body="<p>Hi</p>"), customer, recipient_id=5).html
    pixel = signing.url_for("open", 5)
    comment = re.search(r"<!--\[if mso\]>(.*?)<!\[endif\]-->", html, re.S)
    assert comment and f'<img src="{pixel}" width="1" height="1"' in comment.group(1)
    assert [t for t, _a in tags(html) if t == "img"] == []


def test_removed_links_stay_for_messages_already_sent():
    mail = make_mail()
    link = mail.links.get()
    mail.html_body = "<p>No links</p>"
    mail.text_body = "No links"
    actions.save_mail(mail, None)
    link.refresh_from_db()
    assert link.active is False
    assert ledger.content_snapshot(mail)["links"] == []


def test_find_links_ignores_japanese_after_a_url():
    assert find_links("", "詳細はhttps://shop.example/saleをご覧ください") == [
        "https://shop.example/sale"
    ]


def test_tokens_reject_forged_and_mutated_values():
    token = signing.make_token("click", 42, 7)
    assert signing.read_token("click", token) == signing.Token("click", 42, 7)
    for bad in [
        token[:-1] + ("A" if token[-1] != "A" else "B"),
        "1a-7." + token.split(".")[1],
        "",
        "x" * 300,
    ]:
        with pytest.raises(signing.BadToken):
            signing.read_token("click", bad)
    with pytest.raises(signing.BadToken):
        signing.read_token("unsubscribe", signing.make_token("open", 42))


@pytest.mark.parametrize(
    "field,value,message",
    [
        (
            "from_address",
            "news@shop.example\r\nBcc: x@evil.example",
            "Not a valid e-mail address: ",
        ),
        ("reply_to", "a b@shop.example", "Not a valid e-mail address: a b@shop.example"),
        ("return_path_domain", "bounce..example", "Not a valid domain: bounce..example"),
    ],
)
def test_it_rejects_bad_sender_settings(field, value, message):
    with pytest.raises(ValidationError) as e:
        actions.save_mail(mail_with(**{field: value}), None)
    assert e.value.message_dict[field][0].startswith(message)
