"""Debian's SpamAssassin (local rules only: no network, no Bayes, no learning) over typical
messages of each kind, built by Okuru's own builder and rendering: no MIME, header or
list-header rule may fire, and no HTML rule either when the author's HTML has no image. The
image rules (HTML_IMAGE_ONLY_*: any <img> in HTML of under 3,200 bytes) judge the images an
author put in a mail; Okuru's open pixel must not change their verdict. ``scripts/test``
installs spamassassin as root; without it, and not root, the test is skipped saying so."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from okuru.customers.fields import catalogue
from okuru.customers.models import Customer, Field
from okuru.lib import signing
from okuru.mailings import dkim_keys, ledger
from okuru.mailings.messages import MessageBuilder
from okuru.mailings.rendering import CompiledMail
from okuru.mailings.testing import make_mail

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        shutil.which("spamassassin") is None,
        reason="spamassassin is not installed (scripts/test installs Debian's package as root)",
    ),
]

# Rule families that judge the form of a message rather than its words: MIME structure, HTML
# make-up, headers, and the mailing-list headers.
FORM_RULE = re.compile(
    r"^(MIME_|HTML_|__|MISSING_|INVALID_|LIST_|.*HEADER|.*MSGID|.*_DATE|DATE_|FROM_|TO_|"
    r"SUBJ_|REPTO_|FORGED_|BAD_ENC|CHARSET_|EMPTY_|NO_DNS|PYZOR|RDNS_DYNAMIC|TVD_|"
    r"SUSP_UTF8|RAND_HEADER|UNPARSEABLE|MPART_|MULTIPART_|CTYPE_|.*_HTML_)"
)
# Rules that fire on any message handed to SpamAssassin straight from a file (it never passed
# through an MTA, so it has no Received headers) and the informational markers of an HTML
# part: they say what the message is, not that anything is wrong with it.
NEUTRAL = {"NO_RECEIVED", "NO_RELAYS", "HTML_MESSAGE", "DKIM_SIGNED"}

JA_TEXT = (
    "{{ name }}様\n\nいつも当店をご利用いただき、誠にありがとうございます。\n"
    "今月のお知らせをお届けします。春の新商品が入荷しました。店頭とオンラインショップの両方で"
    "お買い求めいただけます。会員の皆様には、ご購入金額に応じたポイントを二倍で差し上げます。\n"
    "詳しくは https://shop.example/spring をご覧ください。\n\n"
    "ご不明な点がございましたら、このメールにご返信ください。\n"
    "配信停止はこちら: {{ unsubscribe_url }}\n"
)
EN_TEXT = (
    "Dear {{ name }},\n\nThank you for shopping with us. This month we have new arrivals in "
    "the garden section, a workshop on planting herbs on the second Saturday, and longer "
    "opening hours on Fridays. Members collect double points on every purchase until the end "
    "of the month.\n\nSee the full programme at https://shop.example/spring\n\n"
    "Questions? Simply reply to this message.\n"
    "To stop receiving this newsletter: {{ unsubscribe_url }}\n"
)
EN_HTML = (
    "<html><body>"
    '<p><img src="https://shop.example/img/banner.jpg" width="600" alt="Spring at the shop"></p>'
    "<p>Dear {{ name }},</p>"
    "<p>Thank you for shopping with us. This month we have new arrivals in the garden section, "
    "a workshop on planting herbs on the second Saturday, and longer opening hours on "
    "Fridays. Members collect double points on every purchase until the end of the month.</p>"
    '<p><img src="https://shop.example/img/herbs.jpg" width="300" alt="Herbs"></p>'
    "<p>Our staff have picked their favourite tools for the season: a light trowel, gloves "
    "that keep hands dry, and seed trays made from recycled paper. Each comes with a short "
    "guide on our site, and our staff are happy to answer your questions in the shop.</p>"
    '<p><a href="https://shop.example/spring">See the full programme</a></p>'
    "<p>Questions? Simply reply to this message.<br>"
    'To stop receiving this newsletter, <a href="{{ unsubscribe_url }}">unsubscribe here</a>.'
    "</p></body></html>"
)
EN_SHORT_HTML = (
    "<html><body><p>Dear {{ name }},</p>"
    "<p>Thank you for shopping with us. This month we have new arrivals in the garden section "
    "and longer opening hours on Fridays.</p>"
    '<p><a href="https://shop.example/spring">See the full programme</a></p>'
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
)
# A newsletter as mail editors write them: a centred 600-pixel table, inline styles, a banner
# and two product cards, a footer. SpamAssassin's HTML_IMAGE_ONLY_* measures the HTML source
# (tags included) against up to 3,200 bytes, so a layout like this never scores as image-only
# with its images; a short page of images may (``WITH_SHORT_IMAGES``), pixel or not.
CELL = 'style="font-family:Helvetica,Arial,sans-serif;font-size:15px;line-height:22px;color:#333"'
CARD = (
    '<td width="50%" valign="top" style="padding:10px">'
    '<img src="https://shop.example/img/{img}.jpg" width="270" height="180" alt="{alt}" '
    'style="display:block;border:0">'
    "<p {cell}><strong>{alt}</strong><br>{text}</p>"
    '<p {cell}><a href="https://shop.example/{img}" style="color:#2a6f3c">Details</a></p></td>'
)
NEWSLETTER_HTML = (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    "<title>Spring at the shop</title></head>"
    '<body style="margin:0;padding:0;background:#f4f4f0">'
    '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
    'style="background:#f4f4f0"><tr><td align="center" style="padding:20px 10px">'
    '<table role="presentation" width="600" cellpadding="0" cellspacing="0" border="0" '
    'style="background:#ffffff;border-radius:4px">'
    '<tr><td><img src="https://shop.example/img/banner.jpg" width="600" height="240" '
    'alt="Spring at the shop" style="display:block;border:0;width:100%"></td></tr>'
    f'<tr><td style="padding:24px 30px"><p {CELL}>Dear {{{{ name }}}},</p>'
    f"<p {CELL}>Thank you for shopping with us. This month we have new arrivals in the garden "
    "section, a workshop on planting herbs on the second Saturday, and longer opening hours "
    "on Fridays. Members collect double points on every purchase until the end of the "
    "month.</p></td></tr>"
    '<tr><td style="padding:0 20px"><table role="presentation" width="100%" cellpadding="0" '
    'cellspacing="0" border="0"><tr>'
    + CARD.format(
        img="trowel", alt="A light trowel", cell=CELL, text="Forged steel, ash handle, 240 g."
    )
    + CARD.format(
        img="gloves", alt="Dry-hands gloves", cell=CELL, text="Breathable, washable, S to XL."
    )
    + "</tr></table></td></tr>"
    f'<tr><td style="padding:24px 30px"><h2 style="font-family:Helvetica,Arial,sans-serif;'
    'font-size:20px;color:#2a6f3c;margin:0 0 10px">Herb workshop, second Saturday</h2>'
    f"<p {CELL}>Learn to sow, plant and harvest basil, thyme and mint in pots on a balcony. "
    "The workshop takes an hour and a half, seeds and soil are included, and you take your "
    'pots home. Places are limited to twelve: <a href="https://shop.example/workshop" '
    'style="color:#2a6f3c">book a place</a>.</p></td></tr>'
    f'<tr><td style="padding:24px 30px"><p {CELL}>Questions? Simply reply to this message; '
    "our staff answer within a day.</p></td></tr>"
    '<tr><td style="padding:20px 30px;background:#eeeeea">'
    '<p style="font-family:Helvetica,Arial,sans-serif;font-size:12px;line-height:18px;'
    'color:#777">The Shop, 1-2-3 Example-cho, Tokyo. You receive this newsletter as a member. '
    '<a href="{{ unsubscribe_url }}" style="color:#777">Unsubscribe</a></p></td></tr>'
    "</table></td></tr></table></body></html>"
)
JA_HTML = (
    "<html><body>"
    + "".join(f"<p>{line}</p>" for line in JA_TEXT.split("\n") if line)
    + "</body></html>"
)
KINDS = {
    "text only": dict(subject="News from the shop, {{ name }}", text_body=EN_TEXT, html_body=""),
    "short html without images": dict(
        subject="News from the shop, {{ name }}", text_body=EN_TEXT, html_body=EN_SHORT_HTML
    ),
    "html with images": dict(
        subject="Spring at the shop, {{ name }}", text_body=EN_TEXT, html_body=EN_HTML
    ),
    "newsletter with images": dict(
        subject="Spring at the shop, {{ name }}", text_body=EN_TEXT, html_body=NEWSLETTER_HTML
    ),
    "html only, with images": dict(
        subject="Spring at the shop, {{ name }}", text_body="", html_body=EN_HTML
    ),
    "japanese": dict(
        subject="{{ name }}様へ 春の新商品のお知らせ", text_body=JA_TEXT, html_body=JA_HTML
    ),
    "japanese html only": dict(
        subject="{{ name }}様へ 春の新商品のお知らせ", text_body="", html_body=JA_HTML
    ),
}
# The kinds whose author wrote images into a short HTML (under HTML_IMAGE_ONLY's 3,200 bytes):
# the rule judges the author's images there, as written.
WITH_SHORT_IMAGES = {"html with images", "html only, with images"}
# All kinds whose author wrote images: HTML_IMAGE_RATIO_* weighs their area against the text
# (scored 0.001: information, not a verdict on the message's form).
AUTHOR_IMAGES = WITH_SHORT_IMAGES | {"newsletter with images"}


def judges_the_authors_images(kind: str, rule: str) -> bool:
    return (kind in AUTHOR_IMAGES and rule.startswith("HTML_IMAGE_RATIO_")) or (
        kind in WITH_SHORT_IMAGES and rule.startswith("HTML_IMAGE_ONLY_")
    )


def fired_rules(message: bytes, tmp_path) -> set[str]:
    prefs = tmp_path / "user_prefs"
    prefs.write_text("use_bayes 0\nbayes_auto_learn 0\n")
    result = subprocess.run(
        ["spamassassin", "-L", "-t", "-p", str(prefs), "--cf=use_bayes 0"],
        input=message,
        capture_output=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C"},
    )
    assert result.returncode in (0, 1), result.stderr.decode(errors="replace")
    head = result.stdout.split(b"\n\n", 1)[0].decode("ascii", errors="replace")
    status = re.search(r"^X-Spam-Status:(.*?)(?=^\S)", head + "\nEnd", re.S | re.M)
    assert status, head
    tests = re.search(r"tests=(.*?)\s+autolearn=", status.group(1), re.S)
    return set(re.sub(r"\s+", "", tests.group(1)).split(",")) - {"none", ""} if tests else set()


def scan(kind: str, signed: bool, tmp_path, open_tracking: bool = True) -> set[str]:
    """The rules SpamAssassin fires on a message of ``kind`` as the worker would build it."""
    japanese = kind.startswith("japanese")
    Field.objects.get_or_create(key="name", defaults=dict(label="Name", type="text"))
    customer, _ = Customer.objects.get_or_create(
        email="hanako@example.org",
        defaults=dict(data={"name": "山田 花子" if japanese else "Hanako Yamada"}),
    )
    mail = make_mail(
        from_name="ショップ" if japanese else "The Shop",
        reply_to="help@shop.example",
        open_tracking=open_tracking,
        click_tracking=True,
        **KINDS[kind],
    )
    if signed:
        dkim_keys.add_key("shop.example", "rsa", None)
    content = ledger.content_snapshot(mail)
    rendered = CompiledMail(content, catalogue()).render(
        41, Customer.objects.filter(pk=customer.pk).values().get()
    )
    builder = MessageBuilder(40, content, dkim_keys.signer_for(mail.from_address))
    env = builder.build(41, customer.email, rendered, signing.url_for("unsubscribe", 41))
    return fired_rules(env.data.replace(b"\n..", b"\n."), tmp_path)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "dkim"])
def test_no_mime_header_or_list_rule_fires_on_a_typical_message(kind, signed, tmp_path):
    fired = scan(kind, signed, tmp_path)
    bad = sorted(
        r for r in fired - NEUTRAL if FORM_RULE.match(r) and not judges_the_authors_images(kind, r)
    )
    assert not bad, f"SpamAssassin rules fired on {kind}: {bad} (all: {sorted(fired)})"


def image_verdict(fired: set[str]) -> tuple[bool, set[str]]:
    """Whether an HTML_IMAGE_ONLY_* rule fired (which of them depends on the HTML's length, and
    the pixel's own markup adds to it), and the HTML_IMAGE_RATIO_* rules that fired."""
    return (
        any(r.startswith("HTML_IMAGE_ONLY_") for r in fired),
        {r for r in fired if r.startswith("HTML_IMAGE_RATIO_")},
    )


@pytest.mark.parametrize("kind", [k for k, v in KINDS.items() if v["html_body"]])
def test_the_open_pixel_changes_no_image_rule_verdict(kind, tmp_path):
    """An author's images are judged as written (a short mail of images may well score as
    one), and a mail without images never scores as an image mail because of the pixel."""
    (tmp_path / "tracked").mkdir()
    (tmp_path / "untracked").mkdir()
    tracked = scan(kind, False, tmp_path / "tracked", open_tracking=True)
    untracked = scan(kind, False, tmp_path / "untracked", open_tracking=False)
    assert image_verdict(tracked) == image_verdict(untracked), (sorted(tracked), sorted(untracked))
    assert image_verdict(tracked)[0] == (kind in WITH_SHORT_IMAGES), sorted(tracked)
