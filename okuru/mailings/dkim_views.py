"""Screens for the DKIM keys of the sender domains (right ``sending``, as the relays): the list
with a form to add a key, a key's DNS record, activate and delete. The named actions are in
``okuru.mailings.dkim_keys``; no screen renders a private key."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from okuru.accounts.access import require_right
from okuru.mailings import dkim_keys
from okuru.mailings.models import DkimKey


class KeyForm(forms.Form):
    domain = forms.CharField(
        label=gettext_lazy("Sender domain"),
        max_length=253,
        help_text=gettext_lazy(
            "The domain of the From address (shop.example). Mail from its subdomains is "
            "signed with its key too, unless they have keys of their own."
        ),
    )
    algorithm = forms.ChoiceField(
        label=gettext_lazy("Algorithm"),
        choices=DkimKey.Algorithm.choices,
        help_text=gettext_lazy(
            "RSA-2048 is checked by every receiver. Ed25519 is smaller and faster; add it "
            "beside an RSA key, as not every receiver checks it yet."
        ),
    )
    selector = forms.CharField(
        label=gettext_lazy("Selector"),
        max_length=63,
        required=False,
        help_text=gettext_lazy("Leave blank for okuru-ALGORITHM-YYYYMM."),
    )


def _get_key(key_id: int) -> DkimKey:
    return get_object_or_404(DkimKey, pk=key_id)


@require_right("sending")
def key_list(request: HttpRequest) -> HttpResponse:
    form = KeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            key = dkim_keys.add_key(
                form.cleaned_data["domain"],
                form.cleaned_data["algorithm"],
                request,
                selector=form.cleaned_data["selector"],
            )
        except ValidationError as e:
            for field, errors in e.message_dict.items() if hasattr(e, "error_dict") else []:
                form.add_error(field if field in form.fields else None, errors)
            if not hasattr(e, "error_dict"):
                form.add_error(None, e.messages)
        else:
            messages.success(
                request,
                _("DKIM key %(name)s added. Publish its DNS record.")
                % {"name": dkim_keys.dns_name(key)},
            )
            return redirect("mailings:dkim_key", key.pk)
    keys = DkimKey.objects.only("domain", "selector", "algorithm", "active", "created")
    ctx = {"form": form, "keys": keys.order_by("domain", "selector")}
    return render(request, "mailings/dkim/list.html", ctx, status=400 if form.errors else 200)


@require_right("sending")
def key_detail(request: HttpRequest, dkim_key_id: int) -> HttpResponse:
    key = _get_key(dkim_key_id)
    ctx = {
        "key": key,
        "dns_name": dkim_keys.dns_name(key),
        "dns_strings": dkim_keys.dns_strings(key),
        "zone_line": dkim_keys.dns_zone_line(key),
    }
    return render(request, "mailings/dkim/detail.html", ctx)


@require_POST
@require_right("sending")
def key_activate(request: HttpRequest, dkim_key_id: int) -> HttpResponse:
    key = _get_key(dkim_key_id)
    old = dkim_keys.activate_key(key, request)
    text = _("Mail from %(domain)s is now signed with %(name)s.") % {
        "domain": key.domain,
        "name": dkim_keys.dns_name(key),
    }
    if old is not None:
        text += " " + _("%(name)s is no longer used.") % {"name": dkim_keys.dns_name(old)}
    messages.success(request, text)
    return redirect("mailings:dkim_key", key.pk)


@require_POST
@require_right("sending")
def key_delete(request: HttpRequest, dkim_key_id: int) -> HttpResponse:
    key = _get_key(dkim_key_id)
    dkim_keys.delete_key(key, request)
    messages.success(request, _("DKIM key %(name)s deleted.") % {"name": dkim_keys.dns_name(key)})
    return redirect("mailings:dkim_keys")
