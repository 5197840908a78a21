"""Operator screens for the customer master database: the customer list with its filter builder,
customer detail and edit, database design, database views, import and export."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from django import forms as djforms
from django.conf import settings
from django.contrib import messages
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.db import transaction
from django.db.models import ProtectedError, QuerySet
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.utils.translation import ngettext, pgettext
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from okuru.accounts import audit, jobs
from okuru.accounts.access import CUSTOMER_DATA_RIGHT, check_rights, require_right
from okuru.accounts.models import Job
from okuru.bounces import suppression
from okuru.customers import design, exporter, filters
from okuru.customers import jobs as customer_jobs
from okuru.customers.fields import STANDARD, FieldSpec, catalogue, format_value, row_value
from okuru.customers.forms import (
    CustomerForm,
    ExportForm,
    FieldAddForm,
    FieldEditForm,
    ImportForm,
    TopicForm,
    ViewForm,
)
from okuru.customers.models import Customer, ExportSetting, Field, Topic, View

PAGE_SIZE = 50
NUMERIC = ("integer", "number")
DEFAULT_COLUMNS = ("customer_id", "email", "mobile_email")
DEFAULT_USER_COLUMNS = 6
# Exports up to this many rows stream straight to the browser; bigger ones run as a job so a
# slow download cannot hold a web worker for minutes.
STREAM_EXPORT_MAX_ROWS = 50_000
# Filter trees travel in the query string; refuse absurd sizes before parsing.
MAX_FILTER_CHARS = 100_000

# ---------------------------------------------------------------------------------------------
# Shared helpers


def _int_param(request: HttpRequest, name: str) -> int | None:
    value = request.GET.get(name, "")
    return int(value) if value.isdigit() else None


def _display(spec: FieldSpec, value: Any) -> str:
    """A stored value as the list shows it (not neutralised: this is HTML, not a spreadsheet)."""
    if value is None or value == "" or value == []:
        return ""
    if spec.type == "flag":
        return "✓" if value else ""
    if spec.type == "multiselect":
        return ", ".join(str(v) for v in value)
    if spec.type in ("datetime", "number", "integer"):
        return format_value(spec, value)
    return str(value)


def _builder(specs: dict[str, FieldSpec]) -> dict[str, Any]:
    """What the filter builder script needs: the fields and its translated words."""
    topics = dict(Topic.objects.values_list("key", "name"))
    return {
        "fields": [
            {
                "key": s.key,
                "label": capfirst(str(s.label)),
                "type": s.type,
                "choices": list(s.choices),
                "choiceLabels": topics if s.key == "unsubscribed" else {},
            }
            for s in specs.values()
        ],
        "ops": {
            "has_value": _("has a value"),
            "no_value": _("has no value"),
            "eq": _("equals"),
            "ne": _("does not equal"),
            "contains": _("contains"),
            "starts_with": _("starts with"),
            "lt": _("less than"),
            "gt": _("greater than"),
            "lt_date": _("before"),
            "gt_date": _("after"),
            "between": _("between"),
            "in": _("is one of"),
            "in_multi": _("includes any of"),
            "ne_multi": _("includes none of"),
        },
        "words": {
            "all": _("All of these conditions (AND)"),
            "any": _("Any of these conditions (OR)"),
            # A context keeps these apart from Django's own "and"/"or" (list joining).
            "and": pgettext("filter conditions", "and"),
            "or": pgettext("filter conditions", "or"),
            "addCondition": _("+ Condition"),
            "addGroup": _("+ Group"),
            "remove": _("Remove"),
            "removeGroup": _("Remove this group"),
            "empty": _("No conditions: every customer matches."),
            "yes": _("Yes"),
            "no": _("No"),
            "onePerLine": _("One value per line"),
            "unknownField": _("Unknown field"),
            "otherCondition": _("Other condition"),
            "counting": _("Counting…"),
            "field": _("Field"),
            "operator": _("Operator"),
            "value": _("Value"),
        },
    }


def builder_context(specs: dict[str, FieldSpec], tree: dict | str | None) -> dict[str, Any]:
    if not isinstance(tree, str):
        tree = json.dumps(tree or {"match": "all", "conditions": []}, ensure_ascii=False)
    return {"builder": _builder(specs), "filter_json": tree}


def picker_fields(specs: dict[str, FieldSpec], chosen: list[str]) -> dict[str, Any]:
    """Available and chosen fields for the field picker, chosen ones in their order."""
    return {
        "chosen_fields": [(k, capfirst(specs[k].label)) for k in chosen if k in specs],
        "available_fields": [(k, capfirst(s.label)) for k, s in specs.items() if k not in chosen],
    }


def _filter_param(request: HttpRequest) -> str | None:
    raw = request.GET.get("filter")
    if raw is not None and len(raw) > MAX_FILTER_CHARS:
        raise filters.FilterError(_("The filter is too long."))
    return raw


# ---------------------------------------------------------------------------------------------
# Customer list, count, detail


def _columns(specs: dict[str, FieldSpec], view: View | None) -> list[FieldSpec]:
    if view is not None:
        # The list always shows the Customer ID: it is the link to the customer.
        keys = [k for k in view.fields if k in specs]
        return [specs[k] for k in (keys if "customer_id" in keys else ["customer_id", *keys])]
    user = [s for s in specs.values() if not s.standard][:DEFAULT_USER_COLUMNS]
    return [specs[k] for k in DEFAULT_COLUMNS] + user + [specs["updated_at"]]


def _page(qs: QuerySet[Customer], after: int | None, before: int | None) -> dict[str, Any]:
    """One keyset page in Customer ID order: a single query whatever the page number."""
    if before is not None:
        rows = list(qs.filter(id__lt=before).order_by("-id")[: PAGE_SIZE + 1])
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE][::-1]
        return {
            "rows": rows,
            "prev": rows[0].id if rows and more else None,
            "next": rows[-1].id if rows else None,
        }
    if after is not None:
        qs = qs.filter(id__gt=after)
    rows = list(qs.order_by("id")[: PAGE_SIZE + 1])
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return {
        "rows": rows,
        "prev": rows[0].id if rows and after is not None else None,
        "next": rows[-1].id if rows and more else None,
    }


def _selected_view(request: HttpRequest) -> View | None:
    view_id = _int_param(request, "view")
    return View.objects.filter(pk=view_id).first() if view_id else None


@require_right("customers_read")
def customer_list(request: HttpRequest) -> HttpResponse:
    specs = catalogue()
    view = _selected_view(request)
    ctx: dict[str, Any] = {"view": view, "views": View.objects.only("id", "name")}
    try:
        raw = _filter_param(request)
        # Choosing a view without a filter of one's own loads the view's filter.
        tree = filters.parse_tree(view.filter if raw is None and view else raw)
        total = filters.count(tree, specs)
    except filters.FilterError as e:
        shown = request.GET.get("filter") or (json.dumps(view.filter) if view else "")
        ctx.update(builder_context(specs, shown[:MAX_FILTER_CHARS]))
        ctx.update(filter_error=str(e), columns=[], rows=[])
        return render(request, "customers/list.html", ctx)
    after, before = _int_param(request, "after"), _int_param(request, "before")
    page = _page(filters.filtered(tree, specs), after, before)
    columns = _columns(specs, view)
    keep = {"filter": json.dumps(tree, ensure_ascii=False)}
    if view is not None:
        keep["view"] = str(view.pk)
    ctx.update(builder_context(specs, tree))
    ctx.update(
        total=total,
        total_display=f"{total:,}",
        columns=columns,
        rows=[
            (c, [(s.key, _display(s, row_value(s, c)), s.type in NUMERIC) for s in columns])
            for c in page["rows"]
        ],
        prev_url="?" + urlencode({**keep, "before": page["prev"]}) if page["prev"] else "",
        next_url="?" + urlencode({**keep, "after": page["next"]}) if page["next"] else "",
        first_url="?" + urlencode(keep),
        paged=after is not None or before is not None,
        can_write=request.user.has_right("customers_write"),
    )
    return render(request, "customers/list.html", ctx)


@require_GET
@require_right("customers_read")
def customer_count(request: HttpRequest) -> JsonResponse:
    """The builder's live count: one COUNT(*) for the tree in ``?filter=``."""
    try:
        n = filters.count(_filter_param(request))
    except filters.FilterError as e:
        return JsonResponse({"error": str(e)}, status=400)
    text = ngettext("%(count)s customer matches", "%(count)s customers match", n) % {
        "count": f"{n:,}"
    }
    return JsonResponse({"count": n, "text": text})


def _customer_page(
    request: HttpRequest, form: CustomerForm, customer: Customer | None
) -> HttpResponse:
    specs = form.specs
    return render(
        request,
        "customers/detail.html",
        {
            "form": form,
            "customer": customer,
            "can_write": request.user.has_right("customers_write"),
            "readonly": [
                (capfirst(s.label), _display(s, row_value(s, customer)))
                for s in STANDARD
                if s.readonly and customer is not None
            ],
            "shown": [
                (capfirst(s.label), _display(s, row_value(s, customer))) for s in specs.values()
            ]
            if customer is not None
            else [],
        },
    )


def _save_customer(request: HttpRequest, form: CustomerForm, action: str) -> Customer | None:
    if not form.is_valid():
        return None
    try:
        customer = form.save()
    except djforms.ValidationError as e:
        form.add_error(None, e)
        return None
    audit.log(request, action, str(customer.pk), {"fields": sorted(form.values)})
    return customer


@require_right("customers_read")
def customer_detail(request: HttpRequest, customer_id: int) -> HttpResponse:
    customer = get_object_or_404(Customer, pk=customer_id)
    specs = catalogue()
    if request.method == "POST":
        check_rights(request.user, "customers_write")
        form = CustomerForm(specs, request.POST, customer=customer)
        if _save_customer(request, form, "customer_update"):
            messages.success(request, _("Customer %(id)s saved.") % {"id": customer.pk})
            return redirect("customers:detail", customer.pk)
    else:
        form = CustomerForm(specs, customer=customer)
    return _customer_page(request, form, customer)


@require_right("customers_read", "customers_write")
def customer_create(request: HttpRequest) -> HttpResponse:
    specs = catalogue()
    form = CustomerForm(specs, request.POST or None)
    if request.method == "POST":
        customer = _save_customer(request, form, "customer_create")
        if customer is not None:
            messages.success(request, _("Customer %(id)s created.") % {"id": customer.pk})
            return redirect("customers:detail", customer.pk)
    return _customer_page(request, form, None)


@require_right("customers_read", "customers_write")
def customer_delete(request: HttpRequest, customer_id: int) -> HttpResponse:
    customer = get_object_or_404(Customer, pk=customer_id)
    if request.method == "POST":
        with transaction.atomic():
            suppression.remember_customer(customer)
            customer.delete()
            audit.log(request, "customer_delete", str(customer_id))
        messages.success(request, _("Customer %(id)s deleted.") % {"id": customer_id})
        return redirect("customers:list")
    return render(request, "customers/delete.html", {"customer": customer})


# ---------------------------------------------------------------------------------------------
# Database views (データベース・ビュー)

# What a new view starts with: enough to be delivery-eligible.
NEW_VIEW_FIELDS = ["customer_id", "email", "email_error_count", "refused", "unsubscribed"]


def _get_view(view_id: int) -> View:
    return get_object_or_404(View, pk=view_id)


@require_right("customers_read")
def view_list(request: HttpRequest) -> HttpResponse:
    specs = catalogue()
    views = [
        (v, [capfirst(str(specs[k].label)) if k in specs else k for k in v.fields])
        for v in View.objects.select_related("owner")
    ]
    return render(
        request,
        "customers/views.html",
        {"views": views, "can_write": request.user.has_right("customers_write")},
    )


def _view_form_page(request: HttpRequest, form: ViewForm, view: View | None) -> HttpResponse:
    tree = form.data.get("filter", "") if form.is_bound else (view.filter if view else None)
    ctx = {"form": form, "view": view}
    ctx.update(builder_context(form.specs, tree))
    ctx.update(picker_fields(form.specs, form.chosen))
    return render(request, "customers/view_form.html", ctx)


@require_right("customers_read", "customers_write")
def view_create(request: HttpRequest) -> HttpResponse:
    specs = catalogue()
    form = ViewForm(specs, request.POST or None)
    if not form.is_bound:
        form.chosen = list(NEW_VIEW_FIELDS)
    if form.is_bound and form.is_valid():
        with transaction.atomic():
            view = View.objects.create(
                name=form.cleaned_data["name"],
                filter=form.cleaned_data["filter"],
                fields=form.cleaned_data["fields"],
                owner=request.user,
            )
            audit.log(request, "view_create", view.name, {"id": view.pk, "fields": view.fields})
        messages.success(request, _("View “%(name)s” saved.") % {"name": view.name})
        return redirect("customers:views")
    return _view_form_page(request, form, None)


@require_right("customers_read", "customers_write")
def view_edit(request: HttpRequest, view_id: int) -> HttpResponse:
    view = _get_view(view_id)
    form = ViewForm(catalogue(), request.POST or None, instance=view)
    if form.is_bound and form.is_valid():
        with transaction.atomic():
            view.name = form.cleaned_data["name"]
            view.filter = form.cleaned_data["filter"]
            view.fields = form.cleaned_data["fields"]
            view.save(update_fields=["name", "filter", "fields"])
            audit.log(request, "view_update", view.name, {"id": view.pk, "fields": view.fields})
        messages.success(request, _("View “%(name)s” saved.") % {"name": view.name})
        return redirect("customers:views")
    return _view_form_page(request, form, view)


@require_right("customers_read", "customers_write")
def view_delete(request: HttpRequest, view_id: int) -> HttpResponse:
    view = _get_view(view_id)
    if request.method == "POST":
        try:
            with transaction.atomic():
                view.delete()
                audit.log(request, "view_delete", view.name, {"id": view_id})
        except ProtectedError:
            messages.error(request, _("This view is in use and cannot be deleted."))
            return redirect("customers:views")
        messages.success(request, _("View “%(name)s” deleted.") % {"name": view.name})
        return redirect("customers:views")
    return render(request, "customers/view_delete.html", {"view": view})


# ---------------------------------------------------------------------------------------------
# Database design (データベース設計): fields and newsletter topics


def _get_field(key: str) -> Field:
    return get_object_or_404(Field, key=key)


def _get_topic(topic_id: int) -> Topic:
    return get_object_or_404(Topic, pk=topic_id)


def _design_page(request: HttpRequest, topic_form: TopicForm | None = None) -> HttpResponse:
    specs = catalogue()
    return render(
        request,
        "customers/design.html",
        {
            "standard": [s for s in specs.values() if s.standard],
            "fields": Field.objects.all(),
            "topics": Topic.objects.order_by("id"),
            "topic_form": topic_form or TopicForm(),
            "types": dict(Field.Type.choices),
        },
    )


@require_right("database_design")
def design_page(request: HttpRequest) -> HttpResponse:
    return _design_page(request)


@require_right("database_design")
def field_add(request: HttpRequest) -> HttpResponse:
    form = FieldAddForm(request.POST or None)
    if form.is_bound and form.is_valid():
        d = form.cleaned_data
        try:
            field = design.add_field(
                d["key"],
                d["label"],
                d["type"],
                choices=d["choices"],
                required=d["required"],
                unique=d["unique"],
                actor=request,
            )
        except design.DesignError as e:
            form.add_error(None, str(e))
        else:
            messages.success(request, _("Field “%(label)s” added.") % {"label": field.label})
            return redirect("customers:design")
    return render(request, "customers/field_form.html", {"form": form})


@require_right("database_design")
def field_edit(request: HttpRequest, key: str) -> HttpResponse:
    field = _get_field(key)
    form = FieldEditForm(request.POST or None, instance=field)
    if form.is_bound and form.is_valid():
        label, options = form.cleaned_data["label"], form.options()
        try:
            # Both changes or neither.
            # Options first, so an error about them names the field as the operator knows it.
            with transaction.atomic():
                if options:
                    design.set_field_options(key, **options, actor=request)
                if label != field.label:
                    design.rename_field(key, label, actor=request)
        except design.DesignError as e:
            form.add_error(None, str(e))
        else:
            messages.success(request, _("Field “%(label)s” saved.") % {"label": label})
            return redirect("customers:design")
    return render(request, "customers/field_form.html", {"form": form, "field": field})


@require_right("database_design")
def field_delete(request: HttpRequest, key: str) -> HttpResponse:
    field = _get_field(key)
    if request.method == "POST":
        try:
            design.delete_field(key, actor=request)
        except design.DesignError as e:
            messages.error(request, str(e))
            return redirect("customers:design")
        messages.success(request, _("Field “%(label)s” deleted.") % {"label": field.label})
        return redirect("customers:design")
    in_use = filters.count({"match": "all", "conditions": [{"field": key, "op": "has_value"}]})
    return render(request, "customers/field_delete.html", {"field": field, "in_use": in_use})


def _topic_users(topic: Topic) -> int:
    tree = {
        "match": "all",
        "conditions": [{"field": "unsubscribed", "op": "in", "value": [topic.key]}],
    }
    return filters.count(tree)


@require_POST
@require_right("database_design")
def topic_add(request: HttpRequest) -> HttpResponse:
    form = TopicForm(request.POST)
    if not form.is_valid():
        return _design_page(request, topic_form=form)
    with transaction.atomic():
        topic = Topic.objects.create(key=form.cleaned_data["key"], name=form.cleaned_data["name"])
        audit.log(request, "topic_add", topic.key, {"name": topic.name})
    messages.success(request, _("Topic “%(name)s” added.") % {"name": topic.name})
    return redirect("customers:design")


@require_right("database_design")
def topic_edit(request: HttpRequest, topic_id: int) -> HttpResponse:
    topic = _get_topic(topic_id)
    form = TopicForm(request.POST or None, instance=topic)
    if form.is_bound and form.is_valid():
        with transaction.atomic():
            old, topic.name = topic.name, form.cleaned_data["name"]
            topic.save(update_fields=["name"])
            audit.log(request, "topic_rename", topic.key, {"from": old, "to": topic.name})
        messages.success(request, _("Topic “%(name)s” saved.") % {"name": topic.name})
        return redirect("customers:design")
    return render(request, "customers/topic_form.html", {"form": form, "topic": topic})


@require_right("database_design")
def topic_delete(request: HttpRequest, topic_id: int) -> HttpResponse:
    topic = _get_topic(topic_id)
    # Deleting a topic that customers unsubscribed from would drop their choice silently;
    # the operator has to clear those flags first (an import can do it).
    in_use = _topic_users(topic)
    if request.method == "POST" and not in_use:
        with transaction.atomic():
            topic.delete()
            audit.log(request, "topic_delete", topic.key, {"name": topic.name})
        messages.success(request, _("Topic “%(name)s” deleted.") % {"name": topic.name})
        return redirect("customers:design")
    return render(request, "customers/topic_delete.html", {"topic": topic, "in_use": in_use})


# ---------------------------------------------------------------------------------------------
# Import


@csrf_exempt
@require_right("import_data")
def import_page(request: HttpRequest) -> HttpResponse:
    # The default handlers keep uploads under FILE_UPLOAD_MAX_MEMORY_SIZE in memory; send every
    # upload to a file on disk instead. This must happen before anything reads request.POST,
    # which is why CSRF is checked by the inner view rather than by the middleware.
    request.upload_handlers = [TemporaryFileUploadHandler(request)]
    return _import_page(request)


@csrf_protect
def _import_page(request: HttpRequest) -> HttpResponse:
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        job = customer_jobs.start_import(request, form.cleaned_data)
        return redirect("accounts:job", job.pk)
    recent = Job.objects.filter(kind="import", operator=request.user)[:10]
    return render(request, "customers/import.html", {"form": form, "recent": recent})


# ---------------------------------------------------------------------------------------------
# Export


def _export_page(request: HttpRequest, form: ExportForm) -> HttpResponse:
    tree = form.data.get("filter", "") if form.is_bound else form.initial.get("filter")
    ctx: dict[str, Any] = {
        "form": form,
        "settings_list": ExportSetting.objects.select_related("view"),
        "recent": Job.objects.filter(kind="export", operator=request.user)[:10],
        "stream_max": STREAM_EXPORT_MAX_ROWS,
    }
    ctx.update(builder_context(form.specs, tree))
    ctx.update(picker_fields(form.specs, form.chosen))
    return render(request, "customers/export.html", ctx)


def _export_initial(request: HttpRequest) -> tuple[dict[str, Any], list[str]]:
    """Form values from a saved export setting (?setting=) or the defaults."""
    setting = ExportSetting.objects.filter(pk=_int_param(request, "setting") or 0).first()
    if setting is None:
        return {}, list(DEFAULT_COLUMNS)
    initial = {
        "filter": json.dumps(setting.filter or {"match": "all", "conditions": []}),
        "view": setting.view_id,
        "encoding": setting.encoding,
        "save_as": setting.name,
    }
    return initial, list(setting.fields)


def _save_export_setting(request: HttpRequest, form: ExportForm) -> ExportSetting:
    d = form.cleaned_data
    with transaction.atomic():
        setting, created = ExportSetting.objects.update_or_create(
            name=d["save_as"].strip(),
            defaults={
                "fields": d["fields"],
                "filter": d["filter"],
                "view": d["view"],
                "encoding": d["encoding"],
                "owner": request.user,
            },
        )
        audit.log(request, "export_setting_save", setting.name, {"id": setting.pk})
    return setting


def _export_filename() -> str:
    from django.utils import timezone

    return timezone.localtime().strftime("customers-%Y%m%d-%H%M%S.csv")


def _export_body(fields: list[str], tree: dict, encoding: str) -> Any:
    """The CSV bytes to send. UTF-8 streams as it is read. CP932 cannot hold every character
    and the exporter stops at the first one it cannot write, which would cut a streamed
    download short without a word; so CP932 goes to a temporary file on disk first and a
    problem becomes a message on the form."""
    if encoding != "cp932":
        return exporter.iter_export_chunks(fields, tree, encoding)
    tmp = tempfile.TemporaryFile()
    try:
        exporter.write_export(tmp, fields, tree, encoding)
    except BaseException:
        tmp.close()
        raise
    tmp.seek(0)
    return FileResponse(tmp)


def _export_now(request: HttpRequest, form: ExportForm, tree: dict, rows: int) -> HttpResponse:
    d = form.cleaned_data
    try:
        body = _export_body(d["fields"], tree, d["encoding"])
    except exporter.ExportError as e:
        form.add_error(None, str(e))
        return _export_page(request, form)
    audit.log(
        request,
        "export",
        ngettext("%(count)s customer", "%(count)s customers", rows) % {"count": rows},
        {"fields": d["fields"], "filter": tree, "encoding": d["encoding"], "rows": rows},
    )
    charset = "cp932" if d["encoding"] == "cp932" else "utf-8"
    if isinstance(body, FileResponse):
        response = body
        response["Content-Type"] = f"text/csv; charset={charset}"
    else:
        response = StreamingHttpResponse(body, content_type=f"text/csv; charset={charset}")
    response["Content-Disposition"] = f'attachment; filename="{_export_filename()}"'
    return response


@require_right("customers_read", "export_data")
def export_page(request: HttpRequest) -> HttpResponse:
    specs = catalogue()
    if request.method != "POST":
        initial, chosen = _export_initial(request)
        return _export_page(request, ExportForm(specs, initial=initial, chosen=chosen))
    form = ExportForm(specs, request.POST)
    action = request.POST.get("action", "export")
    if action == "save" and not request.POST.get("save_as", "").strip():
        form.add_error("save_as", _("Give the settings a name to save them."))
    if not form.is_valid():
        return _export_page(request, form)
    if form.cleaned_data["save_as"].strip():
        setting = _save_export_setting(request, form)
        if action == "save":
            messages.success(
                request, _("Export settings “%(name)s” saved.") % {"name": setting.name}
            )
            return redirect(reverse("customers:export") + f"?setting={setting.pk}")
    try:
        # The view's own filter is checked only now: it may name a field deleted since.
        tree = form.tree()
        rows = filters.count(tree, specs)
    except filters.FilterError as e:
        form.add_error("view", str(e))
        return _export_page(request, form)
    if rows <= STREAM_EXPORT_MAX_ROWS:
        return _export_now(request, form, tree, rows)
    d = form.cleaned_data
    # The runner (customers/jobs.py) combines the view's filter with ours when it runs.
    params = {
        "fields": d["fields"],
        "filter": d["filter"],
        "view_id": d["view"].pk if d["view"] else None,
        "encoding": d["encoding"],
        "rows": rows,
    }
    job = jobs.start("export", request.user, params=params, source_ip=audit.client_ip(request))
    audit.log(request, "export_start", f"job {job.pk}", params)
    return redirect("accounts:job", job.pk)


@require_POST
@require_right("export_data")
def export_setting_delete(request: HttpRequest, setting_id: int) -> HttpResponse:
    setting = get_object_or_404(ExportSetting, pk=setting_id)
    with transaction.atomic():
        setting.delete()
        audit.log(request, "export_setting_delete", setting.name, {"id": setting_id})
    messages.success(request, _("Export settings “%(name)s” deleted.") % {"name": setting.name})
    return redirect("customers:export")


def _get_export_job_for_user(request: HttpRequest, job_id: int) -> Job:
    job = Job.objects.filter(pk=job_id, kind="export").first()
    if job is None or (
        job.operator_id != request.user.pk and not request.user.has_right("operators_admin")
    ):
        raise Http404
    return job


def _export_file(job: Job) -> Path:
    """The finished export's file, which only the export runner names (never a parameter);
    it must still lie under the media directory."""
    if job.status != Job.Status.SUCCEEDED or not job.output_file:
        raise Http404
    path = Path(job.output_file).resolve()
    if not path.is_relative_to(Path(settings.MEDIA_ROOT).resolve()) or not path.is_file():
        raise Http404
    return path


# The file holds customer data: having exported it once is not enough to fetch it later.
@require_right(CUSTOMER_DATA_RIGHT, "export_data")
def export_download(request: HttpRequest, job_id: int) -> FileResponse:
    job = _get_export_job_for_user(request, job_id)
    path = _export_file(job)
    audit.log(request, "export_download", f"job {job.pk}", {"file": path.name})
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name)
