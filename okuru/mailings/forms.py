"""Forms of the mail screens: the mail itself, "narrow further" delivery history conditions,
the spot delivery's customer set, test sends, sending and reservation, recipient exports.

The mail's targeting for a basic mail is one filter tree: the customers filter builder's tree
AND the delivery history conditions (``split_filter`` / ``join_filter`` keep the two apart for
editing). A spot delivery's customer set is a tree of delivery history conditions only.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from okuru.customers import filters
from okuru.customers.forms import ENCODINGS_OUT, clean_filter
from okuru.customers.models import Customer
from okuru.mailings import actions, targeting
from okuru.mailings.messages import BadAddress, check_address
from okuru.mailings.models import Delivery, Mail, Relay, TrackedLink

HISTORY = "delivery_history"
MAX_TEST_ADDRESSES = 5
EVENT_CHOICES = [
    ("sent", gettext_lazy("was sent")),
    ("opened", gettext_lazy("opened")),
    ("not_opened", gettext_lazy("did not open")),
    ("clicked", gettext_lazy("clicked")),
    ("not_clicked", gettext_lazy("did not click")),
    ("errored", gettext_lazy("had an error")),
    ("not_errored", gettext_lazy("had no error")),
]


# ---------------------------------------------------------------------------------------------
# Filter tree <-> builder tree + history conditions


def is_history(cond: Any) -> bool:
    return isinstance(cond, dict) and cond.get("kind") == HISTORY


def split_filter(tree: Any) -> tuple[dict, list[dict]]:
    """(builder tree, top-level delivery history conditions) of a basic mail's filter."""
    tree = filters.parse_tree(tree)
    if tree.get("match", "all") != "all":
        return tree, []
    conditions = tree.get("conditions", [])
    history = [c for c in conditions if is_history(c)]
    rest = [c for c in conditions if not is_history(c)]
    if (
        history
        and len(rest) == 1
        and isinstance(rest[0], dict)
        and "conditions" in rest[0]
        and rest[0].get("match") == "any"
    ):
        return rest[0], history  # the builder's tree was an "any" group, wrapped by join_filter
    return {"match": "all", "conditions": rest}, history


def join_filter(tree: dict, history: list[dict]) -> dict:
    if not history:
        return tree
    if tree.get("match", "all") == "all":
        return {"match": "all", "conditions": [*tree.get("conditions", []), *history]}
    return {"match": "all", "conditions": [tree, *history]}


# ---------------------------------------------------------------------------------------------
# Delivery history conditions ("narrow further", customer sets)


def source_choices() -> list[tuple[str, str]]:
    """Deliveries (d:<id>) and mails (m:<id>, all their deliveries) that may be a source: sent
    within the last 3 months."""
    cutoff = targeting.source_cutoff()
    recent = (
        Delivery.objects.filter(started_at__gte=cutoff)
        .select_related("mail")
        .order_by("-started_at")[:200]
    )
    choices: list[tuple[str, str]] = [("", "—")]
    mails: dict[int, str] = {}
    for d in recent:
        when = timezone.localtime(d.started_at).strftime("%Y-%m-%d %H:%M")
        choices.append(
            (
                f"d:{d.pk}",
                _("%(mail)s — delivery #%(id)s (%(when)s)")
                % {"mail": d.mail.name, "id": d.pk, "when": when},
            )
        )
        mails.setdefault(d.mail_id, d.mail.name)
    for mail_id, name in mails.items():
        choices.append((f"m:{mail_id}", _("%(mail)s — all its deliveries") % {"mail": name}))
    return choices


def link_choices() -> list[tuple[str, str]]:
    cutoff = targeting.source_cutoff()
    mail_ids = Delivery.objects.filter(started_at__gte=cutoff).values("mail_id")
    links = TrackedLink.objects.filter(mail_id__in=mail_ids).select_related("mail")
    return [("", _("any link"))] + [
        (str(link.pk), f"{link.mail.name}: {link.name or link.url}"[:120]) for link in links
    ]


class HistoryForm(forms.Form):
    """One delivery history condition; a row with no source is left out."""

    source = forms.ChoiceField(label=gettext_lazy("Target mail"), required=False)
    event = forms.ChoiceField(label=gettext_lazy("Condition"), choices=EVENT_CHOICES)
    link = forms.ChoiceField(label=gettext_lazy("Link"), required=False)

    def __init__(self, *args: Any, sources: list, links: list, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Always read the row: a formset skips an "extra" row that equals its initial value,
        # which would drop a saved condition posted back unchanged. A row without a source is
        # left out by condition() instead.
        self.empty_permitted = False
        self.fields["source"].choices = sources
        self.fields["link"].choices = links

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        source, link = cleaned.get("source"), cleaned.get("link")
        if not source:
            return cleaned
        if link and cleaned.get("event") not in ("clicked", "not_clicked"):
            self.add_error("link", _("A link can only be chosen with clicked or did not click."))
        elif link and TrackedLink.objects.filter(pk=int(link)).values_list(
            "mail_id", flat=True
        ).first() != _source_mail(source):
            self.add_error("link", _("This link is not in the target mail."))
        return cleaned

    def condition(self) -> dict[str, Any] | None:
        d = self.cleaned_data
        if not d.get("source"):
            return None
        kind, _sep, pk = d["source"].partition(":")
        cond: dict[str, Any] = {"kind": HISTORY, "delivery" if kind == "d" else "mail": int(pk)}
        cond["event"] = d["event"]
        if d.get("link"):
            cond["link"] = int(d["link"])
        return cond


def _source_mail(source: str) -> int | None:
    kind, _sep, pk = source.partition(":")
    if kind == "m":
        return int(pk)
    return Delivery.objects.filter(pk=int(pk)).values_list("mail_id", flat=True).first()


def history_initial(conditions: list[dict]) -> list[dict[str, Any]]:
    out = []
    for c in conditions:
        source = f"d:{c['delivery']}" if c.get("delivery") else f"m:{c.get('mail', '')}"
        out.append({"source": source, "event": c.get("event", "sent"), "link": c.get("link") or ""})
    return out


HistoryFormSet = forms.formset_factory(HistoryForm, extra=2, max_num=20)


def history_formset(
    prefix: str, data: Any = None, conditions: list[dict] | None = None
) -> forms.BaseFormSet:
    """A formset of delivery history rows. Choices are computed once, not once per row."""
    sources, links = source_choices(), link_choices()
    # A condition saved earlier may point at a source that has since left the 3-month window:
    # keep it choosable, so the page shows it and the save reports why it no longer works.
    known = {v for v, _label in sources}
    for row in history_initial(conditions or []):
        if row["source"] not in known:
            sources.append((row["source"], _("%(source)s (no longer available)") % row))
    return HistoryFormSet(
        data,
        prefix=prefix,
        initial=history_initial(conditions or []),
        form_kwargs={"sources": sources, "links": links},
    )


def conditions_of(formset: forms.BaseFormSet) -> list[dict]:
    return [c for f in formset.forms if f.is_valid() and (c := f.condition())]


# ---------------------------------------------------------------------------------------------
# The mail


class MailForm(forms.ModelForm):
    filter = forms.CharField(required=False, widget=forms.HiddenInput)
    customer_set_match = forms.ChoiceField(
        label=gettext_lazy("Customer set"),
        choices=[
            ("all", gettext_lazy("All of these conditions (AND)")),
            ("any", gettext_lazy("Any of these conditions (OR)")),
        ],
        required=False,
    )

    class Meta:
        model = Mail
        fields = [
            "name",
            "kind",
            "relay",
            "from_address",
            "from_name",
            "reply_to",
            "return_path_domain",
            "error_threshold",
            "duplicate_rule",
            "address_field",
            "open_tracking",
            "click_tracking",
            "topic",
            "subject",
            "text_body",
            "html_body",
            "view",
            "recipient_list",
        ]
        widgets = {
            "subject": forms.TextInput(attrs={"class": "mono"}),
            "text_body": forms.Textarea(attrs={"rows": 10, "class": "mono"}),
            "html_body": forms.Textarea(attrs={"rows": 14, "class": "mono"}),
        }
        help_texts = {
            "subject": gettext_lazy(
                "Merge fields: {{ field_key }}, {{ customer_id }}, {{ unsubscribe_url }}, "
                "{{ view_in_browser_url }}."
            ),
        }

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        kind = self.fields["kind"]
        kind.choices = [c for c in kind.choices if c[0] in (Mail.Kind.BASIC, Mail.Kind.SPOT)]
        # The kind is chosen before the form (its targeting part differs) and never changes.
        kind.widget = forms.HiddenInput()
        if self.instance.pk is not None:
            kind.disabled = True
        builder, _history = split_filter(self.instance.filter)
        self.initial.setdefault("filter", json.dumps(builder, ensure_ascii=False))
        self.initial.setdefault(
            "customer_set_match", (self.instance.customer_set or {}).get("match", "all")
        )
        self.fields["view"].label_from_instance = lambda v: (
            v.name + ("" if v.is_delivery_eligible else " " + _("(not delivery-eligible)"))
        )
        # No relay of its own: the default relay at the time the delivery is reserved.
        default = Relay.objects.filter(is_default=True).first()
        self.fields["relay"].empty_label = (
            _("The default relay (%(name)s)") % {"name": default.name}
            if default
            else _("The default relay")
        )

    def clean_filter(self) -> dict:
        return clean_filter(self.cleaned_data.get("filter"))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if (
            cleaned.get("kind") == Mail.Kind.SPOT
            and cleaned.get("view")
            and cleaned.get("recipient_list")
        ):
            self.add_error(
                "recipient_list",
                _("Choose a view (with an optional customer set) or a recipient list, not both."),
            )
        return cleaned

    def build(self, history: list[dict], customer_set: list[dict]) -> Mail:
        """The unsaved mail with its targeting from the builder and the condition rows.

        A targeting value is replaced only when it means something else than the stored one
        (the builder writes {} as an empty "all" group, rows drop empty keys): an unchanged
        targeting must not count as a change, or a reserved mail's content could not be
        edited."""
        mail = self.instance
        if mail.kind == Mail.Kind.SPOT:
            match = self.cleaned_data.get("customer_set_match") or "all"
            cset = {"match": match, "conditions": customer_set} if customer_set else {}
            _replace(mail, "customer_set", cset)
        else:
            _replace(mail, "filter", join_filter(self.cleaned_data["filter"], history))
            _replace(mail, "customer_set", {})
            mail.view = None
            mail.recipient_list = None
        return mail


# The form fields behind actions.TARGET_FIELDS: fixed while a delivery is reserved or running.
TARGET_FORM_FIELDS = (
    "filter",
    "view",
    "recipient_list",
    "customer_set_match",
    "duplicate_rule",
    "error_threshold",
    "address_field",
    "topic",
)


def lock_targeting(form: MailForm, *formsets: forms.BaseFormSet) -> None:
    """Show the targeting read-only: disabled fields keep their stored values whatever is
    posted, so the content can still be edited and saved."""
    reason = _("Fixed: a delivery of this mail is reserved or running.")
    for name in TARGET_FORM_FIELDS:
        form.fields[name].disabled = True
        if name != "filter":
            form.fields[name].help_text = reason
    for formset in formsets:
        for f in formset.forms:
            for field in f.fields.values():
                # An empty extra row has no stored value to keep: it stays empty.
                field.disabled, field.required = True, False


def _replace(mail: Mail, attr: str, tree: dict) -> None:
    if _canonical(tree) != _canonical(getattr(mail, attr)):
        setattr(mail, attr, tree)


def _canonical(tree: Any) -> str:
    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: clean(v) for k, v in node.items() if v not in (None, "")}
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    tree = filters.parse_tree(tree) if tree else {"match": "all", "conditions": []}
    if not tree.get("conditions"):
        tree = {"match": "all", "conditions": []}  # {} and an empty group of either kind
    return json.dumps(clean(tree), sort_keys=True)


def apply_errors(form: forms.BaseForm, error: ValidationError) -> None:
    """Put a ValidationError from ``actions.save_mail`` on the form: keyed messages on their
    fields, the targeting's under the filter, the rest at the top."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error.messages)
        return
    for key, messages in error.message_dict.items():
        target = key if key in form.fields and key != "filter" else None
        if key == "filter" and form.cleaned_data.get("kind") == Mail.Kind.SPOT:
            target = None
        form.add_error(target, messages)


# ---------------------------------------------------------------------------------------------
# Preview, test send, send


class PreviewForm(forms.Form):
    customer = forms.IntegerField(label=gettext_lazy("Customer ID"), required=False, min_value=1)

    def clean_customer(self) -> int | None:
        pk = self.cleaned_data.get("customer")
        if pk is not None and not Customer.objects.filter(pk=pk).exists():
            raise forms.ValidationError(_("No customer has the Customer ID %(id)s.") % {"id": pk})
        return pk


class TestSendForm(PreviewForm):
    customer = forms.IntegerField(
        label=gettext_lazy("Customer ID"),
        required=False,
        min_value=1,
        help_text=gettext_lazy("Whose fields fill the merge fields (optional)."),
    )
    addresses = forms.CharField(
        label=gettext_lazy("Send a test to"),
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=gettext_lazy("Up to 5 addresses, one per line."),
    )

    def clean_addresses(self) -> list[str]:
        raw = [a.strip() for a in self.cleaned_data["addresses"].replace(",", "\n").splitlines()]
        addresses = list(dict.fromkeys(a for a in raw if a))
        if not addresses:
            raise forms.ValidationError(_("Enter at least one address."))
        if len(addresses) > MAX_TEST_ADDRESSES:
            raise forms.ValidationError(
                _("A test goes to at most %(n)s addresses.") % {"n": MAX_TEST_ADDRESSES}
            )
        for address in addresses:
            try:
                check_address(address)
            except BadAddress:
                raise forms.ValidationError(
                    _("Not a valid e-mail address: %(address)s") % {"address": address}
                ) from None
        return addresses


class SendForm(forms.Form):
    when = forms.DateTimeField(
        label=gettext_lazy("Reserve for"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
    )

    def clean_when(self) -> Any:
        when = self.cleaned_data.get("when")
        actions.check_reservation_time(when)
        return when


class ExportForm(forms.Form):
    encoding = forms.ChoiceField(
        label=gettext_lazy("Encoding"), choices=ENCODINGS_OUT, initial="utf-8-sig"
    )
