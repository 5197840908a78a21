"""SMTP relays: the named actions that configure them, and the form the screens use.

The screens (``views.relay_*``), the API (``/api/relays``) and the CLI (``okuru relays``) all
write through ``save_relay``, ``set_default`` and ``delete_relay``, which validate, keep exactly
one default relay and write the operation log. All three need the ``sending`` right: a relay
decides where every message goes and with which credentials, which is the sending operator's
business, not only the administrator's.

*The password is write-only.* It is stored as given in the database (the worker needs it in
clear to log in; encrypting it at rest with a key kept next to the database would add little),
and it never leaves again: no screen renders it back (a blank password field keeps the stored
one), no API response or CLI output carries it (only ``has_password``), and operation log
entries say only whether it changed.

*Deleting.* ``Mail.relay`` and ``Delivery.relay`` are ``SET_NULL``: deleting a relay would
silently move its mails to the default relay and leave a reserved or running delivery without
the relay it was reserved for. So ``delete_relay`` refuses while a mail uses the relay, while a
reserved, running or paused delivery uses it, and while it is the default; finished deliveries
simply lose the reference.

*Testing* (``test_relay``) opens a session as the worker would — connect, EHLO, STARTTLS or
implicit TLS, AUTH — then QUITs without sending anything, and says what happened in words the
operator can act on (``relay_problem`` for a configuration the relay refuses).

A running delivery keeps the relay settings it started with until it is paused and resumed, or
its worker restarts.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from okuru.accounts import audit
from okuru.lib import smtp
from okuru.mailings.models import Delivery, Mail, Relay

Actor = Any  # HttpRequest | Operator | None, as okuru.accounts.audit.log takes it
ACTIVE = (Delivery.Status.RESERVED, Delivery.Status.RUNNING, Delivery.Status.PAUSED)
# What the operation log and the API show of a relay: everything but the password.
PUBLIC_FIELDS = (
    "name",
    "host",
    "port",
    "security",
    "username",
    "timeout",
    "max_per_second",
    "per_domain_per_second",
    "verify_tls",
    "is_default",
)
MAX_TIMEOUT = 600
# A test runs inside a web request: do not hold it for a relay's full (long) timeout.
TEST_TIMEOUT = 15
HOST_RE = re.compile(r"^[A-Za-z0-9._\-:\[\]]+$")


def public(relay: Relay) -> dict[str, Any]:
    """The relay without its password (``has_password`` says whether one is stored)."""
    out = {f: getattr(relay, f) for f in PUBLIC_FIELDS}
    out["has_password"] = bool(relay.password)
    return out


# ---------------------------------------------------------------------------------------------
# Validation


def validate(relay: Relay) -> None:
    """Raise ValidationError keyed by field, with a message saying what to change."""
    errors: dict[str, str] = {}
    relay.name = (relay.name or "").strip()
    relay.host = (relay.host or "").strip()
    relay.username = (relay.username or "").strip()
    if not relay.name:
        errors["name"] = _("Give the relay a name.")
    elif len(relay.name) > 100:
        errors["name"] = _("The name is too long (100 characters at most).")
    elif Relay.objects.filter(name=relay.name).exclude(pk=relay.pk).exists():
        errors["name"] = _("A relay named “%(name)s” already exists.") % {"name": relay.name}
    if error := _host_error(relay.host):
        errors["host"] = error
    if not 1 <= (relay.port or 0) <= 65535:
        errors["port"] = _("The port must be between 1 and 65535.")
    if relay.security not in Relay.Security.values:
        errors["security"] = _("Unknown security “%(value)s”: use none, starttls or tls.") % {
            "value": relay.security
        }
    if not 1 <= (relay.timeout or 0) <= MAX_TIMEOUT:
        errors["timeout"] = _("The timeout must be between 1 and %(max)s seconds.") % {
            "max": MAX_TIMEOUT
        }
    for field in ("max_per_second", "per_domain_per_second"):
        if (getattr(relay, field) or 0) < 0:
            errors[field] = _("A rate limit must be 0 (no limit) or more.")
    if relay.username and not relay.password:
        errors["password"] = _("Give the password for the user name %(username)s.") % {
            "username": relay.username
        }
    elif relay.password and not relay.username:
        errors["username"] = _("A password needs a user name.")
    if errors:
        raise ValidationError(errors)


def _host_error(host: str) -> str | None:
    if not host:
        return _("Give the relay's host name or IP address.")
    if len(host) > 255 or not HOST_RE.match(host):
        return _("Not a host name or IP address: %(host)s") % {"host": host}
    if host.count(":") == 1:  # "smtp.example.com:587"; IPv6 addresses have several colons
        return _("Give the port in the port field, not in the host: %(host)s") % {"host": host}
    return None


# ---------------------------------------------------------------------------------------------
# Named actions


def _lock_relays() -> None:
    # Relays are few. Locking them all, in one order, serializes the writes that move the
    # default: two concurrent "make X the default" then run one after the other instead of
    # both clearing the old default and colliding on the one-default constraint.
    list(Relay.objects.select_for_update().order_by("pk").values_list("pk", flat=True))


def _make_default(relay: Relay) -> None:
    Relay.objects.filter(is_default=True).exclude(pk=relay.pk).update(is_default=False)
    Relay.objects.filter(pk=relay.pk).update(is_default=True)
    relay.is_default = True


def save_relay(relay: Relay, actor: Actor, make_default: bool = False) -> Relay:
    """Validate and save a relay, new or edited. It becomes the default when asked, and when
    no relay is the default yet (the first relay): there is always exactly one default."""
    validate(relay)
    created = relay.pk is None
    try:
        with transaction.atomic(durable=True):
            _lock_relays()
            old = None if created else Relay.objects.get(pk=relay.pk)
            relay.is_default = old.is_default if old is not None else False
            relay.save()
            if make_default or not Relay.objects.filter(is_default=True).exists():
                _make_default(relay)
            audit.log(
                actor,
                "relay.create" if created else "relay.update",
                f"relay:{relay.pk}",
                _changes(old, relay),
            )
    except IntegrityError:  # another write at the same moment: the same name, or a default
        if created:
            relay.pk = None
        if Relay.objects.filter(name=relay.name).exclude(pk=relay.pk).exists():
            message = _("A relay named “%(name)s” already exists.") % {"name": relay.name}
            raise ValidationError({"name": message}) from None
        raise ValidationError(
            _("Another operator changed the relays at the same moment. Try again.")
        ) from None
    return relay


def _changes(old: Relay | None, new: Relay) -> dict[str, Any]:
    """For the operation log: the public fields that changed and whether the password did —
    never the password itself."""
    after = public(new)
    del after["has_password"]
    if old is None:
        return {**after, "password_set": bool(new.password)}
    before = public(old)
    changed = {f: v for f, v in after.items() if before[f] != v}
    return {"name": new.name, "changed": changed, "password_changed": old.password != new.password}


def set_default(relay: Relay, actor: Actor) -> None:
    """Make ``relay`` the default: mails without a relay of their own go through it."""
    with transaction.atomic(durable=True):
        _lock_relays()
        _make_default(relay)
        audit.log(actor, "relay.set_default", f"relay:{relay.pk}", {"name": relay.name})


def delete_problem(relay: Relay) -> str | None:
    """Why ``relay`` cannot be deleted now, or None."""
    if relay.is_default:
        return _(
            "“%(name)s” is the default relay and cannot be deleted. Make another relay the "
            "default first."
        ) % {"name": relay.name}
    mails = list(Mail.objects.filter(relay=relay).order_by("pk").values_list("name", flat=True))
    if mails:
        shown = ", ".join(f"“{m}”" for m in mails[:5]) + (", …" if len(mails) > 5 else "")
        return _(
            "“%(name)s” cannot be deleted: %(count)s mails use it (%(mails)s). Choose another "
            "relay for them first."
        ) % {"name": relay.name, "count": len(mails), "mails": shown}
    active = list(
        Delivery.objects.filter(relay=relay, status__in=ACTIVE)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if active:
        return _(
            "“%(name)s” cannot be deleted: deliveries %(ids)s are reserved, running or paused "
            "with it. Wait until they end, or cancel or stop them."
        ) % {"name": relay.name, "ids": ", ".join(f"#{pk}" for pk in active)}
    return None


def delete_relay(relay: Relay, actor: Actor) -> None:
    """Delete ``relay`` unless something still uses it (ValidationError saying what)."""
    with transaction.atomic(durable=True):
        # Locked before the checks: on PostgreSQL a mail or delivery saved meanwhile with
        # this relay waits for the lock (its foreign key check) and then fails, instead of
        # losing its relay to SET_NULL without anybody being told.
        relay = Relay.objects.select_for_update().get(pk=relay.pk)
        problem = delete_problem(relay)
        if problem:
            raise ValidationError(problem)
        pk, name = relay.pk, relay.name
        relay.delete()
        audit.log(actor, "relay.delete", f"relay:{pk}", {"name": name})


@dataclasses.dataclass(frozen=True)
class TestResult:
    ok: bool
    message: str


def test_relay(relay: Relay, actor: Actor) -> TestResult:
    """Open a session with the relay as the worker would and QUIT: no message is sent."""
    settings = relay.smtp_settings()
    settings = dataclasses.replace(settings, timeout=min(settings.timeout, TEST_TIMEOUT))
    conn = smtp.Connection(settings)
    try:
        conn.open()
    except smtp.RelayRejected as e:
        result = TestResult(False, relay_problem(e))
    except smtp.ConnectFailed as e:
        result = TestResult(False, _connect_failed(settings, e))
    else:
        conn.close()
        result = TestResult(True, _connected(settings))
    audit.log(
        actor,
        "relay.test",
        f"relay:{relay.pk}",
        {"name": relay.name, "ok": result.ok, "result": result.message},
    )
    return result


# Not a test for pytest to collect, though its name starts with "test".
test_relay.__test__ = False  # type: ignore[attr-defined]


def _connect_failed(s: smtp.RelaySettings, e: smtp.ConnectFailed) -> str:
    cause = e.__cause__
    error = (str(cause) or type(cause).__name__) if cause is not None else str(e)
    return _(
        "The connection to the relay %(where)s failed: %(error)s. Check the host, the port and "
        "the security setting, and that the relay accepts connections from this machine."
    ) % {"where": f"{s.host}:{s.port}", "error": error}


def _connected(s: smtp.RelaySettings) -> str:
    parts = [_("Connected to %(where)s.") % {"where": f"{s.host}:{s.port}"}]
    if s.security == Relay.Security.NONE:
        parts.append(_("The connection is not encrypted."))
    else:
        label = Relay.Security(s.security).label
        parts.append(_("The connection is encrypted (%(security)s).") % {"security": label})
        if not s.verify_tls:
            parts.append(_("The relay's certificate was not checked."))
    if s.username:
        parts.append(_("Logged in as %(username)s.") % {"username": s.username})
    parts.append(_("No message was sent."))
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# The form


class RelayForm(forms.ModelForm):
    """All of a relay's settings. The stored password is never rendered: a blank password
    field keeps it, "remove the password" clears it."""

    new_password = forms.CharField(
        label=gettext_lazy("Password"),
        required=False,
        strip=False,
        max_length=255,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    clear_password = forms.BooleanField(
        label=gettext_lazy("Remove the stored password"), required=False
    )
    make_default = forms.BooleanField(
        label=gettext_lazy("Make this the default relay"), required=False
    )

    field_order = [
        "name",
        "host",
        "port",
        "security",
        "verify_tls",
        "username",
        "new_password",
        "clear_password",
    ]

    class Meta:
        model = Relay
        fields = [
            "name",
            "host",
            "port",
            "security",
            "username",
            "timeout",
            "max_per_second",
            "per_domain_per_second",
            "verify_tls",
        ]
        help_texts = {
            "security": gettext_lazy(
                "STARTTLS: usually port 587 (or 25). TLS: the connection is encrypted from the "
                "start, usually port 465."
            ),
            "max_per_second": gettext_lazy("For the whole relay; 0: no limit."),
            "per_domain_per_second": gettext_lazy(
                "For each recipient domain (gmail.com, …); 0: no limit."
            ),
            "verify_tls": gettext_lazy(
                "Turn off only for a relay on a trusted network with a self-signed certificate."
            ),
        }

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.instance.password:
            self.fields["new_password"].help_text = _(
                "A password is stored. Leave this blank to keep it."
            )
        else:
            del self.fields["clear_password"]
        if self.instance.is_default:
            del self.fields["make_default"]

    def validate_unique(self) -> None:
        pass  # save_relay checks the name, with a message of its own

    def apply(self) -> Relay:
        """The instance with the form's values, the password kept unless a new one is given."""
        relay = self.instance
        if self.cleaned_data.get("new_password"):
            relay.password = self.cleaned_data["new_password"]
        elif self.cleaned_data.get("clear_password"):
            relay.password = ""
        return relay

    def apply_errors(self, error: ValidationError) -> None:
        if not hasattr(error, "error_dict"):
            self.add_error(None, error.messages)
            return
        for key, messages in error.message_dict.items():
            field = "new_password" if key == "password" else key
            self.add_error(field if field in self.fields else None, messages)


def default_relay() -> Relay:
    """The default relay; on a fresh install, one made from the operator-mail settings (the
    embedded set-up's capture SMTP server), so mail flows end to end with no configuration."""
    relay = Relay.objects.filter(is_default=True).first() or Relay.objects.order_by("id").first()
    if relay is not None:
        return relay
    options = settings.MAILERS["default"]["OPTIONS"]
    relay, _created = Relay.objects.get_or_create(
        name="default",
        defaults={
            "host": options.get("host") or "127.0.0.1",
            "port": options.get("port") or 25,
            "security": "tls"
            if options.get("use_ssl")
            else ("starttls" if options.get("use_tls") else "none"),
            "username": options.get("username") or "",
            "password": options.get("password") or "",
            "is_default": True,
        },
    )
    return relay


def relay_problem(e: smtp.RelayRejected) -> str:
    """What the operator must change, for a relay that cannot work with its settings."""
    messages = {
        smtp.RelayRejected.CERTIFICATE: _(
            "The relay's TLS certificate could not be verified (%(detail)s). Give the relay a "
            "certificate for its name from a trusted authority, or turn off certificate "
            "verification for this relay."
        ),
        smtp.RelayRejected.NO_STARTTLS: _(
            "The relay does not offer STARTTLS (%(detail)s). Change the relay's security setting."
        ),
        smtp.RelayRejected.NO_AUTH: _(
            "The relay does not offer authentication (%(detail)s). Some relays offer it only "
            "over TLS: check the relay's security setting."
        ),
        smtp.RelayRejected.AUTH: _(
            "The relay refused the user name or password (%(detail)s). Correct them in the "
            "relay's settings."
        ),
    }
    return messages[e.problem] % {"detail": e.detail}
