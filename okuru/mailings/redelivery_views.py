"""Screens for resend (再送信) and Re-deliver (``okuru.mailings.redelivery``): the Re-deliver
page (audience with live counts, content, send now or reserve, a confirmation step for a
repeat), the resend button, and planned re-deliveries on reports and on the compose screen.

Rights: ``reports`` to open the Re-deliver page and see its counts; ``sending`` to re-deliver,
plan or cancel a plan; ``sending`` and ``mails`` to resend (it creates a draft mail). Kept apart
from ``views.py`` because it is one feature with its own forms; ``views.py`` calls
``report_context`` and ``PlanForm`` for the report and the compose screen.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from okuru.accounts.access import check_rights, require_right
from okuru.mailings import audiences, redelivery
from okuru.mailings.models import Delivery, Exclusion, Mail, PlannedRedelivery, TrackedLink


def _get_delivery(delivery_id: int) -> Delivery:
    return get_object_or_404(Delivery.objects.select_related("mail", "relay"), pk=delivery_id)


# ---------------------------------------------------------------------------------------------
# Forms


class RedeliverForm(forms.Form):
    audience = forms.ChoiceField(
        label=gettext_lazy("Audience"),
        choices=[(k, v) for k, v in audiences.AUDIENCES.items()],
        widget=forms.RadioSelect,
        initial="not_opened",
    )
    link = forms.ChoiceField(label=gettext_lazy("Link"), required=False)
    subject = forms.CharField(
        label=gettext_lazy("Subject"),
        max_length=500,
        widget=forms.TextInput(attrs={"class": "mono wide"}),
    )
    text_body = forms.CharField(
        label=gettext_lazy("Text body"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "class": "mono"}),
    )
    html_body = forms.CharField(
        label=gettext_lazy("HTML body"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "class": "mono"}),
    )
    action = forms.ChoiceField(
        label=gettext_lazy("When"),
        choices=[("now", gettext_lazy("Send now")), ("reserve", gettext_lazy("Reserve"))],
        widget=forms.RadioSelect,
        initial="now",
    )
    when = forms.DateTimeField(
        label=gettext_lazy("Reserve for"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
    )
    confirm = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, delivery: Delivery, **kwargs: Any):
        super().__init__(*args, **kwargs)
        links = TrackedLink.objects.filter(mail_id=delivery.mail_id).order_by("position", "id")
        self.fields["link"].choices = [("", _("any link"))] + [
            (str(link.pk), (link.name or link.url)[:120]) for link in links
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("action") == "reserve":
            when = cleaned.get("when")
            if when is None:
                self.add_error("when", _("Choose the time to reserve the delivery for."))
            elif when <= timezone.now():
                self.add_error("when", _("Choose a time in the future for a reservation."))
        return cleaned


class PlanForm(forms.Form):
    """A planned re-delivery: on a report (a delivery's) or on the compose screen (the mail's,
    where "none" removes it)."""

    audience = forms.ChoiceField(label=gettext_lazy("Re-deliver to"), required=False)
    days = forms.IntegerField(
        label=gettext_lazy("Days after the send"),
        min_value=1,
        max_value=redelivery.MAX_PLAN_DAYS,
        required=False,
        initial=3,
    )
    subject = forms.CharField(
        label=gettext_lazy("New subject (optional)"), max_length=500, required=False
    )

    def __init__(self, *args: Any, optional: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        choices = list(PlannedRedelivery.Audience.choices)
        self.fields["audience"].choices = (
            [("", _("No planned re-delivery"))] + choices if optional else choices
        )
        self.fields["audience"].required = not optional

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if cleaned.get("audience") and not cleaned.get("days"):
            self.add_error("days", _("Enter the number of days after the send."))
        return cleaned

    @classmethod
    def for_mail(cls, data: Any, mail: Mail) -> PlanForm:
        plan = redelivery.mail_plan(mail)
        initial = (
            {"audience": plan.audience, "days": plan.days, "subject": plan.subject}
            if plan
            else {"audience": ""}
        )
        return cls(data, prefix="plan", optional=True, initial=initial)

    def save_for_mail(self, mail: Mail, actor: Any) -> None:
        d = self.cleaned_data
        redelivery.set_mail_plan(
            mail, actor, d.get("audience") or "", d.get("days"), d.get("subject") or ""
        )


def report_context(request: HttpRequest, delivery: Delivery) -> dict[str, Any]:
    """What the report page shows about resends, re-deliveries and plans."""
    return {
        "lineage": redelivery.lineage(delivery),
        "source_problem": redelivery.source_problem(delivery),
        "plan_form": PlanForm(prefix="plan"),
        "can_compose": request.user.has_right("mails"),
    }


# ---------------------------------------------------------------------------------------------
# Resend


@require_POST
@require_right("sending", "mails")
def resend(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = _get_delivery(delivery_id)
    try:
        mail = redelivery.resend(delivery, request)
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
        return redirect("mailings:report", delivery.pk)
    messages.success(
        request,
        _(
            "Draft “%(name)s” created from delivery #%(id)s. Its recipients are found again "
            "when it is sent: narrow them here if needed, then save and send it."
        )
        % {"name": mail.name, "id": delivery.pk},
    )
    return redirect("mailings:edit", mail.pk)


# ---------------------------------------------------------------------------------------------
# Re-deliver


@require_right("reports")
def redeliver(request: HttpRequest, delivery_id: int) -> HttpResponse:
    if request.method == "POST":
        check_rights(request.user, "sending")
    delivery = _get_delivery(delivery_id)
    content = delivery.content or {}
    initial = {
        "subject": content.get("subject", delivery.mail.subject),
        "text_body": content.get("text_body", ""),
        "html_body": content.get("html_body", ""),
    }
    data = request.POST if request.method == "POST" else None
    form = RedeliverForm(data, delivery=delivery, initial=initial)
    problem = redelivery.source_problem(delivery)
    repeat: list[str] = []
    if data is not None and problem is None and form.is_valid():
        d = form.cleaned_data
        try:
            new = redelivery.redeliver(
                delivery,
                request,
                d["audience"],
                link=d.get("link") or None,
                subject=d["subject"],
                # A body the request left out is kept; one sent empty is removed.
                text_body=d["text_body"] if "text_body" in data else None,
                html_body=d["html_body"] if "html_body" in data else None,
                when=d.get("when") if d["action"] == "reserve" else None,
                confirm=d.get("confirm", False),
            )
        except redelivery.RepeatError as e:
            repeat = e.messages
        except ValidationError as e:
            form.add_error(None, e.messages)
        else:
            done = (
                _("Re-delivery #%(id)s is reserved.")
                if d["action"] == "reserve"
                else _("Re-delivery #%(id)s is starting.")
            )
            messages.success(request, done % {"id": new.pk})
            return redirect("mailings:report", new.pk)
    ctx = {
        "delivery": delivery,
        "form": form,
        "problem": problem,
        "repeat": repeat,
        "can_send": request.user.has_right("sending"),
        "counts": _counts(delivery, form) if problem is None else None,
    }
    status = 400 if data is not None and (form.errors or repeat) else 200
    return render(request, "mailings/redeliver.html", ctx, status=status)


def _counts(delivery: Delivery, form: RedeliverForm) -> dict[str, Any] | None:
    """The counts of the audience on the page (the script refreshes them as it changes)."""
    audience = form["audience"].value() or "not_opened"
    link = form["link"].value() or None
    try:
        return _with_labels(redelivery.redeliver_preview(delivery, audience, link))
    except ValidationError:
        return None


def _reason_label(reason: str) -> str:
    if reason == "duplicate":
        return _("Duplicate address")
    return str(Exclusion(reason).label) if reason in Exclusion.values else reason


def _with_labels(counts: dict[str, Any]) -> dict[str, Any]:
    counts["excluded_rows"] = [
        (reason, _reason_label(reason), n) for reason, n in counts["excluded"].items()
    ]
    return counts


@require_right("reports")
def redeliver_counts(request: HttpRequest, delivery_id: int) -> JsonResponse:
    """The counts of one audience as JSON, for the Re-deliver page's script."""
    delivery = _get_delivery(delivery_id)
    try:
        counts = redelivery.redeliver_preview(
            delivery, request.GET.get("audience", ""), request.GET.get("link") or None
        )
    except ValidationError as e:
        return JsonResponse({"detail": " ".join(e.messages)}, status=400)
    counts = _with_labels(counts)
    counts["excluded_rows"] = [[r, str(label), n] for r, label, n in counts["excluded_rows"]]
    return JsonResponse(counts)


# ---------------------------------------------------------------------------------------------
# Planned re-deliveries


@require_POST
@require_right("sending")
def plan_create(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = _get_delivery(delivery_id)
    form = PlanForm(request.POST, prefix="plan")
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect("mailings:report", delivery.pk)
    d = form.cleaned_data
    try:
        redelivery.plan_redelivery(request, d["audience"], d["days"], d["subject"], source=delivery)
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
    else:
        messages.success(request, _("Re-delivery planned."))
    return redirect("mailings:report", delivery.pk)


@require_POST
@require_right("sending")
def plan_cancel(request: HttpRequest, plan_id: int) -> HttpResponse:
    plan = get_object_or_404(PlannedRedelivery, pk=plan_id)
    try:
        redelivery.cancel_planned(plan, request)
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
    else:
        messages.success(request, _("Planned re-delivery cancelled."))
    if plan.source_id:
        return redirect("mailings:report", plan.source_id)
    return redirect("mailings:detail", plan.mail_id)
