from __future__ import annotations

from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from okuru.accounts import audit
from okuru.accounts.models import Job, Operator


def _safe_next(request: HttpRequest, default: str = "/") -> str:
    nxt = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        nxt, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return nxt
    return default


def login_view(request: HttpRequest) -> HttpResponse:
    error = ""
    if request.method == "POST":
        username = request.POST.get("username", "")
        password = request.POST.get("password", "")
        operator = Operator.objects.filter(username=username).first()
        if operator is not None and operator.is_locked():
            error = _("Too many failed attempts. This account is locked for a while.")
        else:
            user = authenticate(request, username=username, password=password)
            if user is None:
                if operator is not None:
                    operator.record_failed_login()
                error = _("Wrong user name or password.")
            else:
                user.record_successful_login()
                login(request, user)
                audit.log(request, "login", user.get_username())
                return redirect(_safe_next(request))
    return render(request, "accounts/login.html", {"error": error, "next": _safe_next(request, "")})


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("accounts:login")


def _get_job_for_user(request: HttpRequest, job_id: int) -> Job:
    job = Job.objects.filter(pk=job_id).first()
    if job is None or (
        job.operator_id != request.user.pk and not request.user.has_right("operators_admin")
    ):
        raise Http404
    return job


@login_required
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    if request.headers.get("Accept", "").startswith("application/json"):
        return JsonResponse(
            {
                "id": job.pk,
                "kind": job.kind,
                "status": job.status,
                "done": job.progress_done,
                "total": job.progress_total,
                "percent": job.percent,
                "result": job.result,
                "error": job.error,
            }
        )
    return render(request, "accounts/job.html", {"job": job})
