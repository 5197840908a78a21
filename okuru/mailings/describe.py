"""A targeting in words: what the mail page, the delivery report and the API show instead of
"1 condition".

``lines(targeting)`` takes a targeting snapshot (``targeting.snapshot(mail)`` for a mail, the
``Delivery.targeting`` frozen at reservation for a delivery) and returns one translated line per
part: the filter, each delivery history row (its mail, delivery, event and link), a spot
delivery's view and customer set or recipient list, a re-delivery's source and audience.

Every mail, delivery, link, view and list the snapshot names is fetched in one query per model,
whatever the number of rows. A name that no longer exists is said so, never an error: a report
must show even when what it was built from is gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from okuru.customers.builder import operator_words
from okuru.customers.fields import FieldSpec, catalogue
from okuru.customers.models import View
from okuru.mailings.audiences import AUDIENCES
from okuru.mailings.models import Delivery, FrozenList, Mail, TrackedLink
from okuru.mailings.targeting import snapshot

HISTORY = "delivery_history"


def _event_words() -> dict[str, str]:
    return {
        "sent": _("was sent"),
        "opened": _("opened"),
        "not_opened": _("did not open"),
        "clicked": _("clicked"),
        "not_clicked": _("did not click"),
        "errored": _("had an error"),
        "not_errored": _("had no error"),
    }


@dataclass
class _Names:
    """Every object the targeting names, fetched once per model."""

    deliveries: dict[int, Delivery] = field(default_factory=dict)
    mails: dict[int, Mail] = field(default_factory=dict)
    links: dict[int, TrackedLink] = field(default_factory=dict)
    views: dict[int, View] = field(default_factory=dict)
    lists: dict[int, FrozenList] = field(default_factory=dict)


def _ids(values: Any) -> set[int]:
    out = set()
    for v in values:
        try:
            out.add(int(v))
        except (TypeError, ValueError):
            continue
    return out


def _history_conditions(tree: Any) -> list[dict]:
    """Every delivery history condition anywhere in a tree."""
    found: list[dict] = []
    if isinstance(tree, dict):
        if tree.get("kind") == HISTORY:
            found.append(tree)
        for cond in tree.get("conditions", []) or []:
            found.extend(_history_conditions(cond))
    return found


def _fetch(targeting: dict[str, Any]) -> _Names:
    conds = _history_conditions(targeting.get("filter")) + _history_conditions(
        targeting.get("customer_set")
    )
    audience = targeting.get("audience") or {}
    delivery_ids = _ids(c.get("delivery") for c in conds) | _ids([audience.get("delivery")])
    link_ids = _ids(c.get("link") for c in conds) | _ids([audience.get("link")])
    names = _Names()
    if delivery_ids:
        qs = Delivery.objects.filter(pk__in=delivery_ids).select_related("mail")
        names.deliveries = {d.pk: d for d in qs.only("id", "started_at", "mail__name")}
    mail_ids = _ids(c.get("mail") for c in conds) - {d.mail_id for d in names.deliveries.values()}
    names.mails = {d.mail_id: d.mail for d in names.deliveries.values()}
    if mail_ids:
        names.mails.update(Mail.objects.only("id", "name").in_bulk(mail_ids))
    if link_ids:
        names.links = TrackedLink.objects.only("id", "name", "url").in_bulk(link_ids)
    if targeting.get("view_id"):
        names.views = View.objects.only("id", "name").in_bulk(_ids([targeting["view_id"]]))
    if targeting.get("recipient_list_id"):
        lists = FrozenList.objects.only("id", "name", "size")
        names.lists = lists.in_bulk(_ids([targeting["recipient_list_id"]]))
    return names


def lines(targeting: dict[str, Any], specs: dict[str, FieldSpec] | None = None) -> list[str]:
    """The targeting snapshot in words, one line per part."""
    targeting = targeting or {}
    names = _fetch(targeting)
    specs = specs if specs is not None else catalogue()
    out: list[str] = []
    audience = targeting.get("audience") or {}
    if audience:
        out.append(_audience_line(audience, names))
    if targeting.get("recipient_list_id"):
        out.append(_list_line(targeting["recipient_list_id"], names))
    elif targeting.get("kind") == Mail.Kind.SPOT:
        out.extend(_spot_lines(targeting, names, specs))
    else:
        out.extend(_filter_lines(targeting.get("filter") or {}, names, specs, bool(audience)))
    return out


def text(targeting: dict[str, Any]) -> str:
    """The same as one text, a line each (the API's ``targeting_text``)."""
    return "\n".join(lines(targeting))


def of_mail(mail: Mail) -> list[str]:
    return lines(snapshot(mail))


def of_delivery(delivery: Delivery) -> list[str]:
    """A delivery's frozen targeting; a draft has none yet, so its mail's is shown."""
    if delivery.targeting:
        return lines(delivery.targeting)
    return of_mail(delivery.mail)


# ---------------------------------------------------------------------------------------------
# Parts


def _audience_line(audience: dict[str, Any], names: _Names) -> str:
    source = _delivery_words(audience.get("delivery"), names)
    label = str(AUDIENCES.get(audience.get("audience", ""), audience.get("audience", "")))
    if audience.get("link"):
        label = _("%(cond)s (link: %(link)s)") % {
            "cond": label,
            "link": _link_words(audience["link"], names),
        }
    return _("Re-delivery to the recipients of %(source)s: %(audience)s") % {
        "source": source,
        "audience": label,
    }


def _list_line(list_id: Any, names: _Names) -> str:
    frozen = names.lists.get(int(list_id))
    if frozen is None:
        return _("Recipient list #%(id)s (deleted)") % {"id": list_id}
    return _("Recipient list: %(name)s (%(n)s customers)") % {
        "name": frozen.name,
        "n": f"{frozen.size:,}",
    }


def _spot_lines(targeting: dict[str, Any], names: _Names, specs: dict) -> list[str]:
    view = names.views.get(int(targeting["view_id"])) if targeting.get("view_id") else None
    if view is None:
        if targeting.get("view_id"):
            return [_("View #%(id)s (deleted)") % {"id": targeting["view_id"]}]
        return [_("No view or recipient list chosen yet.")]
    out = [_("View: %(name)s") % {"name": view.name}]
    cset = targeting.get("customer_set") or {}
    conds = [c for c in cset.get("conditions", []) if isinstance(c, dict)]
    if not conds:
        out.append(_("Customer set: every customer of the view"))
        return out
    if len(conds) > 1:
        any_ = cset.get("match") == "any"
        out.append(
            _("Customer set: any of these conditions (OR)")
            if any_
            else _("Customer set: all of these conditions (AND)")
        )
        out.extend(f"・{_condition(c, names, specs)}" for c in conds)
    else:
        out.append(_("Customer set: %(cond)s") % {"cond": _condition(conds[0], names, specs)})
    return out


def _filter_lines(tree: dict, names: _Names, specs: dict, audience: bool) -> list[str]:
    conds = tree.get("conditions", []) if isinstance(tree, dict) else []
    if not conds:
        return [] if audience else [_("Filter: every customer")]
    if tree.get("match", "all") == "all":
        # The top level of a basic mail's filter is "all": one line per condition reads best,
        # the delivery history rows ("narrow further") after the builder's conditions.
        rows = [c for c in conds if not (isinstance(c, dict) and c.get("kind") == HISTORY)]
        history = [c for c in conds if isinstance(c, dict) and c.get("kind") == HISTORY]
        out = [_("Filter: %(cond)s") % {"cond": _condition(c, names, specs)} for c in rows]
        if not rows and not audience:
            out.append(_("Filter: every customer"))
        out += [
            _("Narrowed by delivery history: %(cond)s") % {"cond": _condition(c, names, specs)}
            for c in history
        ]
        return out
    return [_("Filter: %(cond)s") % {"cond": _condition(tree, names, specs)}]


def _condition(cond: Any, names: _Names, specs: dict, depth: int = 0) -> str:
    if not isinstance(cond, dict):
        return _("Other condition")
    if "conditions" in cond:
        parts = [_condition(c, names, specs, depth + 1) for c in cond.get("conditions", [])]
        if not parts:
            return _("every customer")
        word = pgettext("filter conditions", "or" if cond.get("match") == "any" else "and")
        joined = f" {word} ".join(parts)
        return f"({joined})" if depth and len(parts) > 1 else joined
    kind = cond.get("kind", "field")
    if kind == HISTORY:
        return _history(cond, names)
    if kind != "field":
        return _("Other condition")
    return _field(cond, specs)


def _history(cond: dict, names: _Names) -> str:
    if cond.get("delivery") not in (None, ""):
        source = _delivery_words(cond["delivery"], names)
    else:
        mail = names.mails.get(_int(cond.get("mail")))
        name = mail.name if mail else _("mail #%(id)s (deleted)") % {"id": cond.get("mail")}
        source = _("“%(mail)s” (all its deliveries)") % {"mail": name}
    event = _event_words().get(cond.get("event", "sent"), cond.get("event", ""))
    text = _("%(source)s: %(event)s") % {"source": source, "event": event}
    if cond.get("link") not in (None, ""):
        text = _("%(cond)s (link: %(link)s)") % {
            "cond": text,
            "link": _link_words(cond["link"], names),
        }
    return text


def _delivery_words(delivery_id: Any, names: _Names) -> str:
    d = names.deliveries.get(_int(delivery_id))
    if d is None:
        return _("delivery #%(id)s (deleted)") % {"id": delivery_id}
    when = (
        timezone.localtime(d.started_at).strftime("%Y-%m-%d %H:%M")
        if d.started_at
        else _("not sent")
    )
    return _("“%(mail)s” delivery #%(id)s (%(when)s)") % {
        "mail": d.mail.name,
        "id": d.pk,
        "when": when,
    }


def _link_words(link_id: Any, names: _Names) -> str:
    link = names.links.get(_int(link_id))
    if link is None:
        return _("link #%(id)s (deleted)") % {"id": link_id}
    return link.name or link.url


def _field(cond: dict, specs: dict[str, FieldSpec]) -> str:
    spec = specs.get(cond.get("field", ""))
    label = capfirst(str(spec.label)) if spec else str(cond.get("field", ""))
    op = cond.get("op", "")
    words = operator_words()
    kind = spec.type if spec else "text"
    if kind in ("date", "datetime") and op in ("lt", "gt"):
        op_word = words[op + "_date"]
    elif kind == "multiselect" and op in ("in", "ne"):
        op_word = words[op + "_multi"]
    else:
        op_word = words.get(op, op)
    if op in ("has_value", "no_value"):
        return f"{label} {op_word}"
    value = _value(cond.get("value"), kind)
    if op == "between":
        return _("%(field)s between %(a)s and %(b)s") % {
            "field": label,
            "a": value,
            "b": _value(cond.get("value2"), kind),
        }
    return f"{label} {op_word} {value}"


def _value(value: Any, kind: str) -> str:
    if isinstance(value, list):
        return ", ".join(f"“{v}”" for v in value)
    if kind == "flag":
        return _("Yes") if str(value).lower() in ("1", "true", "yes") else _("No")
    return f"“{value}”"


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
