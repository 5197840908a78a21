"""VERP return paths: the envelope sender of each message names its ledger row, verifiably.

A message of delivery ``D`` to ledger row ``R`` goes out with the envelope sender::

    bounce+<D in base 36>-<R in base 36>-<signature>@<return-path domain>

The signature is the first 16 characters of an HMAC-SHA256 over ``D-R`` (key derived from
``SECRET_KEY`` with its own salt, as the tracking tokens in ``okuru.lib.signing``), in lower-case
base 32: mail systems may fold the case of a local part, and base 32 survives that. Anyone can
mail the bounce domain, so an address without a valid signature matches nothing: a forged
bounce cannot fail a row or count an error against a customer.

Addresses written before the signature existed (``bounce+<D>-<R>@`` in decimal) are still read
(``read_legacy``); the caller must confirm such a match against the bounced address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from django.conf import settings

PREFIX = "bounce+"
SALT = "okuru.bounces.verp"
SIGNATURE_CHARS = 16
SIGNED_RE = re.compile(r"^bounce\+([0-9a-z]{1,13})-([0-9a-z]{1,13})-([a-z2-7]{16})$")
LEGACY_RE = re.compile(r"^bounce\+(\d{1,19})-(\d{1,19})$")

_keys: dict[str, bytes] = {}


@dataclass(frozen=True)
class Verp:
    delivery_id: int
    recipient_id: int
    signed: bool


def _key() -> bytes:
    key = _keys.get(settings.SECRET_KEY)
    if key is None:
        key = hashlib.sha256(f"{SALT}:{settings.SECRET_KEY}".encode()).digest()
        _keys.clear()
        _keys[settings.SECRET_KEY] = key
    return key


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


def _signature(value: str) -> str:
    digest = hmac.digest(_key(), value.encode(), "sha256")
    return base64.b32encode(digest).decode().lower()[:SIGNATURE_CHARS]


def local_part(delivery_id: int, recipient_id: int) -> str:
    value = f"{_b36(delivery_id)}-{_b36(recipient_id)}"
    return f"{PREFIX}{value}-{_signature(value)}"


def address(delivery_id: int, recipient_id: int, domain: str) -> str:
    """The envelope sender for ledger row ``recipient_id`` of ``delivery_id``."""
    return f"{local_part(delivery_id, recipient_id)}@{domain}"


def shaped(local: str) -> bool:
    """Whether a local part has the form of a return path, signed or legacy, valid or not:
    the receiver takes such mail in and matching decides (a bounce to a return path signed
    before a SECRET_KEY rotation is kept for a human, not refused)."""
    local = local.strip().lower()
    return len(local) <= 64 and bool(SIGNED_RE.match(local) or LEGACY_RE.match(local))


def read(text: str) -> Verp | None:
    """The ledger row a VERP address names: signed, or legacy (unsigned), or None.

    ``text`` may be a bare address or carry angle brackets; case does not matter."""
    local = text.strip().strip("<>").rsplit("@", 1)[0].strip().lower()
    if len(local) > 64:
        return None
    m = SIGNED_RE.match(local)
    if m:
        value = f"{m.group(1)}-{m.group(2)}"
        if not hmac.compare_digest(_signature(value), m.group(3)):
            return None
        return Verp(int(m.group(1), 36), int(m.group(2), 36), signed=True)
    m = LEGACY_RE.match(local)
    if m:
        return Verp(int(m.group(1)), int(m.group(2)), signed=False)
    return None


ADDRESS_RE = re.compile(r"bounce\+[0-9a-z\-]{3,60}@[A-Za-z0-9.\-]{1,253}", re.I)


def find(text: str) -> list[Verp]:
    """Every VERP address in ``text`` (a header value) that reads, signed ones first."""
    found = [v for m in ADDRESS_RE.finditer(text[:20_000]) if (v := read(m.group(0)))]
    return sorted(found, key=lambda v: not v.signed)
