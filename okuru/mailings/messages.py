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
from typing import Any

from okuru.bounces import verp
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


def check_address(address: str) -> str:
    address = address.strip()
    if not ADDRESS_RE.match(address) or len(address) > 254 or ".." in address:
        raise BadAddress(address)
    return address


def encode_header(text: str) -> str:
    """A header value: as is when it is plain ASCII, else RFC 2047 UTF-8 encoded words of at
    most 75 characters, folded, never splitting a character."""
    text = header_safe(text)
    if text.isascii() and "=?" not in text and len(text) <= 900:
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
    name = header_safe(name or "")
    if not name:
        return address
    if name.isascii():
        if _SPECIALS_RE.search(name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{name} <{address}>"
    return f"{encode_header(name)} <{address}>"


def _b64_body(text: str) -> bytes:
    return base64.encodebytes(text.encode("utf-8")).replace(b"\n", CRLF)


class MessageBuilder:
    """Builds every message of one delivery from its frozen ``content``."""

    def __init__(self, delivery_id: int, content: dict[str, Any]):
        self.delivery_id = delivery_id
        from_address = check_address(content["from_address"])
        self.from_address = from_address
        self.domain = from_address.rsplit("@", 1)[1].lower()
        self.return_path_domain = (content.get("return_path_domain") or "").strip().lower()
        head = [f"From: {format_address(content.get('from_name', ''), from_address)}"]
        if content.get("reply_to"):
            head.append(f"Reply-To: {check_address(content['reply_to'])}")
        head.append("MIME-Version: 1.0")
        self.fixed_headers = ("\r\n".join(head) + "\r\n").encode("ascii")
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
        address = check_address(address)
        message_id = self.message_id(recipient_id)
        headers = (
            f"Message-ID: {message_id}\r\n"
            f"Date: {self.date()}\r\n"
            f"To: {address}\r\n"
            f"Subject: {encode_header(rendered.subject)}\r\n"
            f"List-Unsubscribe: <{header_safe(unsubscribe_url)}>\r\n"
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        ).encode("ascii")
        body = self._body(rendered)
        data = headers + self.fixed_headers + body
        if b"\n." in data:  # SMTP dot-stuffing; base64 and our headers never need it
            data = data.replace(b"\n.", b"\n..")
        return Envelope(self.envelope_sender(recipient_id), address, data, message_id)

    def _body(self, rendered: Rendered) -> bytes:
        parts = []
        if rendered.text is not None:
            parts.append((b"text/plain", _b64_body(rendered.text)))
        if rendered.html is not None:
            parts.append((b"text/html", _b64_body(rendered.html)))
        if len(parts) == 1:
            ctype, payload = parts[0]
            return (
                b"Content-Type: " + ctype + b"; charset=utf-8\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n" + payload
            )
        b = self.boundary.encode("ascii")
        out = [b'Content-Type: multipart/alternative; boundary="' + b + b'"\r\n\r\n']
        for ctype, payload in parts:
            out.append(
                b"--" + b + b"\r\nContent-Type: " + ctype + b"; charset=utf-8\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n" + payload
            )
        out.append(b"--" + b + b"--\r\n")
        return b"".join(out)
