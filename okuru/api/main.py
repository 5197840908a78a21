"""The API object: token auth on every endpoint, JSON errors, the routers."""

from ninja import NinjaAPI

from okuru.api import (
    customers,
    dbviews,
    errors,
    exports,
    extractions,
    fields,
    imports,
    jobs,
    redelivery,
)
from okuru.api.auth import TokenAuth
from okuru.mailings import api as mailings_api

api = NinjaAPI(
    title="Okuru API",
    version="1",
    # For integrators, in English (the schema is built once, not per request language).
    description=(
        "Customers, database design, database views, imports, exports and jobs. "
        "Authenticate with an API token from your profile page: "
        '`Authorization: Bearer <token>`. Errors are JSON: `{"detail": "..."}`.'
    ),
    auth=TokenAuth(),
    urls_namespace="api",
)
errors.install(api)
for module in (customers, fields, dbviews, imports, exports, jobs):
    api.add_router("", module.router)
# Before the mailings router: its POST /deliveries/{id}/{action} would take /resend.
api.add_router("", redelivery.router)
api.add_router("", mailings_api.router)
api.add_router("", extractions.router)
