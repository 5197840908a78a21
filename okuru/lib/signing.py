"""Signed, opaque tokens for the tracking URLs in sent mail.

A token names a ledger row (``Recipient.id``) and, for clicks, a ``TrackedLink.id``. It is the
ids in base 36 joined by ``-``, then ``.`` and an HMAC-SHA256 signature (Django's ``Signer``,
keyed by ``SECRET_KEY``). Each kind has its own salt, so an open token cannot be replayed as an
unsubscribe token. Tokens carry no timestamp: a mail opened a year later still works.

URL paths (the tracking views live in ``okuru.tracking``)::

    /t/o/<token>.gif   open pixel          kind "open"
    /t/c/<token>       click redirect      kind "click"   (recipient + link)
    /t/u/<token>       unsubscribe page    kind "unsubscribe" (GET shows, POST one-click)
    /t/v/<token>       view in browser     kind "view"
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings
from django.core import signing

KINDS = {"open": "o", "click": "c", "unsubscribe": "u", "view": "v"}
_SEP = "."
_signers: dict[str, signing.Signer] = {}


class BadToken(ValueError):
    pass


@dataclass(frozen=True)
class Token:
    kind: str
    recipient_id: int
    link_id: int | None = None


def _signer(kind: str) -> signing.Signer:
    if kind not in KINDS:
        raise ValueError(f"unknown token kind {kind!r}")
    signer = _signers.get(kind)
    if signer is None or signer.key != settings.SECRET_KEY:
        signer = signing.Signer(key=settings.SECRET_KEY, sep=_SEP, salt=f"okuru.t.{kind}")
        _signers[kind] = signer
    return signer


def _b36(n: int) -> str:
    if n < 0:
        raise ValueError("ids are not negative")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


_keys: dict[tuple[str, str], bytes] = {}


def _signature(kind: str, value: str) -> str:
    """Exactly ``Signer(salt=…).signature(value)``, with the derived key computed once: the
    sender signs several URLs per message, and Django re-derives the key on every call."""
    signer = _signer(kind)
    key = _keys.get((kind, signer.key))
    if key is None:
        key = hashlib.sha256((signer.salt + "signer" + signer.key).encode()).digest()
        _keys[(kind, signer.key)] = key
    digest = hmac.digest(key, value.encode(), "sha256")
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_token(kind: str, recipient_id: int, link_id: int | None = None) -> str:
    if (kind == "click") != (link_id is not None):
        raise ValueError("a click token needs a link id, other kinds must not have one")
    value = _b36(recipient_id) if link_id is None else f"{_b36(recipient_id)}-{_b36(link_id)}"
    return f"{value}{_SEP}{_signature(kind, value)}"


def read_token(kind: str, token: str) -> Token:
    """The ids in ``token``; ``BadToken`` if it is forged, mutated or of another kind."""
    if not isinstance(token, str) or len(token) > 200:
        raise BadToken("malformed token")
    try:
        value = _signer(kind).unsign(token)
    except signing.BadSignature:
        raise BadToken("bad signature") from None
    parts = value.split("-")
    if len(parts) != (2 if kind == "click" else 1):
        raise BadToken("malformed token")
    try:
        ids = [int(p, 36) for p in parts]
    except ValueError:
        raise BadToken("malformed token") from None
    return Token(kind, ids[0], ids[1] if kind == "click" else None)


def path_for(kind: str, token: str) -> str:
    path = f"/t/{KINDS[kind]}/{token}"
    return path + ".gif" if kind == "open" else path


def tracking_root() -> str:
    """Where the tracking endpoints answer (a separate host may serve them at scale)."""
    return (getattr(settings, "TRACKING_ROOT", "") or settings.SITE_ROOT).rstrip("/")


def url_for(kind: str, recipient_id: int, link_id: int | None = None) -> str:
    return tracking_root() + path_for(kind, make_token(kind, recipient_id, link_id))
