"""Suppression that survives the customer: keyed hashes of addresses never to be mailed again.

A complaint or a refusal flag lives on the customer, so deleting the customer (or re-importing
the address as a new record) would forget it. Before that can happen the address goes into
``Suppression`` as HMAC-SHA256 of its lower-cased form, keyed by a key derived from
``SECRET_KEY``: the table says "this address refused" without holding the address, so it keeps
nothing a deletion request asked to remove, and a stolen copy of the table cannot be read back
by hashing a list of addresses without the key.

``enforce`` gives the refusal flag back to every customer whose PC or mobile address is
suppressed: it runs after each import, on customer creation, and every few minutes over the
customers updated since its last run (a periodic task), so every path that writes customers
is covered.

List cleaning needs none of this: it is kept by address, apart from the customers.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from okuru.bounces.models import Suppression
from okuru.customers.models import Customer

SALT = "okuru.bounces.suppression"
CHUNK = 2000

_keys: dict[str, bytes] = {}


def _key() -> bytes:
    key = _keys.get(settings.SECRET_KEY)
    if key is None:
        key = hashlib.sha256(f"{SALT}:{settings.SECRET_KEY}".encode()).digest()
        _keys.clear()
        _keys[settings.SECRET_KEY] = key
    return key


def address_digest(address: str) -> str:
    return hmac.new(_key(), address.strip().lower().encode(), "sha256").hexdigest()


def remember(addresses: Iterable[str], reason: str) -> int:
    """Add the addresses (blank ones skipped) to the suppression list; returns how many rows
    are new. Idempotent."""
    digests = {address_digest(a) for a in addresses if a and a.strip()}
    if not digests:
        return 0
    have = set(Suppression.objects.filter(digest__in=digests).values_list("digest", flat=True))
    new = [Suppression(digest=d, reason=reason) for d in digests - have]
    Suppression.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)


def is_suppressed(address: str) -> bool:
    return bool(address and Suppression.objects.filter(digest=address_digest(address)).exists())


def remember_customer(customer: Customer) -> int:
    """Before a customer is deleted: keep their addresses if they refuse all mail."""
    if not customer.refused:
        return 0
    return remember([customer.email, customer.mobile_email], Suppression.Reason.REFUSED)


def enforce(customer_ids: Iterable[int] | None = None, since: datetime | None = None) -> int:
    """Set the refusal flag of every customer (of ``customer_ids``, or updated at or after
    ``since``, or all) whose address is suppressed; returns how many were changed.

    Streams the customers in chunks of ``CHUNK``: the hashes are computed here, so the database
    cannot do the matching, but memory stays flat."""
    if not Suppression.objects.exists():
        return 0
    qs = Customer.objects.filter(refused=False).exclude(email="", mobile_email="")
    if customer_ids is not None:
        qs = qs.filter(id__in=list(customer_ids))
    if since is not None:
        qs = qs.filter(Q(updated_at__gte=since) | Q(created_at__gte=since))
    changed = 0
    batch: list[tuple[int, str, str]] = []
    for row in qs.values_list("id", "email", "mobile_email").iterator(chunk_size=CHUNK):
        batch.append(row)
        if len(batch) >= CHUNK:
            changed += _enforce_chunk(batch)
            batch = []
    if batch:
        changed += _enforce_chunk(batch)
    return changed


def _enforce_chunk(rows: list[tuple[int, str, str]]) -> int:
    by_digest: dict[str, list[int]] = {}
    for customer_id, email, mobile in rows:
        for address in (email, mobile):
            if address:
                by_digest.setdefault(address_digest(address), []).append(customer_id)
    hits = Suppression.objects.filter(digest__in=list(by_digest)).values_list("digest", flat=True)
    ids = {cid for d in hits for cid in by_digest[d]}
    if not ids:
        return 0
    return Customer.objects.filter(id__in=ids, refused=False).update(
        refused=True, updated_at=timezone.now()
    )
