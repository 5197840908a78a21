"""MIME messages for a delivery, built as bytes.

The ``email`` package's generator costs more per message than rendering and SMTP together, so
``MessageBuilder`` works out everything that is the same for every recipient once per delivery
(From, Reply-To, boundary, domain) and writes each message by joining bytes: headers with RFC 2047
encoded words for non-ASCII (Japanese subjects), UTF-8 bodies in base64, multipart/alternative
when there is text and HTML. Tests parse the result back with ``email.parser`` to hold it to the
standards.

Envelope: with a return-path domain the envelope sender is a signed VERP address
(``okuru.bounces.verp``), so an asynchronous bounce names its ledger row verifiably.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from dataclasses import dataclass
from email.utils import formatdate
from html.parser import HTMLParser
from typing import Any

from django.utils.encoding import iri_to_uri

from okuru.bounces import verp
from okuru.lib import dkim
from okuru.mailings.rendering import Rendered, header_safe

CRLF = b"\r\n"
# What an address in a header or SMTP command may contain: no spaces, brackets, quotes, or
# control characters (a CR/LF in an address would be an injected header or command).
ADDRESS_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\Z"
)
_SPECIALS_RE = re.compile(r'[()<>\[\]:;@\\,."]')


class BadAddress(ValueError):
    pass


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipient: str
    data: bytes
    message_id: str


@dataclass(frozen=True)
class Draft:
    """A message's headers and body, not yet signed (``MessageBuilder.draft``)."""

    sender: str
    recipient: str
    headers: list[tuple[str, str]]
    body: bytes
    message_id: str

    def envelope(self, signatures: str = "") -> Envelope:
        """The message as sent: ``signatures`` (DKIM-Signature lines) on top of the headers."""
        head = signatures + "".join([f"{name}: {value}\r\n" for name, value in self.headers])
        data = head.encode("ascii") + CRLF + self.body
        if b"\n." in data:  # SMTP dot-stuffing; base64 and our headers never need it
            data = data.replace(b"\n.", b"\n..")
        return Envelope(self.sender, self.recipient, data, self.message_id)


def check_address(address: str) -> str:
    address = address.strip()
    if not ADDRESS_RE.match(address) or len(address) > 254 or ".." in address:
        raise BadAddress(address)
    return address


def encode_header(text: str, max_plain: int = 900) -> str:
    """A header value: as is when it is plain ASCII (up to ``max_plain`` characters, so the
    line stays under SMTP's 998 octets), else RFC 2047 UTF-8 encoded words of at most 75
    characters, folded, never splitting a character."""
    text = header_safe(text)
    if text.isascii() and "=?" not in text and len(text) <= max_plain:
        return text
    words, chunk = [], b""
    for ch in text:
        b = ch.encode("utf-8")
        # 39 bytes -> 52 base64 chars + 12 = 64 per word: with "Subject: " still under 78.
        if len(chunk) + len(b) > 39:
            words.append(chunk)
            chunk = b""
        chunk += b
    if chunk:
        words.append(chunk)
    return "\r\n ".join(f"=?UTF-8?B?{base64.b64encode(w).decode()}?=" for w in words)


def format_address(name: str, address: str) -> str:
    return f"{_phrase(name)} <{address}>" if header_safe(name or "") else address


def _phrase(name: str) -> str:
    """A display name for an address or a List-Id: plain, quoted, or encoded words. Long
    names are encoded words too, which fold, so the line stays under 998 octets whatever
    the address beside it."""
    name = header_safe(name or "")
    if name.isascii() and len(name) <= 200 and "=?" not in name:
        if _SPECIALS_RE.search(name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return name
    return encode_header(name, max_plain=0)


def list_id(content: dict[str, Any], domain: str) -> str:
    """The List-Id (RFC 2919) of a delivery's messages: one list per newsletter topic, else
    one per mail, named after it, under ``list-id.<sender domain>`` (a name the sender
    controls, as the RFC asks). Receivers' filters group and judge bulk mail by it."""
    topic = (content.get("topic_key") or "").strip().lower()
    if topic and _LABEL_RE.match(topic):
        label, name = topic, content.get("topic_name") or topic
    elif content.get("mail_id"):
        label, name = f"mail-{int(content['mail_id'])}", content.get("mail_name") or ""
    else:  # a delivery frozen before List-Id existed: one list for the sender domain
        label, name = "mail", ""
    ident = f"<{label}.list-id.{domain}>"
    return f"{_phrase(name)} {ident}" if header_safe(name) else ident


_LABEL_RE = re.compile(r"^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\Z")


def _url_safe(url: str) -> str:
    # A List-Unsubscribe URL is ASCII without spaces or angle brackets (RFC 2369): an IRI in
    # the site's base URL is percent-encoded, and a header can never be split.
    return iri_to_uri(header_safe(url)).replace(" ", "%20").replace(">", "%3E")


class _TextFromHtml(HTMLParser):
    BLOCKS = frozenset(
        "p div br tr li h1 h2 h3 h4 h5 h6 table ul ol blockquote hr section article".split()
    )
    SKIP = frozenset(("style", "script", "head", "title"))

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skip += 1
        elif tag in self.BLOCKS:
            self.out.append("\n")
        elif tag == "a":
            self.href = dict(attrs).get("href")
        elif tag == "img":
            alt = (dict(attrs).get("alt") or "").strip()
            if alt:
                self.out.append(f"[{alt}]")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCKS:
            self.out.append("\n")
        elif tag == "a" and self.href:
            if self.href.startswith(("http://", "https://", "mailto:")):
                self.out.append(f" ( {self.href} )")
            self.href = None

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(re.sub(r"\s+", " ", data))


def text_from_html(html: str) -> str:
    """A plain-text rendering of an HTML body: its text, block by block, and its links'
    URLs, for the text alternative of an HTML-only mail."""
    parser = _TextFromHtml()
    parser.feed(html)
    parser.close()
    lines = (line.strip() for line in "".join(parser.out).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def _b64_body(text: str) -> bytes:
    return base64.encodebytes(text.encode("utf-8")).replace(b"\n", CRLF)


class MessageBuilder:
    """Builds every message of one delivery from its frozen ``content``; with a ``signer``
    (``okuru.mailings.dkim_keys.signer_for``) each message carries DKIM signatures."""

    def __init__(
        self, delivery_id: int, content: dict[str, Any], signer: dkim.Signer | None = None
    ):
        self.delivery_id = delivery_id
        from_address = check_address(content["from_address"])
        self.from_address = from_address
        self.domain = from_address.rsplit("@", 1)[1].lower()
        self.return_path_domain = (content.get("return_path_domain") or "").strip().lower()
        self.signer = signer
        fixed = [("From", format_address(content.get("from_name", ""), from_address))]
        if content.get("reply_to"):
            fixed.append(("Reply-To", check_address(content["reply_to"])))
        fixed.append(("MIME-Version", "1.0"))
        self.fixed_headers = fixed
        self.list_id = list_id(content, self.domain)
        self.boundary = f"=_okuru_{secrets.token_hex(12)}"
        self._date_second = 0
        self._date = ""

    def envelope_sender(self, recipient_id: int) -> str:
        if not self.return_path_domain:
            return self.from_address
        return verp.address(self.delivery_id, recipient_id, self.return_path_domain)

    def message_id(self, recipient_id: int) -> str:
        return f"<{self.delivery_id}.{recipient_id}.{secrets.token_hex(6)}@{self.domain}>"

    def date(self) -> str:
        now = int(time.time())
        if now != self._date_second:
            self._date_second, self._date = now, formatdate(now, usegmt=True)
        return self._date

    def build(
        self, recipient_id: int, address: str, rendered: Rendered, unsubscribe_url: str
    ) -> Envelope:
        """The message for one recipient, signed when the builder has a signer."""
        draft = self.draft(recipient_id, address, rendered, unsubscribe_url)
        return draft.envelope(self.signer.sign(draft.headers, draft.body) if self.signer else "")

    def draft(
        self, recipient_id: int, address: str, rendered: Rendered, unsubscribe_url: str
    ) -> Draft:
        """The message for one recipient before its DKIM signatures: the sending worker has
        them computed by other threads (RSA releases the GIL) while it talks SMTP."""
        address = check_address(address)
        message_id = self.message_id(recipient_id)
        content_headers, body = self._body(rendered)
        headers = [
            ("Message-ID", message_id),
            ("Date", self.date()),
            ("To", address),
            ("Subject", encode_header(rendered.subject)),
            ("List-Id", self.list_id),
            ("List-Unsubscribe", f"<{_url_safe(unsubscribe_url)}>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            *self.fixed_headers,
            *content_headers,
        ]
        return Draft(self.envelope_sender(recipient_id), address, headers, body, message_id)

    def _body(self, rendered: Rendered) -> tuple[list[tuple[str, str]], bytes]:
        text, html = rendered.text, rendered.html
        if html is not None and text is None:
            # An HTML-only message is what spam filters expect from spammers (MIME_HTML_ONLY)
            # and unreadable in a text-only client: give it the text alternative it lacks.
            text = text_from_html(html)
        elif html is None and text is None:
            text = ""  # an empty mail is still one well-formed part, never an empty multipart
        parts = []
        if text is not None:
            parts.append((b"text/plain", _b64_body(text)))
        if html is not None:
            parts.append((b"text/html", _b64_body(html)))
        if len(parts) == 1:
            ctype, payload = parts[0]
            return [
                ("Content-Type", ctype.decode() + "; charset=utf-8"),
                ("Content-Transfer-Encoding", "base64"),
            ], payload
        b = self.boundary.encode("ascii")
        out = []
        for ctype, payload in parts:
            out.append(
                b"--" + b + b"\r\nContent-Type: " + ctype + b"; charset=utf-8\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n" + payload
            )
        out.append(b"--" + b + b"--\r\n")
        return [("Content-Type", f'multipart/alternative; boundary="{self.boundary}"')], b"".join(
            out
        )
