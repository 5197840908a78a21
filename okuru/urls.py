from django.urls import include, path

from okuru.accounts.views import set_language
from okuru.api.main import api

handler403 = "okuru.accounts.views.permission_denied"
urlpatterns = [
    path("i18n/setlang/", set_language, name="set_language"),
    path("accounts/", include("okuru.accounts.urls")),
    path("api/", api.urls),
    path("bounces/", include("okuru.bounces.urls")),
    path("capture/", include("okuru.capture.urls")),
    path("mails/", include("okuru.mailings.urls")),
    path("t/", include("okuru.tracking.urls")),
    path("", include("okuru.customers.urls")),
]
