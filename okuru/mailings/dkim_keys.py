"""DKIM keys of the sender domains: the named actions that add, activate and delete them, and
the signer the sending path uses.

Kept in ``mailings`` beside the relays (``relays.py``): a key belongs to a sender domain, only
the sending path reads it, and the operators who configure where mail goes (right
``sending``) are the ones who publish its DNS records. The signature itself is
``okuru.lib.dkim``, which knows nothing of the database.

*Which keys sign.* A message is signed with the active keys of its From domain, or, when that
domain has none, of the nearest parent domain that has (``news.example.com`` → ``example.com``:
DMARC's relaxed alignment accepts that). A domain has at most one active key per algorithm.
The first key of an algorithm is active as soon as it is added — a signature whose record is
not published yet fails like no signature, so nothing is lost — and a later one (a rotation)
waits for ``activate_key`` once its record is in DNS, then replaces the old one.

*The private key* stays in the database (the worker needs it, and a key file next to the
database would be no safer). It never leaves again: screens, the API, the CLI and the
operation log show the domain, selector, algorithm and public record only.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from okuru.accounts import audit
from okuru.lib import dkim
from okuru.mailings.models import DkimKey

Actor = Any  # HttpRequest | Operator | None, as okuru.accounts.audit.log takes it


def normalise_domain(domain: str) -> str:
    """The domain in lower-case ASCII (an internationalised name as its A-label), or a
    ValidationError saying what is wrong."""
    text = (domain or "").strip().rstrip(".").lower()
    if "@" in text:
        text = text.rsplit("@", 1)[1]
    try:
        ascii_name = text.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_name = ""
    if not text or not dkim.DOMAIN_RE.match(ascii_name):
        raise ValidationError(
            {"domain": _("Not a domain name: %(domain)s") % {"domain": domain or ""}}
        )
    return ascii_name


def default_selector(domain: str, algorithm: str) -> str:
    """``okuru-rsa-202607``: says what made the key, its kind and when; numbered when taken."""
    base = f"okuru-{algorithm}-{timezone.now():%Y%m}"
    taken = set(
        DkimKey.objects.filter(domain=domain, selector__startswith=base).values_list(
            "selector", flat=True
        )
    )
    n, selector = 1, base
    while selector in taken:
        n += 1
        selector = f"{base}-{n}"
    return selector


def _check_selector(selector: str) -> str:
    selector = (selector or "").strip().lower()
    if not dkim.SELECTOR_RE.match(selector):
        raise ValidationError(
            {
                "selector": _(
                    "A selector is letters, digits and hyphens (dots between parts), "
                    "63 characters at most: %(selector)s"
                )
                % {"selector": selector}
            }
        )
    return selector


def add_key(domain: str, algorithm: str, actor: Actor, selector: str = "") -> DkimKey:
    """Generate a key for ``domain`` and store it; active at once when the domain has no
    active key of that algorithm."""
    domain = normalise_domain(domain)
    if algorithm not in DkimKey.Algorithm.values:
        raise ValidationError(
            {
                "algorithm": _("Unknown algorithm “%(value)s”: use rsa or ed25519.")
                % {"value": algorithm}
            }
        )
    selector = _check_selector(selector) if selector else default_selector(domain, algorithm)
    if DkimKey.objects.filter(domain=domain, selector=selector).exists():
        raise _selector_taken(domain, selector)
    pair = dkim.generate(algorithm)  # outside the transaction: RSA generation takes a while
    key = DkimKey(
        domain=domain,
        selector=selector,
        algorithm=algorithm,
        private_key=pair.private_pem,
        public_key=pair.public_b64,
    )
    try:
        with transaction.atomic(durable=True):
            key.active = not DkimKey.objects.filter(
                domain=domain, algorithm=algorithm, active=True
            ).exists()
            key.save()
            audit.log(actor, "dkim.create", f"dkim:{key.pk}", public(key))
    except IntegrityError:  # the same selector, or a first active key, at the same moment
        raise ValidationError(
            _("Another operator changed the keys of %(domain)s at the same moment. Try again.")
            % {"domain": domain}
        ) from None
    return key


def _selector_taken(domain: str, selector: str) -> ValidationError:
    return ValidationError(
        {
            "selector": _("%(domain)s already has a key with the selector %(selector)s.")
            % {"domain": domain, "selector": selector}
        }
    )


def activate_key(key: DkimKey, actor: Actor) -> DkimKey | None:
    """Sign with ``key`` from now on, in place of its domain's active key of the same
    algorithm (returned, or None)."""
    with transaction.atomic(durable=True):
        # Lock the domain's keys of this algorithm in one order: two activations at once run
        # one after the other instead of colliding on the one-active-key constraint.
        rows = list(
            DkimKey.objects.select_for_update()
            .filter(domain=key.domain, algorithm=key.algorithm)
            .order_by("pk")
        )
        old = next((k for k in rows if k.active and k.pk != key.pk), None)
        if old is not None:
            DkimKey.objects.filter(pk=old.pk).update(active=False)
        DkimKey.objects.filter(pk=key.pk).update(active=True)
        key.active = True
        detail = public(key)
        if old is not None:
            detail["replaced"] = old.selector
        audit.log(actor, "dkim.activate", f"dkim:{key.pk}", detail)
    return old


def delete_key(key: DkimKey, actor: Actor) -> None:
    """Delete ``key``; messages are no longer signed with it (nor with any key of its
    algorithm, if it was the active one)."""
    with transaction.atomic(durable=True):
        detail = public(key)
        DkimKey.objects.filter(pk=key.pk).delete()
        audit.log(actor, "dkim.delete", f"dkim:{key.pk}", detail)


# ---------------------------------------------------------------------------------------------
# What is shown of a key


def public(key: DkimKey) -> dict[str, Any]:
    """Everything about a key but its private half."""
    return {
        "domain": key.domain,
        "selector": key.selector,
        "algorithm": key.algorithm,
        "active": key.active,
    }


def dns_name(key: DkimKey) -> str:
    return f"{key.selector}._domainkey.{key.domain}"


def dns_text(key: DkimKey) -> str:
    return dkim.dns_record(key.algorithm, key.public_key)


def dns_strings(key: DkimKey) -> list[str]:
    return dkim.dns_strings(dns_text(key))


def dns_zone_line(key: DkimKey) -> str:
    return dkim.dns_zone_line(key.selector, key.domain, dns_text(key))


# ---------------------------------------------------------------------------------------------
# Signing


def _domains_up(domain: str) -> list[str]:
    parts = domain.split(".")
    return [".".join(parts[i:]) for i in range(len(parts) - 1)]


def signer_for(from_address_or_domain: str) -> dkim.Signer | None:
    """The signer for mail from this address's domain (or a parent domain), or None when no
    key is active for it."""
    domain = from_address_or_domain.rsplit("@", 1)[-1].strip().lower()
    candidates = _domains_up(domain)
    if not candidates:
        return None
    keys = list(DkimKey.objects.filter(domain__in=candidates, active=True).order_by("algorithm"))
    for name in candidates:  # the From domain itself first, then up
        found = [k for k in keys if k.domain == name]
        if found:
            return dkim.Signer(
                [dkim.SigningKey(k.domain, k.selector, k.algorithm, k.private_key) for k in found]
            )
    return None
