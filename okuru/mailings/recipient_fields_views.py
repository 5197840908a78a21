"""The screen of "set a field on these recipients" (``okuru.mailings.recipient_fields``).

Rights: ``reports`` (the counts are a report's) and ``customers_write`` (the value is written
on customers). The page shows how many customers the value goes to before anything is written;
"Set the field" starts the job and leads to its progress page.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from okuru.accounts.access import require_right
from okuru.mailings import recipient_fields, reports
from okuru.mailings.models import Delivery


def count_choices(delivery: Delivery) -> list[tuple[str, str]]:
    """The counts of the report that have recipients to drill into."""
    names = ["all", "sent", "errors", "opened", "not_opened", "clicked", "not_clicked"]
    names += [f"error:{k}" for k, _label, _n in reports.summary(delivery)["errors_by_kind"]]
    names += [s.count for s in reports.link_stats(delivery)]
    names += ["unknown", "excluded", "stopped"]
    return [(n, reports.count_label(delivery, n)) for n in names]


class SetFieldForm(forms.Form):
    count = forms.ChoiceField(label=gettext_lazy("Recipients of"))
    minus = forms.ChoiceField(label=gettext_lazy("Minus the recipients of"), required=False)
    field = forms.ChoiceField(label=gettext_lazy("Field"))
    value = forms.CharField(
        label=gettext_lazy("Value"),
        required=False,
        max_length=2000,
        help_text=gettext_lazy(
            "As in an import file: a flag is 1 or 0, a date 2025-04-01, several choices are "
            "separated by a vertical bar. Empty clears the field on them."
        ),
    )
    clear_others = forms.BooleanField(
        label=gettext_lazy("First clear this field on every other customer"),
        required=False,
        help_text=gettext_lazy(
            "So flags left from an earlier campaign do not widen the next “has a value” target."
        ),
    )

    def __init__(self, *args: Any, delivery: Delivery, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.delivery = delivery
        counts = count_choices(delivery)
        self.fields["count"].choices = counts
        self.fields["minus"].choices = [("", _("(nobody)"))] + counts
        self.fields["field"].choices = [
            (s.key, capfirst(str(s.label))) for s in recipient_fields.settable_fields()
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            cleaned["choice"] = recipient_fields.check(
                self.delivery,
                cleaned["count"],
                cleaned["field"],
                cleaned.get("value") or "",
                minus=cleaned.get("minus") or "",
                clear_others=cleaned.get("clear_others", False),
            )
        except ValidationError as e:
            raise forms.ValidationError(e.messages) from None
        return cleaned


@require_right("reports", "customers_write")
def set_field(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = get_object_or_404(Delivery.objects.select_related("mail"), pk=delivery_id)
    if request.method == "POST":
        form = SetFieldForm(request.POST, delivery=delivery)
    else:
        initial = {"count": request.GET.get("count") or "sent", "minus": request.GET.get("minus")}
        form = SetFieldForm(initial=initial, delivery=delivery)
    ctx: dict[str, Any] = {"delivery": delivery, "form": form}
    if request.method == "POST" and form.is_valid():
        choice = form.cleaned_data["choice"]
        if request.POST.get("action") == "start":
            job = recipient_fields.start(choice, request)
            messages.success(
                request,
                _("Setting %(field)s on the recipients: job #%(id)s.")
                % {"field": choice.spec.label, "id": job.pk},
            )
            return redirect("accounts:job", job.pk)
        ctx["expected"] = recipient_fields.expected(choice)
        ctx["choice"] = choice
    status = 400 if form.errors else 200
    return render(request, "mailings/set_field.html", ctx, status=status)
