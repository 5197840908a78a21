"""Authorization helpers shared by views and the API: one place for the 403.

Customer data — a customer's field values and e-mail addresses, and anything that repeats them
(a rendered message, an SMTP reply naming the address, a captured mail) — is shown only to
operators who hold ``CUSTOMER_DATA_RIGHT``. Every screen, export and API response that could
show it asks ``sees_customer_data`` or ``check_customer_data`` (or requires the right outright);
no view decides this on its own. ``CUSTOMER_DATA_BY_RIGHT`` is the decision, right by right; the
rights-matrix test (``tests/test_rights_matrix.py``) plants a sentinel customer and checks every
screen and API operation against it.

The Customer ID alone is not customer data: it names a record and says nothing about the
person, so reports and their exports may carry it (the 配信フラグ route needs exactly that).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

CUSTOMER_DATA_RIGHT = "customers_read"

# For each right: what it lets an operator see of customers' data. Rights add up; an operator
# without Customers: read sees no customer's fields or addresses anywhere.
CUSTOMER_DATA_BY_RIGHT = [
    (
        "customers_read",
        gettext_lazy(
            "Every customer's fields and addresses: customer lists and pages, database views, "
            "previews and test sends as a chosen customer, the addresses and SMTP replies of a "
            "count's recipients, field columns in exports and their files, the capture box, "
            "other operators' import errors."
        ),
    ),
    ("customers_write", gettext_lazy("Nothing beyond Customers: read, which it needs.")),
    ("database_design", gettext_lazy("None: fields and their settings, no values.")),
    (
        "import_data",
        gettext_lazy(
            "None stored: an import's errors repeat values of the operator's own file, and may "
            "name the Customer ID that already holds a unique value."
        ),
    ),
    (
        "export_data",
        gettext_lazy(
            "With Customers: read, the fields it exports. Without it, Customer IDs only: the "
            "recipients of a count, a delivery's events."
        ),
    ),
    (
        "mails",
        gettext_lazy(
            "None: previews and test sends use sample data; a mail's recipient counts. The "
            "capture box needs Customers: read as well."
        ),
    ),
    ("sending", gettext_lazy("None: deliveries and their counts.")),
    (
        "reports",
        gettext_lazy(
            "Customer IDs with each recipient's status, error kind, times, opens and clicks; "
            "not their addresses or SMTP replies."
        ),
    ),
    (
        "operators_admin",
        gettext_lazy("None: operators, groups, the operation log, everyone's jobs (counts)."),
    ),
]


def require_right(*rights: str) -> Callable:
    """View decorator: logged in, and holding every one of ``rights``."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def inner(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            check_rights(request.user, *rights)
            return view(request, *args, **kwargs)

        return inner

    return decorator


def check_rights(user, *rights: str) -> None:
    """Raise PermissionDenied, naming the missing rights, unless ``user`` holds all of them."""
    missing = [r for r in rights if not user.has_right(r)]
    if missing:
        raise PermissionDenied(
            _("You do not have the right to do this (needs: %(rights)s).")
            % {"rights": ", ".join(right_labels(missing))}
        )


def sees_customer_data(user) -> bool:
    """May ``user`` see customers' field values and addresses (see the module docstring)?"""
    return user.is_authenticated and user.has_right(CUSTOMER_DATA_RIGHT)


def check_customer_data(user) -> None:
    """Raise PermissionDenied (naming Customers: read) unless ``user`` may see customer data."""
    check_rights(user, CUSTOMER_DATA_RIGHT)


def right_labels(codes: list[str]) -> list[str]:
    from okuru.accounts.models import RIGHTS

    labels = {code: str(label) for code, label in RIGHTS}
    return [labels.get(code, code) for code in codes]
