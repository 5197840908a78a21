"""The operation log in words: what the log browser shows for each action code and detail key.

Kept apart from ``audit`` (which needs the models) so that pytest can name ``UnlabelledAction``
in its warning filters before Django is set up.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _

# What the log browser shows for each action code. The code stays in the database (filters and
# scripts use it); people read the words. Every action logged needs an entry here: tests turn
# ``UnlabelledAction`` into an error.
ACTIONS: dict[str, Any] = {
    "login": _("Logged in"),
    "login_failed": _("Log-in failed"),
    "login_refused_locked": _("Log-in refused: account locked"),
    "account_locked": _("Account locked"),
    "login_refused_source": _("Log-in refused: too many failures from this address"),
    "source_locked": _("Source address locked after too many failures"),
    "logout": _("Logged out"),
    "password_change": _("Password changed"),
    "profile_update": _("Profile changed"),
    "language_change": _("Language changed"),
    "notices_read": _("Notices marked read"),
    "api_token_create": _("API token created"),
    "api_token_revoke": _("API token revoked"),
    "operator_create": _("Operator created"),
    "operator_update": _("Operator changed"),
    "operator_password_reset": _("Operator's password reset"),
    "operator_unlock": _("Operator unlocked"),
    "operator_activate": _("Operator enabled"),
    "operator_deactivate": _("Operator disabled"),
    "group_create": _("Permission group created"),
    "group_update": _("Permission group changed"),
    "group_delete": _("Permission group deleted"),
    "customer_create": _("Customer added"),
    "customer_update": _("Customer changed"),
    "customer_delete": _("Customer deleted"),
    "field_add": _("Field added"),
    "field_rename": _("Field renamed"),
    "field_change": _("Field changed"),
    "field_delete": _("Field deleted"),
    "view_create": _("Database view created"),
    "view_update": _("Database view changed"),
    "view_delete": _("Database view deleted"),
    "topic_add": _("Newsletter topic added"),
    "topic_rename": _("Newsletter topic renamed"),
    "topic_delete": _("Newsletter topic deleted"),
    "import_start": _("Import started"),
    "import": _("Import"),
    "import_dry_run": _("Import dry run"),
    "export_start": _("Export started"),
    "export": _("Export"),
    "export_download": _("Export downloaded"),
    "export_setting_save": _("Export settings saved"),
    "export_setting_delete": _("Export settings deleted"),
    "mail.create": _("Mail created"),
    "mail.update": _("Mail changed"),
    "mail.name_links": _("Click names changed"),
    "mail.test_send": _("Test mail sent"),
    "delivery.create": _("Delivery created"),
    "delivery.reserve": _("Delivery reserved"),
    "delivery.start": _("Delivery started"),
    "delivery.cancel": _("Delivery cancelled"),
    "delivery.pause": _("Delivery paused"),
    "delivery.resume": _("Delivery resumed"),
    "delivery.stop": _("Delivery stopped"),
    "delivery.resolve_unknown": _("Unknown recipients resolved"),
    "delivery.export_recipients": _("Recipients exported"),
    "delivery.export_events": _("Events exported"),
    "delivery.purge_detail": _("Old delivery detail purged"),
    "delivery.resend": _("Resend draft created"),
    "delivery.redeliver": _("Re-delivery created"),
    "delivery.set_field": _("Field set on a count's recipients"),
    "redelivery.plan": _("Re-delivery planned"),
    "redelivery.cancel_plan": _("Planned re-delivery cancelled"),
    "redelivery.skip_plan": _("Planned re-delivery skipped"),
    "extraction.start": _("Extraction started"),
    "extraction.ready": _("Extraction ready"),
    "extraction.discard": _("Extraction discarded"),
    "extraction.purge": _("Old extracted lists purged"),
    "relay.create": _("SMTP relay added"),
    "relay.update": _("SMTP relay changed"),
    "relay.delete": _("SMTP relay deleted"),
    "relay.set_default": _("Default SMTP relay set"),
    "relay.test": _("SMTP relay tested"),
    "dkim.create": _("DKIM key added"),
    "dkim.activate": _("DKIM key put in use"),
    "dkim.delete": _("DKIM key deleted"),
    "bounce.apply": _("Bounce applied"),
    "bounce.reparse": _("Bounce parsed again"),
    "bounce.discard": _("Bounce discarded"),
    "bounce.import": _("Bounces imported"),
    "list_cleaning.remove": _("List cleaning entries removed"),
    "list_cleaning.export": _("List cleaning exported"),
    "mailbox.create": _("Bounce mailbox added"),
    "mailbox.update": _("Bounce mailbox changed"),
    "mailbox.delete": _("Bounce mailbox deleted"),
    "mailbox.test": _("Bounce mailbox tested"),
    "bounce.sns_subscribe": _("Amazon SNS subscription confirmation"),
    "bounce.sns_unsubscribe": _("Amazon SNS subscription ended"),
}

# Labels for the keys of an entry's detail, in the log browser.
DETAIL_KEYS: dict[str, Any] = {
    "name": _("name"),
    "fields": _("fields"),
    "id": _("ID"),
    "encoding": _("encoding"),
    "count": _("count"),
    "from": _("from"),
    "to": _("to"),
    "rows": _("rows"),
    "file": _("file"),
    "filename": _("file"),
    "topic": _("topic"),
    "label": _("label"),
    "filter": _("filter"),
    "groups": _("permission groups"),
    "rights": _("rights"),
    "mode": _("mode"),
    "key": _("update key"),
    "dry_run": _("dry run"),
    "inserted": _("inserted"),
    "updated": _("updated"),
    "skipped": _("skipped"),
    "rejected": _("rejected"),
    "recipients": _("recipients"),
    "mail": _("mail"),
    "not_sent": _("not sent"),
    "addresses": _("addresses"),
    "refused": _("refused"),
    "scheduled_at": _("scheduled at"),
    "language": _("language"),
    "source": _("source"),
    "reason": _("reason"),
    "audience": _("audience"),
    "deliveries": _("deliveries"),
    "conditions": _("conditions"),
    "view": _("database view"),
    "domain": _("domain"),
    "selector": _("selector"),
    "algorithm": _("algorithm"),
    "active": _("in use"),
    "replaced": _("replaced"),
    "minus": _("minus"),
    "field": _("field"),
    "value": _("value"),
    "clear_others": _("cleared on everyone else"),
    "job": _("job"),
    "cleared": _("cleared"),
    "kind": _("error kind"),
    "password_changed": _("password changed"),
    "protocol": _("protocol"),
    "host": _("host"),
    "port": _("port"),
    "security": _("security"),
    "verify_tls": _("verify the TLS certificate"),
    "username": _("user name"),
    "folder": _("folder"),
    "enabled": _("enabled"),
    "channel": _("channel"),
    "received": _("received"),
    "error": _("error"),
}


class UnlabelledAction(UserWarning):
    """An operation was logged under a code that ``ACTIONS`` has no words for."""


def action_label(action: str) -> str:
    return str(ACTIONS.get(action, action))


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(_("yes") if value else _("no"))
    if isinstance(value, list | tuple):
        return ", ".join(_value_text(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}={_value_text(v)}" for k, v in value.items())
    return "" if value is None else str(value)


def detail_text(detail: dict[str, Any]) -> str:
    """An entry's detail in words: "label: value" pairs, lists joined."""
    if not isinstance(detail, dict):
        return _value_text(detail)
    return " / ".join(
        f"{DETAIL_KEYS.get(key, key)}: {_value_text(value)}" for key, value in detail.items()
    )
