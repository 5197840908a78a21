"""What Okuru accepts as a recipient's e-mail address, for every way an address comes in
(import, the customer form, the API), so that a stored address is one a delivery can use.

The rule is RFC 5321/5322's plain form, ``local@domain``, in ASCII only:

* the local part is 1-64 characters of letters, digits and ``!#$%&'*+/=?^_`{|}~-``, in
  dot-separated pieces (no leading, trailing or doubled dot);
* the domain is two or more dot-separated labels of letters, digits and hyphens (1-63 each, no
  hyphen at either end, no trailing dot), the last one not all digits; an internationalised
  domain is written in its ``xn--`` form;
* at most 254 characters in all (the longest address a ``RCPT TO`` can carry).

No quoted local parts, comments or address literals (``user@[192.0.2.1]``): a list of
customers has no use for them, and they are what mail servers disagree on. Everything accepted
here is also accepted at send time (``mailings.messages.check_address``).
"""

from __future__ import annotations

import re

from django.utils.translation import gettext as _

MAX_LENGTH = 254
MAX_LOCAL = 64
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
LOCAL_RE = re.compile(rf"{_ATOM}(?:\.{_ATOM})*", re.ASCII)
LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)


class BadAddress(ValueError):
    """Why a text is not an address this module accepts (a translated message)."""


def check(address: str) -> str:
    """The address unchanged, or ``BadAddress`` saying what is wrong with it."""
    if not address.isascii():
        raise BadAddress(_("it contains full-width or other non-ASCII characters"))
    if any(c.isspace() for c in address):
        raise BadAddress(_("it contains a space"))
    if len(address) > MAX_LENGTH:
        raise BadAddress(
            _("it is %(length)s characters long, the limit is %(limit)s")
            % {"length": len(address), "limit": MAX_LENGTH}
        )
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise BadAddress(_("it needs the form name@example.com"))
    if len(local) > MAX_LOCAL or not LOCAL_RE.fullmatch(local):
        raise BadAddress(_("the part before @ is not valid"))
    labels = domain.split(".")
    if (
        len(labels) < 2
        or not all(LABEL_RE.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise BadAddress(_("the domain after @ is not valid"))
    return address


def is_valid(address: str) -> bool:
    try:
        check(address)
    except BadAddress:
        return False
    return True
