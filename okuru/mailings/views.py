"""Operator screens for mails and deliveries.

* Mails (right ``mails``): list, create and edit (sender settings, content, tracking, targeting
  with the customers filter builder plus "narrow further" delivery history conditions, or a
  spot delivery's view + customer set), preview as a customer, test send, preview counts.
  Previews and test sends show a customer's data only to operators who may see it
  (``okuru.accounts.access``); anyone else gets the sample customer, and is told so.
* Sending (right ``sending``): send now, reserve (配信予約), cancel, pause, resume, stop, and the
  decision on "unknown" ledger rows; the SMTP relays (list, create, edit, default, test,
  delete — ``okuru.mailings.relays``).
* Delivery results, 配信実績 (right ``reports``): the list, a delivery's report with its chart,
  each count's recipients; exports also need ``export_data``. Addresses, relay replies and
  exported fields are customer data: they also need Customers: read.

Every state change goes through ``okuru.mailings.actions`` (which writes the operation log);
test sends and exports are logged here.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, Max, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_GET, require_POST

from okuru.accounts import audit
from okuru.accounts.access import (
    check_customer_data,
    require_right,
    sees_customer_data,
)
from okuru.customers import filters
from okuru.customers.builder import MAX_FILTER_CHARS, builder_context, picker_fields
from okuru.customers.fields import catalogue
from okuru.customers.filters import FilterError
from okuru.customers.models import Customer
from okuru.lib import mailframe, signing, smtp
from okuru.mailings import (
    actions,
    audiences,
    chart,
    describe,
    dkim_keys,
    forms,
    ledger,
    redelivery,
    redelivery_views,
    relays,
    rendering,
    reports,
    targeting,
)
from okuru.mailings.messages import MessageBuilder
from okuru.mailings.models import Delivery, Exclusion, Mail, Relay, TrackedLink
from okuru.mailings.sending import CUSTOMER_COLUMNS

log = logging.getLogger(__name__)
PAGE_SIZE = 50
DEFAULT_EXPORT_FIELDS = ["customer_id"]

# ---------------------------------------------------------------------------------------------
# Access helpers


def _get_mail(mail_id: int) -> Mail:
    return get_object_or_404(
        Mail.objects.select_related("topic", "view", "recipient_list", "relay"), pk=mail_id
    )


def _get_delivery(delivery_id: int) -> Delivery:
    return get_object_or_404(Delivery.objects.select_related("mail", "relay"), pk=delivery_id)


def _can(request: HttpRequest, right: str) -> bool:
    return request.user.has_right(right)


# ---------------------------------------------------------------------------------------------
# Mails


@require_right("mails")
def mail_list(request: HttpRequest) -> HttpResponse:
    mails = (
        Mail.objects.select_related("topic")
        .annotate(delivery_count=Count("deliveries"), last_started=Max("deliveries__started_at"))
        .order_by("-created", "-id")
    )
    page = Paginator(mails, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "mailings/list.html", {"page": page})


def _form_page(request: HttpRequest, mail: Mail, extra: dict | None = None) -> HttpResponse:
    """Create and edit: the mail form, the history rows (basic) and the customer set (spot).
    ``extra``: more context (the extraction a new spot delivery continues)."""
    data = request.POST if request.method == "POST" else None
    form = forms.MailForm(data, instance=mail)
    _builder, history_conds = forms.split_filter(mail.filter)
    # Only the kind's own rows are on the page (and so in the POST).
    spot = mail.kind == Mail.Kind.SPOT
    history = forms.history_formset("h", None if spot else data, history_conds)
    cset_conds = (mail.customer_set or {}).get("conditions", [])
    cset = forms.history_formset("cs", data if spot else None, cset_conds)
    locked = actions.is_locked(mail)
    if locked:  # shown read-only with the reason, rather than refused after saving
        forms.lock_targeting(form, history, cset)
    rows_valid = (cset if spot else history).is_valid()
    # The planned re-delivery is on the page only for operators who may send.
    can_plan = _can(request, "sending")
    plan = redelivery_views.PlanForm.for_mail(data if can_plan else None, mail)
    if data is not None and form.is_valid() and rows_valid and (not can_plan or plan.is_valid()):
        created = mail.pk is None
        built = form.build(forms.conditions_of(history), forms.conditions_of(cset))
        try:
            actions.save_mail(built, request)
            if can_plan:
                plan.save_for_mail(built, request)
        except ValidationError as e:
            forms.apply_errors(form, e)
        else:
            messages.success(
                request,
                (_("Mail “%(name)s” created.") if created else _("Mail “%(name)s” saved."))
                % {"name": built.name},
            )
            return redirect("mailings:detail", built.pk)
    ctx: dict[str, Any] = {
        "form": form,
        "mail": mail,
        "history": history,
        "cset": cset,
        "locked": locked,
        "kind": form["kind"].value() or mail.kind,
        **(extra or {}),
        "plan_form": plan if can_plan else None,
    }
    ctx.update(builder_context(catalogue(), form["filter"].value()))
    # The live count is the whole targeting: the builder's tree AND the history rows.
    ctx.update(count_url=reverse("mailings:compose_count"), count_with="history-rows")
    status = 400 if data is not None else 200
    return render(request, "mailings/form.html", ctx, status=status)


@require_right("mails")
def mail_create(request: HttpRequest) -> HttpResponse:
    kind = request.POST.get("kind") or request.GET.get("kind") or Mail.Kind.BASIC
    if kind not in (Mail.Kind.BASIC, Mail.Kind.SPOT):
        kind = Mail.Kind.BASIC
    return _form_page(request, Mail(kind=kind, owner=request.user))


@require_right("mails")
def mail_edit(request: HttpRequest, mail_id: int) -> HttpResponse:
    return _form_page(request, _get_mail(mail_id))


@require_right("mails")
def mail_detail(request: HttpRequest, mail_id: int) -> HttpResponse:
    mail = _get_mail(mail_id)
    ctx = {
        "mail": mail,
        "deliveries": mail.deliveries.order_by("-created", "-id")[:50],
        "locked": actions.is_locked(mail),
        "links": mail.links.filter(active=True),
        "targeting": describe.of_mail(mail),
        "send_form": forms.SendForm(),
        "test_form": forms.TestSendForm(),
        "preview_form": forms.PreviewForm(),
        "sample_only": not sees_customer_data(request.user),
        "can_send": _can(request, "sending"),
        "can_report": _can(request, "reports"),
        "lineage_source": mail.resend_of_delivery,
        "audience_label": audiences.mail_label(mail) if mail.audience else "",
        "mail_plan": redelivery.mail_plan(mail),
        "cutoff": targeting.source_cutoff(),
    }
    return render(request, "mailings/detail.html", ctx)


@require_POST
@require_right("mails")
def mail_links(request: HttpRequest, mail_id: int) -> HttpResponse:
    """Name the mail's tracked links (click feedback names, shown in the reports)."""
    mail = _get_mail(mail_id)
    changed = {}
    with transaction.atomic():
        for link in mail.links.select_for_update():
            key = f"link-{link.pk}"
            if key not in request.POST:
                continue
            name = request.POST[key].strip()[:200]
            if name != link.name:
                TrackedLink.objects.filter(pk=link.pk).update(name=name)
                changed[link.url] = name
        if changed:
            audit.log(request, "mail.name_links", f"mail:{mail.pk}", {"names": changed})
    messages.success(request, _("Link names saved."))
    return redirect("mailings:detail", mail.pk)


# ---------------------------------------------------------------------------------------------
# Preview and test send


def _placeholder_urls(kind: str, recipient_id: int, link_id: int | None) -> str:
    """Previews and tests have no ledger row: their unsubscribe and view links lead to the
    "link not valid" page instead of acting on somebody."""
    return f"{signing.tracking_root()}/t/{signing.KINDS[kind]}/preview"


def _customer_values(customer_id: int | None) -> dict[str, Any]:
    qs = Customer.objects.values(*CUSTOMER_COLUMNS)
    row = qs.filter(pk=customer_id).first() if customer_id else qs.order_by("id").first()
    if row is None:  # no customer yet: merge fields render empty
        row = {c: None for c in CUSTOMER_COLUMNS} | {"id": 0, "data": {}}
    return row


SAMPLE_EMAIL = "sample@example.com"
SAMPLE_DATE, SAMPLE_DATETIME = "2000-01-01", "2000-01-01 09:00:00"


def sample_values() -> dict[str, Any]:
    """A made-up customer for operators who may not see customer data: every field has a
    value of its type, and a text field shows its own label, so the layout can be checked."""
    row: dict[str, Any] = {"id": 0, "data": {}}
    for key, spec in catalogue().items():
        if spec.readonly and spec.column == "id":
            continue
        if spec.standard:
            row[spec.column] = _sample(spec)
        else:
            row["data"][key] = _sample(spec)
    return row


def _sample(spec: Any) -> Any:
    samples = {
        "email": SAMPLE_EMAIL,
        "integer": 0,
        "number": 0,
        "date": SAMPLE_DATE,
        "datetime": SAMPLE_DATETIME,
        "flag": False,
    }
    if spec.type in samples:
        return samples[spec.type]
    if spec.type == "multiselect":
        return list(spec.choices[:1])
    if spec.type == "select" and spec.choices:
        return spec.choices[0]
    return f"[{spec.label}]"


def _values_for(user: Any, customer_id: int | None) -> dict[str, Any]:
    """Whose values fill the merge fields: the chosen customer (or the first one) for an
    operator who may see customer data, the sample customer for anyone else."""
    if customer_id is not None:
        check_customer_data(user)
    if not sees_customer_data(user):
        return sample_values()
    return _customer_values(customer_id)


def _asks_for_customer(request: HttpRequest, data: Any) -> None:
    """A request naming a customer needs the right to see customer data, checked before the
    form looks the customer up (its "no such customer" would tell which IDs exist)."""
    if (data.get("customer") or "").strip():
        check_customer_data(request.user)


def _render(mail: Mail, values: dict[str, Any]) -> rendering.Rendered:
    """The mail as the customer ``values`` would get it, without tracking (the links are the
    mail's own and no pixel is added: a preview must not count as an open)."""
    content = ledger.content_snapshot(mail)
    content.update(open_tracking=False, click_tracking=False)
    compiled = rendering.CompiledMail(content, catalogue(), _placeholder_urls)
    return compiled.render(0, values)


@require_right("mails")
def mail_preview(request: HttpRequest, mail_id: int) -> HttpResponse:
    mail = _get_mail(mail_id)
    _asks_for_customer(request, request.GET)
    form = forms.PreviewForm(request.GET or None)
    customer_id = form.cleaned_data.get("customer") if form.is_valid() else None
    sample_only = not sees_customer_data(request.user)
    ctx: dict[str, Any] = {"mail": mail, "form": form, "sample_only": sample_only}
    if not form.errors:
        try:
            ctx["rendered"] = _render(mail, _values_for(request.user, customer_id))
        except Exception as e:  # a template that validated may still fail on odd data
            ctx["render_error"] = _("The mail cannot be rendered: %(error)s") % {"error": e}
    # The HTML body for the page's frame: this same view renders it (same rights, same
    # customer), with a policy of its own.
    if request.GET.get("part") == "html":
        rendered = ctx.get("rendered")
        if rendered is None or rendered.html is None:
            raise Http404
        return mailframe.mail_frame(rendered.html)
    query = request.GET.copy()
    query["part"] = "html"
    ctx["frame_url"] = f"{request.path}?{query.urlencode()}"
    return render(request, "mailings/preview.html", ctx)


def _send_test(mail: Mail, addresses: list[str], values: dict[str, Any]) -> list[str]:
    """Send the rendered mail to ``addresses`` through the mail's relay; returns the refusals."""
    rendered = _render(mail, values)
    rendered = rendering.Rendered(
        subject=_("[TEST] %(subject)s") % {"subject": rendered.subject},
        text=rendered.text,
        html=rendered.html,
    )
    content = ledger.content_snapshot(mail)
    content["return_path_domain"] = ""  # bounces of a test have no ledger row to land on
    builder = MessageBuilder(0, content, dkim_keys.signer_for(mail.from_address))
    relay = mail.relay or relays.default_relay()
    conn = smtp.Connection(relay.smtp_settings())
    refused = []
    try:
        for address in addresses:
            env = builder.build(0, address, rendered, _placeholder_urls("unsubscribe", 0, None))
            reply = conn.send(env.sender, env.recipient, env.data)
            if not reply.accepted:
                refused.append(f"{address}: {reply}")
    finally:
        conn.close()
    return refused


@require_POST
@require_right("mails")
def mail_test(request: HttpRequest, mail_id: int) -> HttpResponse:
    mail = _get_mail(mail_id)
    _asks_for_customer(request, request.POST)
    form = forms.TestSendForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect("mailings:detail", mail.pk)
    addresses = form.cleaned_data["addresses"]
    try:
        rendering.validate_templates(mail)
        values = _values_for(request.user, form.cleaned_data.get("customer"))
        refused = _send_test(mail, addresses, values)
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
        return redirect("mailings:detail", mail.pk)
    except rendering.RenderError as e:  # fails, or goes over budget, with this customer's data
        messages.error(request, e.message)
        return redirect("mailings:detail", mail.pk)
    except smtp.RelayRejected as e:  # before ConnectionLost, of which it is a kind
        messages.error(request, relays.relay_problem(e))
        return redirect("mailings:detail", mail.pk)
    except (OSError, smtp.ConnectionLost, smtp.Indeterminate) as e:
        messages.error(request, _("The test could not be sent: %(error)s") % {"error": e})
        return redirect("mailings:detail", mail.pk)
    audit.log(request, "mail.test_send", f"mail:{mail.pk}", {"to": addresses, "refused": refused})
    if refused:
        messages.error(request, _("The relay refused: %(list)s") % {"list": "; ".join(refused)})
    else:
        messages.success(request, _("Test sent to %(list)s.") % {"list": ", ".join(addresses)})
    return redirect("mailings:detail", mail.pk)


@require_right("mails")
def mail_counts(request: HttpRequest, mail_id: int) -> HttpResponse:
    mail = _get_mail(mail_id)
    ctx: dict[str, Any] = {"mail": mail}
    if not actions.has_target(mail):
        ctx["error"] = _("Choose a view or a recipient list first.")
    else:
        try:
            ctx["counts"] = targeting.preview(mail)
        except FilterError as e:
            ctx["error"] = str(e)
    if "counts" in ctx:
        ctx["excluded"] = [
            (reason, reason_label(reason), n) for reason, n in ctx["counts"]["excluded"].items()
        ]
    return render(request, "mailings/counts.html", ctx)


@require_GET
@require_right("mails")
def compose_count(request: HttpRequest) -> JsonResponse:
    """The compose form's live count: the filter builder's tree (``?filter=``) AND the delivery
    history rows (the ``h-`` formset fields), as the saved mail would match them."""
    raw = request.GET.get("filter") or ""
    if len(raw) > MAX_FILTER_CHARS:
        return JsonResponse({"error": _("The filter is too long.")}, status=400)
    history = forms.history_formset("h", request.GET if "h-TOTAL_FORMS" in request.GET else None)
    if history.is_bound and not history.is_valid():
        errors = [e for f in history.forms for msgs in f.errors.values() for e in msgs]
        errors += list(history.non_form_errors())
        return JsonResponse({"error": " ".join(map(str, errors))}, status=400)
    try:
        tree = forms.join_filter(
            filters.parse_tree(raw), forms.conditions_of(history) if history.is_bound else []
        )
        n = filters.count(tree)
    except FilterError as e:
        return JsonResponse({"error": str(e)}, status=400)
    text = ngettext("%(count)s customer matches", "%(count)s customers match", n) % {
        "count": f"{n:,}"
    }
    return JsonResponse({"count": n, "text": text})


def reason_label(reason: str) -> str:
    if reason == "duplicate":
        return _("Duplicate address")
    return Exclusion(reason).label if reason in Exclusion.values else reason


# ---------------------------------------------------------------------------------------------
# Sending


@require_POST
@require_right("sending")
def mail_send(request: HttpRequest, mail_id: int) -> HttpResponse:
    mail = _get_mail(mail_id)
    form = forms.SendForm(request.POST)
    if not form.is_valid():
        for error in form.errors.get("when", []):
            messages.error(request, error)
        return redirect("mailings:detail", mail.pk)
    when = form.cleaned_data.get("when") if request.POST.get("action") == "reserve" else None
    if request.POST.get("action") == "reserve" and when is None:
        messages.error(request, _("Choose the time to reserve the delivery for."))
        return redirect("mailings:detail", mail.pk)
    try:
        # Check before creating the delivery, so a refused send leaves no stray draft.
        rendering.validate_templates(mail)
        actions.validate_targeting(mail)
        delivery = actions.reserve(actions.create_delivery(mail, request), request, when)
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
        return redirect("mailings:detail", mail.pk)
    if when is None:
        messages.success(request, _("Delivery #%(id)s is starting.") % {"id": delivery.pk})
    else:
        messages.success(request, _("Delivery #%(id)s is reserved.") % {"id": delivery.pk})
    return redirect("mailings:report", delivery.pk)


DELIVERY_ACTIONS = {
    "cancel": (actions.cancel, gettext_lazy("Delivery #%(id)s cancelled.")),
    "pause": (actions.pause, gettext_lazy("Delivery #%(id)s paused.")),
    "resume": (actions.resume, gettext_lazy("Delivery #%(id)s resumed.")),
    "stop": (actions.stop, gettext_lazy("Delivery #%(id)s stopped.")),
}


@require_POST
@require_right("sending")
def delivery_action(request: HttpRequest, delivery_id: int, action: str) -> HttpResponse:
    if action not in DELIVERY_ACTIONS:
        raise Http404
    delivery = _get_delivery(delivery_id)
    do, done = DELIVERY_ACTIONS[action]
    try:
        do(delivery, request)
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
    else:
        messages.success(request, str(done) % {"id": delivery.pk})
    return redirect("mailings:report", delivery.pk)


@require_POST
@require_right("sending")
def delivery_unknown(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = _get_delivery(delivery_id)
    choice = request.POST.get("resend")
    if choice not in ("yes", "no"):
        messages.error(request, _("Choose whether to send the unknown rows again."))
        return redirect("mailings:report", delivery.pk)
    try:
        n = actions.resolve_unknown(delivery, request, resend=choice == "yes")
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
    else:
        if choice == "yes":
            messages.success(request, _("%(n)s unknown rows will be sent again.") % {"n": n})
        else:
            messages.success(request, _("%(n)s unknown rows will not be sent.") % {"n": n})
    return redirect("mailings:report", delivery.pk)


# ---------------------------------------------------------------------------------------------
# Delivery results (配信実績)


@require_right("reports")
def delivery_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(reports.deliveries(), PAGE_SIZE).get_page(request.GET.get("page"))
    cutoff = targeting.source_cutoff()
    rows = [
        (d, d.started_at is not None and d.started_at >= cutoff, _rates(d))
        for d in page.object_list
    ]
    can_extract = _can(request, "sending")  # the extraction wizard needs reports and sending
    ctx = {"page": page, "rows": rows, "can_extract": can_extract}
    return render(request, "mailings/deliveries.html", ctx)


def _rates(d: Delivery) -> dict[str, float | None]:
    sent = d.sent_count
    return {
        "open": round(100.0 * d.open_unique / sent, 1) if sent else None,
        "click": round(100.0 * d.click_unique / sent, 1) if sent else None,
    }


@require_right("reports")
def delivery_report(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = _get_delivery(delivery_id)
    summary = reports.summary(delivery)
    ctx = {
        "delivery": delivery,
        "s": summary,
        "chart": chart.chart_svg(reports.series(delivery)),
        "can_send": _can(request, "sending"),
        "can_export": _can(request, "export_data"),
        "excluded": _exclusion_rows(summary),
        "targeting": describe.of_delivery(delivery),
        "can_set_field": _can(request, "customers_write"),
        "count_menu": [
            ("all", "", _("Recipients (every recipient, errors included)")),
            ("sent", "", _("Sent (accepted by the relay)")),
            ("sent", "errors", _("Sent minus errors (those who got the mail)")),
            ("errors", "", _("Errors")),
            ("opened", "", _("Opened")),
            ("not_opened", "", _("Not opened")),
            ("clicked", "", _("Clicked")),
            ("not_clicked", "", _("Not clicked")),
        ],
    }
    ctx.update(redelivery_views.report_context(request, delivery))
    return render(request, "mailings/report.html", ctx)


def _exclusion_rows(summary: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    """(reason, label, excluded when frozen, excluded at send time) for the report."""
    frozen, at_send = summary["excluded"], summary["excluded_at_send"]
    reasons = [*frozen, *(r for r in at_send if r not in frozen)]
    return [(r, reason_label(r), frozen.get(r, 0), at_send.get(r, 0)) for r in reasons]


def _count_or_404(delivery: Delivery, count: str) -> str:
    try:
        label = reports.count_label(delivery, count)
        reports.count_condition(delivery, count)
    except (reports.ReportError, ValueError):
        raise Http404(_("Unknown count: %(count)s") % {"count": count}) from None
    return label


@require_right("reports")
def delivery_recipients(request: HttpRequest, delivery_id: int, count: str) -> HttpResponse:
    delivery = _get_delivery(delivery_id)
    label = _count_or_404(delivery, count)
    after = request.GET.get("after", "")
    rows, next_after = reports.page(delivery, count, int(after) if after.isdigit() else None)
    ctx: dict[str, Any] = {
        "delivery": delivery,
        "count": count,
        "label": label,
        "rows": rows,
        "next_after": next_after,
        "paged": bool(after),
        "total": reports.recipients(delivery, count).count(),
        "purged": reports.is_purged(delivery),
        "can_export": _can(request, "export_data"),
        "can_set_field": _can(request, "customers_write"),
        "export_form": forms.ExportForm(),
        "sees_customers": sees_customer_data(request.user),
    }
    if ctx["sees_customers"]:
        ctx.update(picker_fields(catalogue(), DEFAULT_EXPORT_FIELDS))
    return render(request, "mailings/recipients.html", ctx)


def _csv_response(chunks: Any, filename: str, encoding: str) -> StreamingHttpResponse:
    charset = "cp932" if encoding == "cp932" else "utf-8"
    response = StreamingHttpResponse(chunks, content_type=f"text/csv; charset={charset}")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_right("reports", "export_data")
def delivery_export(request: HttpRequest, delivery_id: int, count: str) -> HttpResponse:
    delivery = _get_delivery(delivery_id)
    _count_or_404(delivery, count)
    fields = request.GET.getlist("fields")
    reports.check_export_fields(request.user, fields)
    encoding = request.GET.get("encoding") or "utf-8-sig"
    minus = request.GET.get("minus") or ""
    try:
        chunks = reports.iter_recipient_export(delivery, count, fields, encoding, minus)
    except reports.ReportError as e:
        messages.error(request, str(e))
        return redirect("mailings:recipients", delivery.pk, count)
    detail = {"count": count, "fields": fields, "encoding": encoding}
    if minus:
        detail["minus"] = minus
    audit.log(request, "delivery.export_recipients", f"delivery:{delivery.pk}", detail)
    name = f"delivery-{delivery.pk}-{count.replace(':', '-')}"
    name += f"-minus-{minus.replace(':', '-')}.csv" if minus else ".csv"
    return _csv_response(chunks, name, encoding)


@require_right("reports", "export_data")
def delivery_events(request: HttpRequest, delivery_id: int) -> HttpResponse:
    delivery = _get_delivery(delivery_id)
    encoding = request.GET.get("encoding") or "utf-8-sig"
    try:
        chunks = reports.iter_event_export(delivery, encoding)
    except reports.ReportError as e:
        messages.error(request, str(e))
        return redirect("mailings:report", delivery.pk)
    audit.log(request, "delivery.export_events", f"delivery:{delivery.pk}", {"encoding": encoding})
    return _csv_response(chunks, f"delivery-{delivery.pk}-events.csv", encoding)


# ---------------------------------------------------------------------------------------------
# Relays (right ``sending``; the named actions are in ``okuru.mailings.relays``)


def _get_relay(relay_id: int) -> Relay:
    return get_object_or_404(Relay, pk=relay_id)


@require_right("sending")
def relay_list(request: HttpRequest) -> HttpResponse:
    # Subqueries, not two joined Counts: the join would multiply mails by deliveries.
    def count(qs: Any) -> Any:
        qs = qs.filter(relay=OuterRef("pk")).order_by().values("relay")
        return Coalesce(Subquery(qs.annotate(n=Count("*")).values("n")), 0)

    rows = Relay.objects.annotate(
        mail_count=count(Mail.objects.all()),
        active_count=count(Delivery.objects.filter(status__in=relays.ACTIVE)),
    ).order_by("name")
    return render(request, "mailings/relays/list.html", {"relays": rows})


def _relay_form_page(request: HttpRequest, relay: Relay) -> HttpResponse:
    form = relays.RelayForm(request.POST or None, instance=relay)
    if request.method == "POST" and form.is_valid():
        created = relay.pk is None
        try:
            saved = relays.save_relay(
                form.apply(), request, form.cleaned_data.get("make_default", False)
            )
        except ValidationError as e:
            form.apply_errors(e)
        else:
            done = _("Relay “%(name)s” created.") if created else _("Relay “%(name)s” saved.")
            messages.success(request, done % {"name": saved.name})
            return redirect("mailings:relays")
    # The form wrote the refused values on the instance: the heading shows the stored relay.
    shown = Relay.objects.get(pk=relay.pk) if relay.pk and form.errors else relay
    ctx = {"form": form, "relay": shown if relay.pk else None}
    return render(request, "mailings/relays/form.html", ctx, status=400 if form.errors else 200)


@require_right("sending")
def relay_create(request: HttpRequest) -> HttpResponse:
    return _relay_form_page(request, Relay())


@require_right("sending")
def relay_edit(request: HttpRequest, relay_id: int) -> HttpResponse:
    return _relay_form_page(request, _get_relay(relay_id))


@require_POST
@require_right("sending")
def relay_default(request: HttpRequest, relay_id: int) -> HttpResponse:
    relay = _get_relay(relay_id)
    relays.set_default(relay, request)
    messages.success(request, _("“%(name)s” is now the default relay.") % {"name": relay.name})
    return redirect("mailings:relays")


@require_POST
@require_right("sending")
def relay_test(request: HttpRequest, relay_id: int) -> HttpResponse:
    relay = _get_relay(relay_id)
    result = relays.test_relay(relay, request)
    (messages.success if result.ok else messages.error)(request, result.message)
    if request.POST.get("back") == "edit":
        return redirect("mailings:relay", relay.pk)
    return redirect("mailings:relays")


@require_POST
@require_right("sending")
def relay_delete(request: HttpRequest, relay_id: int) -> HttpResponse:
    relay = _get_relay(relay_id)
    try:
        relays.delete_relay(relay, request)
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
        return redirect("mailings:relay", relay.pk)
    messages.success(request, _("Relay “%(name)s” deleted.") % {"name": relay.name})
    return redirect("mailings:relays")
