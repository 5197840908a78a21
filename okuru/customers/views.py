from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from okuru.accounts.access import require_right
from okuru.customers import filters


@require_right("customers_read")
def customer_list(request: HttpRequest) -> HttpResponse:
    return render(request, "customers/list.html", {"count": filters.count(None)})
