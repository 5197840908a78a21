"""Every screen of the app, filled with a planted world: the walks that check all of them
(Japanese labels, accessibility) take their list from here.

The screens come from the URL resolver, so a new screen is walked as soon as it exists; a URL
parameter that the world cannot fill fails (add it to ``tests.test_rights_matrix._candidates``).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from okuru.accounts.models import Operator

# Not screens: downloads (CSV, raw source), a mail's own HTML in the preview frame, the log-out
# and language actions, and what recipients' mail programs call.
NOT_SCREENS = {
    "accounts:logout",
    "set_language",
    "capture:html",
    "capture:raw",
    "mailings:events",
    "mailings:export",
    "customers:export_download",
}


def plant(owner: Operator, media: Path) -> dict[str, int]:
    from tests.test_rights_matrix import _plant

    return _plant(owner, media)


def screens(world: dict[str, int]) -> list[tuple[str, str]]:
    """(url name, path) of every screen, each parameter filled with the world's first value
    (both jobs: an export and an import). Screens that answer GET with a redirect or 405 are
    the walker's to skip."""
    from tests.test_rights_matrix import PARAM, _candidates, _screens

    out = []
    for name, route in _screens():
        if name in NOT_SCREENS or name.startswith("tracking:"):
            continue
        paths = [route]
        for match in PARAM.finditer(route):
            param = match.group(1) or match.group(2)
            values = _candidates(param, world)
            values = values if param == "job_id" else values[:1]
            paths = [p.replace(match.group(0), v, 1) for p in paths for v in values]
        out += [(name, p) for p in paths]
    return out


# ---------------------------------------------------------------------------------------------
# Labels that stayed in English on a Japanese page.

# What may stay ASCII on a Japanese page: product and protocol names, codes and formats.
ALLOWED = {
    "okuru",
    "synergy!",
    "csv",
    "html",
    "smtp",
    "api",
    "id",
    "url",
    "json",
    "utf-8",
    "cp932",
    "shift_jis",
    "dkim",
    "rsa-2048",  # key algorithms' own names
    "ed25519",
    "excel",
    "spf",
    "tls",
    "starttls",
    "imap",
    "pop3",
    "verp",
    "ok",
    "#",
    "en",
    "ja",
    "english",  # the language switch names each language in itself
}
# Tokens that carry no words: numbers, dates, e-mail addresses, field keys, merge fields.
NEUTRAL = re.compile(
    r"^(?:[\d\s.,:;/%()#+\-–—−|×✓←→↑↓…·*@]+"
    r"|[\w.+-]+@[\w.-]+"
    r"|\{\{.*\}\}"
    r"|[a-z][a-z0-9_]*(?:[.:][a-z0-9_]+)*"  # a field key or a code (delivery.start, mail:1)
    r"|https?://\S+)$"
)
VOID = {"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
LABEL_TAGS = {
    "a",
    "button",
    "caption",
    "dt",
    "h1",
    "h2",
    "h3",
    "h4",
    "label",
    "legend",
    "option",
    "summary",
    "th",
}


def english_only(text: str, data: set[str]) -> bool:
    """True when ``text`` (a label's whole text) is English words a Japanese page should not
    show: ASCII letters, no Japanese, not an allowed name, not the operator's own data."""
    text = " ".join(text.split())
    if not text or not re.search("[A-Za-z]", text) or not text.isascii():
        return False
    if text in data or text.lower() in ALLOWED or NEUTRAL.match(text):
        return False
    for name in sorted(data, key=len, reverse=True):  # "Spring sale: https://…" is data too
        text = text.replace(name, " ")
    text = re.sub(r"https?://\S+|[\w.+-]+@[\w.-]+|<[^>]*>", " ", text)
    words = re.findall(r"[A-Za-z][A-Za-z0-9!_.-]*", text)
    return not all(w.lower().strip(".") in ALLOWED or NEUTRAL.match(w) for w in words)


class _Labels(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.texts: list[tuple[str, str]] = []
        self.current: list[list[str]] = []
        self.foreign = 0  # depth inside an element marked lang="en"

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if (a.get("lang") or "").startswith("en") or self.foreign:
            # Marked as English on purpose (a mail header's own name): not a label to translate.
            self.foreign += tag not in VOID
            return
        if tag == "input" and a.get("type") in ("submit", "button") and a.get("value"):
            self.texts.append(("input", a["value"]))
        for name in ("aria-label", "title", "placeholder"):
            if a.get(name):
                self.texts.append((f"@{name}", a[name]))
        if tag in LABEL_TAGS:
            self.stack.append(tag)
            self.current.append([])

    def handle_endtag(self, tag):
        if self.foreign:
            self.foreign -= 1
            return
        if self.stack and tag == self.stack[-1]:
            self.stack.pop()
            self.texts.append((tag, "".join(self.current.pop())))

    def handle_data(self, data):
        if self.foreign:
            return
        for parts in self.current:
            parts.append(data)


def label_texts(html: str) -> list[tuple[str, str]]:
    """(tag, text) of every label-like element and attribute of the page: buttons, headings,
    labels, table headers, options, summaries, legends, aria-labels, titles, placeholders."""
    parser = _Labels()
    parser.feed(html)
    return parser.texts


def planted_data() -> set[str]:
    """The world's own names (a mail called "Spring sale" is data, not a label)."""
    from django.contrib.auth.models import Group

    from okuru.accounts.models import Notification, Operator
    from okuru.capture.models import CapturedMessage
    from okuru.customers.models import Customer, ExportSetting, Field, Topic, View
    from okuru.mailings.models import Mail, Recipient, Relay, TrackedLink

    names: set[str] = set()
    names |= set(Field.objects.values_list("label", flat=True))
    names |= set(Topic.objects.values_list("name", flat=True))
    names |= set(View.objects.values_list("name", flat=True))
    names |= set(ExportSetting.objects.values_list("name", flat=True))
    names |= set(Mail.objects.values_list("name", flat=True))
    names |= set(Mail.objects.values_list("from_name", flat=True))
    names |= set(Relay.objects.values_list("name", flat=True))
    names |= set(Operator.objects.values_list("username", flat=True))
    names |= set(Group.objects.exclude(name="Administrators").values_list("name", flat=True))
    names |= set(Mail.objects.values_list("subject", flat=True))
    names |= set(Recipient.objects.values_list("smtp_reply", flat=True))
    names |= set(CapturedMessage.objects.values_list("subject", flat=True))
    names |= set(TrackedLink.objects.values_list("name", flat=True))
    names |= set(Notification.objects.values_list("text", flat=True))
    for data in Customer.objects.values_list("data", flat=True):
        names |= {v for v in data.values() if isinstance(v, str)}
    return {n for n in names if n}
