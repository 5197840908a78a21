"""Screens of the use of measurement results (効果測定結果の利用), route 4.

The wizard is four GET steps that carry the choice so far in the query string (so "back" and
a reload just work, and the delivery results list can open it at any step with its ticked
deliveries), then one POST that starts the extraction:

    sources (past deliveries) → view → customer set → confirm → POST: extract

Rights: ``sending`` and ``reports`` to extract and discard, ``reports`` to see extractions,
``mails`` to continue into a new spot delivery. The work is in ``okuru.mailings.extraction``;
this module is kept apart from ``views.py`` because it is a flow of its own.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from okuru.accounts.access import require_right
from okuru.customers.models import View
from okuru.mailings import extraction, reports, targeting
from okuru.mailings.models import Delivery, Extraction, TrackedLink
from okuru.mailings.views import PAGE_SIZE, _form_page, reason_label

STEPS = ("sources", "view", "set", "confirm")
SOURCE_ROWS = 200


def _get(extraction_id: int) -> Extraction:
    found = extraction.get(extraction_id)
    if found is None:
        raise Http404(_("No extraction with id %(id)s.") % {"id": extraction_id})
    return found


def _errors(e: ValidationError) -> dict[str, list[str]]:
    if hasattr(e, "error_dict"):
        return {k: [str(m) for m in v] for k, v in e.message_dict.items()}
    return {"__all__": [str(m) for m in e.messages]}


def _params(request: HttpRequest) -> dict[str, Any]:
    q = request.POST if request.method == "POST" else request.GET
    return {
        "deliveries": [v for v in q.getlist("deliveries") if v],
        "view": q.get("view", ""),
        "conditions": [v for v in q.getlist("conditions") if v],
        "match": q.get("match") or "all",
        "link": q.get("link", ""),
    }


def _source_rows() -> list[tuple[Delivery, bool]]:
    """Recent sent deliveries, each with whether it may be a source (older ones are shown,
    disabled, with the reason)."""
    cutoff = targeting.source_cutoff()
    qs = (
        Delivery.objects.filter(started_at__isnull=False)
        .select_related("mail")
        .order_by("-started_at", "-id")[:SOURCE_ROWS]
    )
    return [(d, d.started_at >= cutoff) for d in qs]


def _view_rows() -> list[View]:
    return list(View.objects.order_by("name"))


def _links(delivery_ids: list[str]) -> list[TrackedLink]:
    ids = [int(i) for i in delivery_ids if str(i).isdigit()]
    mails = Delivery.objects.filter(pk__in=ids).values("mail_id")
    return list(TrackedLink.objects.filter(mail_id__in=mails).select_related("mail"))


def _check_step(step: str, p: dict[str, Any]) -> extraction.Choice | None:
    """Check what the steps before ``step`` chose; raises ValidationError."""
    if step == "sources":
        return None
    extraction.check_sources(p["deliveries"])
    if step == "view":
        return None
    extraction.check_view(p["view"])
    if step == "set":
        return None
    return extraction.check(p["deliveries"], p["view"], p["conditions"], p["match"], p["link"])


@require_right("sending", "reports")
def extraction_new(request: HttpRequest) -> HttpResponse:
    p = _params(request)
    step = request.GET.get("step") if request.method == "GET" else "confirm"
    if step not in STEPS:
        step = "sources"
    ctx: dict[str, Any] = {"step": step, "p": p, "steps": STEPS, "errors": {}}
    status = 200
    try:
        choice = _check_step(step, p)
    except ValidationError as e:
        ctx["errors"] = _errors(e)
        status = 400
        # Back to the step whose choice is wrong.
        errs = ctx["errors"]
        ctx["step"] = "sources" if "deliveries" in errs else "view" if "view" in errs else "set"
        choice = None
    if request.method == "POST" and choice is not None:
        started = extraction.start_extraction(choice, request)
        messages.success(
            request,
            _("Extraction #%(id)s started. You will get a notice and an e-mail when it is ready.")
            % {"id": started.pk},
        )
        return redirect("mailings:extraction", started.pk)
    ctx["step_index"] = STEPS.index(ctx["step"]) + 1
    if ctx["step"] == "sources":
        ctx["sources"] = _source_rows()
    elif ctx["step"] == "view":
        ctx["views"] = _view_rows()
    elif ctx["step"] == "set":
        ctx["links"] = _links(p["deliveries"])
        ctx["condition_choices"] = [
            (c, extraction.CONDITION_LABELS[c]) for c in extraction.CONDITIONS
        ]
    if ctx["step"] != "sources":
        ctx["chosen"] = list(
            Delivery.objects.filter(pk__in=[int(i) for i in p["deliveries"] if i.isdigit()])
            .select_related("mail")
            .order_by("id")
        )
    if ctx["step"] == "confirm" and choice is not None:
        ctx["choice"] = choice
        ctx["description"] = extraction.describe_conditions(choice)
        figures = extraction.expected(choice)
        ctx["figures"] = figures
        ctx["excluded"] = [
            (reason_label(r), n) for r, n in sorted(figures["excluded_now"].items()) if n
        ]
    return render(request, "mailings/extractions/new.html", ctx, status=status)


@require_right("reports")
def extraction_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(extraction.extractions(), PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [(e, extraction.fed(e), extraction.describe_conditions(e)) for e in page.object_list]
    ctx = {
        "page": page,
        "rows": rows,
        "can_send": request.user.has_right("sending"),
        "retention_days": settings.MAILINGS_RETENTION_DAYS,
    }
    return render(request, "mailings/extractions/list.html", ctx)


@require_right("reports")
def extraction_detail(request: HttpRequest, extraction_id: int) -> HttpResponse:
    found = _get(extraction_id)
    job = found.job
    if request.GET.get("format") == "json":
        return JsonResponse(
            {
                "status": found.status,
                "finished": found.status != Extraction.Status.EXTRACTING,
                "done": job.progress_done if job else 0,
                "total": job.progress_total if job else None,
                "percent": job.percent if job else None,
                "count": found.count,
            }
        )
    fed = extraction.fed(found)
    ctx = {
        "e": found,
        "job": job,
        "fed": fed,
        "description": extraction.describe_conditions(found),
        "can_send": request.user.has_right("sending"),
        "can_mail": request.user.has_right("mails"),
    }
    return render(request, "mailings/extractions/detail.html", ctx)


@require_POST
@require_right("sending")
def extraction_discard(request: HttpRequest, extraction_id: int) -> HttpResponse:
    found = _get(extraction_id)
    try:
        extraction.discard_extraction(found, request)
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
    else:
        messages.success(request, _("Extraction #%(id)s discarded.") % {"id": found.pk})
    return redirect("mailings:extraction", found.pk)


@require_POST
@require_right("sending")
def extraction_purge(request: HttpRequest) -> HttpResponse:
    """Purge now what the nightly task purges: lists and ledger detail past retention."""
    done = reports.purge_expired()
    messages.success(
        request,
        _("Purged %(lists)s lists and the detail of %(deliveries)s deliveries.")
        % {"lists": done.get("lists", 0), "deliveries": done["deliveries"]},
    )
    return redirect("mailings:extractions")


@require_right("mails")
def extraction_continue(request: HttpRequest, extraction_id: int) -> HttpResponse:
    """New spot-delivery settings with the extraction's list as the target (続行)."""
    found = _get(extraction_id)
    try:
        mail = extraction.new_mail_for(found, request.user)
    except ValidationError as e:
        messages.error(request, " ".join(e.messages))
        return redirect("mailings:extraction", found.pk)
    return _form_page(request, mail, {"extraction": found})
