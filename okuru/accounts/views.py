from __future__ import annotations

import math
from datetime import datetime, time, timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, login, logout, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm, SetPasswordForm
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db import transaction
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render, resolve_url
from django.template import TemplateDoesNotExist
from django.template.loader import select_template
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views import i18n
from django.views.decorators.http import require_POST

from okuru.accounts import audit, forms, jobs
from okuru.accounts.access import CUSTOMER_DATA_BY_RIGHT, require_right, right_labels
from okuru.accounts.models import RIGHTS, ApiToken, Job, Notification, OperationLog, Operator

PAGE_SIZE = 50


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """The 403 page (``handler403``): it shows the reason, which names the missing right."""
    message = str(exception or "") or _("You do not have the right to do this.")
    return render(request, "accounts/403.html", {"message": message}, status=403)


def _safe_next(request: HttpRequest, default: str = "/") -> str:
    nxt = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        nxt, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return nxt
    return default


def _page(request: HttpRequest, qs: QuerySet, size: int = PAGE_SIZE) -> Page:
    return Paginator(qs, size).get_page(request.GET.get("page"))


def _query_without_page(request: HttpRequest) -> str:
    params = request.GET.copy()
    params.pop("page", None)
    return params.urlencode()


# ---------------------------------------------------------------------------------------------
# Log in, log out, language


def _locked_message(operator: Operator) -> str:
    minutes = max(1, math.ceil((operator.locked_until - timezone.now()).total_seconds() / 60))
    return ngettext(
        "Too many failed log-in attempts. Try again in %(minutes)d minute.",
        "Too many failed log-in attempts. Try again in %(minutes)d minutes.",
        minutes,
    ) % {"minutes": minutes}


def _attempt_login(request: HttpRequest, username: str, password: str) -> Operator | str:
    """The operator logged in, or the error to show."""
    operator = Operator.objects.filter(username=username).first()
    if operator is not None and operator.is_locked():
        # Checked before the password: a locked account gives nothing away to a guesser.
        audit.log(request, "login_refused_locked", username, operator=operator)
        return _locked_message(operator)
    user = authenticate(request, username=username, password=password)
    if user is not None:
        return user
    audit.log(request, "login_failed", username, operator=operator)
    if operator is not None and operator.record_failed_login():
        audit.log(request, "account_locked", username, operator=operator)
        return _locked_message(operator)
    return _("Wrong user name or password.")


def login_view(request: HttpRequest) -> HttpResponse:
    error = ""
    if request.method == "POST":
        outcome = _attempt_login(
            request, request.POST.get("username", ""), request.POST.get("password", "")
        )
        if isinstance(outcome, str):
            error = outcome
        else:
            outcome.record_successful_login()
            login(request, outcome)
            audit.log(request, "login", outcome.get_username())
            response = redirect(_safe_next(request, resolve_url(settings.LOGIN_REDIRECT_URL)))
            if outcome.language:
                _set_language_cookie(response, outcome.language)
            return response
    return render(request, "accounts/login.html", {"error": error, "next": _safe_next(request, "")})


def _set_language_cookie(response: HttpResponse, language: str) -> None:
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        language,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        path=settings.LANGUAGE_COOKIE_PATH,
        domain=settings.LANGUAGE_COOKIE_DOMAIN,
        secure=settings.LANGUAGE_COOKIE_SECURE,
        httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
        samesite=settings.LANGUAGE_COOKIE_SAMESITE,
    )


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        audit.log(request, "logout", request.user.get_username())
    logout(request)
    return redirect("accounts:login")


def set_language(request: HttpRequest) -> HttpResponse:
    """Django's language switch, which also keeps the choice as the operator's preference
    (so it follows them to another browser at the next log-in)."""
    response = i18n.set_language(request)
    language = request.POST.get("language", "")
    user = request.user
    if (
        request.method == "POST"
        and user.is_authenticated
        and language in dict(settings.LANGUAGES)
        and language != user.language
    ):
        Operator.objects.filter(pk=user.pk).update(language=language)
        audit.log(request, "language_change", user.get_username(), {"language": language})
    return response


# ---------------------------------------------------------------------------------------------
# Own profile: details, password, API tokens


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    user = request.user
    form = forms.ProfileForm(instance=user)
    if request.method == "POST":
        form = forms.ProfileForm(request.POST, instance=user)
        if form.is_valid():
            form.save()
            audit.log(
                request, "profile_update", user.get_username(), {"changed": form.changed_data}
            )
            messages.success(request, _("Your profile is saved."))
            response = redirect("accounts:profile")
            if user.language:
                _set_language_cookie(response, user.language)
            else:  # back to the browser's language
                response.delete_cookie(settings.LANGUAGE_COOKIE_NAME)
            return response
    return _render_profile(request, form=form)


def _render_profile(request: HttpRequest, **extra) -> HttpResponse:
    ctx = {
        "form": forms.ProfileForm(instance=request.user),
        "password_form": PasswordChangeForm(request.user),
        "token_form": forms.TokenForm(),
        "tokens": request.user.api_tokens.all(),
        "rights": [label for code, label in RIGHTS if request.user.has_right(code)],
    }
    ctx.update(extra)
    return render(request, "accounts/profile.html", ctx)


@login_required
@require_POST
def password_change(request: HttpRequest) -> HttpResponse:
    form = PasswordChangeForm(request.user, request.POST)
    if not form.is_valid():
        return _render_profile(request, password_form=form)
    form.save()
    update_session_auth_hash(request, form.user)
    audit.log(request, "password_change", request.user.get_username())
    messages.success(request, _("Your password is changed."))
    return redirect("accounts:profile")


@login_required
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    form = forms.TokenForm(request.POST)
    if not form.is_valid():
        return _render_profile(request, token_form=form)
    token, key = ApiToken.issue(request.user, form.cleaned_data["name"])
    audit.log(request, "api_token_create", token.name, {"token": token.pk})
    # The key is shown on this response only: it is stored hashed, so it cannot be shown again.
    return _render_profile(request, new_key=key, new_token=token)


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=token_id, operator=request.user)
    token.revoke()
    audit.log(request, "api_token_revoke", token.name, {"token": token.pk})
    messages.success(request, _("The token %(name)s is revoked.") % {"name": token.name})
    return redirect("accounts:profile")


# ---------------------------------------------------------------------------------------------
# Operators admin


def _get_operator_for_admin(request: HttpRequest, operator_id: int) -> Operator:
    operator = get_object_or_404(Operator, pk=operator_id)
    if operator.is_superuser and not request.user.is_superuser:
        raise PermissionDenied(_("Only a superuser can change a superuser."))
    return operator


@require_right("operators_admin")
def operators(request: HttpRequest) -> HttpResponse:
    qs = Operator.objects.order_by("username").prefetch_related("groups")
    return render(
        request, "accounts/operators.html", {"page": _page(request, qs), "now": timezone.now()}
    )


@require_right("operators_admin")
def operator_create(request: HttpRequest) -> HttpResponse:
    form = forms.OperatorCreateForm(request.POST or None, actor=request.user)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            operator = form.save()
            audit.log(request, "operator_create", operator.get_username(), _groups(form))
        messages.success(request, _("Operator %(name)s is created.") % {"name": operator})
        return redirect("accounts:operators")
    return render(request, "accounts/operator_form.html", {"form": form})


def _groups(form) -> dict:
    return {"groups": sorted(g.name for g in form.cleaned_data["groups"])}


@require_right("operators_admin")
def operator_edit(request: HttpRequest, operator_id: int) -> HttpResponse:
    operator = _get_operator_for_admin(request, operator_id)
    form = forms.OperatorForm(request.POST or None, instance=operator, actor=request.user)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            form.save()
            detail = {"changed": form.changed_data, **_groups(form)}
            audit.log(request, "operator_update", operator.get_username(), detail)
        messages.success(request, _("Operator %(name)s is saved.") % {"name": operator})
        return redirect("accounts:operators")
    return _render_operator_edit(request, operator, form=form)


def _render_operator_edit(request: HttpRequest, operator: Operator, **extra) -> HttpResponse:
    ctx = {
        "operator": operator,
        "form": forms.OperatorForm(instance=operator, actor=request.user),
        "password_form": SetPasswordForm(operator),
        "is_self": operator.pk == request.user.pk,
    }
    ctx.update(extra)
    return render(request, "accounts/operator_form.html", ctx)


@require_right("operators_admin")
@require_POST
def operator_password(request: HttpRequest, operator_id: int) -> HttpResponse:
    operator = _get_operator_for_admin(request, operator_id)
    form = SetPasswordForm(operator, request.POST)
    if not form.is_valid():
        return _render_operator_edit(request, operator, password_form=form)
    operator.failed_logins, operator.locked_until = 0, None
    form.save()
    operator.save(update_fields=["failed_logins", "locked_until"])
    if operator.pk == request.user.pk:
        update_session_auth_hash(request, operator)
    audit.log(request, "operator_password_reset", operator.get_username())
    messages.success(request, _("The password of %(name)s is changed.") % {"name": operator})
    return redirect("accounts:operator", operator.pk)


@require_right("operators_admin")
@require_POST
def operator_active(request: HttpRequest, operator_id: int) -> HttpResponse:
    operator = _get_operator_for_admin(request, operator_id)
    active = request.POST.get("active") == "1"
    if operator.pk == request.user.pk and not active:
        messages.error(request, _("You cannot deactivate yourself."))
        return redirect("accounts:operator", operator.pk)
    operator.is_active = active
    operator.save(update_fields=["is_active"])
    action = "operator_activate" if active else "operator_deactivate"
    audit.log(request, action, operator.get_username())
    if active:
        messages.success(request, _("Operator %(name)s is active again.") % {"name": operator})
    else:
        messages.success(request, _("Operator %(name)s is deactivated.") % {"name": operator})
    return redirect("accounts:operators")


@require_right("operators_admin")
@require_POST
def operator_unlock(request: HttpRequest, operator_id: int) -> HttpResponse:
    operator = _get_operator_for_admin(request, operator_id)
    operator.record_successful_login()
    audit.log(request, "operator_unlock", operator.get_username())
    messages.success(request, _("Operator %(name)s is unlocked.") % {"name": operator})
    return redirect("accounts:operator", operator.pk)


# ---------------------------------------------------------------------------------------------
# Permission groups


def _customer_data_table() -> dict[str, list[tuple[str, str]]]:
    """What each right lets an operator see of customer data, for the group form."""
    rows = [(right_labels([code])[0], str(text)) for code, text in CUSTOMER_DATA_BY_RIGHT]
    return {"customer_data": rows}


@require_right("operators_admin")
def groups(request: HttpRequest) -> HttpResponse:
    qs = (
        Group.objects.order_by("name")
        .annotate(members=Count("user", distinct=True))
        .prefetch_related("permissions")
    )
    labels = dict(RIGHTS)
    rows = [
        (g, [labels[p.codename] for p in g.permissions.all() if p.codename in labels]) for g in qs
    ]
    return render(request, "accounts/groups.html", {"rows": rows})


@require_right("operators_admin")
def group_create(request: HttpRequest) -> HttpResponse:
    form = forms.GroupForm(request.POST or None, actor=request.user)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            group = form.save()
            audit.log(request, "group_create", group.name, {"rights": form.cleaned_data["rights"]})
        messages.success(request, _("Permission group %(name)s is created.") % {"name": group})
        return redirect("accounts:groups")
    return render(request, "accounts/group_form.html", {"form": form, **_customer_data_table()})


@require_right("operators_admin")
def group_edit(request: HttpRequest, group_id: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=group_id)
    form = forms.GroupForm(request.POST or None, instance=group, actor=request.user)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            form.save()
            audit.log(request, "group_update", group.name, {"rights": form.cleaned_data["rights"]})
        messages.success(request, _("Permission group %(name)s is saved.") % {"name": group})
        return redirect("accounts:groups")
    members = group.user_set.order_by("username")
    return render(
        request,
        "accounts/group_form.html",
        {"form": form, "group": group, "members": members, **_customer_data_table()},
    )


@require_right("operators_admin")
@require_POST
def group_delete(request: HttpRequest, group_id: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=group_id)
    if not forms.keeps_admin_without_group(request.user, group):
        messages.error(
            request,
            _("You cannot delete this group: you would lose the operators admin right yourself."),
        )
        return redirect("accounts:group", group.pk)
    name = group.name
    with transaction.atomic():
        group.delete()
        audit.log(request, "group_delete", name)
    messages.success(request, _("Permission group %(name)s is deleted.") % {"name": name})
    return redirect("accounts:groups")


# ---------------------------------------------------------------------------------------------
# Operation log


def _local_midnight(day) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def filter_log(data: dict) -> QuerySet[OperationLog]:
    """The operation log narrowed by a cleaned LogFilterForm."""
    qs = OperationLog.objects.all()
    if data.get("operator"):
        qs = qs.filter(operator_name=data["operator"])
    if data.get("action"):
        qs = qs.filter(action=data["action"])
    if data.get("date_from"):
        qs = qs.filter(created__gte=_local_midnight(data["date_from"]))
    if data.get("date_to"):
        qs = qs.filter(created__lt=_local_midnight(data["date_to"] + timedelta(days=1)))
    if data.get("target"):
        qs = qs.filter(target__icontains=data["target"])
    return qs


@require_right("operators_admin")
def operation_log(request: HttpRequest) -> HttpResponse:
    form = forms.LogFilterForm(request.GET or None)
    if not form.is_bound:
        qs = OperationLog.objects.all()
    elif form.is_valid():
        qs = filter_log(form.cleaned_data)
    else:
        qs = OperationLog.objects.none()
    ctx = {
        "form": form,
        "page": _page(request, qs),
        "query": _query_without_page(request),
        # Operator names from the log itself: deleted operators stay searchable.
        "operator_names": Operator.objects.order_by("username").values_list("username", flat=True),
        "actions": OperationLog.objects.order_by("action")
        .values_list("action", flat=True)
        .distinct(),
    }
    return render(request, "accounts/log.html", ctx)


# ---------------------------------------------------------------------------------------------
# Jobs and notices


def _get_job_for_user(request: HttpRequest, job_id: int) -> Job:
    job = Job.objects.select_related("operator").filter(pk=job_id).first()
    if job is None or (
        job.operator_id != request.user.pk and not request.user.has_right("operators_admin")
    ):
        raise Http404
    return job


def jobs_visible_to(user: Operator) -> QuerySet[Job]:
    qs = Job.objects.select_related("operator")
    if not user.has_right("operators_admin"):
        qs = qs.filter(operator=user)
    return qs


@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    page = _page(request, jobs_visible_to(request.user))
    for job in page:
        job.kind_label = jobs.kind_label(job.kind)
    return render(
        request,
        "accounts/jobs.html",
        {"page": page, "all_operators": request.user.has_right("operators_admin")},
    )


def job_json(job: Job) -> dict:
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "status_display": job.get_status_display(),
        "finished": job.is_finished,
        "done": job.progress_done,
        "total": job.progress_total,
        "percent": job.percent,
        "result": job.result,
        "error": job.error,
    }


def _result_template(job: Job) -> str:
    """The job's result partial, when the app that owns the kind provides one."""
    if job.kind not in ("import", "export"):
        return ""
    try:
        return select_template(["customers/_job_result.html"]).template.name
    except TemplateDoesNotExist:
        return ""


@login_required
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = _get_job_for_user(request, job_id)
    job.result = jobs.result_for(job, request.user)  # shown, never saved
    wants_json = request.GET.get("format") == "json" or request.headers.get(
        "Accept", ""
    ).startswith("application/json")
    if wants_json:
        return JsonResponse(job_json(job))
    ctx = {
        "job": job,
        "kind_label": jobs.kind_label(job.kind),
        "result_template": _result_template(job),
    }
    return render(request, "accounts/job.html", ctx)


@login_required
def notices(request: HttpRequest) -> HttpResponse:
    page = _page(request, request.user.notifications.all())
    return render(request, "accounts/notices.html", {"page": page})


@login_required
@require_POST
def notices_read(request: HttpRequest) -> HttpResponse:
    qs = request.user.notifications.filter(read=False)
    if request.POST.get("id"):
        qs = qs.filter(pk=request.POST["id"])
    count = qs.update(read=True)
    if count:
        audit.log(request, "notices_read", "", {"count": count})
    return redirect("accounts:notices")


@login_required
def notice_open(request: HttpRequest, notice_id: int) -> HttpResponse:
    notice = get_object_or_404(Notification, pk=notice_id, operator=request.user)
    if not notice.read:
        Notification.objects.filter(pk=notice.pk).update(read=True)
    # Links are paths we wrote ourselves; refuse anything that would leave the site.
    if notice.link.startswith("/") and not notice.link.startswith("//"):
        return redirect(notice.link)
    return redirect("accounts:notices")
