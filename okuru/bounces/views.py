"""Bounce screens: received bounces, the queue of messages kept for a human, list cleaning, and
the bounce mailboxes.

Rights: bounces and list cleaning are deliverability work, next to the relays, so they need
Sending; they show addresses and whole messages, which are customer data, so they also need
Customers: read. The list cleaning export needs Export as every export does. Mailbox settings
hold no customer data: Sending alone.

The SNS webhook is the one public view: Amazon SNS calls it without logging in, and its
authenticity comes only from the message signature (``sns.py``). It does not exist (404) until
``OKURU_SNS_TOPIC_ARNS`` names the topics it accepts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from okuru.accounts import audit
from okuru.accounts.access import require_right
from okuru.bounces import actions, mailboxes, sns
from okuru.bounces.models import Bounce, Mailbox
from okuru.customers.fields import neutralize
from okuru.lib import csvio
from okuru.mailings.models import ListCleaning

PAGE_SIZE = 50
EXPORT_CHUNK = 2000
BOUNCE_RIGHTS = ("sending", "customers_read")


def _page(request: HttpRequest, qs: Any) -> Any:
    return Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))


# ---------------------------------------------------------------------------------------------
# Bounces and the queue


@require_right(*BOUNCE_RIGHTS)
def bounce_list(request: HttpRequest) -> HttpResponse:
    qs = Bounce.objects.select_related("delivery__mail").defer("raw", "report")
    outcome = request.GET.get("outcome", "")
    if outcome in Bounce.Outcome.values:
        qs = qs.filter(outcome=outcome)
    q = request.GET.get("q", "").strip()
    if q:
        qs = qs.filter(address__icontains=q)
    ctx = {
        "page": _page(request, qs),
        "outcome": outcome,
        "q": q,
        "outcomes": Bounce.Outcome.choices,
        "queued": Bounce.objects.filter(outcome__in=Bounce.QUEUE).count(),
    }
    return render(request, "bounces/list.html", ctx)


@require_right(*BOUNCE_RIGHTS)
def bounce_queue(request: HttpRequest) -> HttpResponse:
    qs = Bounce.objects.filter(outcome__in=Bounce.QUEUE).defer("raw", "report")
    return render(request, "bounces/queue.html", {"page": _page(request, qs)})


@require_right(*BOUNCE_RIGHTS)
def bounce_detail(request: HttpRequest, bounce_id: int) -> HttpResponse:
    bounce = get_object_or_404(Bounce.objects.select_related("delivery__mail"), pk=bounce_id)
    raw = bytes(bounce.raw)
    ctx = {
        "bounce": bounce,
        # The bytes as text for reading: undecodable bytes shown as escapes, never an error.
        "raw_text": raw[:200_000].decode("utf-8", "backslashreplace"),
        "raw_cut": len(raw) > 200_000,
    }
    return render(request, "bounces/detail.html", ctx)


@require_POST
@require_right(*BOUNCE_RIGHTS)
def bounce_reparse(request: HttpRequest, bounce_id: int) -> HttpResponse:
    bounce = get_object_or_404(Bounce, pk=bounce_id)
    if not bounce.in_queue:
        messages.error(request, _("Only a message in the queue can be parsed again."))
        return redirect("bounces:detail", bounce.pk)
    bounce = actions.reparse(request, bounce.pk)
    if bounce.in_queue:
        messages.warning(
            request,
            _("Parsed again: %(outcome)s. The message stays in the queue.")
            % {"outcome": bounce.get_outcome_display()},
        )
    else:
        messages.success(
            request, _("Parsed again: %(outcome)s.") % {"outcome": bounce.get_outcome_display()}
        )
    return redirect("bounces:detail", bounce.pk)


@require_POST
@require_right(*BOUNCE_RIGHTS)
def bounce_discard(request: HttpRequest, bounce_id: int) -> HttpResponse:
    bounce = get_object_or_404(Bounce, pk=bounce_id)
    if not bounce.in_queue:
        messages.error(request, _("Only a message in the queue can be discarded."))
        return redirect("bounces:detail", bounce.pk)
    actions.discard(request, bounce.pk)
    messages.success(request, _("Message #%(id)s discarded; it is kept.") % {"id": bounce.pk})
    return redirect("bounces:queue")


# ---------------------------------------------------------------------------------------------
# List cleaning


def _cleaning(request: HttpRequest) -> tuple[Any, str]:
    qs = ListCleaning.objects.order_by("-created", "-id")
    q = request.GET.get("q", "").strip()
    if q:
        qs = qs.filter(address__icontains=q.lower())
    return qs, q


@require_right(*BOUNCE_RIGHTS)
def list_cleaning(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        ids = [i for i in request.POST.getlist("entry") if i.isdigit()]
        if not ids:
            messages.error(request, _("Choose the entries to remove."))
        else:
            removed = actions.remove_list_cleaning(request, ids)
            messages.success(
                request,
                _("%(n)s entries removed: those addresses will be mailed again.") % {"n": removed},
            )
        return redirect(request.get_full_path())
    qs, q = _cleaning(request)
    ctx = {"page": _page(request, qs), "q": q, "total": ListCleaning.objects.count()}
    return render(request, "bounces/list_cleaning.html", ctx)


def _cleaning_rows(qs: Any) -> Iterator[bytes]:
    writer = csvio.ChunkWriter("utf-8-sig")
    writer.writerow([_("Address"), _("Error kind"), _("Added")])
    rows = qs.values_list("address", "reason", "created").iterator(chunk_size=EXPORT_CHUNK)
    for n, (address, reason, created) in enumerate(rows, 1):
        when = timezone.localtime(created).strftime("%Y-%m-%d %H:%M:%S")
        writer.writerow([neutralize(address), reason, when])
        if n % EXPORT_CHUNK == 0:
            yield writer.take()
    yield writer.take()


@require_right(*BOUNCE_RIGHTS, "export_data")
def list_cleaning_export(request: HttpRequest) -> HttpResponse:
    qs, q = _cleaning(request)
    audit.log(request, "list_cleaning.export", "", {"filter": q} if q else {})
    response = StreamingHttpResponse(_cleaning_rows(qs), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="list-cleaning.csv"'
    return response


# ---------------------------------------------------------------------------------------------
# Mailboxes


class MailboxForm(forms.ModelForm):
    """A mailbox's settings. The stored password is never rendered: a blank field keeps it."""

    new_password = forms.CharField(
        label=gettext_lazy("password"),
        required=False,
        strip=False,
        help_text=gettext_lazy("Leave blank to keep the stored password."),
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = Mailbox
        fields = [
            "name", "protocol", "host", "port", "security", "verify_tls", "username", "folder",
            "enabled",
        ]  # fmt: skip

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not self.instance.pk and not data.get("new_password"):
            self.add_error("new_password", _("Give the mailbox's password."))
        return data


@require_right("sending")
def mailbox_list(request: HttpRequest) -> HttpResponse:
    return render(request, "bounces/mailboxes.html", {"mailboxes": Mailbox.objects.all()})


def _mailbox_page(request: HttpRequest, mailbox: Mailbox) -> HttpResponse:
    form = MailboxForm(request.POST or None, instance=mailbox)
    if request.method == "POST" and form.is_valid():
        password = form.cleaned_data.get("new_password") or None
        try:
            actions.save_mailbox(request, form.save(commit=False), password)
        except ValidationError as e:
            form.add_error(None, e)
        else:
            messages.success(request, _("Mailbox %(name)s saved.") % {"name": mailbox.name})
            return redirect("bounces:mailboxes")
    return render(request, "bounces/mailbox_form.html", {"form": form, "mailbox": mailbox})


@require_right("sending")
def mailbox_create(request: HttpRequest) -> HttpResponse:
    return _mailbox_page(request, Mailbox(protocol=Mailbox.Protocol.IMAP, port=993))


@require_right("sending")
def mailbox_edit(request: HttpRequest, mailbox_id: int) -> HttpResponse:
    return _mailbox_page(request, get_object_or_404(Mailbox, pk=mailbox_id))


@require_POST
@require_right("sending")
def mailbox_test(request: HttpRequest, mailbox_id: int) -> HttpResponse:
    mailbox = get_object_or_404(Mailbox, pk=mailbox_id)
    try:
        waiting = mailboxes.test(mailbox)
    except mailboxes.MailboxError as e:
        audit.log(request, "mailbox.test", mailbox.name, {"reason": "failed"})
        messages.error(request, str(e))
    else:
        audit.log(request, "mailbox.test", mailbox.name, {"count": waiting})
        messages.success(
            request,
            _("%(name)s: logged in, %(n)s messages waiting.")
            % {"name": mailbox.name, "n": waiting},
        )
    return redirect("bounces:mailboxes")


@require_POST
@require_right("sending")
def mailbox_delete(request: HttpRequest, mailbox_id: int) -> HttpResponse:
    mailbox = get_object_or_404(Mailbox, pk=mailbox_id)
    actions.delete_mailbox(request, mailbox)
    messages.success(request, _("Mailbox %(name)s deleted.") % {"name": mailbox.name})
    return redirect("bounces:mailboxes")


# ---------------------------------------------------------------------------------------------
# Amazon SES notifications by Amazon SNS


@csrf_exempt
@require_POST
def sns_webhook(request: HttpRequest) -> HttpResponse:
    if not settings.OKURU_SNS_TOPIC_ARNS:
        raise Http404
    answer = sns.handle(request.body, request.headers.get("x-amz-sns-message-type", ""))
    return HttpResponse(answer.text, status=answer.status, content_type="text/plain; charset=utf-8")
